"""Keep freed large blocks in the process for reuse (glibc's malloc), for sessions whose per-round
arrays are larger than glibc's largest mmap threshold.

glibc serves a block above its mmap threshold (dynamic, at most 32 MiB on 64-bit) as a fresh
mapping and unmaps it when freed, so every such block's pages fault in again, zeroed by the
kernel, the next time. Above about 2M training rows at K=2 a round's n x K arrays are such
blocks: each party's residuals and predictions and their wire copies (the wire codec's
protobuf and ``bytes`` copies are made in libraries, out of reach of ``out=`` buffers). Measured on the 2-core VM: a round trip of an 8M x 2 float64 message through the
codec took 0.57 s (0.29 s system time, 187k page faults) with the defaults and 0.085 s
(no fault) with the blocks kept.

:func:`keep_large_blocks` raises the mmap threshold and the trim threshold (``mallopt``) to
:data:`KEEP_BYTES`, so blocks up to that size come from the heap and freed memory stays in
the heap for the next round instead of going back to the kernel. The cost is that the
process's resident size does not drop after a large round (it stays at its high-water mark,
which is what a session peaks at anyway). It is process-wide and lasts until the process
exits, so securegal sets it only for large sessions (:data:`LARGE_BLOCK_BYTES`), never at
import; on a C library without ``mallopt`` (musl, macOS) it does nothing. Threads other than
the main one allocate from their own arenas, where glibc maps any block over 64 MiB anyway.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# glibc's largest dynamic mmap threshold on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX): blocks above it
# are always fresh mappings.
LARGE_BLOCK_BYTES = 32 << 20
# Blocks up to this size come from (and return to) the heap once the policy is on.
KEEP_BYTES = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # malloc.h

_kept = False


def keep_large_blocks(block_bytes: int) -> bool:
    """Turn the policy on (once per process) when a session's per-round arrays of
    ``block_bytes`` each are above :data:`LARGE_BLOCK_BYTES`. True if it is on."""
    global _kept
    if _kept or block_bytes <= LARGE_BLOCK_BYTES:
        return _kept
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _kept = bool(mallopt(_M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES))
    if _kept:
        log.info("per-round arrays of %d MiB: freed blocks up to %d MiB stay in the heap for reuse",
                 block_bytes >> 20, KEEP_BYTES >> 20)
    return _kept
