"""The learner contract: a local model fitted to pseudo-residuals on one party's own features.

A learner never sees labels: ``fit`` receives the party's (standardized) feature block and the
residual matrix the label owner sent, nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ..core.losses import LOCAL_LOSSES, check_local_loss  # noqa: F401  (re-exported for the learners)


@runtime_checkable
class FittedModel(Protocol):
    """One round's local model."""

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions of shape (n, K) for feature rows ``X`` of shape (n, d)."""


@runtime_checkable
class Learner(Protocol):
    """Fits one round's model to residuals ``r`` (n, K) from features ``X`` (n, d)."""

    name: str

    def fit(self, X: np.ndarray, r: np.ndarray) -> FittedModel: ...


@runtime_checkable
class BoundLearner(Protocol):
    """A learner bound to one party's fixed feature block (``Learner.bind(X)``): fits round
    after round and hands back the train predictions with the model, so the caller never
    predicts on the training rows again; ``predict_train`` recomputes those predictions for a
    model it fitted (the same values, for a reply asked again instead of one kept)."""

    def fit_predict(self, r: np.ndarray) -> tuple[FittedModel, np.ndarray]: ...

    def predict_train(self, model: FittedModel) -> np.ndarray: ...


class _Refit:
    """:class:`BoundLearner` for a learner without ``bind``: fit, then predict the bound rows."""

    def __init__(self, learner: Learner, X: np.ndarray):
        self.learner, self.X = learner, X

    def fit_predict(self, r: np.ndarray) -> tuple[FittedModel, np.ndarray]:
        model = self.learner.fit(self.X, r)
        return model, self.predict_train(model)

    def predict_train(self, model: FittedModel) -> np.ndarray:
        return np.asarray(model.predict(self.X), dtype=np.float64)


def bind(learner: Learner, X: np.ndarray) -> BoundLearner:
    """``learner`` on the fixed training features ``X``: ``learner.bind(X)`` where the learner
    can reuse work across rounds (ridge factors its Gram matrix once), else fit-then-predict."""
    own = getattr(learner, "bind", None)
    return own(X) if own is not None else _Refit(learner, X)


@dataclass(frozen=True)
class SmootherOperator:
    """A learner whose train predictions are linear in the residuals: ``f = Phi @ (A @ r)``.

    ``A`` (p, n) maps residuals to the round model ``z = A r`` (p, K); ``feature_map`` turns any
    rows of the party's features into ``Phi`` (rows, p). Used by the CKKS layer, which applies
    ``A`` and ``Phi`` to encrypted residuals, and by DP ridge.
    """

    A: np.ndarray
    phi_train: np.ndarray
    feature_map: "FeatureMap"


class FeatureMap(Protocol):
    def __call__(self, X: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class LinearSmoother(Protocol):
    """A learner that can expose its :class:`SmootherOperator` (ridge, random-feature ridge)."""

    def operator(self, X: np.ndarray) -> SmootherOperator: ...


def check_fit_inputs(X: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and return ``X`` (n, d) and ``r`` (n, K) as float64 arrays."""
    X = np.asarray(X, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    if r.ndim == 1:
        r = r[:, None]
    if X.ndim != 2:
        raise ValueError(f"features must be a 2-D array (n, d), got shape {X.shape}")
    if r.ndim != 2 or r.shape[0] != X.shape[0]:
        raise ValueError(f"residuals must have shape (n, K) with n={X.shape[0]}, got {r.shape}")
    if not (np.isfinite(X).all() and np.isfinite(r).all()):
        raise ValueError("features and residuals must be finite")
    return X, r


def check_residuals(r: np.ndarray, n: int) -> np.ndarray:
    """Validate and return residuals ``r`` as a finite float64 (n, K) array."""
    r = np.asarray(r, dtype=np.float64)
    if r.ndim == 1:
        r = r[:, None]
    if r.ndim != 2 or r.shape[0] != n:
        raise ValueError(f"residuals must have shape (n, K) with n={n}, got {r.shape}")
    if not np.isfinite(r).all():
        raise ValueError("residuals must be finite")
    return r
