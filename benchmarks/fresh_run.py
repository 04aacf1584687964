"""One plain GAL run (``gal_job.run_once``) in a fresh process, for its own peak RSS.

A process's peak RSS counts everything it ever held, and glibc keeps freed heap for reuse, so
runs timed one after another in one process report the largest of them plus the leftovers of
the others. :class:`FreshRun` starts a worker (this file as a script) that imports securegal and
builds the synthetic table, then reports its RSS (the baseline: table and libraries) and waits;
:meth:`FreshRun.run` lets it run the job once and returns what it measured. The caller times
``run`` (the pipe round trip is a millisecond; the worker's exit is not timed), so a
pytest-benchmark median is one of runs in fresh processes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    """This process's resident set now."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * _PAGE / 2**20


def peak_rss_mib() -> float:
    """This process's high-water RSS (``VmHWM``). Not ``ru_maxrss``: Linux carries that over an
    exec from the forking process, so a worker started by a 420 MiB pytest process would report
    at least 420 MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status")


class FreshRun:
    """A worker process ready to run the job once on ``n_rows`` x ``n_features`` synthetic rows
    (``python``: the interpreter, e.g. another checkout's venv for an A/B comparison)."""

    def __init__(self, n_rows: int, n_features: int, parties: int, rounds: int, python: str = sys.executable):
        self._proc = subprocess.Popen([python, __file__, str(n_rows), str(n_features), str(parties), str(rounds)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                      cwd=Path(__file__).parent)
        ready = self._reply()
        self.baseline_mib: float = ready["baseline_mib"]

    def _reply(self) -> dict:
        line = self._proc.stdout.readline()
        if not line:
            self._proc.wait()
            raise RuntimeError(f"the benchmark worker exited with code {self._proc.returncode} (its stderr is above)")
        return json.loads(line)

    def run(self) -> dict:
        """Run the job: accuracy, wall ``seconds`` and ``cpu_seconds`` of the run, the worker's
        ``peak_rss_mib`` (its whole life: baseline included) and ``baseline_mib``."""
        self._proc.stdin.write("run\n")
        self._proc.stdin.flush()
        return {**self._reply(), "baseline_mib": self.baseline_mib}

    def close(self) -> None:
        """Wait for the worker to exit (it does after its run; freeing its memory takes a moment,
        which is why :meth:`run` does not wait)."""
        self._proc.stdin.close()
        self._proc.wait()


def _worker(n_rows: int, n_features: int, parties: int, rounds: int) -> None:
    from gal_job import run_once, synthetic

    data = synthetic(n_rows, n_features)
    print(json.dumps({"baseline_mib": rss_mib()}), flush=True)
    sys.stdin.readline()
    cpu, wall = time.process_time(), time.perf_counter()
    accuracy = run_once(data, parties, rounds)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(json.dumps({"accuracy": accuracy, "seconds": wall, "cpu_seconds": cpu, "peak_rss_mib": peak_rss_mib()}),
          flush=True)


if __name__ == "__main__":
    _worker(*(int(arg) for arg in sys.argv[1:5]))
