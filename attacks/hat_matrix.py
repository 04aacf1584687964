"""Feature reconstruction (a): equality solving on the returned predictions (Luo et al., ICDE 2021).

A linear local model returns ``f_t = [X, 1] beta_t`` every round, so the n x (T*K) stack of
returned predictions lies in the span of the victim's features. The attacker takes an
orthonormal basis of that span (SVD of the centred stack) and fits the map from basis to
features on its k known rows:

- noiseless predictions with numerical rank R <= k - 1: least squares on the R directions,
  which is exact (the equality-solving attack proper). An exact fit is evidence only when it
  could have failed: with R = k - 1 directions any k rows are fitted exactly, so that case is
  taken as exact only when the stack is rank-deficient (its span lower than its columns, as
  for noiseless linear predictions), never for a full-rank noisy stack of k - 1 columns;
- otherwise (too few rows, or predictions perturbed by DP noise or CKKS rounding, which make
  every direction numerically non-zero) the attacker picks, by leave-one-out error on its
  known rows, between least squares on the r leading directions (r = 0 .. k - 2; r = 0 is the
  known rows' mean) and ridge on all of them over a grid of penalties.
"""
from __future__ import annotations

import numpy as np

from .features import KnownRows, score_features
from .result import AttackResult
from .views import stack_rounds

NAME = "hat_matrix"
ALPHAS = np.logspace(-8, 4, 25)
RANK_RTOL = 1e-9


def span_basis(predictions: np.ndarray, rtol: float = RANK_RTOL) -> np.ndarray:
    """Orthonormal basis (scaled to unit variance) of the centred columns of ``predictions``,
    leading directions first; directions below ``rtol`` times the largest are dropped."""
    P = np.asarray(predictions, dtype=np.float64)
    if not np.isfinite(P).all():
        raise ValueError("predictions must be finite")
    U, s, _ = np.linalg.svd(P - P.mean(axis=0), full_matrices=False)
    if s.size == 0 or s[0] == 0:
        return np.zeros((P.shape[0], 0))
    return U[:, s > rtol * s[0]] * np.sqrt(P.shape[0])


def _loo_ridge(Z: np.ndarray, Y: np.ndarray, alpha: float) -> tuple[float, np.ndarray]:
    """Leave-one-out mean squared error and coefficients (with intercept) of ridge on ``Z``."""
    k = Z.shape[0]
    D = np.hstack([Z, np.ones((k, 1))])
    penalty = alpha * np.eye(D.shape[1])
    penalty[-1, -1] = 0.0
    G = np.linalg.pinv(D.T @ D + penalty)
    coef = G @ D.T @ Y
    h = np.einsum("ij,jk,ik->i", D, G, D)
    resid = (Y - D @ coef) / np.maximum(1.0 - h, 1e-12)[:, None]
    return float(np.mean(resid**2)), coef


def fit_map(B: np.ndarray, known: KnownRows, deficient: bool) -> np.ndarray:
    """Coefficients (with a last intercept row) mapping basis ``B`` to features, chosen as above;
    ``deficient``: the stack's centred rank is below min(rows - 1, columns), as for noiseless
    linear predictions."""
    k, R = known.index.size, B.shape[1]
    Z, Y = B[known.index], known.values
    if R <= k - 1 and (R < k - 1 or deficient):
        D = np.hstack([Z, np.ones((k, 1))])
        coef, *_ = np.linalg.lstsq(D, Y, rcond=None)
        if R == k - 1 or np.allclose(D @ coef, Y, rtol=1e-8, atol=1e-8 * (1.0 + np.abs(Y).max())):
            return coef
    best_err, best = np.inf, None
    for r in range(0, min(R, k - 2) + 1):  # r = 0: the known rows' mean, the baseline itself
        err, coef = _loo_ridge(Z[:, :r], Y, 0.0)
        if err < best_err:
            best_err, best = err, np.vstack([coef[:r], np.zeros((R - r, Y.shape[1])), coef[r:]])
    for alpha in ALPHAS:
        err, coef = _loo_ridge(Z, Y, alpha * k)
        if err < best_err:
            best_err, best = err, coef
    return best


def reconstruct(prediction_rounds: list[np.ndarray], known: KnownRows) -> np.ndarray:
    """Estimate the victim's features for all n rows from its per-round predictions (n, K)."""
    P = stack_rounds(prediction_rounds)
    B = span_basis(P)
    known.check_rows(B.shape[0])
    if B.shape[1] == 0 or known.index.size < 2:
        return np.tile(known.values.mean(axis=0), (B.shape[0], 1))
    coef = fit_map(B, known, deficient=B.shape[1] < min(P.shape[0] - 1, P.shape[1]))
    return B @ coef[:-1] + coef[-1]


def run(prediction_rounds: list[np.ndarray], known: KnownRows, truth: np.ndarray,
        attacker: str, victim: str) -> list[AttackResult]:
    """Reconstruct and score against the victim's true features on the unknown rows."""
    return score_features(NAME, attacker, victim, reconstruct(prediction_rounds, known), truth, known)
