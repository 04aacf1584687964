"""Feature reconstruction (a): equality solving on the returned predictions (Luo et al., ICDE 2021).

A linear local model returns ``f_t = [X, 1] beta_t`` every round, so the n x (T*K) stack of
returned predictions lies in the span of the victim's features. The attacker takes an
orthonormal basis of that span (SVD of the centred stack, numerically zero directions dropped)
and fits the map from basis to features on its k known rows. With k >= rank + 1 and noiseless
predictions the fit is exact; with fewer rows or noised predictions the ridge penalty, chosen
by leave-one-out on the known rows, keeps it stable.
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import RidgeCV

from .features import KnownRows, score_features
from .result import AttackResult
from .views import stack_rounds

NAME = "hat_matrix"
ALPHAS = np.logspace(-10, 4, 29)
RANK_RTOL = 1e-9


def span_basis(predictions: np.ndarray, rtol: float = RANK_RTOL) -> np.ndarray:
    """Orthonormal basis (scaled to unit variance) of the centred columns of ``predictions``."""
    P = np.asarray(predictions, dtype=np.float64)
    if not np.isfinite(P).all():
        raise ValueError("predictions must be finite")
    U, s, _ = np.linalg.svd(P - P.mean(axis=0), full_matrices=False)
    if s.size == 0 or s[0] == 0:
        return np.zeros((P.shape[0], 0))
    return U[:, s > rtol * s[0]] * np.sqrt(P.shape[0])


def reconstruct(prediction_rounds: list[np.ndarray], known: KnownRows) -> np.ndarray:
    """Estimate the victim's features for all n rows from its per-round predictions (n, K)."""
    B = span_basis(stack_rounds(prediction_rounds))
    known.check_rows(B.shape[0])
    if B.shape[1] == 0 or known.index.size < 2:
        return np.tile(known.values.mean(axis=0), (B.shape[0], 1))
    model = RidgeCV(alphas=ALPHAS, fit_intercept=True).fit(B[known.index], known.values)
    return model.predict(B).reshape(B.shape[0], -1)


def run(prediction_rounds: list[np.ndarray], known: KnownRows, truth: np.ndarray,
        attacker: str, victim: str) -> list[AttackResult]:
    """Reconstruct and score against the victim's true features on the unknown rows."""
    return score_features(NAME, attacker, victim, reconstruct(prediction_rounds, known), truth, known)
