import numpy as np
import pytest

from securegal.core.assistance import (
    combine, fit_assistance_weights, line_search_step, newton_step, uniform_weights, weights_objective)
from securegal.core.losses import BinaryCrossEntropy, CrossEntropy, L2Loss


@pytest.mark.parametrize("local_loss", ["l2", "l1"])
def test_weights_gradient_matches_finite_differences(local_loss, rng):
    r = rng.normal(size=(30, 2))
    P = rng.normal(size=(4, 30, 2))
    theta = rng.normal(size=4)
    _, g = weights_objective(theta, r, P, local_loss)
    h = 1e-6
    num = np.array([(weights_objective(theta + h * e, r, P, local_loss)[0]
                     - weights_objective(theta - h * e, r, P, local_loss)[0]) / (2 * h) for e in np.eye(4)])
    np.testing.assert_allclose(g, num, atol=1e-6)


def test_weights_lie_on_the_simplex_and_find_the_informative_party(rng):
    r = rng.normal(size=(200, 3))
    P = np.stack([rng.normal(size=r.shape), r + 0.01 * rng.normal(size=r.shape), rng.normal(size=r.shape)])
    w = fit_assistance_weights(r, P)
    assert w.shape == (3,) and np.all(w >= 0) and abs(w.sum() - 1) < 1e-12
    assert w[1] > 0.9


def test_noisy_parties_get_small_weights(rng):
    r = rng.normal(size=(500, 1))
    clean = r * 0.5 + 0.05 * rng.normal(size=r.shape)
    P = np.stack([clean, clean, clean + rng.normal(size=r.shape), clean + rng.normal(size=r.shape)])
    w = fit_assistance_weights(r, P)
    assert w[2] < 0.1 and w[3] < 0.1


def test_combine_and_uniform():
    P = np.arange(12, dtype=float).reshape(3, 2, 2)
    np.testing.assert_allclose(combine(uniform_weights(3), P), P.mean(axis=0))
    with pytest.raises(ValueError):
        uniform_weights(0)


def test_line_search_finds_the_minimum_and_respects_bounds():
    assert abs(line_search_step(lambda e: (e - 2.5) ** 2, eta_max=10) - 2.5) < 1e-4
    assert abs(line_search_step(lambda e: (e - 50) ** 2, eta_max=10) - 10) < 1e-4
    assert line_search_step(lambda e: (e + 1) ** 2, eta_max=10) == 0.0
    with pytest.raises(ValueError, match="eta_max"):
        line_search_step(lambda e: e, eta_max=0)


def test_weights_reject_bad_shapes(rng):
    with pytest.raises(ValueError, match="shape"):
        fit_assistance_weights(rng.normal(size=(5, 2)), rng.normal(size=(2, 5, 3)))
    with pytest.raises(ValueError, match="finite"):
        fit_assistance_weights(np.full((5, 1), np.nan), np.zeros((2, 5, 1)))


def _reference_adam(r, P, local_loss, steps=100, lr=0.1):
    """The plain Adam loop on weights_objective, for checking the l2 Gram-matrix shortcut."""
    theta, m, v = np.zeros(P.shape[0]), np.zeros(P.shape[0]), np.zeros(P.shape[0])
    for t in range(1, steps + 1):
        _, g = weights_objective(theta, r, P, local_loss)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        theta = theta - lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    return np.exp(theta) / np.exp(theta).sum()


@pytest.mark.parametrize("local_loss", ["l2", "l1"])
def test_fitted_weights_match_adam_on_the_objective(local_loss, rng):
    r = rng.normal(size=(300, 3))
    P = np.stack([r * 0.3 + rng.normal(size=r.shape) * s for s in (0.1, 0.5, 1.0, 2.0)])
    np.testing.assert_allclose(fit_assistance_weights(r, P, local_loss), _reference_adam(r, P, local_loss),
                               rtol=1e-8, atol=1e-10)


def test_l1_step_is_the_exact_minimizer(rng):
    from securegal.core.assistance import l1_step

    gap, g = rng.normal(size=(40, 2)), rng.normal(size=(40, 2))
    eta = l1_step(gap, g, eta_max=100)
    grid = np.linspace(0, 5, 20001)
    values = [np.abs(gap - e * g).sum() for e in grid]
    assert np.abs(gap - eta * g).sum() <= min(values) + 1e-9
    assert l1_step(gap, np.zeros_like(g)) == 0.0
    assert l1_step(np.full(5, 50.0), np.ones(5), eta_max=3) == 3.0
    assert l1_step(np.full(5, -1.0), np.ones(5)) == 0.0


