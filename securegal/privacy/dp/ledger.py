"""A table's privacy ledger: every release ever made on the table, against its lifetime budget.

A feature party's (epsilon, delta) budget belongs to the *table* it serves, not to a session:
sessions, restarts and new session ids never reset it. The ledger holds the table's
fingerprint, its lifetime budget and accountant, and one entry per recorded release (session,
round, kind, mechanism, L2 sensitivity, noise multiplier, sample rate, steps, time); a session
records its whole plan when it reserves it (round 0, ``steps`` releases per kind). Epsilon spent
is always computed by the accountant over the *whole* history, so it composes across sessions.

A session that ends having released less than it reserved (a federation that stopped at setup
because another party refused, a label owner that vanished after round 1) is *settled*: its
reservation is returned and what it did release is recorded in its place (:meth:`Ledger.settle`).
Nothing is deleted: the reserved entries stay in the file, marked returned by a refund record
that names them and says why. Only a reservation this process made can be settled, so a party
that crashed mid-session keeps the whole reservation counted (it cannot know what left).

- :class:`Ledger` keeps the history in memory (embedded runs); :func:`open_ledger` returns a
  :class:`FileLedger`, which persists it. Both have the same API.
- Check before spend: :meth:`Ledger.check` says what releases would spend and raises
  :class:`~securegal.errors.BudgetExceeded` (naming what is left and what was asked) without
  changing anything; :meth:`Ledger.record` checks, then writes, then returns. A caller draws
  noise only after ``record`` returned.
- The file is written like a database writes: a temporary file in the same directory, fsync,
  ``os.replace``, fsync of the directory. ``<path>.lock`` is held with ``flock`` for the life of
  the :class:`FileLedger`, so a second process cannot serve the same table: links are followed
  to the one file (hard links refused), a second ledger of the table in the directory is refused,
  and before every write the lock file and the ledger must still be what this process holds.
- The format is versioned and checksummed. A file of another version, a truncated or corrupted
  file, one made for another table or budget, or an accountant switch under which its history
  would exceed the budget is refused with a one-line :class:`LedgerError` and left as it is: a
  ledger is never reset, because starting afresh would be a silent overspend.
- :func:`calibrate_session` finds the noise scale of a session plan so that history + plan fits
  the lifetime budget (or a per-session slice of it), or refuses.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import stat
import tempfile
import threading
import weakref
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ...errors import BudgetExceeded, ConfigError
from ...messages import MAX_NAME_CHARS
from . import registry
from .accountant import (
    DEFAULT_ACCOUNTANT,
    MAX_NOISE_MULTIPLIER,
    Budget,
    PlannedRelease,
    Release,
    calibrate_noise,
    check_accountant,
    epsilon_of,
)

LEDGER_FORMAT = "securegal-privacy-ledger"
LEDGER_VERSION = 2  # 2 adds refunds; a version 1 file (no refunds) is read and rewritten as 2
READABLE_VERSIONS = (1, 2)
MECHANISM = "gaussian"  # every Release is a (possibly subsampled, repeated) Gaussian mechanism
_MAX_NAME = MAX_NAME_CHARS
_BACKUP = "its most recent backup (an older one forgets releases)"
DIRECTORY_LOCK = ".securegal-ledgers.lock"  # held while a ledger in the directory is opened
# A new ledger with a lifetime epsilon above this is warned about: it is fixed once created.
LARGE_EPSILON = 10.0

log = logging.getLogger(__name__)


class LedgerError(ConfigError):
    """A ledger cannot be used as asked (locked, corrupted, another table or budget, ...)."""


def _check_name(what: str, value: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_NAME or not value.isprintable():
        raise ValueError(f"{what} must be a printable string of 1 to {_MAX_NAME} characters, "
                         f"got {value!r:.80}")
    return value


def _fingerprint(tag: bytes, ids: Sequence[str], X: np.ndarray) -> str:
    h = hashlib.sha256(tag)
    h.update(json.dumps([list(X.shape), list(ids)], separators=(",", ":")).encode())
    h.update(np.ascontiguousarray(X).tobytes())
    return "sha256:" + h.hexdigest()


def _table_rows(ids: Sequence, values: np.ndarray) -> tuple[list[str], np.ndarray]:
    X = np.asarray(values, dtype="<f8")
    ids = [str(i) for i in ids]
    if X.ndim != 2 or X.shape[0] != len(ids):
        raise ValueError(f"values must be 2-D with one row per id: {len(ids)} ids, shape {X.shape}")
    return ids, X


def table_fingerprint(ids: Sequence, values: np.ndarray) -> str:
    """``sha256:<hex>`` of a table's rows: their ids (as text) and values (float64), rows in the
    order of the ids and columns in the order of their values, so the same table with its rows
    or columns in any order gives the same fingerprint, and any change in ids or values another."""
    ids, X = _table_rows(ids, values)
    order = sorted(range(len(ids)), key=ids.__getitem__)
    X = X[order]
    columns = sorted(range(X.shape[1]), key=lambda j: X[:, j].tobytes())
    return _fingerprint(b"securegal-table-v2\0", [ids[i] for i in order], X[:, columns])


def table_identity(ids: Sequence, values: np.ndarray, keys: Sequence | None = None) -> tuple[str, tuple[str, ...]]:
    """The table's :func:`table_fingerprint` over each row's own ID, and the fingerprint earlier
    versions gave the same table (its row ``keys``, row numbers for a CSV, and values in file
    order, before 2026-12-04), under which its ledger may have been written."""
    rows, X = _table_rows(ids, values)
    former, _ = _table_rows(rows if keys is None else keys, X)
    return table_fingerprint(rows, X), (_fingerprint(b"securegal-table-v1\0", former, X),)


@dataclass(frozen=True)
class LedgerEntry:
    """One release in the ledger: which session made it, when, and the release itself."""

    session: str
    release: Release
    time: str

    def to_dict(self) -> dict:
        r = self.release
        return {"session": self.session, "time": self.time, "round": r.round, "what": r.what,
                "mechanism": MECHANISM, "sensitivity": r.sensitivity,
                "noise_multiplier": r.noise_multiplier, "sample_rate": r.sample_rate,
                "steps": r.steps}

    @classmethod
    def from_dict(cls, d: dict) -> "LedgerEntry":
        if not isinstance(d, dict) or d.get("mechanism") != MECHANISM:
            raise ValueError(f"entry is not a {MECHANISM!r} release: {d!r:.120}")
        keys = {"session", "time", "round", "what", "mechanism", "sensitivity",
                "noise_multiplier", "sample_rate", "steps"}
        if set(d) != keys:
            raise ValueError(f"entry keys {sorted(d)} are not {sorted(keys)}")
        if d["sensitivity"] is None:
            raise ValueError("entry has no sensitivity")
        release = Release(d["round"], d["what"], d["noise_multiplier"], d["sample_rate"],
                          d["steps"], d["sensitivity"])
        return cls(_check_name("session", d["session"]), release, _check_name("time", d["time"]))


@dataclass(frozen=True)
class SessionSpend:
    """What one session spent: its releases alone, and the table's lifetime epsilon after it."""

    session: str
    releases: int
    first: str
    last: str
    epsilon_alone: float
    epsilon_after: float
    returned: int = 0  # reserved entries returned when the session was settled (not counted)

    def to_dict(self) -> dict:
        return {"session": self.session, "releases": self.releases, "first": self.first,
                "last": self.last, "epsilon_alone": self.epsilon_alone,
                "epsilon_after": self.epsilon_after, "returned": self.returned}


