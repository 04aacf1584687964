"""The plain party's column map: z-scores with its training rows' mean and standard deviation."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Rows per block when the standard deviation is accumulated (a 64k x d scratch block, reused).
_BLOCK_ROWS = 1 << 16


@dataclass(frozen=True)
class ZScore:
    """``x -> (x - mean) / std`` per column; a constant column keeps std 1."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> "ZScore":
        """Mean and (population) standard deviation of the columns of ``X`` (n, d), equal to
        ``X.mean(axis=0)`` and ``X.std(axis=0)`` to the last bit but without their n x d
        temporaries (at a million rows each costs more in first-touch page faults than the
        arithmetic)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] == 0:
            raise ValueError(f"need a non-empty (n, d) array, got shape {X.shape}")
        mean = X.mean(axis=0)
        squares = np.zeros(X.shape[1])
        block = np.empty((min(X.shape[0], _BLOCK_ROWS), X.shape[1]))
        for start in range(0, X.shape[0], _BLOCK_ROWS):
            rows = X[start:start + _BLOCK_ROWS]
            centred = np.subtract(rows, mean, out=block[:rows.shape[0]])
            np.multiply(centred, centred, out=centred)
            centred[0] += squares  # continue the running sum row by row: the same sums as X.std
            squares = centred.sum(axis=0)
        std = np.sqrt(squares / X.shape[0])
        std[std == 0] = 1.0
        return cls(mean, std)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """``X`` standardized: in place when ``X`` is a writable float64 array that owns its data
        (the fresh row copies a party makes), else into a new array."""
        X = np.asarray(X)
        if not (X.dtype == np.float64 and X.flags.owndata and X.flags.writeable and X.flags.c_contiguous):
            X = np.array(X, dtype=np.float64)
        X -= self.mean
        X /= self.std
        return X
