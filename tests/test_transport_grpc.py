"""gRPC transport on 127.0.0.1 with real certificates made once per test session."""
import logging
import socket
import threading
import time

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securegal.transport.certs import Identity, init_federation
from securegal.errors import ConfigError, PartyRefused, PartyUnavailable, ProtocolError
from securegal.transport.frames import FrameLimits, split
from securegal.transport.grpc_client import GrpcTransport, RetryPolicy
from securegal.transport.grpc_server import METHOD_PATH, PartyServer

FAST = RetryPolicy(attempts=3, timeout=5.0, backoff=0.05, backoff_max=0.2)
CHUNKED = FrameLimits(chunk_bytes=4096, max_message_bytes=1 << 20)


@pytest.fixture(scope="session")
def federation(tmp_path_factory):
    d = tmp_path_factory.mktemp("federation")
    init_federation(d, ["alice", "party1", "party2"])
    return d


@pytest.fixture(scope="session")
def rogue(tmp_path_factory):
    """Same organization names, signed by a different CA."""
    d = tmp_path_factory.mktemp("rogue")
    init_federation(d, ["alice", "party1"])
    return d


def ident(d, name):
    return Identity.from_dir(d, name)


class Echo:
    """Reverses the request; counts how often it was asked."""

    def __init__(self, delay=0.0):
        self.calls, self.delay = 0, delay

    def __call__(self, data: bytes) -> bytes:
        self.calls += 1
        time.sleep(self.delay)
        return data[::-1]


@pytest.fixture
def party1(federation):
    handler = Echo()
    with PartyServer(handler, identity=ident(federation, "party1"), limits=CHUNKED) as server:
        server.handler_spy = handler
        yield server


def client(identity, servers, **kw):
    kw.setdefault("retry", FAST)
    kw.setdefault("limits", CHUNKED)
    return GrpcTransport({name: f"127.0.0.1:{s.port}" for name, s in servers.items()}, identity=identity, **kw)


def test_mutual_tls_round_trip_in_chunks(federation, party1):
    t = client(ident(federation, "alice"), {"party1": party1})
    payload = bytes(range(256)) * 100  # 25,600 bytes: 7 frames each way
    try:
        assert t.call_many({"party1": payload}) == {"party1": payload[::-1]}
        assert t.call_many({"party1": b""}) == {"party1": b""}
    finally:
        t.close()
    assert party1.handler_spy.calls == 2


def test_a_reply_longer_than_its_limit_is_cut_at_its_first_frame(federation):
    """An oversized reply was received whole (up to the 1 GiB message limit) before the label
    owner refused it (review W F6): the first frame announces its size, and the call stops there."""
    class Flood:
        def __call__(self, data: bytes) -> bytes:
            return b"x" * 500_000

    with PartyServer(Flood(), identity=ident(federation, "party1"), limits=CHUNKED) as server:
        t = client(ident(federation, "alice"), {"party1": server})
        try:
            cut = t.call_many({"party1": b"hi"}, reply_limits={"party1": 10_000})["party1"]
            whole = t.call_many({"party1": b"hi"}, reply_limits={"party1": 500_000})["party1"]
        finally:
            t.close()
    assert isinstance(cut, ProtocolError)
    assert str(cut) == "reply from 'party1': message of 500000 bytes exceeds the limit of 10000"
    assert whole == b"x" * 500_000  # a reply within its limit is received as before


def test_client_with_certificate_from_another_ca_is_rejected(federation, rogue, party1):
    t = client(ident(rogue, "alice"), {"party1": party1})
    try:
        reply = t.call_many({"party1": b"hello"})["party1"]
    finally:
        t.close()
    assert isinstance(reply, PartyUnavailable)
    assert party1.handler_spy.calls == 0


def test_server_with_certificate_from_another_ca_is_rejected(federation, rogue):
    handler = Echo()
    with PartyServer(handler, identity=ident(rogue, "party1")) as impostor:
        t = client(ident(federation, "alice"), {"party1": impostor})
        try:
            assert isinstance(t.call_many({"party1": b"labels"})["party1"], PartyUnavailable)
        finally:
            t.close()
    assert handler.calls == 0


def test_server_must_be_the_party_we_called(federation):
    """party2's genuine certificate does not pass for party1: refused at once, naming what is wrong
    (it was retried as if party1 were down, with gRPC's "Hostname Verification Check failed": review B)."""
    handler = Echo()
    with PartyServer(handler, identity=ident(federation, "party2")) as party2:
        t = client(ident(federation, "alice"), {"party1": party2})
        try:
            reply = t.call_many({"party1": b"x"})["party1"]
        finally:
            t.close()
    assert isinstance(reply, PartyRefused) and reply.code == "tls"
    assert f"the server at 127.0.0.1:{party2.port} presents a certificate that does not name 'party1'" in str(reply)
    assert handler.calls == 0


