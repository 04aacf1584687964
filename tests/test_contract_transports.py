"""The contract every transport passes: bytes reach the named party and its reply comes back
unchanged, an unknown or absent party yields PartyUnavailable in its slot, and a federation over
the transport gives the same model as in-process."""
import numpy as np
import pytest

from securegal import messages as m
from securegal.data.tables import FeatureTable
from securegal.errors import PartyUnavailable
from securegal.learners.linear import LinearLearner
from securegal.parties.endpoint import PartyEndpoint
from securegal.parties.feature_party import FeatureParty
from securegal.privacy.plain import PlainTrainer
from securegal.wire.codec import decode, encode

from .contracts import TRANSPORTS


def _endpoints(names, rng):
    table = FeatureTable(np.arange(30), rng.normal(size=(30, 2)))
    return {n: PartyEndpoint(FeatureParty(n, table, lambda s: PlainTrainer(LinearLearner()), label_owner="alice"))
            for n in names}


@pytest.fixture(params=sorted(TRANSPORTS))
def make_transport(request, tmp_path):
    cleanups = []

    def make(endpoints):
        transport, cleanup = TRANSPORTS[request.param](endpoints, tmp_path)
        cleanups.append((transport, cleanup))
        return transport

    yield make
    for transport, cleanup in cleanups:
        transport.close()
        cleanup()


def test_requests_reach_their_party_and_replies_come_back(make_transport, rng):
    transport = make_transport(_endpoints(["bob", "carol"], rng))
    reqs = {n: encode(m.Envelope("s", 0, "alice", n, 0, m.Setup(np.arange(20), 1, 2, "regression"))) for n in ("bob", "carol")}
    replies = transport.call_many(reqs)
    for n in ("bob", "carol"):
        env = decode(replies[n])
        assert env.sender == n and isinstance(env.body, m.SetupAck)


def test_an_unknown_party_is_unavailable_in_its_slot(make_transport, rng):
    transport = make_transport(_endpoints(["bob"], rng))
    req = encode(m.Envelope("s", 0, "alice", "zed", 0, m.Finish()))
    out = transport.call_many({"zed": req, "bob": encode(m.Envelope("s", 0, "alice", "bob", 0, m.Finish()))})
    assert isinstance(out["zed"], PartyUnavailable)
    assert isinstance(out["bob"], bytes)


def test_garbage_gets_a_protocol_error_reply(make_transport, rng):
    transport = make_transport(_endpoints(["bob"], rng))
    env = decode(transport.call_many({"bob": b"\x00\x01garbage"})["bob"])
    assert isinstance(env.body, m.ErrorReply) and env.body.code == "protocol"
