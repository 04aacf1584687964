import numpy as np
import pytest

from securegal import messages as m
from securegal.data.tables import FeatureTable
from securegal.errors import ProtocolError
from securegal.learners.linear import LinearLearner
from securegal.parties.endpoint import PartyEndpoint
from securegal.parties.feature_party import FeatureParty
from securegal.privacy.plain import PlainTrainer
from securegal.wire.codec import decode, encode


@pytest.fixture
def party(rng):
    table = FeatureTable(np.arange(50), rng.normal(size=(50, 3)))
    return FeatureParty("bob", table, lambda s: PlainTrainer(LinearLearner()), label_owner="alice")


def env(body, seq, round=0, session="s1", sender="alice", receiver="bob"):
    return m.Envelope(session, round, sender, receiver, seq, body)


SETUP = m.Setup(np.arange(40), 2, 3, "classification")


def test_happy_path(party, rng):
    party.handle(env(SETUP, 0))
    reply = party.handle(env(m.FitRequest(rng.normal(size=(40, 2))), 1, round=1))
    assert reply.predictions.shape == (40, 2)
    with pytest.raises(ProtocolError, match="predict request for 2 rounds; this session fitted 1"):
        party.handle(env(m.PredictRequest(np.arange(40, 50), 2), 2))  # round 2 not fitted yet
    preds = party.handle(env(m.PredictRequest(np.arange(40, 50), 1), 3)).predictions
    assert preds.shape == (1, 10, 2)
    assert isinstance(party.handle(env(m.Finish(), 4)), m.FinishAck)


@pytest.mark.parametrize("msgs,match", [
    ([env(m.FitRequest(np.zeros((40, 2))), 0, round=1)], "before setup"),
    ([env(SETUP, 0), env(m.FitRequest(np.zeros((40, 2))), 1, round=1, session="other")], "session"),
    ([env(SETUP, 0), env(m.FitRequest(np.zeros((40, 2))), 0, round=1)], "replayed"),
    ([env(SETUP, 0), env(m.FitRequest(np.zeros((40, 2))), 1, round=1), env(m.FitRequest(np.zeros((40, 2))), 2, round=1)], "already done"),
    ([env(SETUP, 0), env(m.FitRequest(np.zeros((39, 2))), 1, round=1)], "shape"),
    ([env(SETUP, 0), env(m.FitRequest(np.zeros((40, 2), dtype=np.int64)), 1, round=1)], "floating"),
    ([env(m.Setup(np.array([1, 999]), 2, 3, "classification"), 0)], "unknown"),
    ([env(SETUP, 0, sender="mallory")], "label owner"),
    ([env(SETUP, 0, receiver="carol")], "reached party"),
    ([env(SETUP, 0), env(SETUP, 1)], "still open"),
    ([env(m.Setup(np.arange(40), 2, 3, "classification", residuals="ckks"), 0)], "plain residuals"),
    ([env(SETUP, 0), env(m.FitReply(np.zeros((40, 2))), 1)], "does not accept"),
])
def test_protocol_violations_are_refused(party, msgs, match):
    *ok, bad = msgs
    for e in ok:
        party.handle(e)
    with pytest.raises(ProtocolError, match=match):
        party.handle(bad)


def test_endpoint_answers_garbage_with_an_error_and_records_valid_traffic(party, tmp_path):
    from securegal.transcript import TranscriptWriter, read_transcript

    ep = PartyEndpoint(party, TranscriptWriter(tmp_path / "bob", "bob"))
    reply = decode(ep.handle(b"\x08\xff\xff garbage"))
    assert isinstance(reply.body, m.ErrorReply) and reply.body.code == "protocol"
    reply = decode(ep.handle(encode(env(m.FitRequest(np.zeros((40, 2))), 0, round=1))))
    assert reply.body.code == "protocol" and "before setup" in reply.body.message
    decode(ep.handle(encode(env(SETUP, 0))))
    ep.close()
    t = read_transcript(tmp_path / "bob")
    assert [(r.direction, r.kind) for r in t.records] == [
        ("received", "fit_request"), ("sent", "error"), ("received", "setup"), ("sent", "setup_ack")]
