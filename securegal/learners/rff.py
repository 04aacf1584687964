"""Kernel ridge regression on random Fourier features (an RBF kernel approximation).

The feature map ``phi(x) = sqrt(2/D) cos(x W + b)`` depends only on the party's features and a
seed, never on labels, so the learner is a linear smoother in the residuals and can run on
CKKS-encrypted residuals through :meth:`RFFLearner.operator`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ._validate import check_positive_int, check_seed
from .base import SmootherOperator, check_fit_inputs, check_local_loss
from .linear import LinearLearner, LinearModel


@dataclass(frozen=True)
class RandomFourierMap:
    """``X (n, d) -> sqrt(2/D) cos(X W + b)`` of shape (n, D)."""

    W: np.ndarray  # (d, D)
    b: np.ndarray  # (D,)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.W.shape[0]:
            raise ValueError(f"expected features of shape (n, {self.W.shape[0]}), got {X.shape}")
        return np.sqrt(2.0 / self.W.shape[1]) * np.cos(X @ self.W + self.b)


@dataclass(frozen=True)
class RFFModel:
    feature_map: RandomFourierMap
    ridge: LinearModel

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.ridge.predict(self.feature_map(X))


class RFFLearner:
    """Ridge (with an unpenalised intercept) on ``n_components`` random Fourier features.

    Approximates the RBF kernel ``exp(-gamma |x - x'|^2)``; ``gamma`` defaults to ``1/d`` for
    standardized features. The map is drawn from ``seed`` and the input width only, so fit,
    predict and :meth:`operator` agree. ``lam`` is in the units of :class:`LinearLearner`.
    """

    name = "rff"

    def __init__(self, local_loss: str = "l2", n_components: int = 200, gamma: float | None = None,
                 lam: float = 1e-3, seed: int = 0):
        self.n_components = check_positive_int("n_components", n_components)
        if gamma is not None and not gamma > 0:
            raise ConfigError(f"RBF bandwidth gamma must be > 0, got {gamma!r}")
        self.gamma = gamma
        self.seed = check_seed(seed)
        self._ridge = LinearLearner(local_loss=check_local_loss(local_loss), lam=lam)

    @property
    def local_loss(self) -> str:
        return self._ridge.local_loss

    def feature_map(self, n_inputs: int) -> RandomFourierMap:
        """The seeded map for inputs of width ``n_inputs``."""
        gamma = 1.0 / n_inputs if self.gamma is None else self.gamma
        rng = np.random.default_rng(self.seed)
        W = rng.normal(0.0, np.sqrt(2.0 * gamma), size=(n_inputs, self.n_components))
        b = rng.uniform(0.0, 2.0 * np.pi, size=self.n_components)
        return RandomFourierMap(W, b)

    def fit(self, X, r) -> RFFModel:
        X, r = check_fit_inputs(X, r)
        return self.bind(X).fit(r)

    def bind(self, X) -> "BoundRFF":
        """This learner on fixed features ``X``: the random features and their Gram factor are made once."""
        return BoundRFF(self, X)

    def operator(self, X) -> SmootherOperator:
        """Ridge operator on the random features: train predictions are ``phi_train @ A @ r``."""
        X, _ = check_fit_inputs(X, np.zeros((np.asarray(X).shape[0], 1)))
        fmap = self.feature_map(X.shape[1])
        inner = self._ridge.operator(fmap(X))
        return SmootherOperator(A=inner.A, phi_train=inner.phi_train,
                                feature_map=_Composed(fmap, inner.feature_map))


@dataclass(frozen=True)
class _Composed:
    first: RandomFourierMap
    second: object

    def __call__(self, X: np.ndarray) -> np.ndarray:
        return self.second(self.first(X))


class BoundRFF:
    """:class:`RFFLearner` bound to one feature block (see :class:`~.linear.BoundRidge`)."""

    def __init__(self, learner: RFFLearner, X):
        X, _ = check_fit_inputs(X, np.zeros((np.asarray(X).shape[0], 1)))
        self.feature_map = learner.feature_map(X.shape[1])
        self._ridge = learner._ridge.bind(self.feature_map(X))

    def fit(self, r) -> RFFModel:
        return self.fit_predict(r)[0]

    def fit_predict(self, r) -> tuple[RFFModel, np.ndarray]:
        ridge, predictions = self._ridge.fit_predict(r)
        return RFFModel(self.feature_map, ridge), predictions
