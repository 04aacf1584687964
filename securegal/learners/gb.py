"""Gradient-boosted regression trees (scikit-learn), one ensemble per residual column."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor

from ..errors import ConfigError
from ._validate import check_positive_int, check_seed
from .base import check_fit_inputs, check_local_loss

_SKLEARN_LOSS = {"l2": "squared_error", "l1": "absolute_error"}


@dataclass(frozen=True)
class GBModel:
    regressors: tuple[HistGradientBoostingRegressor, ...]
    n_features: int

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected features of shape (n, {self.n_features}), got {X.shape}")
        return np.column_stack([reg.predict(X) for reg in self.regressors])


class GBLearner:
    """scikit-learn's histogram gradient boosting, fitted to each residual column separately.

    ``local_loss`` l2 uses squared error, l1 absolute error. Early stopping is off (it would
    hold out rows at random), so a fit depends only on the data, the settings and ``seed``.
    """

    name = "gb"

    def __init__(self, local_loss: str = "l2", n_estimators: int = 100, max_depth: int | None = 3,
                 learning_rate: float = 0.1, min_samples_leaf: int = 5, seed: int = 0):
        self.local_loss = check_local_loss(local_loss)
        self.n_estimators = check_positive_int("n_estimators", n_estimators)
        self.max_depth = None if max_depth is None else check_positive_int("max_depth", max_depth)
        if not 0 < learning_rate <= 1:
            raise ConfigError(f"learning_rate must be in (0, 1], got {learning_rate!r}")
        self.learning_rate = float(learning_rate)
        self.min_samples_leaf = check_positive_int("min_samples_leaf", min_samples_leaf)
        self.seed = check_seed(seed)

    def fit(self, X, r) -> GBModel:
        X, r = check_fit_inputs(X, r)
        regs = []
        for k in range(r.shape[1]):
            reg = HistGradientBoostingRegressor(
                loss=_SKLEARN_LOSS[self.local_loss], max_iter=self.n_estimators,
                max_depth=self.max_depth, learning_rate=self.learning_rate,
                min_samples_leaf=self.min_samples_leaf, early_stopping=False,
                random_state=self.seed)
            regs.append(reg.fit(X, r[:, k]))
        return GBModel(tuple(regs), X.shape[1])