@dataclass(frozen=True)
class Refund:
    """A session's reservation returned: the ledger entries (by position) no longer counted,
    because the session ended without releasing them."""

    session: str
    time: str
    entries: tuple[int, ...]
    reason: str

    def to_dict(self) -> dict:
        return {"session": self.session, "time": self.time, "entries": list(self.entries),
                "reason": self.reason}

    @classmethod
    def from_dict(cls, d: dict) -> "Refund":
        if not isinstance(d, dict) or set(d) != {"session", "time", "entries", "reason"}:
            raise ValueError(f"refund is not an object with session, time, entries, reason: {d!r:.120}")
        entries = d["entries"]
        if (not isinstance(entries, list) or not entries
                or not all(isinstance(i, int) and not isinstance(i, bool) for i in entries)):
            raise ValueError(f"refund entries must be a non-empty list of positions, got {entries!r:.80}")
        return cls(_check_name("session", d["session"]), _check_name("time", d["time"]), tuple(entries),
                   _check_name("reason", d["reason"]))


def _describe(releases: Iterable[Release]) -> str:
    return ", ".join(f"{r.what}@round{r.round}" + (f" x{r.steps}" if r.steps > 1 else "")
                     for r in releases)


class Ledger:
    """A table's ledger held in memory (embedded runs); :class:`FileLedger` persists it.

    ``table`` names the table (a :func:`table_fingerprint` or a declared id), ``budget`` is its
    lifetime (epsilon, delta), ``accountant`` a registered accountant name.
    """

    def __init__(self, table: str, budget: Budget, accountant: str = DEFAULT_ACCOUNTANT,
                 entries: Iterable[LedgerEntry] = (), outputs: dict | None = None,
                 refunds: Iterable[Refund] = ()):
        self.table = _check_name("table fingerprint", table)
        if not isinstance(budget, Budget):
            raise TypeError(f"budget must be a Budget, got {type(budget).__name__}")
        self.budget = budget
        self.accountant = check_accountant(accountant)
        self._entries: tuple[LedgerEntry, ...] = tuple(entries)
        for e in self._entries:
            if not isinstance(e, LedgerEntry):
                raise TypeError(f"expected LedgerEntry, got {type(e).__name__}")
        self._refunds: tuple[Refund, ...] = tuple(refunds)
        self._returned = _returned(self._entries, self._refunds)
        self._outputs: dict = dict(outputs or {})
        self._mutex = threading.RLock()  # server threads: check, write and update as one step
        # Reservations this object made (session -> entry positions), which settle() may return.
        self._reserved: dict[str, tuple[int, ...]] = {}
        self._epsilon = epsilon_of(self.releases, budget.delta, accountant)

    # --- reading -------------------------------------------------------------------------
    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        return self._entries

    @property
    def refunds(self) -> tuple[Refund, ...]:
        return self._refunds

    def returned(self, position: int) -> bool:
        """Whether entry ``position`` was reserved and returned (it no longer counts)."""
        return position in self._returned

    @property
    def releases(self) -> tuple[Release, ...]:
        """Every release that counts: all entries but those of returned reservations."""
        return tuple(e.release for i, e in enumerate(self._entries) if i not in self._returned)

    @property
    def epsilon_spent(self) -> float:
        """Lifetime epsilon at the budget's delta of every release ever recorded."""
        return self._epsilon

    def remaining(self) -> float:
        """Lifetime epsilon still available (0 when spent; never negative)."""
        return max(0.0, self.budget.epsilon - self._epsilon)

    def spent_by_session(self) -> list[SessionSpend]:
        """Per session, in order of first release: its releases' epsilon on their own, and the
        lifetime epsilon after it (composition is not additive, so the latter is what counts)."""
        order: list[str] = []
        by: dict[str, list[tuple[int, LedgerEntry]]] = {}
        for i, e in enumerate(self._entries):
            if e.session not in by:
                order.append(e.session)
                by[e.session] = []
            by[e.session].append((i, e))
        out, so_far = [], []
        for s in order:
            mine = [e.release for i, e in by[s] if i not in self._returned]
            so_far += mine
            out.append(SessionSpend(
                s, len(mine), by[s][0][1].time, by[s][-1][1].time,
                epsilon_of(mine, self.budget.delta, self.accountant),
                epsilon_of(so_far, self.budget.delta, self.accountant),
                len(by[s]) - len(mine)))
        return out

    def output(self, name: str):
        """A stored output (e.g. DP standardization statistics), or None."""
        return self._outputs.get(name)

    def to_dict(self) -> dict:
        """Summary for reports and ``securegal ledger show --json``."""
        return {"table": self.table,
                "budget": {"epsilon": self.budget.epsilon, "delta": self.budget.delta},
                "accountant": self.accountant, "epsilon_spent": self._epsilon,
                "epsilon_remaining": self.remaining(),
                "sessions": [s.to_dict() for s in self.spent_by_session()],
                "releases": [{**e.to_dict(), "returned": i in self._returned}
                             for i, e in enumerate(self._entries)],
                "refunds": [r.to_dict() for r in self._refunds]}

    # --- spending ------------------------------------------------------------------------
    def check(self, releases: Sequence[Release]) -> float:
        """Lifetime epsilon if ``releases`` were recorded; BudgetExceeded (naming what is left
        and what was asked) if that exceeds the budget. Changes nothing."""
        releases = tuple(releases)
        if not releases:
            raise ValueError("check() needs at least one Release")
        for r in releases:
            if not isinstance(r, Release):
                raise TypeError(f"expected Release, got {type(r).__name__}")
        after = epsilon_of(self.releases + releases, self.budget.delta, self.accountant)
        if not after <= self.budget.epsilon:
            raise BudgetExceeded(
                f"table {self.table[:23]}: releases {_describe(releases)} refused: left "
                f"{self.remaining():.4g} of epsilon {self.budget.epsilon:.4g}, asked "
                f"+{after - self._epsilon:.4g} (lifetime epsilon would be {after:.4g}; "
                f"delta={self.budget.delta:.3g}, {self.accountant})")
        return after

    def record(self, releases: Sequence[Release], session: str) -> float:
        """Check ``releases``, then write them (atomically, for a file ledger) under ``session``;
        return the new lifetime epsilon. On refusal or a failed write nothing is recorded."""
        _check_name("session", session)
        releases = tuple(releases)
        for r in releases:
            if isinstance(r, Release) and r.sensitivity is None:
                raise ValueError(f"ledger entries need the mechanism's sensitivity: release "
                                 f"{r.what}@round{r.round} has none")
        with self._mutex:
            after = self.check(releases)
            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            entries = self._entries + tuple(LedgerEntry(session, r, now) for r in releases)
            self._commit(entries, self._outputs, self.accountant, self._refunds)
            self._entries, self._epsilon = entries, after
        return after

    def reserve(self, releases: Sequence[Release], session: str) -> float:
        """:meth:`record` a session's whole plan before it releases anything, and remember it so
        that :meth:`settle` can return what the session does not use."""
        with self._mutex:
            start = len(self._entries)
            after = self.record(releases, session)
            self._reserved[session] = self._reserved.get(session, ()) + tuple(range(start, len(self._entries)))
        return after

    def settle(self, session: str, released: Sequence[Release], reason: str) -> float | None:
        """End ``session``'s reservation: if it released less than it reserved (``released``: what
        actually left, e.g. its in-session accountant's releases), return the reservation and
        record ``released`` in its place, atomically. Returns the epsilon given back, or None when
        this ledger holds no reservation of ``session`` (already settled, or made by another
        process) or everything reserved was released. Raises ValueError when ``released`` holds
        more of a kind than the reservation, or another noise level: nothing changes then."""
        _check_name("session", session)
        _check_name("reason", reason)
        with self._mutex:
            positions = self._reserved.get(session)
            if not positions:
                return None
            reserved = [self._entries[i].release for i in positions]
            by_kind = {r.what: r for r in reserved}
            used: dict[str, int] = {}
            actual = []
            for r in released:
                if not isinstance(r, Release):
                    raise TypeError(f"expected Release, got {type(r).__name__}")
                plan = by_kind.get(r.what)
                if (plan is None or r.noise_multiplier != plan.noise_multiplier
                        or r.sample_rate != plan.sample_rate):
                    raise ValueError(f"session {session!r} released {r.what}@round{r.round} (noise multiplier "
                                     f"{r.noise_multiplier:g}), which its reservation ({_describe(reserved)}) does "
                                     "not hold: the reservation stays")
                used[r.what] = used.get(r.what, 0) + r.steps
                actual.append(replace(r, sensitivity=plan.sensitivity))
            steps = {k: sum(r.steps for r in reserved if r.what == k) for k in by_kind}
            over = [k for k in used if used[k] > steps[k]]
            if over:
                raise ValueError(f"session {session!r} released more {', '.join(over)} than it reserved "
                                 f"({_describe(reserved)}): the reservation stays")
            if used == steps:
                del self._reserved[session]
                return None
            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            entries = self._entries + tuple(LedgerEntry(session, r, now) for r in actual)
            refunds = self._refunds + (Refund(session, now, positions, reason),)
            returned = _returned(entries, refunds)
            counted = [e.release for i, e in enumerate(entries) if i not in returned]
            after = epsilon_of(counted, self.budget.delta, self.accountant)
            self._commit(entries, self._outputs, self.accountant, refunds)
            del self._reserved[session]
            before, self._entries, self._refunds, self._returned, self._epsilon = \
                self._epsilon, entries, refunds, returned, after
        return before - after

    def store_output(self, name: str, value) -> None:
        """Keep a JSON-serialisable *output of recorded releases* (post-processing, e.g. DP
        standardization statistics) with the ledger, so later sessions reuse it for free."""
        _check_name("output name", name)
        value = json.loads(json.dumps(value, allow_nan=False))
        with self._mutex:
            outputs = {**self._outputs, name: value}
            self._commit(self._entries, outputs, self.accountant, self._refunds)
            self._outputs = outputs

    def _commit(self, entries: tuple[LedgerEntry, ...], outputs: dict, accountant: str,
                refunds: tuple[Refund, ...]) -> None:
        """Persist a new state before it replaces the current one (nothing to do in memory)."""

    def close(self) -> None:
        """Release resources (the file lock of a :class:`FileLedger`)."""

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _returned(entries: Sequence[LedgerEntry], refunds: Sequence[Refund]) -> frozenset[int]:
    """Positions of the entries ``refunds`` return; ValueError unless each names entries of its
    own session, none twice."""
    out: set[int] = set()
    for r in refunds:
        if not isinstance(r, Refund):
            raise TypeError(f"expected Refund, got {type(r).__name__}")
        for i in r.entries:
            if not 0 <= i < len(entries) or entries[i].session != r.session or i in out:
                raise ValueError(f"refund of session {r.session!r} names entry {i}, which is not one of its "
                                 f"{len(entries)} entries' own or was returned before")
            out.add(i)
    return frozenset(out)


