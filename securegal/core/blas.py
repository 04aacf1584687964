"""One BLAS thread for GAL's memory-bound products.

GAL's per-round products are tall and thin (n rows against a handful of columns: ``Phi^T r``,
``Phi z``, the M x M Gram matrix of the predictions): each element read is used for a few
flops, so a second BLAS thread cannot make them faster, and on a busy machine OpenBLAS's
threads wait for each other. Measured on the shared 2-core machine at n = 100k (T=10, M=8):
0.8-1.0 s of CPU for the whole run on one thread against 1.9-2.2 s on two, with the wall time
lower too. The limit holds only inside the decorated call; BLAS keeps its threads elsewhere.
"""
from __future__ import annotations

import functools
from typing import Callable, TypeVar

from threadpoolctl import ThreadpoolController

F = TypeVar("F", bound=Callable)

_controller: ThreadpoolController | None = None


def _blas() -> ThreadpoolController:
    global _controller
    if _controller is None:  # scans the loaded libraries once (about 10 ms)
        _controller = ThreadpoolController()
    return _controller


def one_blas_thread(fn: F) -> F:
    """Run ``fn`` with BLAS limited to one thread (about 30 us per call to set and restore)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _blas().limit(limits=1, user_api="blas"):
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]
