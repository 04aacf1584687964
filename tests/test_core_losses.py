import numpy as np
import pytest

from securegal.core.losses import BinaryCrossEntropy, CrossEntropy, L1Loss, L2Loss, make_loss


def numeric_grad(f, F, h=1e-6):
    g = np.zeros_like(F)
    for idx in np.ndindex(F.shape):
        Fp, Fm = F.copy(), F.copy()
        Fp[idx] += h
        Fm[idx] -= h
        g[idx] = (f(Fp) - f(Fm)) / (2 * h)
    return g


CASES = [
    (CrossEntropy(3), lambda rng: rng.integers(0, 3, 12), 3),
    (BinaryCrossEntropy(), lambda rng: rng.integers(0, 2, 12), 1),
    (L2Loss(1), lambda rng: rng.normal(size=12), 1),
    (L2Loss(2), lambda rng: rng.normal(size=(12, 2)), 2),
]


@pytest.mark.parametrize("loss,make_y,k", CASES)
def test_residual_is_negative_gradient_of_the_summed_loss(loss, make_y, k, rng):
    y = make_y(rng)
    F = rng.normal(size=(12, k))
    # value is a mean over rows, residuals are per-row negative gradients
    expected = -numeric_grad(lambda G: loss.value(y, G), F) * len(F)
    np.testing.assert_allclose(loss.residual(y, F), expected, atol=1e-5)


def test_l1_residual_is_sign_and_matches_gradient_away_from_kinks(rng):
    y = rng.normal(size=10)
    F = y[:, None] + rng.choice([-1, 1], size=(10, 1)) * rng.uniform(0.1, 1, size=(10, 1))
    loss = L1Loss()
    np.testing.assert_allclose(loss.residual(y, F), -numeric_grad(lambda G: loss.value(y, G), F) * 10, atol=1e-6)
    np.testing.assert_array_equal(loss.residual(y, F), np.sign(y[:, None] - F))


@pytest.mark.parametrize("loss,make_y,k", CASES + [(L1Loss(), lambda rng: rng.normal(size=12), 1)])
def test_init_is_the_constant_minimizer(loss, make_y, k, rng):
    y = make_y(rng)
    c = loss.init(y)
    base = loss.value(y, np.tile(c, (len(y), 1)))
    for _ in range(20):
        other = c + rng.normal(scale=0.05, size=c.shape)
        if isinstance(loss, CrossEntropy):  # softmax is shift-invariant; compare distinct distributions
            other = other - other.mean() + c.mean()
        assert loss.value(y, np.tile(other, (len(y), 1))) >= base - 1e-12


def test_closed_forms():
    y = np.array([0, 0, 1, 2, 2, 2])
    np.testing.assert_allclose(CrossEntropy(3).init(y), np.log([2 / 6, 1 / 6, 3 / 6]))
    np.testing.assert_allclose(L2Loss().init(np.array([1.0, 2.0, 6.0])), [3.0])
    np.testing.assert_allclose(L1Loss().init(np.array([1.0, 2.0, 6.0])), [2.0])
    np.testing.assert_allclose(BinaryCrossEntropy().init(np.array([0, 1, 1, 1])), [np.log(3)])
    # the first cross-entropy residual reveals the label: argmax(onehot - prior) = y
    F0 = np.tile(CrossEntropy(3).init(y), (6, 1))
    np.testing.assert_array_equal(CrossEntropy(3).residual(y, F0).argmax(axis=1), y)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="0..2"):
        CrossEntropy(3).residual(np.array([0, 3]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="shape"):
        L2Loss().value(np.zeros(3), np.zeros((4, 1)))
    with pytest.raises(ValueError, match="finite"):
        L1Loss().init(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="unknown loss"):
        make_loss("hinge", 2)
    with pytest.raises(ValueError, match="at least 2 classes"):
        CrossEntropy(1)


@pytest.mark.parametrize("loss,make_y,k", CASES)
def test_derivatives_along_a_direction_match_finite_differences(loss, make_y, k, rng):
    y = make_y(rng)
    F, d = rng.normal(size=(12, k)), rng.normal(size=(12, k))
    derivatives = loss.along(y, F, d)
    h = 1e-5
    for eta in (0.0, 0.7, 3.0):
        first, second = derivatives(eta)
        numeric_first = (loss.value(y, F + (eta + h) * d) - loss.value(y, F + (eta - h) * d)) / (2 * h)
        numeric_second = (derivatives(eta + h)[0] - derivatives(eta - h)[0]) / (2 * h)
        assert abs(first - numeric_first) < 1e-7
        assert abs(second - numeric_second) < 1e-6 and second >= 0


def test_l1_gives_no_derivatives():
    assert not hasattr(L1Loss(), "along")


def test_cross_entropy_matches_scipy_and_stays_finite_on_extreme_scores(rng):
    from scipy.special import log_softmax, softmax

    loss = CrossEntropy(4)
    y = rng.integers(0, 4, 50)
    for scale in (1.0, 1e3):
        F = rng.normal(size=(50, 4)) * scale
        assert loss.value(y, F) == pytest.approx(-log_softmax(F, axis=1)[np.arange(50), y].mean(), rel=1e-12)
        expected = -softmax(F, axis=1)
        expected[np.arange(50), y] += 1.0
        residual = loss.residual(y, F)
        np.testing.assert_allclose(residual, expected, atol=1e-15)
        assert residual.flags.c_contiguous and np.isfinite(residual).all()