def test_assisted_learning_rate_dispatches_by_loss(rng):
    from securegal.core.assistance import assisted_learning_rate
    from securegal.core.losses import L1Loss, L2Loss

    y = rng.normal(size=30)
    F = np.zeros((30, 1))
    g = y[:, None] * 0.5
    assert abs(assisted_learning_rate(L1Loss(), y, F, g) - 2.0) < 1e-12
    assert abs(assisted_learning_rate(L2Loss(), y, F, g) - 2.0) < 1e-4


def _counted(derivatives):
    calls = []

    def wrapped(eta):
        calls.append(eta)
        return derivatives(eta)
    return wrapped, calls


@pytest.mark.parametrize("eta_max", [0.5, 10.0, 100.0])
@pytest.mark.parametrize("loss,classes", [(CrossEntropy(3), 3), (BinaryCrossEntropy(), 2), (L2Loss(2), None)])
def test_newton_step_agrees_with_the_bounded_search(loss, classes, eta_max, rng):
    """Same minimizer as the Brent search it replaces, on GAL-like steps (a noisy residual fit)."""
    for _ in range(5):
        k = loss.n_outputs
        y = rng.integers(0, classes, 400) if classes else rng.normal(size=(400, k))
        F = rng.normal(size=(400, k)) * rng.uniform(0.0, 2.0)
        d = 0.3 * loss.residual(y, F) + 0.3 * rng.normal(size=F.shape)
        eta = newton_step(loss.along(y, F, d), eta_max)
        brent = line_search_step(lambda e: loss.value(y, F + e * d), eta_max)
        assert 0.0 <= eta <= eta_max
        assert loss.value(y, F + eta * d) <= loss.value(y, F + brent * d) + 1e-12
        assert abs(eta - brent) < 1e-4 * (1 + brent)


def test_newton_step_is_exact_on_a_parabola_and_handles_the_bounds():
    parabola, calls = _counted(lambda e: (2 * (e - 2.5), 2.0))
    assert newton_step(parabola, eta_max=10) == 2.5 and len(calls) == 2
    assert newton_step(lambda e: (2 * (e - 50), 2.0), eta_max=10) == 10.0
    assert newton_step(lambda e: (2 * (e + 1), 2.0), eta_max=10) == 0.0
    # a flat function (no curvature) that keeps decreasing: the upper bound
    assert newton_step(lambda e: (-1.0, 0.0), eta_max=3) == 3.0
    with pytest.raises(ValueError, match="eta_max"):
        newton_step(parabola, eta_max=0)


def test_newton_step_needs_few_evaluations_on_cross_entropy(rng):
    loss = CrossEntropy(4)
    scores = rng.normal(size=(2000, 4))
    y = np.array([rng.choice(4, p=p) for p in np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)])
    F = np.zeros((2000, 4))
    direction = 0.3 * scores  # a calibrated fit: the best step is near 1 / 0.3
    derivatives, calls = _counted(loss.along(y, F, direction))
    eta = newton_step(derivatives, eta_max=10)
    assert 0 < eta < 10 and len(calls) <= 8
    assert abs(derivatives(eta)[0]) < 1e-9


def test_l1_weights_on_a_row_subsample_match_the_full_fit(rng):
    """Above ``l1_rows`` rows the l1 weights use evenly spaced rows; the full-data loss barely moves."""
    n = 40_000
    signal = rng.normal(size=n)
    r = np.sign(signal + 0.8 * rng.normal(size=n))[:, None]
    P = np.stack([(0.3 - 0.05 * m) * signal[:, None] + (0.1 + 0.1 * m) * rng.normal(size=(n, 1)) for m in range(4)])
    full = fit_assistance_weights(r, P, "l1", l1_rows=n)
    sub = fit_assistance_weights(r, P, "l1", l1_rows=4096)
    assert not np.array_equal(full, sub)  # the subsample was used
    loss = [np.abs(r - combine(w, P)).mean() for w in (full, sub)]
    assert loss[1] <= loss[0] * (1 + 1e-3) and np.abs(full - sub).max() < 0.02
    np.testing.assert_array_equal(fit_assistance_weights(r[:100], P[:, :100], "l1", l1_rows=4096),
                                  fit_assistance_weights(r[:100], P[:, :100], "l1"))
    with pytest.raises(ValueError, match="l1_rows"):
        fit_assistance_weights(r, P, "l1", l1_rows=0)


def test_combine_into_a_buffer_gives_the_same_bits():
    rng = np.random.default_rng(3)
    P, w = rng.normal(size=(5, 1001, 3)), rng.dirichlet(np.ones(5))
    out = np.full((1001, 3), np.nan)
    assert combine(w, P, out=out) is out
    np.testing.assert_array_equal(out, combine(w, P))
    np.testing.assert_allclose(out, np.einsum("m,mnk->nk", w, P), rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="C-contiguous float64 array of shape"):
        combine(w, P, out=np.empty((3, 1001)).T)
