"""Label-owner side of the wire: envelopes out through a transport, replies checked on the way in."""
from __future__ import annotations

from typing import Callable, Iterator, Mapping, Sequence, Union

from .. import messages as m
from ..errors import ProtocolError, error_from_reply
from ..transcript import TranscriptWriter
from ..transport.base import Transport
from ..wire.codec import DEFAULT_LIMITS, Limits, decode, encode

Outcome = Union[m.Body, Exception]
# Beyond a reply's payload (the most its channel says it can take), room for its envelope and
# info map (a DP party's privacy report).
REPLY_SLACK_BYTES = 4 << 20
# Reply middleware: sees (and may replace) each exchange's outcomes, e.g. to collect privacy reports.
ReplyMiddleware = Callable[[dict], dict]


class Messenger:
    """Sends one request per party and returns each party's validated reply or the exception
    that stands in for it (unavailable, refused, malformed)."""

    def __init__(self, name: str, session: str, transport: Transport,
                 transcript: TranscriptWriter | None = None, limits: Limits = DEFAULT_LIMITS, first_seq: int = 0,
                 middleware: Sequence[ReplyMiddleware] = ()):
        self.name, self.session, self.transport = name, session, transport
        self.transcript, self.limits = transcript, limits
        self.middleware = tuple(middleware)
        self._seq = first_seq  # a resumed label owner starts above every seq its earlier run could have used

    @property
    def next_seq(self) -> int:
        return self._seq

    def exchange(self, round: int, requests: Mapping[str, m.Body],
                 payload_bytes: Mapping[str, int] | None = None) -> dict[str, Outcome]:
        """Every party's outcome, after the middleware (which sees them all at once).
        ``payload_bytes``: per party, the most bytes its reply's payload can take (the request says
        how many values come back); a larger reply is refused before it is decoded, copied or
        recorded."""
        out = dict(self._outcomes(round, requests, payload_bytes))
        for step in self.middleware:
            out = step(out)
        return out

    def exchange_each(self, round: int, requests: Mapping[str, m.Body],
                      payload_bytes: Mapping[str, int] | None = None) -> Iterator[tuple[str, Outcome]]:
        """:meth:`exchange` one outcome at a time, as (party, outcome) pairs the messenger does not
        keep: a consumer that lets each go before taking the next holds one reply at a time (n x K
        predictions per party and round; in process the next request is sent only then). The
        middleware sees each outcome alone, as a one-entry mapping."""
        for party, outcome in self._outcomes(round, requests, payload_bytes):
            out = {party: outcome}
            for step in self.middleware:
                out = step(out)
            yield party, out[party]

    def _outcomes(self, round: int, requests: Mapping[str, m.Body],
                  payload_bytes: Mapping[str, int] | None) -> Iterator[tuple[str, Outcome]]:
        bounds = payload_bytes or {}
        expected = {party: (m.REPLY_TO[type(body)],
                            bounds[party] + REPLY_SLACK_BYTES if party in bounds else None)
                    for party, body in requests.items()}
        if getattr(self.transport, "sequential", False):
            # The parties answer one after another anyway (in process): send one request at a time,
            # so only one request's and one reply's bytes (n x K per round) are alive at once.
            for party, body in requests.items():
                limit = {party: expected[party][1]} if expected[party][1] is not None else None
                raw = self.transport.call_many({party: self._encode(round, party, body)}, limit).get(party)
                yield party, self._outcome(raw, party, round, expected[party])
        else:
            wire = {party: self._encode(round, party, body) for party, body in requests.items()}
            raw_replies = self.transport.call_many(wire, {p: b for p, (_, b) in expected.items() if b is not None})
            del wire  # the requests' bytes go before the replies are decoded
            for party in requests:  # each reply's bytes are let go once decoded
                yield party, self._outcome(raw_replies.pop(party, None), party, round, expected[party])

    def _encode(self, round: int, party: str, body: m.Body) -> bytes:
        env = m.Envelope(self.session, round, self.name, party, self._seq, body)
        self._seq += 1
        raw = encode(env)
        if self.transcript is not None:
            self.transcript.record("sent", raw, env)
        return raw

    def _outcome(self, raw, party: str, round: int, expected: tuple[type, int | None]) -> Outcome:
        kind, bound = expected
        if raw is None:
            return ProtocolError(f"no reply slot for {party!r}")
        if isinstance(raw, Exception):
            return raw
        if bound is not None and len(raw) > bound:  # refused before it is decoded, copied or recorded
            return ProtocolError(f"reply from {party!r} is {len(raw)} bytes; a reply to this request takes at most "
                                 f"{bound}")
        return self._check(raw, party, round, kind)

    def _check(self, raw: bytes, party: str, round: int, expected: type) -> Outcome:
        try:
            env = decode(raw, self.limits)
        except ProtocolError as exc:
            return ProtocolError(f"reply from {party!r}: {exc}")
        if env.session != self.session or env.sender != party or env.receiver != self.name or env.round != round:
            return ProtocolError(f"reply from {party!r} does not match the request "
                                 f"(session {env.session!r}, sender {env.sender!r}, round {env.round})")
        if self.transcript is not None:
            self.transcript.record("received", raw, env)
        if isinstance(env.body, m.ErrorReply):
            return error_from_reply(party, env.body.code, env.body.message)
        if not isinstance(env.body, expected):
            return ProtocolError(f"{party!r} answered {env.kind}, expected {m.KINDS[expected]}")
        return env.body

    def record_alignment(self, party: str, handles, ids) -> None:
        """Keep beside our transcript how ``party`` names our rows ``ids`` in this session."""
        if self.transcript is not None:
            self.transcript.record_alignment(self.session, party, handles, ids)

    def close(self) -> None:
        self.transport.close()
        if self.transcript is not None:
            self.transcript.close()