# --- the file format ------------------------------------------------------------------------

def _body(table: str, budget: Budget, accountant: str, entries, outputs: dict, refunds) -> dict:
    return {"format": LEDGER_FORMAT, "version": LEDGER_VERSION, "table": table,
            "budget": {"epsilon": budget.epsilon, "delta": budget.delta},
            "accountant": accountant, "entries": [e.to_dict() for e in entries],
            "refunds": [r.to_dict() for r in refunds], "outputs": outputs}


def _checksum(body: dict) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _encode(body: dict) -> bytes:
    return (json.dumps({**body, "checksum": _checksum(body)}, indent=1, allow_nan=False)
            + "\n").encode()


def _decode(path: Path, data: bytes) -> tuple[str, Budget, str, tuple[LedgerEntry, ...], dict, tuple[Refund, ...]]:
    """Parse and verify a ledger file; one-line LedgerError for anything but a valid file of a
    readable version."""
    where = f"ledger {path}"
    if not data.strip():
        raise LedgerError(f"{where} is empty (truncated?): refusing it; restore it from {_BACKUP}, "
                          "it is never reset")
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LedgerError(f"{where} is truncated or not JSON ({exc}): refusing it; restore it from "
                          f"{_BACKUP}, it is never reset") from None
    if not isinstance(doc, dict) or doc.get("format") != LEDGER_FORMAT:
        raise LedgerError(f"{where} is not a securegal privacy ledger (format "
                          f"{doc.get('format') if isinstance(doc, dict) else None!r})")
    version = doc.get("version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise LedgerError(f"{where} has format version {version!r}; this securegal "
                          f"reads versions {', '.join(map(str, READABLE_VERSIONS))} only: refusing it")
    body = {k: v for k, v in doc.items() if k != "checksum"}
    try:
        ok = doc.get("checksum") == _checksum(body)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise LedgerError(f"{where} is corrupted (checksum mismatch): refusing it; restore it from "
                          f"{_BACKUP}, it is never reset")
    try:
        budget = Budget(doc["budget"]["epsilon"], doc["budget"]["delta"])
        accountant = check_accountant(doc["accountant"])
        entries = tuple(LedgerEntry.from_dict(e) for e in doc["entries"])
        refunds = tuple(Refund.from_dict(r) for r in doc["refunds"]) if version >= 2 else ()
        _returned(entries, refunds)
        outputs = doc["outputs"]
        if not isinstance(outputs, dict):
            raise TypeError("outputs must be an object")
        table = _check_name("table", doc["table"])
    except (KeyError, TypeError, ValueError) as exc:
        raise LedgerError(f"{where} is malformed ({exc}): refusing it") from None
    return table, budget, accountant, entries, outputs, refunds


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    """Temporary file in ``path``'s directory, fsync, ``os.replace``, fsync of the directory."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


class _Snapshot(Ledger):
    """A ledger file as read at one moment; it cannot record."""

    def _commit(self, entries, outputs, accountant, refunds) -> None:
        raise LedgerError("a ledger read with read_ledger() is a read-only snapshot; "
                          "use open_ledger() to record")


def read_ledger(path: str | os.PathLike) -> Ledger:
    """A read-only snapshot of a ledger file (no lock: writes are atomic renames), e.g. for
    ``securegal ledger show``. Refuses what :func:`open_ledger` refuses."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.securegal-ledger.json"))
        raise LedgerError(f"{path} is a directory, not a ledger file" + (f"; it holds {', '.join(found[:5])}"
                                                                         if found else ""))
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LedgerError(f"ledger {path} does not exist") from None
    table, budget, accountant, entries, outputs, refunds = _decode(path, data)
    return _Snapshot(table, budget, accountant, entries, outputs, refunds)


