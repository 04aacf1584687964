"""Per-party transcripts: every message a party sent or received, as the bytes on the wire.

On disk, ``<run>/transcripts/<party>/`` holds ``messages.bin`` (the raw envelopes back to back)
and ``index.jsonl`` (one JSON object per message: ``seq``, ``direction`` ("sent"|"received"),
``kind``, ``session``, ``round``, ``sender``, ``receiver``, ``offset``, ``length``, ``sha256``).
Ciphertexts stay ciphertexts. The attack suite reads transcripts only through
:func:`read_transcript`.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import ConfigError
from .files import private_dir, private_open, write_bytes_atomic
from .messages import Envelope, Payload
from .wire.codec import decode

INDEX = "index.jsonl"
ALIGNMENT_PREFIX = "alignment-with-"
DATA = "messages.bin"
DIRECTIONS = ("sent", "received")
_PARTY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_party_name(name: str) -> str:
    """Party names become directory names and certificate identities: keep them plain."""
    if not isinstance(name, str) or not _PARTY_NAME.match(name):
        raise ConfigError(f"invalid party name {name!r}: use letters, digits, '_', '-', '.' (max 64)")
    return name


class TranscriptWriter:
    """Appends one party's messages to its transcript directory as they cross the wire."""

    def __init__(self, directory: Path | str, party: str):
        self.party = check_party_name(party)
        self.directory = private_dir(directory)
        # Appending after a resume: seq goes on from the records already there (it never restarts).
        index = self.directory / INDEX
        self._count = sum(1 for _ in index.open(encoding="utf-8")) if index.exists() else 0
        self._data = private_open(self.directory / DATA, "ab")
        self._index = private_open(index, "a", encoding="utf-8")
        self._offset = self._data.tell()

    def record(self, direction: str, raw: bytes, envelope: Envelope) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        self._data.write(raw)
        self._data.flush()
        entry = {
            "seq": self._count, "direction": direction, "kind": envelope.kind, "session": envelope.session,
            "round": envelope.round, "sender": envelope.sender, "receiver": envelope.receiver,
            "offset": self._offset, "length": len(raw), "sha256": hashlib.sha256(raw).hexdigest(),
        }
        self._index.write(json.dumps(entry) + "\n")
        self._index.flush()
        self._offset += len(raw)
        self._count += 1

    def record_refused(self, raw: bytes, envelope: Envelope) -> None:
        """Note a received request that was refused without keeping its bytes (a hostile peer's
        refused messages would otherwise grow the transcript without bound): the index keeps its
        header, size and digest; readers skip it."""
        entry = {
            "seq": self._count, "direction": "received", "kind": envelope.kind, "session": envelope.session,
            "round": envelope.round, "sender": envelope.sender, "receiver": envelope.receiver,
            "refused": True, "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest(),
        }
        self._index.write(json.dumps(entry) + "\n")
        self._index.flush()
        self._count += 1

    def record_alignment(self, session: str, peer: str, handles, ids) -> None:
        """Keep, beside the transcript, how rows were named in ``session`` with ``peer``: the row
        handles and this party's own IDs of those rows (its own knowledge, 0600; it lets the party
        audit itself later, :func:`read_alignment`). Never sent anywhere."""
        handles = np.asarray(handles, dtype=np.int64)
        ids = np.asarray(ids)
        ids = ids.astype(str) if ids.dtype.kind in "OUS" else ids.astype(np.int64)
        path = _alignment_path(self.directory, peer, session)
        write_bytes_atomic(path, lambda fh: np.savez(fh, session=np.array(session), handles=handles, ids=ids))

    def close(self) -> None:
        self._data.close()
        self._index.close()


@dataclass(frozen=True)
class Record:
    """One message in a party's view."""

    seq: int
    direction: str
    kind: str
    session: str
    round: int
    sender: str
    receiver: str
    raw: bytes = field(repr=False)

    @cached_property
    def envelope(self) -> Envelope:
        return decode(self.raw)

    @property
    def payload(self) -> Payload | None:
        """The array or ciphertexts the message carries (residuals or predictions), if any."""
        body = self.envelope.body
        for name in ("residuals", "predictions"):
            if hasattr(body, name):
                return getattr(body, name)
        return None


