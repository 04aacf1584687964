"""The bound l2 ridge on a large block: float32 storage, float64 products by row blocks."""
import numpy as np

from securegal.learners import linear
from securegal.learners.linear import LinearLearner


def _exact(X, r, lam):
    Phi = np.hstack([X, np.ones((X.shape[0], 1))])
    penalty = lam * X.shape[0] * np.eye(Phi.shape[1])
    penalty[-1, -1] = 0.0
    coef = np.linalg.solve(Phi.T @ Phi + penalty, Phi.T @ r)
    return coef, Phi @ coef


def test_a_large_block_is_the_exact_ridge_on_its_float32_rounded_features(monkeypatch, rng):
    monkeypatch.setattr(linear, "FLOAT32_ELEMENTS", 100)  # this block counts as large
    monkeypatch.setattr(linear, "BLOCK_ROWS", 64)  # several row blocks and a short last one
    X, r = rng.normal(size=(1000, 6)), rng.normal(size=(1000, 3))
    bound = LinearLearner(lam=1e-2).bind(X)
    assert bound.X.dtype == np.float32
    model, predictions = bound.fit_predict(r)
    assert predictions.flags.c_contiguous and predictions.dtype == np.float64
    coef, fitted = _exact(X.astype(np.float32).astype(np.float64), r, 1e-2)
    np.testing.assert_allclose(model.coef, coef, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(predictions, fitted, rtol=1e-10, atol=1e-12)
    coef64, fitted64 = _exact(X, r, 1e-2)  # and within float32 rounding of the float64 fit
    np.testing.assert_allclose(predictions, fitted64, atol=1e-6 * np.abs(fitted64).max())


def test_a_small_block_stays_float64_and_exact(rng):
    X, r = rng.normal(size=(200, 4)), rng.normal(size=(200, 2))
    bound = LinearLearner(lam=1e-3).bind(X)
    assert bound.X.dtype == np.float64
    model, predictions = bound.fit_predict(r)
    coef, fitted = _exact(X, r, 1e-3)
    np.testing.assert_allclose(model.coef, coef, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(predictions, fitted, rtol=1e-12, atol=1e-13)