def test_only_the_label_owner_may_call(federation, party1):
    t = client(ident(federation, "party2"), {"party1": party1})
    try:
        reply = t.call_many({"party1": b"x"})["party1"]
    finally:
        t.close()
    assert isinstance(reply, PartyRefused) and reply.code == "permission_denied"
    assert party1.handler_spy.calls == 0


def test_oversize_request_rejected_by_server(federation, party1):
    generous = FrameLimits(chunk_bytes=4096, max_message_bytes=4 << 20)
    t = client(ident(federation, "alice"), {"party1": party1}, limits=generous)
    try:
        reply = t.call_many({"party1": b"z" * ((1 << 20) + 1)})["party1"]
        with pytest.raises(ProtocolError, match="exceeds the limit"):
            t.call("party1", b"z" * ((4 << 20) + 1))  # refused before anything is sent
    finally:
        t.close()
    assert isinstance(reply, ProtocolError) and "exceeds the limit" in str(reply)
    assert party1.handler_spy.calls == 0


def test_oversize_reply_rejected_by_client(federation):
    with PartyServer(lambda b: b * 100, identity=ident(federation, "party1"), limits=CHUNKED) as server:
        t = client(ident(federation, "alice"), {"party1": server}, limits=FrameLimits(4096, 50_000))
        try:
            assert isinstance(t.call_many({"party1": b"q" * 1000})["party1"], ProtocolError)
        finally:
            t.close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_party_that_stays_down(federation, party1):
    t = GrpcTransport({"party1": f"127.0.0.1:{party1.port}", "party2": f"127.0.0.1:{free_port()}"},
                      identity=ident(federation, "alice"), retry=FAST, limits=CHUNKED)
    try:
        start = time.monotonic()
        replies = t.call_many({"party1": b"ok", "party2": b"ok"})
        elapsed = time.monotonic() - start
    finally:
        t.close()
    assert replies["party1"] == b"ko"
    assert isinstance(replies["party2"], PartyUnavailable) and "after 3 attempts" in str(replies["party2"])
    assert elapsed >= FAST.delay(0) + FAST.delay(1)  # it did back off between attempts
    assert elapsed < 4


@pytest.mark.parametrize("second", ["127.0.0.1", "localhost", "0.0.0.0"])
def test_a_second_server_cannot_share_a_partys_port(federation, party1, second):
    """Not with SO_REUSEPORT, and not on the other address family of a name: ``localhost`` used to
    start on ::1 beside a party listening on 127.0.0.1."""
    address = f"{second}:{party1.port}"
    with pytest.raises(ConfigError, match=f"cannot listen on '{address}'") as info:
        PartyServer(Echo(), address, identity=ident(federation, "party2"))
    assert "\n" not in str(info.value)


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 on this machine")
def test_localhost_is_refused_when_the_port_is_taken_on_ipv6_loopback(federation):
    """gRPC resolves ``localhost`` to both loopbacks itself, whatever the system's resolver says."""
    with socket.socket(socket.AF_INET6) as taken:
        taken.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            taken.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback")
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} is in use at ::1"):
            PartyServer(Echo(), f"localhost:{port}", identity=ident(federation, "party2"))


def test_party_back_before_retries_run_out(federation):
    port = free_port()
    handler = Echo()
    late = threading.Timer(0.4, lambda: servers.append(
        PartyServer(handler, f"127.0.0.1:{port}", identity=ident(federation, "party1")).start()))
    servers = []
    patient = RetryPolicy(attempts=8, timeout=5.0, backoff=0.1, backoff_max=0.5)
    t = GrpcTransport({"party1": f"127.0.0.1:{port}"}, identity=ident(federation, "alice"), retry=patient)
    late.start()
    try:
        assert t.call("party1", b"abc") == b"cba"
    finally:
        t.close()
        late.join()
        for s in servers:
            s.stop()


def test_slow_reply_is_retried_without_a_second_request(federation):
    """The first attempt times out; the retry carries the same message id and gets the kept reply."""
    handler = Echo(delay=0.6)
    with PartyServer(handler, identity=ident(federation, "party1")) as server:
        retry = RetryPolicy(attempts=5, timeout=0.4, backoff=0.05, backoff_max=0.1)
        t = client(ident(federation, "alice"), {"party1": server}, retry=retry)
        try:
            assert t.call("party1", b"slow") == b"wols"
        finally:
            t.close()
    assert handler.calls == 1


