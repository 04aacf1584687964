"""Where each table's ledger lives on this machine, per user: a second ledger of a table in
another directory would start a fresh lifetime budget, so it is refused.

One small JSON file per table fingerprint in the state directory (``$SECUREGAL_STATE_DIR``, else
``$XDG_STATE_HOME/securegal``, else ``~/.local/state/securegal``), under ``tables/``. A ledger
that moved (its recorded path gone) is taken at its new path. Another user, container or machine
keeps its own registry: one ledger per table across them is the operator's to keep.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Sequence

from ...files import private_dir, write_json_atomic

log = logging.getLogger(__name__)

STATE_ENV = "SECUREGAL_STATE_DIR"


def state_dir() -> Path:
    """This user's securegal state directory (not created here)."""
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV])
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "securegal"


def _entry(directory: Path, table: str) -> Path:
    return directory / f"{hashlib.sha256(table.encode()).hexdigest()[:32]}.json"


@contextlib.contextmanager
def claimed(tables: Sequence[str], path: Path):
    """Held around opening or creating the ledger at ``path`` of ``tables[0]`` (its earlier
    fingerprints ``tables[1:]``), so that two processes cannot both find no ledger and both
    create one; yields a function returning the path recorded for one of them other than
    ``path`` (None if none; it may be gone: deleted, or moved and not opened since) and the
    registry file that records it, and records ``path`` once the block succeeds. Best effort: a
    state directory that cannot be written is warned about, and nothing is found."""
    directory = state_dir() / "tables"
    try:
        private_dir(directory)
        fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        log.warning("cannot keep the table registry in %s (%s): a second ledger of this table elsewhere on this "
                    "machine would not be found", directory, exc.strerror or exc)
        yield lambda: (None, None)
        return

    def elsewhere() -> tuple[Path | None, Path | None]:
        for table in tables:
            entry = _entry(directory, table)
            try:
                other = Path(json.loads(entry.read_text(encoding="utf-8"))["ledger"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if other != path and not (other.exists() and path.exists() and os.path.samefile(other, path)):
                return other, entry
        return None, None

    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield elsewhere
        try:
            write_json_atomic(_entry(directory, tables[0]), {"table": tables[0], "ledger": str(path)})
        except OSError as exc:
            log.warning("cannot update the table registry in %s (%s)", directory, exc.strerror or exc)
    finally:
        os.close(fd)