@dataclass(frozen=True)
class Transcript:
    party: str
    records: tuple[Record, ...]

    def __repr__(self) -> str:  # a notebook shows this; every message's bytes would be tens of KB
        return (f"Transcript({self.party!r}: {len(self.records)} messages, {self.bytes_sent} bytes sent, "
                f"{self.bytes_received} received, sessions {', '.join(self.sessions[-3:])}"
                + (f" (the last 3 of {len(self.sessions)})" if len(self.sessions) > 3 else "") + ")")

    def select(self, kind: str | None = None, direction: str | None = None) -> Iterator[Record]:
        for rec in self.records:
            if (kind is None or rec.kind == kind) and (direction is None or rec.direction == direction):
                yield rec

    def of_session(self, session: str) -> "Transcript":
        """The part of this transcript that belongs to ``session``."""
        return Transcript(self.party, tuple(rec for rec in self.records if rec.session == session))

    def payloads(self, kind: str, direction: str | None = None) -> list[tuple[int, Payload]]:
        """``[(round, payload), ...]`` of every ``kind`` message, in order."""
        return [(rec.round, rec.payload) for rec in self.select(kind, direction)]

    def arrays(self, kind: str, direction: str | None = None) -> list[tuple[int, np.ndarray]]:
        """Like :meth:`payloads`, keeping plaintext arrays only (ciphertexts are skipped)."""
        return [(r, p) for r, p in self.payloads(kind, direction) if isinstance(p, np.ndarray)]

    @property
    def sessions(self) -> tuple[str, ...]:
        """The session IDs this transcript holds, in the order they first appear."""
        return tuple(dict.fromkeys(rec.session for rec in self.records))

    @property
    def bytes_sent(self) -> int:
        return sum(len(r.raw) for r in self.select(direction="sent"))

    @property
    def bytes_received(self) -> int:
        return sum(len(r.raw) for r in self.select(direction="received"))


def read_transcript(directory: Path | str) -> Transcript:
    """Load a party's transcript; raises :class:`ConfigError` when it is missing or corrupt."""
    directory = Path(directory)
    index_path, data_path = directory / INDEX, directory / DATA
    if not index_path.is_file() or not data_path.is_file():
        raise ConfigError(f"{directory} is not a transcript directory (needs {INDEX} and {DATA})")
    data = data_path.read_bytes()
    records = []
    with open(index_path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                e = json.loads(line)
                if e.get("refused") is True:  # a refused request noted without its bytes
                    continue
                start, length = int(e["offset"]), int(e["length"])
                raw = data[start:start + length]
                if start < 0 or len(raw) != length or hashlib.sha256(raw).hexdigest() != e["sha256"]:
                    raise ValueError("message bytes do not match the index")
                if e["direction"] not in DIRECTIONS:
                    raise ValueError(f"bad direction {e['direction']!r}")
                records.append(Record(int(e["seq"]), e["direction"], str(e["kind"]), str(e["session"]),
                                      int(e["round"]), str(e["sender"]), str(e["receiver"]), raw))
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{index_path}:{lineno}: corrupt transcript entry ({exc})") from None
    return Transcript(check_party_name(directory.name), tuple(records))


def _alignment_path(directory: Path | str, peer: str, session: str) -> Path:
    """One file per session (a party process serves many, all in one transcript): session names
    come from the wire, so the file is named by a digest of it."""
    digest = hashlib.sha256(session.encode()).hexdigest()[:16]
    return Path(directory) / f"{ALIGNMENT_PREFIX}{check_party_name(peer)}-{digest}.npz"


def read_alignment(directory: Path | str, peer: str, session: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(handles, ids)``: how a party's rows were named with ``peer`` in ``session`` (written by
    :meth:`TranscriptWriter.record_alignment`), or None when the transcript has no such record.
    (Before 2026-12-04 one file per peer held the latest session only.)"""
    path = _alignment_path(directory, peer, session)
    if not path.is_file():
        path = Path(directory) / f"{ALIGNMENT_PREFIX}{check_party_name(peer)}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["session"]) != session:
                raise ConfigError(f"{path} belongs to session {str(npz['session'])!r}, not {session!r}")
            return np.asarray(npz["handles"], dtype=np.int64), np.asarray(npz["ids"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{path} is unreadable ({exc})") from None


def read_transcripts(run_dir: Path | str) -> dict[str, Transcript]:
    """Every party's transcript under ``run_dir/transcripts``."""
    root = Path(run_dir) / "transcripts"
    if not root.is_dir():
        raise ConfigError(f"{run_dir} has no transcripts/ directory")
    views = {p.name: read_transcript(p) for p in sorted(root.iterdir()) if p.is_dir()}
    sessions: dict[str, list[str]] = {}
    for name, view in views.items():
        for session in view.sessions:
            sessions.setdefault(session, []).append(name)
    if len(sessions) > 1:  # e.g. a party's transcript that kept an earlier run's session
        listed = "; ".join(f"{s}: {', '.join(names)}" for s, names in sessions.items())
        raise ConfigError(f"the transcripts under {root} mix {len(sessions)} sessions ({listed}); an audit reads "
                          "one session: give each run its own transcript directory")
    return views
