"""``securegal bench psi``: ECDH PSI between a label owner and one feature party, n IDs per side.

Each size runs in a fresh process (so its peak memory is its own), with one pool of worker
processes shared by both roles; the party hashes its rows while the label owner hashes its
own, and every message goes through the wire codec. IDs are strings like ``MRN-0012345``; the
sides overlap by ``overlap`` of n, in shuffled order. Reported: wall time, IDs per second (2n
IDs over the wall time), CPU seconds of the process and its workers, and peak resident memory:
the process's own high-water mark, and the largest sum over the process and its workers,
sampled every 0.1 s from /proc (Linux).
"""
from __future__ import annotations

import json
import multiprocessing
import resource
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import ConfigError
from ..wire.codec import DEFAULT_LIMITS

SIZES = (10_000, 100_000, 1_000_000)
# The largest size whose PSI reply fits one message under the default limit: the reply carries
# 32 bytes per label-owner ID and 40 (point and handle) per party ID, n of each.
REPLY_BYTES_PER_ID = 72
MAX_SIZE = DEFAULT_LIMITS.max_message_bytes // REPLY_BYTES_PER_ID - 1024
# Seconds a stopped measuring process may take to shut its pool down before it exits regardless.
STOP_SECONDS = 5.0


@dataclass(frozen=True)
class Row:
    n: int
    processes: int
    seconds: float
    ids_per_second: float
    cpu_seconds: float
    process_peak_mib: float
    total_peak_mib: float
    matched: int
    expected: int


