"""Files a run writes: private (0600 files, 0700 directories) and replaced atomically.

Transcripts hold labels in plain mode, checkpoints hold the label owner's scores, metrics hold
what each party spent: everything a run writes is readable by its owner only.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import socket
import tempfile
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: str | Path) -> Path:
    """``path`` and its missing parents, each created 0700; directories that exist are left as
    they are (a user's own folders are theirs)."""
    path = Path(path)
    missing = []
    for p in (path, *path.parents):
        if p.exists():
            break
        missing.append(p)
    for p in reversed(missing):
        p.mkdir(mode=DIR_MODE, exist_ok=True)
        os.chmod(p, DIR_MODE)
    return path


def private_open(path: str | Path, mode: str = "wb", **kwargs):
    """``open(path, mode)`` for a file that is created 0600 (``w``/``a`` modes)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    os.chmod(path, FILE_MODE)
    return os.fdopen(fd, mode, **kwargs)


def write_json_atomic(path: Path, data: dict) -> None:
    """Write ``data`` (0600) so that a reader sees the old file or the whole new one, never a part."""
    text = json.dumps(data, indent=2) + "\n"
    write_bytes_atomic(path, lambda fh: fh.write(text.encode("utf-8")))


def write_bytes_atomic(path: Path, write) -> None:
    """Call ``write(fh)`` on a 0600 temporary file beside ``path``, then rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def staging_owner() -> str:
    """``<host>-<pid>``: a staging directory's name carries the process that owns it (the host as a
    short hash), so that a later run can tell one left by a killed process (:func:`stale_staging`)."""
    return f"{_host()}-{os.getpid()}"


def new_staging_dir(directory: Path, prefix: str) -> Path:
    """A new private directory ``<prefix><host>-<pid>-*`` in ``directory``."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{staging_owner()}-", dir=directory))


def own_staging(directory: Path, prefix: str) -> list[Path]:
    """This process's directories ``<prefix><host>-<pid>-*`` in ``directory``: what a caller
    interrupted while :func:`new_staging_dir` made one cleans up (a signal inside mkdtemp leaves
    the directory made and its name unknown)."""
    return sorted(p for p in Path(directory).glob(f"{glob.escape(prefix)}{glob.escape(staging_owner())}-*")
                  if p.is_dir() and not p.is_symlink())


def _host() -> str:
    return hashlib.blake2b(socket.gethostname().encode(), digest_size=4).hexdigest()


def stale_staging(directory: Path, prefix: str) -> list[Path]:
    """The directories ``<prefix><host>-<pid>-*`` in ``directory`` whose process is gone on this
    host (killed outright: nothing removed them). A live process's, or another host's, are not."""
    host = _host()
    out = []
    for path in sorted(Path(directory).glob(f"{glob.escape(prefix)}{host}-*")):
        pid = path.name[len(prefix) + len(host) + 1:].split("-", 1)[0]
        if path.is_dir() and not path.is_symlink() and pid.isdecimal() and not _alive(int(pid)):
            out.append(path)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process, or not a pid at all: not ours to judge
        return True
    return True