class FileLedger(Ledger):
    """A :class:`Ledger` persisted at ``path`` and locked for this object's life; use
    :func:`open_ledger`."""

    def __init__(self, path: Path, lock_fd: int, table: str, budget: Budget, accountant: str,
                 entries: tuple[LedgerEntry, ...], outputs: dict, refunds: tuple[Refund, ...] = (),
                 on_disk: bytes | None = None):
        super().__init__(table, budget, accountant, entries, outputs, refunds)
        self.path = path
        self._lock_fd: int | None = lock_fd
        self._unlock = weakref.finalize(self, os.close, lock_fd)
        self._on_disk = on_disk  # the file as this object last read or wrote it (None: no file yet)

    def _commit(self, entries, outputs, accountant, refunds) -> None:
        if self._lock_fd is None:
            raise LedgerError(f"ledger {self.path} is closed")
        self._check_still_ours()
        data = _encode(_body(self.table, self.budget, accountant, entries, outputs, refunds))
        try:
            _atomic_write(self.path, data)
        except OSError as exc:  # the file is as it was (the write goes to a temporary file first)
            raise LedgerError(f"ledger {self.path} could not be written ({exc.strerror or type(exc).__name__}): "
                              "nothing was released; make room on its disk or let this process replace the "
                              "file") from None
        self._on_disk = data
        # Checked again after the write: a process that got in between the check and the write
        # makes this one fail here, before its caller releases anything.
        self._check_still_ours()

    def _check_still_ours(self) -> None:
        """Refuse to write over a ledger that changed behind this process: its lock file removed
        or replaced (so another process may hold a lock of its own), or the file rewritten."""
        lock_path = _lock_path(self.path)
        try:
            held, now = os.fstat(self._lock_fd), os.stat(lock_path)
            same_lock = (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino)
        except FileNotFoundError:
            same_lock = False
        if not same_lock:
            raise LedgerError(f"ledger {self.path}: its lock file {lock_path} was removed or replaced while this "
                              "process held it, so another process may be serving the table: refusing to record; "
                              "stop every process serving it and restart one")
        try:
            current = self.path.read_bytes()
        except FileNotFoundError:
            current = None
        if current != self._on_disk:
            raise LedgerError(f"ledger {self.path} was changed by something other than this process since it "
                              "was opened: refusing to record over it; stop every process serving the table "
                              "and restart one")

    def close(self) -> None:
        """Release the lock; the ledger refuses further writes."""
        self._lock_fd = None
        self._unlock()


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _lock(path: Path) -> int:
    lock_path = _lock_path(path)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LedgerError(f"ledger {path} is in use by another process (lock {lock_path}): one "
                              "table is served by one process at a time") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} serves the table of ledger {path.name}; do not remove this "
                     "file while it runs\n".encode())
    except BaseException:
        os.close(fd)
        raise
    return fd


