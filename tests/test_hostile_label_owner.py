"""What an independent fuzzing run of real party servers found (benchmarks/wire_fuzz.py), each
pinned here with its reproducer: every one is now a clean refusal, and the party keeps serving."""
import queue
import re
import threading
import time

import grpc
import numpy as np
import pytest

from securegal import messages as m
from securegal.deploy.party_process import PartyConfig, build_party
from securegal.errors import ProtocolError
from securegal.transport.frames import FrameLimits, split
from securegal.transport.grpc_server import METHOD_PATH, PartyServer
from securegal.wire.codec import MAX_NAME_CHARS, decode, encode

from .test_table_budget import H, _align, _open, _party_file, _send


def test_a_zero_size_does_not_let_another_size_be_anything():
    """A FitRequest whose tensor is float64 of shape [0, 2^63-1] with no data: the element count
    is 0, and numpy's reshape raised ValueError past the codec (no ErrorReply at all)."""
    raw = bytes.fromhex("080112017318012205616c6963652a067061727479313001621b0a190a170a07666c6f61743634120a00"
                        "ffffffffffffffff7f1a00")
    with pytest.raises(ProtocolError, match=r"tensor shape \(0, 9223372036854775807\) is invalid"):
        decode(raw)


def test_names_on_the_wire_are_bounded_so_refusals_cannot_echo_megabytes():
    """Finish messages with 4 MiB session ids were echoed (twice) in refusals, 8 MiB each."""
    long = "s" * (MAX_NAME_CHARS + 1)
    for field in ("session", "sender", "receiver"):
        env = dict(session="s1", round=0, sender="alice", receiver="party1", seq=0, body=m.Finish())
        env[field] = long
        with pytest.raises(ProtocolError, match=f"envelope {field} has {MAX_NAME_CHARS + 1} characters"):
            decode(encode(m.Envelope(**env)))
    setup = m.Setup(np.arange(3), 1, 1, "regression", options={"k": "v" * 5000})
    with pytest.raises(ProtocolError, match="setup options value has 5000 characters"):
        decode(encode(m.Envelope("s1", 0, "alice", "party1", 0, setup)))


def test_session_and_party_names_are_printable_and_fit_the_ledger():
    """Review H F1, F2: a 250-character session id passed the wire (256) but not the DP party's
    ledger (200), answered 'internal'; '\n' and escape sequences in a session id forged lines in
    the party's log. One rule (messages.MAX_NAME_CHARS, printable) for the wire and the ledger."""
    from securegal.privacy.dp.ledger import _MAX_NAME

    assert MAX_NAME_CHARS == _MAX_NAME == m.MAX_NAME_CHARS
    for name, why in (("x\n2026-12-05T08:00:00Z WARNING forged", "control characters"),
                      ("y\x1b[2J", "control characters"), ("s" * (MAX_NAME_CHARS + 1), "characters, at most")):
        for field in ("session", "sender", "receiver"):
            env = dict(session="s1", round=0, sender="alice", receiver="party1", seq=0, body=m.Finish())
            env[field] = name
            with pytest.raises(ProtocolError, match=f"envelope {field} .*{re.escape(why)}"):
                decode(encode(m.Envelope(**env)))
    assert decode(encode(m.Envelope("s" * MAX_NAME_CHARS, 0, "alice", "party1", 0, m.Finish()))).session


def _party(tmp_path, privacy=None):
    return build_party(PartyConfig.load(_party_file(tmp_path, privacy)))


def test_finish_after_alignment_before_setup_is_answered_by_a_dp_party(tmp_path):
    """It answered `internal` (AttributeError: the privacy report asked a trainer not yet built)."""
    endpoint = _party(tmp_path, {"epsilon": 1.0})
    from securegal.align import LabelOwnerPsi

    psi = LabelOwnerPsi(list(range(569)), "s0")
    psi.finish(_send(endpoint, 0, psi.request(), session="s0"))
    reply = _send(endpoint, 1, m.Finish(), session="s0")
    assert isinstance(reply, m.FinishAck) and "privacy" not in reply.info
    endpoint.close()


def test_rounds_beyond_the_setup_and_huge_residuals_are_refused(tmp_path):
    """A plain party answered rounds 3, 4, 100 and 2^32-1 of a 2-round session (keeping every
    model: memory unbounded), and residuals of 1e308 gave `internal` (cho_solve on infinities)."""
    endpoint = _party(tmp_path)
    seq = _open(endpoint, "s0", 2)
    huge = _send(endpoint, seq, m.FitRequest(np.full((300, 2), 1e308)), round=1, session="s0")
    assert isinstance(huge, m.ErrorReply) and huge.code == "protocol" and "at most 1e+12" in huge.message
    for t in (1, 2):
        assert isinstance(_send(endpoint, seq + t, m.FitRequest(np.zeros((300, 2))), round=t, session="s0"), m.FitReply)
    for t, extra in ((3, 3), (2 ** 32 - 1, 4)):
        reply = _send(endpoint, seq + extra, m.FitRequest(np.zeros((300, 2))), round=t, session="s0")
        assert isinstance(reply, m.ErrorReply) and reply.code == "protocol"
        assert f"round {t}, but this session was set up for 2" in reply.message
    endpoint.close()


