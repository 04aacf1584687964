"""Finiteness of a large array, checked without a mask the size of the array."""
from __future__ import annotations

import numpy as np

# Elements checked at a time: one small reused mask, not one of n elements.
CHUNK = 1 << 16


def all_finite(a: np.ndarray) -> bool:
    """Whether every entry of ``a`` is finite (no NaN or infinity)."""
    flat = np.asarray(a).reshape(-1)
    mask = np.empty(min(flat.size, CHUNK), dtype=bool)
    for start in range(0, flat.size, CHUNK):
        part = flat[start:start + CHUNK]
        if not np.isfinite(part, out=mask[:part.size]).all():
            return False
    return True