_MAX_LEDGER_BYTES = 256 << 20  # a file larger than this in a ledger's directory is not a ledger


def _not_a_ledger_name(name: str) -> bool:
    """A lock file (``NAME.lock``), the directory lock, or a write in progress (``.NAME.XXXX.tmp``):
    never a ledger, so the directory scan skips them, and a ledger may not be named like them."""
    return name.endswith(".lock") or (name.startswith(".") and name.endswith(".tmp"))


def _ledger_of(tables: Sequence[str], directory: Path, besides: Path) -> Path | None:
    """Another ledger file in ``directory`` that holds one of ``tables``, if any. A ledger is a JSON
    object naming its format; other files (data, damaged ledgers) are skipped: they hold no table."""
    try:
        mine = besides.stat()
        own = (mine.st_dev, mine.st_ino)
    except FileNotFoundError:  # a ledger about to be created
        own = None
    for candidate in sorted(directory.iterdir()):
        if _not_a_ledger_name(candidate.name):
            continue
        try:
            st = candidate.stat()  # links followed: a link to this ledger is this ledger
            if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) == own or st.st_size > _MAX_LEDGER_BYTES:
                continue
            with open(candidate, "rb") as fh:
                if b"{" not in fh.read(4096):  # a JSON object in any encoding json reads (BOM, UTF-16)
                    continue
                fh.seek(0)
                doc = json.loads(fh.read())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict) and doc.get("format") == LEDGER_FORMAT and doc.get("table") in tables:
            return candidate
    return None