def test_a_stalled_call_is_cancelled_and_the_server_keeps_serving():
    """Four calls that sent frame 0 of 2 and waited blocked the server's four workers for as long
    as they stalled; a call whose next frame is late is now cancelled."""
    limits = FrameLimits(chunk_bytes=64, max_message_bytes=4096)
    server = PartyServer(lambda data: data[::-1], "127.0.0.1:0", insecure=True, limits=limits, idle_timeout=0.5)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = channel.stream_stream(METHOD_PATH)
    first = next(iter(split("ab", b"x" * 100, limits))).SerializeToString()  # frame 0 of 2
    release = threading.Event()
    outcomes = queue.Queue()

    def stalled():
        def frames():
            yield first
            release.wait(30)
        try:
            list(stub(frames(), timeout=30))
            outcomes.put("answered")
        except grpc.RpcError as exc:
            outcomes.put(exc.code())

    threads = [threading.Thread(target=stalled, daemon=True) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.2)
        good = [f.SerializeToString() for f in split("cd", b"still alive", limits)]
        start = time.monotonic()
        assert b"".join(list(stub(iter(good), timeout=10))) != b""
        assert time.monotonic() - start < 8  # served once the stalled calls were cancelled (0.5 s late frames)
        assert [outcomes.get(timeout=10) for _ in threads] == [grpc.StatusCode.CANCELLED] * 4
    finally:
        release.set()
        channel.close()
        server.stop()


def test_an_oversized_reply_is_refused_and_not_kept():
    """The reply cache kept 8 MiB refusals before the size check refused to send them."""
    limits = FrameLimits(chunk_bytes=64, max_message_bytes=256)
    server = PartyServer(lambda data: data * 4, "127.0.0.1:0", insecure=True, limits=limits).start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        stub = channel.stream_stream(METHOD_PATH)
        with pytest.raises(grpc.RpcError) as info:
            list(stub(iter([f.SerializeToString() for f in split("ef", b"y" * 200, limits)]), timeout=10))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert len(server._replies) == 0
    finally:
        channel.close()
        server.stop()


def test_a_setup_whose_round_models_would_pass_the_memory_bound_is_refused(tmp_path):
    """60 rounds of 26,188 outputs grew a plain party by 406 MiB (its limit 4 MiB a message; here
    60 x 26,188 x 16 x 8 bytes for its 15 columns):
    the round models (rounds x outputs x (columns + 1) coefficients) are bounded at setup."""
    path = _party_file(tmp_path, limits={"max_message_bytes": 4 << 20})
    endpoint = build_party(PartyConfig.load(path))
    assert _align(endpoint, "s0") == 2
    reply = _send(endpoint, 2, m.Setup(H("s0", np.arange(20)), 26188, 60, "regression"), session="s0")
    assert isinstance(reply, m.ErrorReply) and reply.code == "protocol"
    assert "the round models alone would take 201123840 bytes, over this party's bound" in reply.message
    assert "4 x max_message_bytes = 16777216" in reply.message
    endpoint.close()


def test_a_caller_that_never_reads_its_reply_is_cancelled():
    """Found by review: the stall watchdog watched only incoming frames; four calls that sent a
    request and never read their 32 MiB replies blocked the server's four workers."""
    limits = FrameLimits(chunk_bytes=1 << 20, max_message_bytes=64 << 20)
    server = PartyServer(lambda data: b"z" * (32 << 20) if data == b"big" else b"ok", "127.0.0.1:0",
                         insecure=True, limits=limits, idle_timeout=0.5).start()
    channels = [grpc.insecure_channel(f"127.0.0.1:{server.port}") for _ in range(5)]
    try:
        unread = [c.stream_stream(METHOD_PATH)(iter([f.SerializeToString() for f in split(f"a{i}", b"big", limits)]))
                  for i, c in enumerate(channels[:4])]
        time.sleep(1.5)
        start = time.monotonic()
        small = channels[4].stream_stream(METHOD_PATH)(
            iter([f.SerializeToString() for f in split("ff", b"small", limits)]), timeout=8)
        assert len(list(small)) == 1 and time.monotonic() - start < 4
        for call in unread:
            call.cancel()
    finally:
        for c in channels:
            c.close()
        server.stop(0)
