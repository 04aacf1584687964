"""Ridge on a party's table that does not fit in memory: selected rows of a Parquet file, read in batches.

:class:`StreamedRidge` is the out-of-core form of the l2 :class:`~securegal.learners.linear.BoundRidge`
on z-scored columns. One pass at setup accumulates the selected rows' column sums and Gram matrix
(float64, shifted by the first batch's means so large offsets do not cancel), from which the
training mean and population standard deviation (as :class:`~securegal.parties.feature_party.FeatureParty`
standardizes), the z-scored Gram matrix and its Cholesky factor follow. A round then makes one pass
for ``Phi^T r`` and one for the train predictions ``Phi z``; predictions for other rows take one
pass for every fitted round at once. A round works on whole batches (the residuals scattered
into a batch-sized buffer, the predictions picked from the batch's), so the selected rows are
never gathered. Memory is one batch of rows plus the (n, K) residuals and predictions, whatever
the table's width.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from ..core.blas import one_blas_thread
from ..data.parquet_table import RowSelection
from ..errors import ConfigError
from .base import check_residuals
from .linear import LinearModel, _penalty


class StreamedRidge:
    """l2 ridge with an intercept on the z-scored rows of ``rows`` (a session's training rows);
    ``lam`` as in :class:`~securegal.learners.linear.LinearLearner`."""

    @one_blas_thread
    def __init__(self, rows: RowSelection, lam: float = 1e-3):
        if not lam > 0:
            raise ConfigError(f"ridge penalty lam must be > 0, got {lam!r}")
        self.rows = rows
        self.n, self.mean, self.std, gram = _statistics(rows)
        if self.n < 2:
            raise ConfigError(f"ridge needs at least 2 training rows, got {self.n}")
        self.lam = float(lam) * self.n
        self._factor = cho_factor(gram + _penalty(gram.shape[0], self.lam))

    def standardized(self, rows: RowSelection) -> Iterator[tuple[np.ndarray | slice, np.ndarray | None, np.ndarray]]:
        """:meth:`RowSelection.batches`, each batch z-scored with the training rows' mean and std."""
        return rows.batches(self.mean, self.std)

    @one_blas_thread
    def fit_predict(self, r: np.ndarray) -> tuple[LinearModel, np.ndarray]:
        """The round model for residuals ``r`` (n, K, in the training rows' order) and its train
        predictions."""
        r = check_residuals(r, self.n)
        rhs = np.zeros((r.shape[1], len(self.mean) + 1))  # transposed: r^T Z is the fast product here
        ones = np.ones(self.rows.table.batch_rows)
        for where, local, Z in self.standardized(self.rows):
            part = r[where]
            if local is not None:  # zeros for the batch's other rows
                part, scattered = np.zeros((Z.shape[0], r.shape[1])), part
                part[local] = scattered
            rhs[:, :-1] += part.T @ Z
            rhs[:, -1] += ones[:Z.shape[0]] @ part
        model = LinearModel(cho_solve(self._factor, rhs.T))
        return model, self.predict([model], self.rows)[0]

    @one_blas_thread
    def predict(self, models: Sequence[LinearModel], rows: RowSelection) -> np.ndarray:
        """Every model's predictions on ``rows``, shape (len(models), rows.n, K), in one pass."""
        if not models:
            raise ValueError("predict needs at least one model")
        k = models[0].coef.shape[1]
        coef = np.hstack([model.coef for model in models])  # (d + 1, rounds * K): one product per batch
        out = np.empty((len(models), rows.n, k))
        for where, local, Z in self.standardized(rows):
            block = Z @ coef[:-1]
            block += coef[-1]
            if local is not None:
                block = np.take(block, local, axis=0)
            out[:, where] = block.reshape(block.shape[0], len(models), k).transpose(1, 0, 2)
        return out


def _statistics(rows: RowSelection) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """n, the column means and standard deviations, and the z-scored Gram matrix with the
    intercept (its last row and column) from one pass over ``rows``."""
    d = rows.table.n_features
    n, shift = 0, None
    sums, cross = np.zeros(d), np.zeros((d, d))
    for _, local, X in rows.batches():
        if local is not None:
            X = X[local]
        if shift is None:
            shift = X.mean(axis=0)
        X -= shift
        n += X.shape[0]
        sums += X.sum(axis=0)
        cross += X.T @ X
    if n == 0:
        return 0, np.zeros(d), np.ones(d), np.eye(d + 1)
    centred = sums / n  # mean - shift
    scatter = cross - n * np.outer(centred, centred)  # sum over rows of (x - mean)(x - mean)^T
    std = np.sqrt(np.maximum(np.diag(scatter) / n, 0.0))
    std[std == 0] = 1.0
    gram = np.zeros((d + 1, d + 1))
    gram[:-1, :-1] = scatter / np.outer(std, std)
    gram[-1, -1] = n  # z-scored columns sum to zero: no cross terms with the intercept
    return n, shift + centred, std, gram
