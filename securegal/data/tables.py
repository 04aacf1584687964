"""A party's feature block, addressed by sample ID."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ProtocolError


@dataclass(frozen=True)
class FeatureTable:
    """Rows of one party's columns, keyed by int64 sample IDs.

    ``patch_shape`` is set when the columns are an image patch (h, w), flattened row-major.
    """

    ids: np.ndarray
    X: np.ndarray
    patch_shape: tuple[int, int] | None = None

    def __post_init__(self):
        ids = np.asarray(self.ids, dtype=np.int64)
        X = np.asarray(self.X, dtype=np.float64)
        if X.ndim != 2 or ids.shape != (X.shape[0],):
            raise ValueError(f"feature table needs ids (n,) and X (n, d); got {ids.shape} and {X.shape}")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("feature table sample IDs must be unique")
        if not np.isfinite(X).all():
            raise ValueError("feature table holds NaN or infinite values")
        order = np.argsort(ids, kind="stable")
        object.__setattr__(self, "ids", ids[order])
        object.__setattr__(self, "X", X[order])

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    def rows(self, sample_ids: np.ndarray) -> np.ndarray:
        """The rows for ``sample_ids`` in that order; unknown IDs are a protocol error."""
        sample_ids = np.asarray(sample_ids, dtype=np.int64)
        pos = np.searchsorted(self.ids, sample_ids)
        pos = np.clip(pos, 0, len(self.ids) - 1)
        missing = self.ids[pos] != sample_ids
        if missing.any():
            raise ProtocolError(f"{int(missing.sum())} requested sample IDs are unknown to this party "
                                f"(first: {int(sample_ids[missing][0])})")
        return self.X[pos]
