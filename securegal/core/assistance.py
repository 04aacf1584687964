"""Assistance weights on the simplex and the assisted learning rate (GAL's per-round fits).

Pure functions of arrays. ``predictions`` always has shape (M, n, K): one (n, K) block per
party that answered this round.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import softmax

from ..errors import ConfigError
from .blas import one_blas_thread
from .finite import all_finite
from .losses import check_local_loss


# Upper bound of GAL's line-searched step unless the run sets one (--eta-max).
DEFAULT_ETA_MAX = 10.0

def _check_predictions(residuals: np.ndarray, predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(residuals, dtype=np.float64)
    P = np.asarray(predictions, dtype=np.float64)
    if P.ndim != 3 or P.shape[1:] != r.shape:
        raise ValueError(f"predictions must have shape (M, {r.shape[0]}, {r.shape[1]}), got {P.shape}")
    if P.shape[0] == 0:
        raise ValueError("at least one party's predictions are needed")
    if not (all_finite(P) and all_finite(r)):
        raise ValueError("predictions and residuals must be finite")
    return r, P


@one_blas_thread
def combine(weights: np.ndarray, predictions: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """sum_m w_m f_m for ``predictions`` (M, n, K) -> (n, K), written into ``out`` (a C-contiguous
    float64 (n, K) array) when given."""
    w = np.asarray(weights, dtype=np.float64)
    P = np.asarray(predictions)
    if out is None:
        return np.tensordot(w, P, axes=1)
    if out.shape != P.shape[1:] or out.dtype != np.float64 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous float64 array of shape {P.shape[1:]}, got {out.dtype} {out.shape}")
    # tensordot's own product (a (1, M) by (M, n K) matrix product), into the caller's buffer
    np.dot(w[None, :], P.reshape(P.shape[0], -1), out=out.reshape(1, -1))
    return out


def weights_objective(theta: np.ndarray, residuals: np.ndarray, predictions: np.ndarray, local_loss: str) -> tuple[float, np.ndarray]:
    """Local loss of the softmax(theta)-weighted fit, and its gradient with respect to theta."""
    w = softmax(theta)
    fitted = combine(w, predictions)
    diff = residuals - fitted
    if local_loss == "l2":
        value = float(np.mean(diff**2))
        grad_fit = -2.0 * diff / diff.size
    else:
        value = float(np.mean(np.abs(diff)))
        grad_fit = -np.sign(diff) / diff.size
    grad_w = np.tensordot(predictions, grad_fit, axes=([1, 2], [0, 1]))
    return value, w * (grad_w - w @ grad_w)


# The l1 weights are fitted on at most this many evenly spaced rows. Measured on n = 1M, M = 8
# sign residuals: the weights move by at most 1.3e-4 and the full-data l1 loss by 3e-6
# (relative), while each round's 100 Adam steps no longer make 400 passes over all predictions.
L1_WEIGHT_ROWS = 65536


@one_blas_thread
def fit_assistance_weights(
    residuals: np.ndarray,
    predictions: np.ndarray,
    local_loss: str = "l2",
    steps: int = 100,
    lr: float = 0.1,
    l1_rows: int = L1_WEIGHT_ROWS,
) -> np.ndarray:
    """argmin over the simplex of l(r, sum_m w_m f_m), w = softmax(theta), by full-batch Adam.

    Matches the reference code: theta starts at zero (uniform weights), Adam with lr 0.1 for
    100 steps. Returns w of shape (M,). The l2 objective is exact at any n (through the M x M
    Gram matrix); the l1 objective uses ``l1_rows`` evenly spaced rows when there are more.
    """
    check_local_loss(local_loss)
    r, P = _check_predictions(residuals, predictions)
    if steps < 0 or not lr > 0:
        raise ValueError(f"need steps >= 0 and lr > 0, got steps={steps}, lr={lr}")
    if not l1_rows >= 1:
        raise ValueError(f"l1_rows must be >= 1, got {l1_rows!r}")
    if local_loss == "l1" and r.shape[0] > l1_rows:
        rows = np.linspace(0, r.shape[0] - 1, int(l1_rows)).astype(np.int64)
        r, P = r[rows], P[:, rows]
    if local_loss == "l2":
        # The l2 objective is quadratic in w: precompute P P^T and P r once (M x M and M) so
        # each Adam step costs O(M^2) instead of two passes over the (M, n, K) predictions.
        flat = P.reshape(P.shape[0], -1)
        gram = flat @ flat.T / r.size
        corr = flat @ r.ravel() / r.size

        def gradient(theta: np.ndarray) -> np.ndarray:
            w = softmax(theta)
            grad_w = 2.0 * (gram @ w - corr)
            return w * (grad_w - w @ grad_w)
    else:
        def gradient(theta: np.ndarray) -> np.ndarray:
            return weights_objective(theta, r, P, local_loss)[1]
    theta = np.zeros(P.shape[0])
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for t in range(1, steps + 1):
        g = gradient(theta)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        theta = theta - lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)
    return softmax(theta)


def uniform_weights(n_parties: int) -> np.ndarray:
    if n_parties < 1:
        raise ValueError(f"need at least one party, got {n_parties}")
    return np.full(n_parties, 1.0 / n_parties)


def line_search_step(
    objective: Callable[[float], float],
    eta_max: float = DEFAULT_ETA_MAX,
    tol: float = 1e-6,
) -> float:
    """argmin over eta in [0, eta_max] of a convex 1-D objective (bounded Brent search).

    GAL's assisted learning rate: ``objective(eta) = L(y, F + eta * g)``. An unbounded LBFGS
    from eta = 1 diverges on the L1 loss; a bounded search does not.
    """
    if not (np.isfinite(eta_max) and eta_max > 0):
        raise ConfigError(f"eta_max must be finite and > 0, got {eta_max!r}")
    result = minimize_scalar(objective, bounds=(0.0, float(eta_max)), method="bounded", options={"xatol": tol})
    eta = float(result.x)
    # Brent never evaluates the end points; keep eta = 0 when no step helps.
    return eta if objective(eta) <= objective(0.0) else 0.0


def newton_step(
    derivatives: Callable[[float], tuple[float, float]],
    eta_max: float = DEFAULT_ETA_MAX,
    tol: float = 1e-9,
    max_evaluations: int = 60,
) -> float:
    """argmin over eta in [0, eta_max] of a smooth convex 1-D function, by safeguarded Newton.

    ``derivatives(eta)`` gives the function's first and second derivative. The search keeps a
    bracket [lo, hi] around the minimizer (first derivative < 0 at lo, > 0 at hi); a Newton step
    that leaves it is replaced by eta_max (the first time: is the minimizer on the boundary?) or
    by bisection. About five evaluations for the GAL losses, each one pass over the scores; exact
    for a parabola (the L2 loss) after one. Returns 0 when no step decreases the function.
    """
    if not (np.isfinite(eta_max) and eta_max > 0):
        raise ConfigError(f"eta_max must be finite and > 0, got {eta_max!r}")
    eta, (g, h) = 0.0, derivatives(0.0)
    if not g < 0:
        return 0.0
    lo, hi, hi_known = 0.0, float(eta_max), False
    for _ in range(max_evaluations):
        step = -g / h if h > 0 else np.inf
        if abs(step) <= tol * (1.0 + eta):
            return float(np.clip(eta + step, lo, hi))
        candidate = eta + step
        if not lo < candidate < hi:
            candidate = hi if not hi_known else 0.5 * (lo + hi)
        eta, (g, h) = candidate, derivatives(candidate)
        if eta == hi and not hi_known:
            hi_known = True
            if g <= 0:
                return float(eta_max)
        if g < 0:
            lo = eta
        elif g > 0:
            hi, hi_known = eta, True
        else:
            return eta
        if hi_known and hi - lo <= tol * (1.0 + eta):
            return eta
    return eta


def l1_step(gap: np.ndarray, direction: np.ndarray, eta_max: float = DEFAULT_ETA_MAX) -> float:
    """Exact argmin over eta in [0, eta_max] of sum |gap - eta * direction|.

    The objective is convex and piecewise linear, so its minimizer is the |direction|-weighted
    median of gap / direction (the lower median on ties), clipped to the interval. Exact and
    deterministic where a generic 1-D search can stop anywhere on a flat piece.
    """
    if not (np.isfinite(eta_max) and eta_max > 0):
        raise ConfigError(f"eta_max must be finite and > 0, got {eta_max!r}")
    gap, direction = np.ravel(gap), np.ravel(direction)
    moving = direction != 0
    if not moving.any():
        return 0.0
    ratios, weights = gap[moving] / direction[moving], np.abs(direction[moving])
    order = np.argsort(ratios, kind="stable")
    cumulative = np.cumsum(weights[order])
    median = ratios[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])]
    return float(np.clip(median, 0.0, eta_max))


@one_blas_thread
def assisted_learning_rate(loss, y: np.ndarray, F: np.ndarray, direction: np.ndarray, eta_max: float = DEFAULT_ETA_MAX) -> float:
    """GAL's step eta_t = argmin_eta L(y, F + eta * direction) over [0, eta_max].

    Exact for the L1 loss (weighted median); safeguarded Newton on the analytic derivatives for
    the smooth losses that give them (``loss.along``), else a bounded Brent search on the values.
    """
    if getattr(loss, "name", None) == "l1":
        return l1_step(np.asarray(y, dtype=np.float64).reshape(F.shape) - F, direction, eta_max)
    if hasattr(loss, "along"):
        return newton_step(loss.along(y, F, direction), eta_max)
    return line_search_step(lambda e: loss.value(y, F + e * direction), eta_max)
