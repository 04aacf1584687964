"""Ridge on a party's table that does not fit in memory: a Parquet file read in row batches.

:class:`StreamedRidge` is the out-of-core form of the l2 :class:`~securegal.learners.linear.BoundRidge`:
one pass at setup accumulates the column sums and the Gram matrix (float64, shifted by the first
batch's means so large offsets do not cancel), from which the z-scored Gram matrix and its
Cholesky factor follow; a round then makes one pass for ``Phi^T r`` and one for the train
predictions ``Phi z``. Memory is one batch of rows plus the (n, K) residuals and predictions,
whatever the table's width times n. The fit equals the in-memory one on the z-scored columns
(training mean and population standard deviation, as :class:`~securegal.parties.feature_party.FeatureParty`
standardizes).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.linalg import cho_factor, cho_solve

from ..errors import ConfigError
from .base import check_residuals
from .linear import LinearModel, _penalty

DEFAULT_BATCH_ROWS = 1 << 16


class StreamedRidge:
    """l2 ridge with an intercept over ``columns`` of the Parquet file ``path``, in batches of
    ``batch_rows`` rows; ``lam`` as in :class:`~securegal.learners.linear.LinearLearner`."""

    def __init__(self, path: str | Path, columns: Sequence[str], lam: float = 1e-3,
                 batch_rows: int = DEFAULT_BATCH_ROWS):
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"no Parquet file at {str(self.path)!r}")
        self.columns = list(columns)
        if not self.columns or len(set(self.columns)) != len(self.columns):
            raise ConfigError(f"columns must be distinct and not empty, got {self.columns!r}")
        if not lam > 0:
            raise ConfigError(f"ridge penalty lam must be > 0, got {lam!r}")
        if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
            raise ConfigError(f"batch_rows must be an integer >= 1, got {batch_rows!r}")
        self.batch_rows = batch_rows
        schema = pq.read_schema(self.path)
        for name in self.columns:
            if name not in schema.names:
                raise ConfigError(f"{self.path.name} has no column {name!r}")
            kind = schema.field(name).type
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
                raise ConfigError(f"column {name!r} of {self.path.name} is {kind}, not numeric")
        self.n, self.mean, self.std, gram = self._statistics()
        if self.n < 2:
            raise ConfigError(f"{self.path.name} has {self.n} rows; ridge needs at least 2")
        self.lam = float(lam) * self.n
        self._factor = cho_factor(gram + _penalty(gram.shape[0], self.lam))

    def batches(self) -> Iterator[np.ndarray]:
        """The table's rows as float64 arrays of at most ``batch_rows`` rows, in file order."""
        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=self.batch_rows, columns=self.columns):
            X = np.column_stack([batch.column(i).to_numpy(zero_copy_only=False) for i in range(batch.num_columns)])
            X = X.astype(np.float64, copy=False)
            if not np.isfinite(X).all():
                raise ConfigError(f"{self.path.name} has missing or non-finite values in {self.columns!r}")
            yield X

    def _statistics(self) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """n, the column means and standard deviations, and the z-scored Gram matrix with the
        intercept (its last row and column) from one pass."""
        d = len(self.columns)
        n, shift = 0, None
        sums, cross = np.zeros(d), np.zeros((d, d))
        for X in self.batches():
            if shift is None:
                shift = X.mean(axis=0)
            Xc = X - shift
            n += X.shape[0]
            sums += Xc.sum(axis=0)
            cross += Xc.T @ Xc
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

    def standardized(self) -> Iterator[np.ndarray]:
        for X in self.batches():
            X -= self.mean
            X /= self.std
            yield X

    def fit_predict(self, r: np.ndarray) -> tuple[LinearModel, np.ndarray]:
        """The round model for residuals ``r`` (n, K, in file row order) and its train predictions."""
        r = check_residuals(r, self.n)
        rhs = np.zeros((len(self.columns) + 1, r.shape[1]))
        start = 0
        for Z in self.standardized():
            part = r[start:start + Z.shape[0]]
            rhs[:-1] += Z.T @ part
            rhs[-1] += part.sum(axis=0)
            start += Z.shape[0]
        model = LinearModel(cho_solve(self._factor, rhs))
        return model, self.predict(model)

    def predict(self, model: LinearModel) -> np.ndarray:
        """``model``'s predictions on every row of the table (n, K), one batch at a time."""
        out = np.empty((self.n, model.coef.shape[1]))
        start = 0
        for Z in self.standardized():
            out[start:start + Z.shape[0]] = model.predict(Z)
            start += Z.shape[0]
        return out
