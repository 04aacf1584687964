"""The contract every privacy layer passes: a federation runs, every message validates, tampering
and replays are refused without changing state, and the report is JSON-serializable."""
import json

import numpy as np
import pytest

from securegal import messages as m
from securegal.data.datasets import load_dataset
from securegal.data.split import split_rows, vertical_split
from securegal.errors import PartyRefused
from securegal.deploy.embedded import EmbeddedDeployment
from securegal.deploy.federation import GalJob, TargetScaler, run_method
from securegal.transcript import read_transcripts
from securegal.wire.codec import decode

from .contracts import LAYERS, TOLERANCE


@pytest.fixture(params=sorted(LAYERS))
def layer(request):
    return request.param


def _owner(name, tmp_path, rounds=3, dataset="breast_cancer"):
    plan = LAYERS[name]()
    data = load_dataset(dataset)
    split = split_rows(data, 0, 0.2, 0.1)
    plan.check(learner="linear", loss=data.loss, n_train=len(split.train), rounds=rounds)
    job = GalJob.from_plan(plan, dataset=data, n_train=len(split.train), parties=3, rounds=rounds, learner="linear",
                           seed=0, scaler=TargetScaler.fit(data, data.y[split.train]))
    owner = EmbeddedDeployment().build(job, data, split, vertical_split(data, 3), run_dir=tmp_path)
    return owner, data, split


def test_federation_runs_and_messages_validate(layer, tmp_path):
    owner, data, split = _owner(layer, tmp_path)
    result = run_method(owner, data, split, TargetScaler())
    assert len(result.per_round) == 3 and np.isfinite(result.per_round).all()
    if result.multipliers:  # feature-DP: uniform weights scaled by the multipliers fitted on validation rows
        scale = [result.multipliers[p] for p in result.parties]
        assert np.allclose(result.weights, np.array(scale) / len(scale))
    else:
        assert np.allclose(np.sum(result.weights, axis=1), 1.0)
    for view in read_transcripts(tmp_path).values():
        for rec in view.records:
            assert decode(rec.raw).kind == rec.kind
    json.dumps(owner.channel.report())


def test_predictions_match_plain_within_the_layer_tolerance(layer, tmp_path):
    tol = TOLERANCE[layer]
    if tol is None:
        pytest.skip("a noising layer does not reproduce plain predictions")
    owner, data, split = _owner(layer, tmp_path / "layer")
    plain_owner, _, _ = _owner("plain", tmp_path / "plain")
    for o in (owner, plain_owner):
        o.setup()
        o.fit()
    a, b = owner.predict_rounds(split.test), plain_owner.predict_rounds(split.test)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_tampering_and_replay_are_refused_without_changing_state(layer, tmp_path):
    owner, _, _ = _owner(layer, tmp_path)
    owner.setup()
    owner.fit()  # rounds 1..3 done
    peer = owner.peers[0]
    bogus = m.FitRequest(np.zeros((3, 3)))  # wrong shape for any layer
    out = owner.messenger.exchange(4, {peer: bogus})[peer]
    assert isinstance(out, PartyRefused) and out.code == "protocol"
    replay = owner.messenger.exchange(3, {peer: m.FitRequest(owner.channel.seal(np.zeros((owner.n, owner.k)), 3, peer))})[peer]
    assert isinstance(replay, PartyRefused) and "already done" in replay.message
    # the party still serves predictions for the rounds it really fitted (on rows outside the
    # training set: training rows are refused by the parties' default policy)
    held_out = np.setdiff1d(np.arange(owner.train_ids.max() + 1), owner.train_ids)[:5]
    assert len(held_out) == 5
    preds = owner.predict_rounds(held_out)
    assert preds.shape == (4, 5, owner.k) and np.isfinite(preds).all()
