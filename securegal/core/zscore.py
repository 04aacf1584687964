"""The plain party's column map: z-scores with its training rows' mean and standard deviation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

# Rows per block when the standard deviation is accumulated (a 64k x d scratch block, reused).
_BLOCK_ROWS = 1 << 16


def _blocks(X: np.ndarray, rows: np.ndarray | None) -> Iterator[np.ndarray]:
    """Consecutive blocks of ``X[rows]`` (of all of ``X`` when ``rows`` is None), at most
    ``_BLOCK_ROWS`` rows each, as float64: views of ``X``, or the rows gathered into a new
    block (fancy indexing: on a strided view several times faster than ``np.take`` into a buffer)."""
    n = X.shape[0] if rows is None else len(rows)
    for start in range(0, n, _BLOCK_ROWS):
        yield X[start:start + _BLOCK_ROWS] if rows is None else X[rows[start:start + _BLOCK_ROWS]]


@dataclass(frozen=True)
class ZScore:
    """``x -> (x - mean) / std`` per column; a constant column keeps std 1."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray, rows: np.ndarray | None = None) -> "ZScore":
        """Mean and (population) standard deviation of the columns of ``X`` (n, d), or of its
        rows ``rows`` (positions, e.g. a session's training rows of a party's whole table),
        equal to ``X[rows].mean(axis=0)`` and ``X[rows].std(axis=0)`` to the last bit but without
        the row copy or their n x d temporaries (at a million rows each costs more in first-touch
        page faults than the arithmetic)."""
        X = np.asarray(X, dtype=np.float64)
        if rows is not None:
            rows = np.asarray(rows, dtype=np.int64)
        n = X.shape[0] if rows is None or X.ndim != 2 else len(rows)
        if X.ndim != 2 or n == 0:
            raise ValueError(f"need a non-empty (n, d) array, got shape {X.shape}" +
                             ("" if rows is None else f" and {n} rows"))
        if rows is None:
            mean = X.mean(axis=0)
        else:  # X[rows].mean(axis=0): a row-by-row sum (the running sum continues into each block), over n
            total = np.zeros(X.shape[1])
            for block in _blocks(X, rows):
                block[0] += total
                total = block.sum(axis=0)
            mean = np.true_divide(total, n)
        squares = np.zeros(X.shape[1])
        centred_block = np.empty((min(n, _BLOCK_ROWS), X.shape[1]))
        for block in _blocks(X, rows):
            centred = np.subtract(block, mean, out=centred_block[:block.shape[0]])
            np.multiply(centred, centred, out=centred)
            centred[0] += squares  # continue the running sum row by row: the same sums as X.std
            squares = centred.sum(axis=0)
        std = np.sqrt(squares / n)
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

    def rows(self, X: np.ndarray, rows: np.ndarray, dtype=np.float64) -> np.ndarray:
        """``X[rows]`` standardized, built block by block straight into a new ``dtype`` array (for
        float32 half the memory, and no float64 copy of the rows on the way): the same values as
        ``self(X[rows]).astype(dtype)``."""
        X = np.asarray(X, dtype=np.float64)
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), X.shape[1]), dtype=dtype)
        start = 0
        for block in _blocks(X, rows):
            block -= self.mean
            block /= self.std
            out[start:start + block.shape[0]] = block
            start += block.shape[0]
        return out
