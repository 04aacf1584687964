"""Messenger.exchange_each: replies handed over one at a time, in process before the next request."""
from securegal import messages as m
from securegal.parties.messenger import Messenger
from securegal.transport.inprocess import InProcessTransport
from securegal.wire.codec import DEFAULT_LIMITS, decode, encode


def _acking(name: str, events: list):
    def handle(raw: bytes) -> bytes:
        env = decode(raw, DEFAULT_LIMITS)
        events.append(f"{name} called")
        return encode(m.Envelope(env.session, env.round, name, env.sender, env.seq, m.FinishAck(info={"party": name})))
    return handle


def test_in_process_each_reply_is_consumed_before_the_next_party_is_asked():
    events: list[str] = []
    transport = InProcessTransport({p: _acking(p, events) for p in ("p1", "p2", "p3")})
    collected = []
    messenger = Messenger("alice", "s", transport, middleware=[lambda out: collected.append(dict(out)) or out])
    for party, reply in messenger.exchange_each(1, {p: m.Finish() for p in ("p1", "p2", "p3")}):
        assert isinstance(reply, m.FinishAck) and reply.info["party"] == party
        events.append(f"{party} consumed")
    assert events == ["p1 called", "p1 consumed", "p2 called", "p2 consumed", "p3 called", "p3 consumed"]
    assert [list(out) for out in collected] == [["p1"], ["p2"], ["p3"]]  # the middleware sees each alone
    whole = messenger.exchange(2, {p: m.Finish() for p in ("p1", "p2")})
    assert list(whole) == ["p1", "p2"] and list(collected[-1]) == ["p1", "p2"]


def test_an_unknown_party_comes_back_as_its_error():
    messenger = Messenger("alice", "s", InProcessTransport({}))
    [(party, outcome)] = list(messenger.exchange_each(1, {"ghost": m.Finish()}))
    assert party == "ghost" and isinstance(outcome, Exception) and "ghost" in str(outcome)


def test_a_fit_reply_larger_than_the_request_allows_is_refused_before_it_is_decoded():
    """A party answered a 6 KB fit request with a well-formed 256 MiB reply: the label owner
    decoded, copied and recorded it before its shape was checked (about 4 bytes of memory per
    byte sent; review W F6). A reply is bounded by what its channel says the request allows."""
    import numpy as np

    from securegal.errors import ProtocolError
    from securegal.parties.messenger import REPLY_SLACK_BYTES

    def huge(raw: bytes) -> bytes:
        env = decode(raw, DEFAULT_LIMITS)
        return encode(m.Envelope(env.session, env.round, "p1", env.sender, env.seq,
                                 m.FitReply(np.zeros((REPLY_SLACK_BYTES // 8 + 1000, 1)))))

    messenger = Messenger("alice", "s", InProcessTransport({"p1": huge}))
    [(party, outcome)] = list(messenger.exchange_each(1, {"p1": m.FitRequest(np.zeros((10, 2)))}, {"p1": 8 * 20}))
    assert isinstance(outcome, ProtocolError)
    assert f"a reply to this request takes at most {8 * 20 + REPLY_SLACK_BYTES}" in str(outcome)
    assert isinstance(next(messenger.exchange_each(2, {"p1": m.FitRequest(np.zeros((REPLY_SLACK_BYTES // 8, 1)))},
                                                   {"p1": REPLY_SLACK_BYTES}))[1],
                      m.FitReply)  # within the bound: decoded as before


def test_the_transport_is_told_each_replys_limit():
    """A transport that receives replies in parts (gRPC frames) stops at the first part that
    announces more than the request allows; the messenger tells it the limit per party."""
    from securegal.parties.messenger import REPLY_SLACK_BYTES

    told = []

    class Concurrent(InProcessTransport):
        sequential = False

        def call_many(self, requests, reply_limits=None):
            told.append(dict(reply_limits or {}))
            return super().call_many(requests)

    messenger = Messenger("alice", "s", Concurrent({p: _acking(p, []) for p in ("p1", "p2")}))
    messenger.exchange(1, {"p1": m.Finish(), "p2": m.Finish()}, {"p1": 80})
    messenger.exchange(2, {"p1": m.Finish(), "p2": m.Finish()})
    assert told == [{"p1": 80 + REPLY_SLACK_BYTES}, {}]
