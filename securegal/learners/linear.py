"""Closed-form ridge regression on a party's features (local loss l2), and IRLS for l1."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .base import SmootherOperator, check_fit_inputs, check_local_loss


def _with_intercept(X: np.ndarray) -> np.ndarray:
    return np.hstack([X, np.ones((X.shape[0], 1))])


@dataclass(frozen=True)
class LinearModel:
    coef: np.ndarray  # (d + 1, K), last row is the intercept

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        return X @ self.coef[:-1] + self.coef[-1]


def _ridge_solve(Phi: np.ndarray, r: np.ndarray, lam: float, weights: np.ndarray | None = None) -> np.ndarray:
    p = Phi.shape[1]
    penalty = lam * np.eye(p)
    penalty[-1, -1] = 0.0  # the intercept is not shrunk
    if weights is None:
        gram, rhs = Phi.T @ Phi, Phi.T @ r
    else:
        gram = Phi.T @ (Phi * weights[:, None])
        rhs = Phi.T @ (r * weights[:, None])
    return np.linalg.solve(gram + penalty, rhs)


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

    def fit(self, X: np.ndarray, r: np.ndarray) -> LinearModel:
        X, r = check_fit_inputs(X, r)
        Phi = _with_intercept(X)
        lam = self.lam * X.shape[0]
        coef = _ridge_solve(Phi, r, lam)
        if self.local_loss == "l1":
            for _ in range(self.irls_iterations):
                abs_res = np.abs(r - Phi @ coef).mean(axis=1)
                weights = 1.0 / np.maximum(abs_res, 1e-6 * (1.0 + abs_res.mean()))
                coef = _ridge_solve(Phi, r, lam * weights.mean(), weights)
        return LinearModel(coef)

    def operator(self, X: np.ndarray) -> SmootherOperator:
        """``A = (Phi^T Phi + lam I)^-1 Phi^T``, so the l2 fit's train predictions are ``Phi A r``."""
        if self.local_loss != "l2":
            raise ValueError("only the l2 ridge learner is a linear smoother; l1 (IRLS) is not")
        X, _ = check_fit_inputs(X, np.zeros((np.asarray(X).shape[0], 1)))
        Phi = _with_intercept(X)
        lam = self.lam * X.shape[0]
        penalty = lam * np.eye(Phi.shape[1])
        penalty[-1, -1] = 0.0
        A = np.linalg.solve(Phi.T @ Phi + penalty, Phi.T)
        return SmootherOperator(A=A, phi_train=Phi, feature_map=_with_intercept)
