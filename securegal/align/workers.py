"""Process pool for the PSI kernels: chunks of IDs or points go to worker processes.

libsodium's scalar multiplication holds the GIL through PyNaCl's bindings, so threads do not
scale; processes do. Workers are started with ``spawn`` (safe next to gRPC threads and torch)
and import only :mod:`securegal.align.group`. ``Workers(1)`` runs everything in the calling
process (what tests use).
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import weakref
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Sequence

from ..errors import ConfigError

CHUNK = 4096  # items per task: large enough to amortize IPC, small enough to balance two cores


def _leave_interrupts_to_the_parent() -> None:
    """In a worker: Ctrl-C reaches the whole process group; the parent stops the pool and says so
    in one line, so the workers ignore it (each printed a traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def default_processes() -> int:
    return min(2, os.cpu_count() or 1)


def max_processes() -> int:
    """At most four worker processes per core (each holds its own interpreter, about 40 MiB)."""
    return min(256, 4 * (os.cpu_count() or 1))


# Every pool alive in this process, for stop_every_pool.
_LIVE: "weakref.WeakSet[Workers]" = weakref.WeakSet()


def stop_every_pool() -> None:
    """In a process being stopped (a signal handler): end every live pool's worker processes at
    once. The pools then report themselves broken and are shut down without cancelling their
    pending chunks: Python 3.11's executor raises InvalidStateError in its own thread when it
    fails a chunk that was cancelled, and the shutdown then hung (a bench psi interrupted under
    load)."""
    for workers in list(_LIVE):
        workers._stopped = True
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(5)


class Workers:
    """A pool of ``processes`` worker processes (context manager); ``progress(n)`` is called with
    the number of items each finished chunk held."""

    def __init__(self, processes: int | None = None, chunk: int = CHUNK):
        processes = default_processes() if processes is None else processes
        most = max_processes()
        if not 1 <= processes <= most or chunk < 1:
            raise ConfigError(f"need 1 <= processes <= {most} (four per core here) and chunk >= 1, got {processes}, "
                              f"{chunk}")
        self.processes, self.chunk = processes, chunk
        self._pool = (ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                                          initializer=_leave_interrupts_to_the_parent)
                      if processes > 1 else None)
        self._stopped = False  # set by stop_every_pool: its workers were ended from outside
        if self._pool is not None:
            _LIVE.add(self)

    def map_chunks(self, fn: Callable, items: Sequence, *args, item_bytes: int = 1,
                   progress: Callable[[int], None] | None = None) -> list:
        """``fn(*args, chunk, start)`` over consecutive chunks of ``items``, results in chunk order.

        ``items`` is a list (``item_bytes=1``: one entry per item) or packed bytes of
        ``item_bytes`` per item; ``start`` is the index of the chunk's first item.
        """
        step = self.chunk * item_bytes
        bounds = [(i, min(i + step, len(items))) for i in range(0, len(items), step)]
        calls = [(*args, items[a:b], a // item_bytes) for a, b in bounds]
        if self._pool is None:
            results = []
            for call in calls:
                results.append(fn(*call))
                if progress:
                    progress(len(call[-2]) // item_bytes)
            return results
        futures = {self._pool.submit(fn, *call): k for k, call in enumerate(calls)}
        results = [None] * len(calls)
        try:
            for future in as_completed(futures):
                k = futures[future]
                results[k] = future.result()
                if progress:
                    progress(len(calls[k][-2]) // item_bytes)
        except BaseException:
            if not self._stopped:  # a stopped pool fails its own pending chunks
                for future in futures:
                    future.cancel()
            raise
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=not self._stopped)
            self._pool = None

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
