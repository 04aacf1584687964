"""ECDH private set intersection between the label owner (client) and one feature party (server).

1. The label owner (IDs X, fresh secret a) sends ``PsiRequest`` = {[a] H(x)}.
2. The party (IDs Y, fresh secret b) replies ``PsiReply`` = {[b][a] H(x)} in request order, and
   {[b] H(y)} with a random per-session handle per row, in ascending handle order (a uniformly
   random order, since handles come from the CSPRNG).
3. The label owner computes {[a][b] H(y)} and matches: for each of its IDs, the party's row
   handle, or none. It tells the party which handles it uses (``PsiSelection``).

The party learns |X|, and which of its own rows are used once told; it never sees an ID it
does not hold, nor an unkeyed hash of one. Raw IDs stay in the owning process (and its worker
processes) and are never logged. Secrets are drawn per session and dropped after use. Every
step is a pure message-producing method: transport, transcripts and ordering belong to the
caller. ``align_in_process`` runs both roles through the wire codec (tests, bench, embedded).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .. import messages as m
from ..errors import ConfigError, ProtocolError
from ..wire import codec
from . import group
from .ids import canonical_ids
from .workers import Workers

P = group.POINT_BYTES
MAX_SESSION_CHARS = codec.MAX_PSI_SESSION_CHARS
Progress = Callable[[int], None]


def _check_session(session: str) -> str:
    if not isinstance(session, str) or not 1 <= len(session) <= MAX_SESSION_CHARS:
        raise ConfigError(f"PSI session id must be a string of 1..{MAX_SESSION_CHARS} characters, got {session!r}")
    return session


def _points_view(packed: bytes) -> np.ndarray:
    """Packed points as a 1-D array of 32-byte strings (equal length, so numpy's string
    comparison is byte equality)."""
    return np.frombuffer(packed, dtype=f"S{P}")


def _match(mine: bytes, theirs: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the equal points of two packed lists (each list's points are distinct).

    Matched on each point's first 8 bytes (a uint64 view: a quarter of the memory and time of
    sorting 32-byte strings), then every match is confirmed on all 32 bytes. Should two points of
    one list share their first 8 bytes (about 2^-24 at 1M points), the whole points are used."""
    a, b = (np.frombuffer(x, dtype="<u8")[::P // 8] for x in (mine, theirs))
    if len(np.unique(a)) != len(a) or len(np.unique(b)) != len(b):
        _, i, j = np.intersect1d(_points_view(mine), _points_view(theirs), return_indices=True)
        return i, j
    _, i, j = np.intersect1d(a, b, assume_unique=True, return_indices=True)
    same = _points_view(mine)[i] == _points_view(theirs)[j]
    return i[same], j[same]


def _random_handles(n: int) -> np.ndarray:
    """``n`` distinct uniform 63-bit handles from the CSPRNG, in ascending order."""
    handles = np.unique(np.frombuffer(group.csprng_bytes(8 * n), dtype="<u8") >> np.uint64(1)).astype(np.int64)
    while len(handles) < n:  # a collision among 2^63 values: draw the missing ones again
        extra = np.frombuffer(group.csprng_bytes(8 * (n - len(handles))), dtype="<u8") >> np.uint64(1)
        handles = np.unique(np.concatenate([handles, extra.astype(np.int64)]))
    return handles


@dataclass(frozen=True)
class OwnerAlignment:
    """The label owner's result with one party: ``handles[i]`` is the party's row handle for the
    label owner's i-th ID, or -1 where the party does not hold it; ``party_handles`` are all the
    party's row handles, ascending (|Y| of them)."""

    handles: np.ndarray
    party_handles: np.ndarray

    @property
    def party_rows(self) -> int:
        return len(self.party_handles)

    @property
    def matched(self) -> np.ndarray:
        return self.handles >= 0

    @property
    def positions(self) -> np.ndarray:
        """For each of the label owner's IDs, the position of the party's row among
        ``party_handles`` (-1 where the party does not hold it): how a vector over all the
        party's rows (hidden membership) lines up with the label owner's rows."""
        out = np.searchsorted(self.party_handles, self.handles)
        return np.where(self.matched, out, -1)

    def selection_all(self) -> m.PsiSelection:
        """Hidden membership: the selection names every row of the party, so it tells the party
        nothing about which rows matched."""
        return m.PsiSelection(self.party_handles.copy())

    def selection(self, rows: np.ndarray | None = None) -> m.PsiSelection:
        """The message telling the party which of its rows are used: the handles matched to the
        label owner's ``rows`` (indices into its IDs; default every matched one), sorted so that
        the label owner's own order does not travel."""
        if rows is None:
            chosen = self.handles[self.matched]
        else:
            chosen = self.handles[np.asarray(rows, dtype=np.int64)]
            if (chosen < 0).any():
                raise ConfigError(f"{int((chosen < 0).sum())} selected rows are not held by the party")
        return m.PsiSelection(np.sort(chosen))


@dataclass(frozen=True)
class PartyAlignment:
    """The party's result: its ``rows`` (indices into its own table, ascending) that the label
    owner uses, their ``handles``, and the size of the label owner's set."""

    rows: np.ndarray
    handles: np.ndarray
    label_owner_rows: int


class LabelOwnerPsi:
    """The label owner's side of one PSI session with one feature party (the client: it learns
    the matching). Use a new instance, and so new secrets, for every party and session."""

    def __init__(self, ids: Sequence, session: str, workers: Workers | None = None):
        self.session = _check_session(session)
        self.id_kind, self._ids = canonical_ids(ids)
        self._workers = workers or Workers(1)
        self._secret: bytes | None = group.new_scalar()
        self._sent: bytes | None = None

    @property
    def n(self) -> int:
        return len(self._ids)

    def request(self, progress: Progress | None = None) -> m.PsiRequest:
        """Step 1: {[a] H(x)} in the label owner's order."""
        if self._sent is not None or self._secret is None:
            raise ProtocolError("this PSI session already sent its request")
        chunks = self._workers.map_chunks(group.hash_and_blind, self._ids, group.hash_prefix(self.session),
                                          self._secret, progress=progress)
        self._sent = b"".join(chunks)
        return m.PsiRequest(self.session, self.id_kind, self._sent)

    def finish(self, reply: m.PsiReply, progress: Progress | None = None) -> OwnerAlignment:
        """Step 3: check the reply, raise the party's points to a, match, and forget a."""
        if self._sent is None or self._secret is None:
            raise ProtocolError("a PSI reply arrived before the request was sent, or twice")
        if len(reply.blinded) != len(self._sent):
            raise ProtocolError(f"PSI reply answers {len(reply.blinded) // P} points, the request held {self.n}")
        handles = np.asarray(reply.handles, dtype=np.int64)
        if len(reply.points) != P * len(handles) or len(np.unique(handles)) != len(handles) or (handles < 0).any():
            raise ProtocolError("PSI reply needs one unique non-negative handle per point")
        group.check(reply.blinded, 0)  # compared only: canonical encodings, checked in one vectorised pass
        theirs = b"".join(self._workers.map_chunks(group.blind, reply.points, self._secret, item_bytes=P,
                                                   progress=progress))
        self._secret, self._sent = None, b""
        mine_at, theirs_at = _match(reply.blinded, theirs)
        out = np.full(self.n, -1, dtype=np.int64)
        out[mine_at] = handles[theirs_at]
        return OwnerAlignment(out, np.sort(handles))


class FeaturePartyPsi:
    """A feature party's side of one PSI session (the server: it learns |X| and, when told,
    which of its own rows are used). Its own policy: it answers at most ``max_request`` points
    and refuses a selection of fewer than ``min_rows`` rows."""

    def __init__(self, ids: Sequence, session: str, workers: Workers | None = None, *, min_rows: int = 1,
                 max_request: int = 1 << 24):
        if min_rows < 1 or max_request < 1:
            raise ConfigError(f"need min_rows >= 1 and max_request >= 1, got {min_rows}, {max_request}")
        self.min_rows, self.max_request = min_rows, max_request
        self.session = _check_session(session)
        self.id_kind, self._ids = canonical_ids(ids)
        self._workers = workers or Workers(1)
        self._secret: bytes | None = group.new_scalar()
        self._order: np.ndarray | None = None  # row index of each handle, ascending handle order
        self._handles: np.ndarray | None = None
        self._points: bytes | None = None
        self.label_owner_rows: int | None = None

    @property
    def n(self) -> int:
        return len(self._ids)

    def prepare(self, progress: Progress | None = None) -> None:
        """{[b] H(y)} and the row handles; may run before the request arrives (in parallel with
        the label owner's step 1). ``respond`` calls it if needed."""
        if self._points is not None:
            return
        if self._secret is None:
            raise ProtocolError("this PSI session has already answered")
        handles = _random_handles(self.n)           # ascending
        order = np.argsort(np.frombuffer(group.csprng_bytes(8 * self.n), dtype="<u8"), kind="stable")
        ids = [self._ids[i] for i in order.tolist()]  # rows in a uniformly random order
        chunks = self._workers.map_chunks(group.hash_and_blind, ids, group.hash_prefix(self.session), self._secret,
                                          progress=progress)
        self._points, self._handles, self._order = b"".join(chunks), handles, order

    def respond(self, request: m.PsiRequest, progress: Progress | None = None) -> m.PsiReply:
        """Step 2: {[b][a] H(x)} in request order, and this party's {[b] H(y)} with handles."""
        if request.session != self.session:
            raise ProtocolError(f"PSI request is for session {request.session!r}, this party expects {self.session!r}")
        if request.id_kind != self.id_kind:
            raise ProtocolError(f"the label owner's IDs are {request.id_kind} values and this party's are "
                                f"{self.id_kind} values: no row could match")
        if len(request.points) % P or not request.points:
            raise ProtocolError("PSI request must hold at least one whole point")
        if len(request.points) // P > self.max_request:
            raise ProtocolError(f"PSI request holds {len(request.points) // P} points; this party answers at most "
                                f"{self.max_request}")
        self.prepare(progress)
        if self._secret is None:
            raise ProtocolError("this PSI session has already answered")
        blinded = b"".join(self._workers.map_chunks(group.blind, request.points, self._secret, item_bytes=P,
                                                    progress=progress))
        self._secret = None
        self.label_owner_rows = len(request.points) // P
        points, self._points = self._points, b""
        return m.PsiReply(blinded, points, self._handles)

    @property
    def row_handles(self) -> np.ndarray:
        """This session's handle of each of the party's rows, in table order: key the party's
        feature table by these and later requests can name rows by handle."""
        if self._handles is None or self.label_owner_rows is None:
            raise ProtocolError("row handles exist only after the PSI reply")
        out = np.empty_like(self._handles)
        out[self._order] = self._handles
        return out

    def rows_of(self, handles: np.ndarray) -> np.ndarray:
        """This party's row indices for ``handles`` (in that order); unknown handles are a
        ProtocolError. For every later message that names rows by handle."""
        if self._handles is None or self.label_owner_rows is None:
            raise ProtocolError("row handles exist only after the PSI reply")
        handles = np.asarray(handles, dtype=np.int64)
        pos = np.clip(np.searchsorted(self._handles, handles), 0, len(self._handles) - 1)
        unknown = self._handles[pos] != handles
        if unknown.any():
            raise ProtocolError(f"{int(unknown.sum())} row handles are not this party's for this session")
        return self._order[pos]

    def select(self, selection: m.PsiSelection) -> PartyAlignment:
        """Step 4: the rows the label owner uses (answer with ``PsiSelectionAck(len(rows))``)."""
        handles = np.asarray(selection.handles, dtype=np.int64)
        if len(np.unique(handles)) != len(handles):
            raise ProtocolError("PSI selection names a row handle twice")
        if len(handles) == 0:
            raise ProtocolError("the label owner selected none of this party's rows: no ID in common")
        if len(handles) < self.min_rows:
            raise ProtocolError(f"the label owner selected {len(handles)} of this party's rows; its min_rows is "
                                f"{self.min_rows}")
        rows = self.rows_of(handles)
        keep = np.argsort(rows, kind="stable")
        return PartyAlignment(rows[keep], handles[keep], int(self.label_owner_rows))


def common_rows(alignments: Sequence[OwnerAlignment], min_rows: int = 1) -> np.ndarray:
    """Indices of the label owner's IDs held by every party (the training rows); ConfigError
    when fewer than ``min_rows`` remain."""
    if not alignments:
        raise ConfigError("need at least one party's alignment")
    keep = np.flatnonzero(np.logical_and.reduce([a.matched for a in alignments]))
    if len(keep) < min_rows:
        held = ", ".join(str(int(a.matched.sum())) for a in alignments)
        raise ConfigError(f"{len(keep)} IDs are held by the label owner and every party (need {min_rows}; "
                          f"per party: {held})")
    return keep


def _wire(body: m.Body, sender: str, receiver: str, session: str) -> m.Body:
    """Through the codec, as over a network: encode then decode and validate."""
    return codec.decode(codec.encode(m.Envelope(session, 0, sender, receiver, 0, body))).body


def align_in_process(owner_ids: Sequence, party_ids: Sequence, session: str, workers: Workers | None = None,
                     progress: Progress | None = None) -> tuple[OwnerAlignment, PartyAlignment]:
    """Both roles in one process, every message through the wire codec; the party's step 1
    (hashing its own rows) runs concurrently with the label owner's."""
    owner = LabelOwnerPsi(owner_ids, session, workers)
    party = FeaturePartyPsi(party_ids, session, workers)
    failure: list[BaseException] = []

    def prepare():
        try:
            party.prepare(progress)
        except BaseException as exc:  # re-raised below, in the caller's thread
            failure.append(exc)

    side = threading.Thread(target=prepare, name="psi-party-prepare")
    side.start()
    try:
        request = _wire(owner.request(progress), "label_owner", "party", session)
    finally:
        side.join()
    if failure:
        raise failure[0]
    reply = _wire(party.respond(request, progress), "party", "label_owner", session)
    mine = owner.finish(reply, progress)
    theirs = party.select(_wire(mine.selection(), "label_owner", "party", session))
    return mine, theirs
