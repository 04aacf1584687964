"""Closed-form ridge regression on a party's features (local loss l2), and IRLS for l1."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from ..core.blas import one_blas_thread
from ..errors import ConfigError
from .base import SmootherOperator, check_fit_inputs, check_local_loss, check_residuals


def _with_intercept(X: np.ndarray) -> np.ndarray:
    return np.hstack([X, np.ones((X.shape[0], 1))])


@dataclass(frozen=True)
class LinearModel:
    coef: np.ndarray  # (d + 1, K), last row is the intercept

    @one_blas_thread
    def predict(self, X: np.ndarray) -> np.ndarray:
        # Computed as (K, n) = coef^T X^T, returned as its (n, K) transpose: BLAS is several
        # times slower on the tall-and-thin product X @ coef with a handful of outputs.
        out = self.coef[:-1].T @ np.asarray(X, dtype=np.float64).T
        out += self.coef[-1][:, None]
        return out.T


def _penalty(p: int, lam: float) -> np.ndarray:
    penalty = lam * np.eye(p)
    penalty[-1, -1] = 0.0  # the intercept is not shrunk
    return penalty


def _ridge_solve(Phi: np.ndarray, r: np.ndarray, lam: float, weights: np.ndarray | None = None) -> np.ndarray:
    p = Phi.shape[1]
    if weights is None:
        gram, rhs = Phi.T @ Phi, Phi.T @ r
    else:
        gram = Phi.T @ (Phi * weights[:, None])
        rhs = Phi.T @ (r * weights[:, None])
    return np.linalg.solve(gram + _penalty(p, lam), rhs)


# A bound l2 block of at least this many values is stored in float32 (below, the memory does not
# matter and float64 keeps the fit exact); products run in float64, BLOCK_ROWS rows at a time (a
# 16k x d float64 scratch block, reused), so their sums are float64 throughout.
FLOAT32_ELEMENTS = 1 << 22
BLOCK_ROWS = 1 << 14


class BoundRidge:
    """A :class:`LinearLearner` bound to one feature block, for fitting round after round.

    The l2 fit's Gram matrix ``Phi^T Phi + lam I`` (``Phi`` = features plus an intercept column)
    depends on the features only, so it is formed and Cholesky-factored once here; a round then
    costs ``Phi^T r`` and the train predictions ``Phi z``, two passes over the block, and the
    intercept column is never materialized. A large l2 block (at least ``FLOAT32_ELEMENTS``
    values) is kept in float32, half the memory of the party's largest array: every product
    casts it back to float64 a block of rows at a time and accumulates in float64, so the fit is
    the exact ridge on the float32-rounded features (relative rounding 6e-8; at n = 1M the test
    accuracy of the scale benchmark is unchanged to the last digit). Smaller blocks stay float64,
    where the fit equals :meth:`LinearLearner.operator` to rounding. IRLS (l1) reweights the rows
    every iteration, so it keeps ``Phi`` in float64 and solves afresh.
    """

    @one_blas_thread
    def __init__(self, learner: "LinearLearner", X: np.ndarray):
        X = np.asarray(X)
        if X.dtype == np.float32 and X.ndim == 2 and learner.stored_dtype(X.shape) == np.float32:
            X = _checked_float32(X)  # already in its stored form (a party builds it so): no float64 copy
        else:
            X, _ = check_fit_inputs(X, np.zeros((X.shape[0], 1)))
        self.learner, self.n = learner, X.shape[0]
        self.lam = learner.lam * X.shape[0]
        if learner.local_loss == "l2":
            self.X = X.astype(learner.stored_dtype(X.shape), copy=False)
            d = self.X.shape[1]
            gram = np.zeros((d + 1, d + 1))
            for block in self._blocks():
                gram[:-1, :-1] += block.T @ block
                gram[:-1, -1] += block.sum(axis=0)
            gram[-1, :-1] = gram[:-1, -1]
            gram[-1, -1] = self.n
            self._factor = cho_factor(gram + _penalty(d + 1, self.lam))
        else:
            self.X = X
            self._phi = _with_intercept(X)

    def _blocks(self):
        """Float64 copies of consecutive row blocks of ``self.X`` (one reused buffer), or the
        block itself when it is float64."""
        if self.X.dtype == np.float64:
            yield self.X
            return
        buffer = np.empty((min(self.n, BLOCK_ROWS), self.X.shape[1]))
        for start in range(0, self.n, BLOCK_ROWS):
            block = buffer[:min(BLOCK_ROWS, self.n - start)]
            np.copyto(block, self.X[start:start + block.shape[0]])
            yield block

    def fit(self, r: np.ndarray) -> LinearModel:
        return self.fit_predict(r)[0]

    @one_blas_thread
    def fit_predict(self, r: np.ndarray) -> tuple[LinearModel, np.ndarray]:
        """The round model for residuals ``r`` (n, K) and its predictions on the bound rows
        (C-contiguous, ready for the wire)."""
        r = check_residuals(r, self.n)
        if self.learner.local_loss == "l2":
            rhs = np.empty((self.X.shape[1] + 1, r.shape[1]))
            rhs[-1] = r.sum(axis=0)
            rhs_t = np.zeros((r.shape[1], self.X.shape[1]))  # (Phi^T r)^T: BLAS is faster with K rows
            start = 0
            for block in self._blocks():
                rhs_t += r[start:start + block.shape[0]].T @ block
                start += block.shape[0]
            rhs[:-1] = rhs_t.T
            model = LinearModel(cho_solve(self._factor, rhs))
            return model, self.predict_train(model)
        Phi = self._phi
        coef = _ridge_solve(Phi, r, self.lam)
        for _ in range(self.learner.irls_iterations):
            abs_res = np.abs(r - Phi @ coef).mean(axis=1)
            weights = 1.0 / np.maximum(abs_res, 1e-6 * (1.0 + abs_res.mean()))
            coef = _ridge_solve(Phi, r, self.lam * weights.mean(), weights)
        model = LinearModel(coef)
        return model, self.predict_train(model)

    @one_blas_thread
    def predict_train(self, model: LinearModel) -> np.ndarray:
        """``model``'s predictions on the bound rows (n, K), C-contiguous: what :meth:`fit_predict`
        returned with it, computed the same way (the same values)."""
        if self.learner.local_loss != "l2":
            return self._phi @ model.coef
        predictions = np.empty((self.n, model.coef.shape[1]))
        weights_t = np.ascontiguousarray(model.coef[:-1].T)
        start = 0
        for block in self._blocks():
            rows = predictions[start:start + block.shape[0]]
            rows[:] = (weights_t @ block.T).T
            start += block.shape[0]
        predictions += model.coef[-1]
        return predictions


def _checked_float32(X: np.ndarray) -> np.ndarray:
    if not np.isfinite(X).all():
        raise ValueError("features must be finite")
    return X


class LinearLearner:
    """Ridge regression with an intercept; ``local_loss='l1'`` fits least absolute deviations by IRLS.

    ``lam`` is the ridge penalty on the (standardized) coefficients, in units of the mean squared
    error times n, so it does not need re-tuning with the sample size.
    """

    name = "linear"

    def __init__(self, local_loss: str = "l2", lam: float = 1e-3, irls_iterations: int = 30):
        self.local_loss = check_local_loss(local_loss)
        if not lam > 0:
            raise ConfigError(f"ridge penalty lam must be > 0, got {lam!r}")
        self.lam = float(lam)
        self.irls_iterations = int(irls_iterations)

    def stored_dtype(self, shape: tuple[int, int]):
        """The dtype a bound block of ``shape`` (n, d) is kept in: float32 for an l2 block of at
        least ``FLOAT32_ELEMENTS`` values, else float64 (a party can build its rows in it directly)."""
        large = int(np.prod(shape)) >= FLOAT32_ELEMENTS
        return np.dtype(np.float32) if self.local_loss == "l2" and large else np.dtype(np.float64)

    def bind(self, X: np.ndarray) -> BoundRidge:
        """This learner on the fixed features ``X``: the per-block work is done once."""
        return BoundRidge(self, X)

    def fit(self, X: np.ndarray, r: np.ndarray) -> LinearModel:
        return self.bind(X).fit(r)

    def operator(self, X: np.ndarray) -> SmootherOperator:
        """``A = (Phi^T Phi + lam I)^-1 Phi^T``, so the l2 fit's train predictions are ``Phi A r``."""
        if self.local_loss != "l2":
            raise ValueError("only the l2 ridge learner is a linear smoother; l1 (IRLS) is not")
        X, _ = check_fit_inputs(X, np.zeros((np.asarray(X).shape[0], 1)))
        Phi = _with_intercept(X)
        lam = self.lam * X.shape[0]
        A = np.linalg.solve(Phi.T @ Phi + _penalty(Phi.shape[1], lam), Phi.T)
        return SmootherOperator(A=A, phi_train=Phi, feature_map=_with_intercept)