def _refuse_a_second_ledger(tables: Sequence[str], path: Path,
                            elsewhere: Callable[[], tuple[Path | None, Path | None]]) -> None:
    """One ledger per table: another ledger of the table in ``path``'s directory, or one this
    user's registry records elsewhere on the machine, is refused; a new ledger also while the
    recorded one is gone (deleted, or moved and not opened since)."""
    recorded, entry = elsewhere()
    if recorded is not None and not recorded.exists() and not path.exists():
        raise LedgerError(f"table {tables[0][:40]}'s ledger was at {recorded}, which is gone: a new one at {path} "
                          "would forget every release it recorded; restore it, or move it to where it is served "
                          f"(a moved ledger is found at its new path), or remove {entry} to start the table's "
                          "lifetime budget afresh knowingly")
    other = _ledger_of(tables, path.parent, besides=path) or (recorded if recorded is not None and recorded.exists()
                                                              else None)
    if other is not None:
        raise LedgerError(f"table {tables[0][:40]} already has its ledger at {other}: refusing "
                          f"{'to serve it from ' if path.exists() else 'a second one at '}{path} (one ledger "
                          "per table, so that its lifetime budget cannot restart under another name; keep "
                          "backups outside the ledger's directory, and move a ledger rather than copy it)")


@contextlib.contextmanager
def _directory_lock(directory: Path):
    """Held while a ledger in ``directory`` is opened or created, so that two processes cannot both
    find no ledger of a table there and both create one."""
    fd = os.open(directory / DIRECTORY_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def open_ledger(path: str | os.PathLike, table: str, budget: Budget,
                accountant: str | None = None, n_rows: int | None = None,
                formerly: Sequence[str] = ()) -> FileLedger:
    """Open (or create) the ledger of ``table`` at ``path`` and lock it.

    ``budget`` is the table's lifetime budget and must equal the one the file holds.
    ``accountant`` (default: the file's, or :data:`DEFAULT_ACCOUNTANT` for a new file) may
    differ from the file's: every registered accountant bounds the same history, which is
    recounted from its first release; a switch under which that count exceeds the lifetime
    budget is refused. ``n_rows`` adds the check delta < 1/n. ``formerly``: fingerprints earlier
    versions gave the same table (:func:`table_identity`); a ledger written under one is taken
    over and rewritten under ``table``.

    One table, one ledger file, one lock: a symbolic link is followed to the file it names, a
    file with more than one name (hard links) is refused, and so is a second ledger of the same
    table in the directory (a copy under another name). Every refusal is a one-line
    :class:`LedgerError` (or ValueError for a bad budget) and leaves the file as it is.
    """
    given = Path(path)
    _check_name("table fingerprint", table)
    names = (table, *(_check_name("table fingerprint", f) for f in formerly))
    if not isinstance(budget, Budget):
        raise TypeError(f"budget must be a Budget, got {type(budget).__name__}")
    if accountant is not None:
        check_accountant(accountant)
    if n_rows is not None:
        budget.check_rows(n_rows)
    if not given.parent.is_dir():
        raise LedgerError(f"ledger directory {given.parent} does not exist")
    if given.is_dir():
        raise LedgerError(f"ledger {given} is a directory: name the ledger file")
    path = Path(os.path.realpath(given))
    if _not_a_ledger_name(path.name):
        raise LedgerError(f"ledger {given}: a ledger may not be named like a lock file (*.lock) or a write in "
                          "progress (.*.tmp)")
    if not path.parent.is_dir():
        raise LedgerError(f"ledger {given} is a link to {path}, whose directory does not exist")
    with _directory_lock(path.parent), registry.claimed(names, path) as elsewhere:
        new_lock = not _lock_path(path).exists()
        fd = _lock(path)
        ledger = None
        try:
            if path.exists():
                links = path.stat().st_nlink
                if links > 1:
                    raise LedgerError(f"ledger {path} has {links} names (hard links): refusing it, as each "
                                      "name could be served by its own process; remove the other names")
                data = path.read_bytes()
                old_table, old_budget, old_accountant, entries, outputs, refunds = _decode(path, data)
                if old_table not in names:
                    raise LedgerError(f"ledger {path} belongs to table {old_table[:40]}, not "
                                      f"{table[:40]}: refusing it (one ledger per table)")
                if old_budget != budget:
                    raise LedgerError(
                        f"ledger {path} holds lifetime budget epsilon={old_budget.epsilon:g}, "
                        f"delta={old_budget.delta:g}; asked epsilon={budget.epsilon:g}, "
                        f"delta={budget.delta:g}: a table's lifetime budget cannot be changed")
                _refuse_a_second_ledger(names, path, elsewhere)
                ledger = FileLedger(path, fd, table, budget, accountant or old_accountant, entries,
                                    outputs, refunds, on_disk=data)
                if ledger.accountant != old_accountant and not ledger.epsilon_spent <= budget.epsilon:
                    old = epsilon_of(ledger.releases, budget.delta, old_accountant)
                    raise LedgerError(
                        f"ledger {path}: accountant {ledger.accountant} counts its history at epsilon "
                        f"{ledger.epsilon_spent:.4f}, {old_accountant} at {old:.4f}, lifetime budget "
                        f"{budget.epsilon:g}: refusing the switch from {old_accountant} to "
                        f"{ledger.accountant} (it would overspend); keep {old_accountant}")
                # Written back at once (a new accountant or fingerprint, or the same bytes): a file this
                # process cannot replace is found now, not at the first release.
                ledger._commit(entries, outputs, ledger.accountant, refunds)
            else:
                if not new_lock:  # its lock file outlived it: deleted or moved, not new
                    raise LedgerError(f"ledger {path} does not exist, but its lock file does: the ledger was "
                                      f"deleted or moved, and a new one would forget every release it recorded; "
                                      f"restore it (or its backup), or remove {_lock_path(path).name} to start "
                                      "this table's lifetime budget afresh knowingly")
                _refuse_a_second_ledger(names, path, elsewhere)
                ledger = FileLedger(path, fd, table, budget, accountant or DEFAULT_ACCOUNTANT, (), {})
                ledger._commit((), {}, ledger.accountant, ())
                log.warning("new ledger %s for table %s: releases recorded in any other ledger of this table "
                            "are not counted (a mistyped path? remove the new file and its lock before anything "
                            "is released)", path, table[:23])
                if budget.epsilon > LARGE_EPSILON:
                    log.warning("ledger %s created with lifetime epsilon %g, which protects little and can never "
                                "be changed for this table (a typo? remove the new file before anything is "
                                "released)", path, budget.epsilon)
        except BaseException:
            if ledger is None:
                os.close(fd)
            else:
                ledger.close()
            if new_lock and not path.exists():  # refused before its file existed: nothing is left behind
                _lock_path(path).unlink(missing_ok=True)
            raise
    return ledger


# --- planning ---------------------------------------------------------------------------------

def calibrate_session(ledger: Ledger, plan: Sequence[PlannedRelease],
                      session_epsilon: float | None = None, n_rows: int | None = None,
                      max_noise_multiplier: float = MAX_NOISE_MULTIPLIER) -> float:
    """Smallest noise scale ``z`` such that the ledger's history plus every planned release (at
    noise multiplier ``z * scale``) fits the table's budget; ValueError for delta >= 1/n.

    With ``session_epsilon`` the session raises the lifetime epsilon by at most that much, and
    it is refused when less than that is left; without it the session may take all that is
    left. BudgetExceeded (naming what is left and what was asked) also when even
    ``max_noise_multiplier`` does not fit. Changes nothing."""
    if not isinstance(ledger, Ledger):
        raise TypeError(f"ledger must be a Ledger, got {type(ledger).__name__}")
    plan = tuple(plan)
    if not plan:
        raise ValueError("calibrate_session needs at least one planned release")
    if n_rows is not None:
        ledger.budget.check_rows(n_rows)
    target = ledger.budget.epsilon
    if session_epsilon is not None:
        if (isinstance(session_epsilon, bool) or not isinstance(session_epsilon, (int, float))
                or not (math.isfinite(session_epsilon) and session_epsilon > 0)):
            raise ValueError(f"session_epsilon must be finite and > 0, got {session_epsilon!r}")
        if ledger.remaining() < session_epsilon:
            raise BudgetExceeded(
                f"table {ledger.table[:23]}: session refused: left {ledger.remaining():.4g} of "
                f"epsilon {ledger.budget.epsilon:.4g}, asked {session_epsilon:.4g} "
                f"(delta={ledger.budget.delta:.3g}, {ledger.accountant})")
        target = min(target, ledger.epsilon_spent + session_epsilon)
    history, delta = ledger.releases, ledger.budget.delta
    least = epsilon_of(history + tuple(p.at(max_noise_multiplier) for p in plan), delta,
                       ledger.accountant)
    if not least <= target:
        asked = f"session plan {', '.join(f'{p.what} x{p.steps}' for p in plan)}"
        raise BudgetExceeded(
            f"table {ledger.table[:23]}: {asked} refused: left {ledger.remaining():.4g} of "
            f"epsilon {ledger.budget.epsilon:.4g}, asked at least +{least - ledger.epsilon_spent:.4g} "
            f"(noise multiplier {max_noise_multiplier:g}; delta={delta:.3g}, {ledger.accountant})")
    return calibrate_noise(plan, Budget(target, delta), ledger.accountant, spent=history,
                           max_noise_multiplier=max_noise_multiplier)
