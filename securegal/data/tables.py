"""A party's feature block, addressed by sample ID."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ProtocolError

# IDs spanning at most this many times their count get a dense position index (O(n) to build,
# O(1) per lookup); sparser IDs (e.g. hashed) fall back to a binary search on the sorted IDs.
DENSE_SPAN = 4


@dataclass(frozen=True)
class FeatureTable:
    """Rows of one party's columns, keyed by int64 sample IDs.

    ``patch_shape`` is set when the columns are an image patch (h, w), flattened row-major.
    Rows are kept in ID order. Already-sorted IDs (the usual row numbers 0..n-1) cost no sort
    and no copy of ``X``: a float64 ``X`` is kept as given, also when it is a view of a larger table.
    """

    ids: np.ndarray
    X: np.ndarray
    patch_shape: tuple[int, int] | None = None
    _dense: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        ids = np.asarray(self.ids, dtype=np.int64)
        X = np.asarray(self.X, dtype=np.float64)
        if X.ndim != 2 or ids.shape != (X.shape[0],):
            raise ValueError(f"feature table needs ids (n,) and X (n, d); got {ids.shape} and {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("feature table holds NaN or infinite values")
        if ids.size > 1 and not (ids[1:] > ids[:-1]).all():
            order = np.argsort(ids, kind="stable")
            ids, X = ids[order], X[order]
            if not (ids[1:] > ids[:-1]).all():
                raise ValueError("feature table sample IDs must be unique")
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "X", X)
        if ids.size and not self._identity and ids[-1] - ids[0] < DENSE_SPAN * ids.size:
            dense = np.full(int(ids[-1] - ids[0]) + 1, -1, dtype=np.int64)
            dense[ids - ids[0]] = np.arange(ids.size)
            object.__setattr__(self, "_dense", dense)

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @property
    def _identity(self) -> bool:
        """The IDs are the row numbers 0..n-1 (sorted and unique, so the ends decide)."""
        return self.ids.size > 0 and self.ids[0] == 0 and self.ids[-1] == self.ids.size - 1

    def positions(self, sample_ids: np.ndarray) -> np.ndarray:
        """Row positions of ``sample_ids`` in this table, in O(len(sample_ids)) for dense IDs;
        unknown IDs are a protocol error."""
        sample_ids = np.asarray(sample_ids, dtype=np.int64)
        if self.ids.size == 0:
            missing = np.ones(sample_ids.shape, dtype=bool)
        elif self._identity or self._dense is not None:
            offset = sample_ids - self.ids[0]
            inside = (offset >= 0) & (offset < (self.ids.size if self._dense is None else self._dense.size))
            pos = np.where(inside, offset, 0)
            if self._dense is not None:
                pos = self._dense[pos]
            missing = ~inside | (pos < 0)
        else:
            pos = np.clip(np.searchsorted(self.ids, sample_ids), 0, self.ids.size - 1)
            missing = self.ids[pos] != sample_ids
        if missing.any():
            raise ProtocolError(f"{int(missing.sum())} requested sample IDs are unknown to this party "
                                f"(first: {int(sample_ids[missing][0])})")
        return pos

    def distinct_positions(self, sample_ids: np.ndarray) -> np.ndarray:
        """:meth:`positions`, and a protocol error if an ID repeats (O(n), no sort)."""
        pos = self.positions(sample_ids)
        seen = np.zeros(self.ids.size, dtype=bool)
        seen[pos] = True
        if np.count_nonzero(seen) != pos.size:
            raise ProtocolError(f"{pos.size - int(np.count_nonzero(seen))} requested sample IDs are repeated")
        return pos

    def standardized_rows(self, sample_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows for distinct ``sample_ids``, standardized column-wise, with the column means
        and standard deviations used (a constant column keeps std 1).

        One copy of the rows, standardized in place: no n x d temporaries.
        """
        X = self.X[self.distinct_positions(sample_ids)]
        mean = X.mean(axis=0)
        X -= mean
        std = np.sqrt(np.einsum("ij,ij->j", X, X) / max(X.shape[0], 1))
        std[std == 0] = 1.0
        X /= std
        return X, mean, std

    def rows(self, sample_ids: np.ndarray) -> np.ndarray:
        """The rows for ``sample_ids`` in that order, as a new C-contiguous array."""
        return np.ascontiguousarray(self.X[self.positions(sample_ids)])
