"""Per-party multipliers of a trained GAL model, fitted on held-out rows (the label owner's own labels).

Under feature-DP the label owner cannot fit weights on the training rows: the parties' predictions
there are noised releases (or absent). It can on rows the model never trained on and whose
predictions it receives anyway, e.g. its validation rows. :func:`fit_party_multipliers` finds one
multiplier per party for the party's whole contribution ``sum_t eta_t w_t f_t``, by minimising the
task loss on those rows plus a pull towards 1 (the fixed policy), so that a few dozen rows suffice.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize

from ..errors import ConfigError

# A multiplier lies in [0, MAX_MULTIPLIER]: a party's contribution is never reversed.
MAX_MULTIPLIER = 4.0


def fit_party_multipliers(loss, y: np.ndarray, init: np.ndarray, terms: np.ndarray, penalty: float,
                          prior: np.ndarray | None = None) -> np.ndarray:
    """argmin over a in [0, 4]^M of ``loss(y, init + sum_m a_m terms[m]) + penalty * ||a - prior||^2 / n``.

    ``terms`` (M, n, K): each party's total contribution on the n held-out rows; ``y`` the rows'
    labels as the loss takes them (scaled targets for regression); ``prior`` (M,) in [0, 4]: where
    the penalty pulls, all 1 (the fixed policy) unless given. Deterministic (Nelder-Mead from
    ``prior``, which handles the non-smooth l1 loss). Returns a of shape (M,).
    """
    terms = np.asarray(terms, dtype=np.float64)
    if terms.ndim != 3 or terms.shape[0] < 1 or terms.shape[1] < 1:
        raise ValueError(f"terms must have shape (M >= 1, n >= 1, K), got {terms.shape}")
    if not np.isfinite(terms).all():
        raise ValueError("terms must be finite")
    if isinstance(penalty, bool) or not (isinstance(penalty, (int, float)) and math.isfinite(penalty) and penalty >= 0):
        raise ConfigError(f"calibration penalty must be a finite number >= 0, got {penalty!r}")
    start = np.ones(terms.shape[0]) if prior is None else np.asarray(prior, dtype=np.float64)
    if start.shape != terms.shape[:1] or not ((start >= 0) & (start <= MAX_MULTIPLIER)).all():
        raise ValueError(f"prior must hold {terms.shape[0]} values in [0, {MAX_MULTIPLIER:g}], got {prior!r}")
    n = terms.shape[1]
    base = np.broadcast_to(np.asarray(init, dtype=np.float64), terms.shape[1:])

    def objective(a: np.ndarray) -> float:
        return loss.value(y, base + np.tensordot(a, terms, axes=1)) + penalty * float(np.sum((a - start) ** 2)) / n

    # scipy's default first simplex (each coordinate 5% up), except that a coordinate at 0 starts
    # 0.5 up instead of scipy's 0.00025, from which a term pulled towards 0 would barely move
    simplex = np.vstack([start] + [start + np.eye(len(start))[i] * (0.05 * v if v else 0.5)
                                   for i, v in enumerate(start)])
    result = minimize(objective, start, method="Nelder-Mead", bounds=[(0.0, MAX_MULTIPLIER)] * len(start),
                      options={"maxiter": 200 * len(start), "xatol": 1e-4, "fatol": 1e-9,
                               "initial_simplex": simplex})
    best = np.clip(result.x, 0.0, MAX_MULTIPLIER)
    return best if objective(best) <= objective(start) else start