def make_ids(n: int, overlap: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two shuffled lists of n string IDs each, sharing round(overlap * n) of them (public test
    data, so a seeded generator is fine here)."""
    rng = np.random.default_rng(seed)
    shared = int(round(overlap * n))
    numbers = np.arange(2 * n - shared)
    owner, party = numbers[:n], numbers[n - shared:]
    as_text = lambda v: np.char.add("MRN-", np.char.zfill(v.astype(str), 9))  # noqa: E731
    return as_text(rng.permutation(owner)), as_text(rng.permutation(party))


def _status_kib(pid: str, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:  # the process ended between listing and reading
        pass
    return 0


def _children() -> list[str]:
    pids = []
    try:
        for task in Path("/proc/self/task").iterdir():
            pids += (task / "children").read_text().split()
    except OSError:
        pass
    return pids


class MemorySampler:
    """Largest resident set of this process plus its children, sampled in a thread (MiB)."""

    def __init__(self, every: float = 0.1):
        self.every, self.peak_kib = every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self):
        while not self._stop.is_set():
            total = _status_kib("self", "VmRSS") + sum(_status_kib(p, "VmRSS") for p in _children())
            self.peak_kib = max(self.peak_kib, total)
            self._stop.wait(self.every)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        return self.peak_kib / 1024


def run_one(n: int, processes: int, overlap: float = 0.8, seed: int = 0, bar: bool = True) -> Row:
    """One PSI of n x n in this process (call through :func:`run` for a clean process)."""
    from tqdm import tqdm

    from ..align import Workers, align_in_process

    owner, party = (ids.tolist() for ids in make_ids(n, overlap, seed))
    expected = int(round(overlap * n))  # make_ids shares exactly this many
    # items the alignment reports: owner hash+blind n, party hash+blind n, party blinds n, owner blinds n
    with tqdm(total=4 * n, unit="pt", unit_scale=True, desc=f"PSI {n:,} x {n:,}", disable=not bar,
              leave=True) as progress, MemorySampler() as memory:
        cpu0 = time.process_time()
        started = time.perf_counter()
        with Workers(processes) as workers:
            mine, _ = align_in_process(owner, party, f"bench-{n}", workers, progress.update)
        seconds = time.perf_counter() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - cpu0 + children.ru_utime + children.ru_stime
    own_peak = _status_kib("self", "VmHWM") / 1024  # reset at exec, unlike ru_maxrss
    return Row(n, processes, seconds, 2 * n / seconds, cpu, own_peak, max(memory.peak_mib, own_peak),
               int(mine.matched.sum()), expected)


def run(sizes: Iterable[int] = SIZES, processes: int = 2, overlap: float = 0.8, bar: bool = True) -> list[Row]:
    """Every size in its own fresh process (spawned: it does not inherit this one's memory)."""
    sizes = list(sizes)
    if any(n < 1 for n in sizes) or not 0 <= overlap <= 1 or processes < 1:
        raise ConfigError(f"need sizes >= 1, 0 <= overlap <= 1, processes >= 1; got {sizes}, {overlap}, {processes}")
    too_big = [n for n in sizes if n > MAX_SIZE]
    if too_big:
        raise ConfigError(f"size {too_big[0]:,} is too large: a PSI reply of n x n IDs takes {REPLY_BYTES_PER_ID} "
                          f"bytes per ID and one message at most {DEFAULT_LIMITS.max_message_bytes:,} bytes, so at "
                          f"most {MAX_SIZE:,} IDs per side")
    rows = []
    for n in sizes:
        rows.append(_in_fresh_process(n, processes, overlap, bar))
        if rows[-1].matched != rows[-1].expected:
            raise RuntimeError(f"PSI at n={n} matched {rows[-1].matched} IDs, expected {rows[-1].expected}")
    return rows


def _in_fresh_process(n: int, processes: int, overlap: float, bar: bool) -> Row:
    """:func:`run_one` in a spawned process. An interrupt here (Ctrl-C, or SIGINT to this process
    alone) stops that process and its workers before it goes on: it ignores SIGINT and on SIGTERM
    ends its workers and itself, so nothing is left running and only this process reports."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_measure, args=(send, n, processes, overlap, bar), name=f"psi-bench-{n}")
    try:  # an interrupt while it starts must stop it too: it ignores SIGINT, and exit would wait for it
        child.start()
        send.close()
        try:
            ok, value = receive.recv()
        except EOFError:
            child.join()
            raise RuntimeError(f"the PSI benchmark's process for n={n:,} ended without a result "
                               f"(exit code {child.exitcode})") from None
    except BaseException:
        if child.pid is not None:
            child.terminate()
        raise
    finally:
        if child.pid is not None:
            child.join()
        send.close()
        receive.close()
    if not ok:
        raise value
    return value


def _measure(send, n: int, processes: int, overlap: float, bar: bool) -> None:
    """The spawned process: one measured PSI, its Row (or its error) sent back."""
    import signal

    def stop(signum, frame):  # at once: a pool shut down in order first finishes the chunks it queued
        import os
        import threading

        from ..align.workers import stop_every_pool

        # If the unwinding below hangs (a pool whose workers were still starting, under load: the
        # executor's thread then waited for good, and so did the command), end the process anyway.
        watchdog = threading.Timer(STOP_SECONDS, os._exit, (128 + signum,))
        watchdog.daemon = True
        watchdog.start()
        stop_every_pool()
        raise SystemExit(128 + signum)  # unwinds: the broken pool shuts down at once, its semaphores freed

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us, and says so in one line
    signal.signal(signal.SIGTERM, stop)
    try:
        result = (True, run_one(n, processes, overlap, 0, bar))
    except Exception as exc:
        result = (False, exc)
    send.send(result)
    send.close()


def table(rows: list[Row]) -> str:
    head = (f"{'n per side':>11} {'procs':>5} {'seconds':>9} {'IDs/s':>9} {'CPU s':>8} {'process MiB':>11} "
            f"{'total MiB':>10} {'matched':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.n:>11,} {r.processes:>5} {r.seconds:>9.2f} {r.ids_per_second:>9,.0f} {r.cpu_seconds:>8.1f} "
                     f"{r.process_peak_mib:>11.0f} {r.total_peak_mib:>10.0f} {r.matched:>9,}")
    return "\n".join(lines)


def write_json(rows: list[Row], path: Path) -> None:
    data = {"rows": [asdict(r) for r in rows], "units": {"time": "seconds", "memory": "MiB (peak resident set)"}}
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
