"""Mechanisms: noise level, secure default, clipping, sensitivities, DP ridge sanity."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from securegal.privacy.dp.mechanisms import (
    GaussianNoise,
    InsecureNoiseWarning,
    clip_rows,
    gaussian_mechanism,
    gram_sensitivity,
    noisy_symmetric,
    statistic_sensitivity,
)
from securegal.privacy.dp.ridge import ClippedFeatureMap, DPRidge

# Both row maps: the projection onto the ball (the default) and the coordinate-wise clip at a.
COORDINATE_CLIPS = [None, 2.0]


def seeded(seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureNoiseWarning)
        return GaussianNoise(seed)


def test_default_noise_is_secure_and_seeded_noise_warns():
    assert GaussianNoise().secure
    with pytest.warns(InsecureNoiseWarning):
        g = GaussianNoise(3)
    assert not g.secure
    with pytest.raises(TypeError):
        GaussianNoise(1.5)


@pytest.mark.parametrize("source", ["secure", "seeded"])
def test_measured_noise_std_matches_calibrated(source):
    noise = GaussianNoise() if source == "secure" else seeded(0)
    sens, z = 0.02, 4.7
    value = np.zeros((200_000,))
    out = gaussian_mechanism(value, sens, z, noise)
    # std of the sample std is about sigma / sqrt(2N) = 0.16%; allow 1%
    assert out.std() == pytest.approx(sens * z, rel=0.01)
    assert abs(out.mean()) < 5 * sens * z / math.sqrt(len(out))
    # normal: 4th standardised moment 3 (a uniform or a bad transform would not give it)
    assert np.mean((out / out.std()) ** 4) == pytest.approx(3.0, abs=0.1)
    # independent draws
    assert abs(np.corrcoef(out[:-1], out[1:])[0, 1]) < 0.01


def test_noisy_symmetric_is_symmetric_and_skips():
    G = np.eye(4)
    H = noisy_symmetric(G, 0.5, seeded(1), skip=(3,))
    assert np.allclose(H, H.T) and H[3, 3] == 1.0 and not np.allclose(H, G)


def test_clip_rows():
    X = np.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    C = clip_rows(X, 1.0)
    assert np.allclose(C, [[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]])
    with pytest.raises(ValueError, match="clipping norm"):
        clip_rows(X, 0.0)
    with pytest.raises(ValueError, match="clipping norm"):
        clip_rows(X, math.nan)


@pytest.mark.parametrize("coordinate_clip", COORDINATE_CLIPS)
def test_sensitivity_bounds_hold_and_are_nearly_attained(coordinate_clip):
    rng = np.random.default_rng(5)
    ridge = DPRidge(feature_clip=0.5, residual_clip=1.0, intercept=0.1, coordinate_clip=coordinate_clip)
    fmap = ridge.feature_map(6)
    X = rng.normal(size=(30, 6))
    r = rng.normal(size=(30, 3))
    worst_g = worst_s = 0.0
    for _ in range(300):
        X2 = X.copy()
        X2[7] = rng.normal(size=6) * rng.choice([0.1, 5.0])
        P, P2 = fmap(X), fmap(X2)
        dG = P.T @ P - P2.T @ P2
        iu = np.triu_indices(7)
        dG[6, 6] = 0.0
        worst_g = max(worst_g, np.linalg.norm(dG[iu]))
        rc = clip_rows(r, 1.0)
        worst_s = max(worst_s, np.linalg.norm(P.T @ rc - P2.T @ rc))
    assert worst_g <= ridge.gram_sensitivity + 1e-12
    assert worst_s <= ridge.statistic_sensitivity + 1e-12
    assert worst_g > 0.5 * ridge.gram_sensitivity and worst_s > 0.5 * ridge.statistic_sensitivity
    assert gram_sensitivity(0.5, 0.0) == pytest.approx(math.sqrt(2) * 0.25)
    assert statistic_sensitivity(0.5, 2.0) == 2.0


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")  # the ball map's norm of a 1e300 row
@settings(max_examples=300, deadline=None)
@given(X=st.integers(1, 12).flatmap(lambda d: arrays(np.float64, st.tuples(st.integers(1, 6), st.just(d)),
                                                     elements=st.floats(-1e300, 1e300))),
       B=st.floats(1e-3, 1e3), a=st.one_of(st.none(), st.floats(1e-3, 1e3)), c=st.floats(1e-3, 10.0))
def test_every_row_of_the_feature_map_lies_in_the_ball_of_radius_B(X, B, a, c):
    """The sensitivities rest on ``||phi(x)|| <= B`` for *any* row, however extreme."""
    phi = ClippedFeatureMap(X.shape[1], B, c, a)(X)
    assert phi.shape == (X.shape[0], X.shape[1] + 1)
    assert np.all(np.isfinite(phi))
    assert np.all(np.linalg.norm(phi[:, :-1], axis=1) <= B * (1 + 1e-12))
    assert np.all(phi[:, -1] == c)


def test_the_coordinate_map_is_linear_inside_the_box_and_the_ball_map_is_not():
    """Rows with every |x_j| <= a keep their magnitude and direction under the coordinate-wise
    clip (x -> x B / (a sqrt d)); the ball map sends x and 2x to the same point once both are
    longer than B sqrt d."""
    d, B, a = 4, 0.5, 2.0
    x = np.array([[0.9, -0.4, 0.7, 0.2]])
    box = ClippedFeatureMap(d, B, 0.1, a)
    np.testing.assert_allclose(box(x)[:, :d], x * B / (a * math.sqrt(d)))
    np.testing.assert_allclose(box(2 * x)[:, :d], 2 * box(x)[:, :d])
    np.testing.assert_allclose(box(np.full((1, d), 7.0))[:, :d], np.full((1, d), B / math.sqrt(d)))
    ball = ClippedFeatureMap(d, B, 0.1, None)
    long = x * 4  # |x / sqrt(d)| > B
    np.testing.assert_allclose(ball(long), ball(2 * long))


def test_dp_ridge_with_tiny_noise_matches_exact_ridge_and_noise_hurts():
    rng = np.random.default_rng(0)
    n, d = 2000, 5
    X = rng.normal(size=(n, d))
    r = (X @ rng.normal(size=(d, 1)) * 0.1 + 0.05 * rng.normal(size=(n, 1)))
    ridge = DPRidge(feature_clip=10.0, residual_clip=100.0, intercept=1.0, noise_ridge=0.0)
    fmap = ridge.feature_map(d)
    Phi = fmap(X)
    exact = np.linalg.solve(Phi.T @ Phi + ridge.lam * n * np.eye(d + 1), Phi.T @ r)
    model = ridge.solve(ridge.private_gram(Phi, 1e-9, seeded(1)),
                        ridge.private_statistic(Phi, r, 1e-9, seeded(2)), fmap)
    assert np.allclose(model.coef, exact, atol=1e-6)
    noisy = DPRidge(feature_clip=0.5, residual_clip=1.0).solve
    tight = DPRidge(feature_clip=0.5, residual_clip=1.0)
    P = tight.feature_map(d)(X)
    m = noisy(tight.private_gram(P, 50.0, seeded(3)), tight.private_statistic(P, r, 50.0, seeded(4)),
              tight.feature_map(d))
    assert np.all(np.isfinite(m.predict(X)))


def test_dp_ridge_bad_parameters():
    with pytest.raises(ValueError, match="feature_clip"):
        DPRidge(feature_clip=0.0)
    with pytest.raises(ValueError, match="residual_clip"):
        DPRidge(residual_clip=math.inf)
    with pytest.raises(ValueError, match="shape"):
        DPRidge().feature_map(3)(np.zeros((2, 4)))
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="coordinate_clip"):
            DPRidge(coordinate_clip=bad)


def test_ckks_hook_gives_the_same_model_as_the_plaintext_stat_release():
    """A enc(r) + offset (what a CKKS party would compute) equals solve(G~, Phi^T r + e)."""
    rng = np.random.default_rng(4)
    X, r = rng.normal(size=(50, 3)), clip_rows(rng.normal(size=(50, 2)), 1.0)
    ridge = DPRidge()
    op, gram = ridge.smoother_operator(X, 3.0, seeded(7))
    offset = ridge.encrypted_statistic_offset(gram, 2, 4.0, seeded(8))
    e = seeded(8).normal((4, 2), 4.0 * ridge.statistic_sensitivity)
    assert np.allclose(op.A @ r + offset, np.linalg.solve(gram, op.phi_train.T @ r + e))
    assert np.allclose(op.feature_map(X), op.phi_train)
    # the gram is the same release the plaintext trainer makes with the same noise
    assert np.allclose(gram, ridge.private_gram(ridge.feature_map(3)(X), 3.0, seeded(7)))