def test_per_call_timeout(federation):
    with PartyServer(Echo(delay=0.5), identity=ident(federation, "party1")) as server:
        t = client(ident(federation, "alice"), {"party1": server}, retry=RetryPolicy(attempts=1, timeout=30))
        try:
            assert isinstance(t.call_many({"party1": b"x"}, timeout=0.1)["party1"], PartyUnavailable)
        finally:
            t.close()


def test_insecure_only_on_loopback(caplog):
    with pytest.raises(ConfigError, match="only allowed on loopback"):
        PartyServer(Echo(), "0.0.0.0:0", insecure=True)
    with pytest.raises(ConfigError, match="only allowed on loopback"):
        GrpcTransport({"party1": "10.1.2.3:5000"}, insecure=True)
    with pytest.raises(ConfigError, match="identity"):
        PartyServer(Echo(), "127.0.0.1:0")
    with caplog.at_level(logging.WARNING):
        with PartyServer(Echo(), "127.0.0.1:0", insecure=True) as server:
            t = GrpcTransport({"party1": f"127.0.0.1:{server.port}"}, insecure=True, retry=FAST)
            try:
                assert t.call("party1", b"ab") == b"ba"
            finally:
                t.close()
    assert sum("INSECURE" in r.message for r in caplog.records) >= 2


@pytest.fixture(scope="module")
def raw_server():
    """A live server and a raw stub that sends arbitrary bytes as frames."""
    handler = Echo()
    limits = FrameLimits(chunk_bytes=64, max_message_bytes=512)
    server = PartyServer(handler, "127.0.0.1:0", insecure=True, limits=limits).start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield channel.stream_stream(METHOD_PATH), handler, limits
    channel.close()
    server.stop()


@settings(max_examples=150, deadline=None)
@given(chunks=st.lists(st.binary(max_size=100), max_size=5))
def test_fuzz_server_with_random_frames(raw_server, chunks):
    """Garbage on the wire gets INVALID_ARGUMENT (or a valid answer), never a crash or a hang."""
    stub, handler, limits = raw_server
    try:
        list(stub(iter(chunks), timeout=5))
    except grpc.RpcError as exc:
        assert exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED), exc.details()
    good = [f.SerializeToString() for f in split("aa", b"still alive", limits)]
    assert len(list(stub(iter(good), timeout=5))) == 1


def test_a_party_that_went_away_is_asked_once_per_call_until_it_answers_again(federation, party1, caplog):
    """A dead party cost every later round the whole retry backoff and two warnings (268 rounds
    took 90 s instead of 8 and logged 316 warnings: review B F7)."""
    t = client(ident(federation, "alice"), {"party1": party1}, retry=RetryPolicy(attempts=4, timeout=5.0,
                                                                                 backoff=0.01, backoff_max=0.01))
    real, calls = t._calls["party1"], []

    class Down(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.UNAVAILABLE

        def details(self):
            return "connection refused"

    def gone(*args, **kwargs):
        calls.append(1)
        raise Down()

    try:
        t._calls["party1"] = gone
        with caplog.at_level(logging.INFO, logger="securegal.transport.grpc_client"):
            first = t.call_many({"party1": b"r1"})["party1"]
            second = t.call_many({"party1": b"r2"})["party1"]
            assert isinstance(first, PartyUnavailable) and isinstance(second, PartyUnavailable)
            assert len(calls) == 4 + 1 and "after 1 attempt (" in str(second)
            t._calls["party1"] = real  # back
            assert t.call_many({"party1": b"hello"}) == {"party1": b"olleh"}
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len([w for w in warnings if "did not answer" in w]) == 1 and "party party1 answers again" in warnings
        t._calls["party1"] = gone
        t.call_many({"party1": b"r3"})
        assert len(calls) == 5 + 4  # answering again, it gets every attempt again
    finally:
        t.close()


def test_kept_replies_are_bounded_by_bytes_as_well_as_by_count():
    """Code review L6: eight kept replies of up to max_message_bytes each (1 GiB by default)."""
    from securegal.transport.grpc_server import ReplyCache

    cache = ReplyCache(items=8, max_bytes=100)
    for i in range(3):
        cache.put(("alice", f"m{i}"), b"x" * 60)
    assert len(cache) == 2 and cache.get(("alice", "m0")) is None and cache.get(("alice", "m2")) == b"x" * 60
    assert cache.nbytes == 120  # 60 beside the newest 60
    cache.put(("alice", "big"), b"y" * 500)  # the newest is always kept, whatever its size
    assert len(cache) == 2 and cache.get(("alice", "big")) and cache.nbytes == 560  # and 60 beside it
    for i in range(20):
        cache.put(("alice", f"s{i}"), b"z")
    assert len(cache) == 8 and cache.nbytes == 8
