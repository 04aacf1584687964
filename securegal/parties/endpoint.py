"""Bytes in, bytes out: a feature party behind any transport, with its transcript."""
from __future__ import annotations

from functools import reduce
from typing import Callable, Sequence

from .. import messages as m
from ..errors import ProtocolError
from ..transcript import TranscriptWriter
from ..wire.codec import DEFAULT_LIMITS, Limits, decode, encode
from .feature_party import FeatureParty, error_reply

UNKNOWN_SESSION = "-"
# A refused request larger than this is noted in the transcript without its bytes, and so is every
# refused request once those kept whole reach REFUSED_KEPT_TOTAL in this process.
REFUSED_KEPT_BYTES = 1 << 16
REFUSED_KEPT_TOTAL = 1 << 24


class PartyEndpoint:
    """Decodes and validates each request, lets the party answer, encodes the reply.

    Every message that decodes is recorded in the party's transcript, both ways; a refused
    request over ``REFUSED_KEPT_BYTES``, or beyond ``REFUSED_KEPT_TOTAL`` of them, only by its
    header, size and digest. Undecodable input gets an error reply and changes nothing.
    """

    def __init__(self, party: FeatureParty, transcript: TranscriptWriter | None = None, limits: Limits = DEFAULT_LIMITS,
                 middleware: Sequence[Callable] = ()):
        self.party = party
        # each middleware wraps the handler: (Envelope -> Body) -> (Envelope -> Body)
        self._handle = reduce(lambda handle, wrap: wrap(handle), middleware, party.handle)
        self.transcript = transcript
        self.limits = limits
        self._seq = 0
        self._refused_kept = 0  # bytes of refused requests kept whole in the transcript

    @property
    def name(self) -> str:
        return self.party.name

    def handle(self, data: bytes) -> bytes:
        try:
            request = decode(data, self.limits)
        except ProtocolError as exc:
            return self._send(UNKNOWN_SESSION, 0, "unknown", m.ErrorReply("protocol", str(exc)))
        try:
            body = self._handle(request)
        except Exception as exc:  # a party must answer every request; the reply says what failed
            body = error_reply(exc)
        if self.transcript is not None:
            refused = isinstance(body, m.ErrorReply)
            if refused and (len(data) > REFUSED_KEPT_BYTES or self._refused_kept + len(data) > REFUSED_KEPT_TOTAL):
                self.transcript.record_refused(bytes(data), request)
            else:
                self._refused_kept += len(data) if refused else 0
                self.transcript.record("received", bytes(data), request)
        if isinstance(body, m.PsiSelectionAck) and self.transcript is not None:
            handles, ids = self.party.alignment()
            self.transcript.record_alignment(request.session, request.sender, handles, ids)
        return self._send(request.session, request.round, request.sender, body)

    def _send(self, session: str, round: int, receiver: str, body: m.Body) -> bytes:
        env = m.Envelope(session, round, self.party.name, receiver, self._seq, body)
        self._seq += 1
        raw = encode(env)
        if self.transcript is not None and session != UNKNOWN_SESSION:
            self.transcript.record("sent", raw, env)
        return raw

    def close(self) -> None:
        self.party.close()
        if self.transcript is not None:
            self.transcript.close()
