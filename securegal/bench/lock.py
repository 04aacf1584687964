"""One securegal benchmark at a time on a machine: two at once share its cores and distort both
sets of numbers. ``make bench`` and ``securegal bench`` wait for each other here."""
from __future__ import annotations

import fcntl
import os
import stat
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError

LOCK_NAME = "securegal-bench-{uid}.lock"


def lock_path() -> Path:
    """The lock file: the user's own, in the system's temporary directory (a file of another user
    there could not be opened for writing, or could be a planted link)."""
    return Path(tempfile.gettempdir()) / LOCK_NAME.format(uid=os.getuid())


@contextmanager
def one_benchmark_at_a_time(path: Path | None = None):
    """Hold the benchmark lock for the ``with`` block; if another benchmark holds it, say which
    process on stderr and wait for it."""
    path = lock_path() if path is None else Path(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot open the benchmark lock {path}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device planted there
            raise ConfigError(f"the benchmark lock {path} is not a regular file; remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            print(f"securegal: waiting for another benchmark (pid {holder}, lock {path}) to finish: "
                  "two at once would distort both", file=sys.__stderr__ or sys.stderr, flush=True)  # past pytest's capture
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
