"""Networked federation: separate processes on 127.0.0.1 with real certificates (mutual TLS)."""
import json
import signal
import time

import numpy as np
import pytest

from securegal import messages as m
from securegal.transport.certs import init_federation
from securegal.data.tables import FeatureTable
from securegal.errors import ConfigError, ProtocolError
from securegal.learners.linear import LinearLearner
from securegal.deploy.localnet import LocalFederation, federation_config, party_config
from securegal.deploy.networked import FederationConfig, train_federation
from securegal.deploy.party_process import PartyConfig
from securegal.parties.feature_party import RESUME_BITS, FeatureParty
from securegal.privacy.plain import PlainTrainer
from securegal.run import train

FAST_RETRY = {"attempts": 3, "timeout": 30.0, "backoff": 0.05, "backoff_max": 0.2}


def same_values(a: dict, b: dict) -> None:
    a, b = (json.loads(json.dumps({k: v for k, v in d.items() if k not in ("seconds", "deployment")})) for d in (a, b))
    assert a == b


@pytest.fixture(scope="module")
def reference():
    """The embedded (in-process) run the networked runs must reproduce."""
    return {T: train("breast_cancer", parties=4, rounds=T, seed=0) for T in (10, 16)}


@pytest.mark.slow
def test_networked_run_matches_in_process(tmp_path, reference):
    with LocalFederation(tmp_path, parties=4, rounds=10, seed=0, transport=FAST_RETRY) as fed:
        metrics = train_federation(FederationConfig.load(fed.federation_toml))
        codes = fed.stop(grace=60.0)
    same_values(metrics, reference[10])
    assert codes == {"party1": 0, "party2": 0, "party3": 0}  # --once: each exits after the session
    assert json.loads((fed.out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    for party in ("alice", "party1", "party2", "party3"):
        assert (fed.out / "transcripts" / party / "index.jsonl").stat().st_size > 0


@pytest.mark.slow
def test_networked_ckks_matches_in_process(tmp_path):
    """CKKS noise (about 1e-7 here) differs between any two runs, in-process or not: the scores are
    identical, weights and steps agree to CKKS precision."""
    from securegal.privacy.plan import PrivacyPlan

    ref = train("breast_cancer", parties=4, rounds=4, seed=0, plan=PrivacyPlan(residuals="ckks"))
    with LocalFederation(tmp_path, parties=4, rounds=4, seed=0, transport=FAST_RETRY, residuals="ckks") as fed:
        metrics = train_federation(FederationConfig.load(fed.federation_toml))
        kept = (fed.out / "metrics.json").read_text()
        with pytest.raises(ConfigError, match="finished .* kept as it is"):  # a finished run is never redone
            train_federation(FederationConfig.for_resume(fed.out), resume=True)
        assert (fed.out / "metrics.json").read_text() == kept
        (fed.out / "metrics.json").unlink()  # as if the label owner had died before the end
        with pytest.raises(ConfigError, match="cannot resume a ckks run"):
            train_federation(FederationConfig.for_resume(fed.out), resume=True)
    assert metrics["residuals"] == "ckks" and metrics["he"]["bytes_sent"] > 1e6
    assert metrics["gal"]["per_round"] == ref["gal"]["per_round"]
    assert metrics["gal"]["validation_per_round"] == ref["gal"]["validation_per_round"]
    np.testing.assert_allclose(metrics["weights"], ref["weights"], atol=1e-5)
    np.testing.assert_allclose(metrics["eta"], ref["eta"], atol=1e-5)


@pytest.mark.slow
def test_killed_parties_are_dropped_until_too_few_remain(tmp_path):
    """party3 dies after round 2: weight 0 from round 3 on, the run goes on (3 >= min_parties);
    party2 dies after round 4: only 2 parties answer round 5, so the run stops cleanly."""
    with LocalFederation(tmp_path, parties=4, rounds=8, seed=0, transport=FAST_RETRY, min_parties=3) as fed:
        def kill(result):
            if result.round in (2, 4):
                fed.kill({2: "party3", 4: "party2"}[result.round])

        metrics = train_federation(FederationConfig.load(fed.federation_toml), on_round=kill)
        assert fed.processes["party3"].returncode == -signal.SIGKILL
    gal = metrics["gal"]
    assert "round 5: only 2 parties answered, --min-parties is 3" in gal["stopped"]
    assert len(metrics["weights"]) == 4 and len(gal["per_round"]) == 4
    assert gal["absent_per_round"] == [[], [], ["party3"], ["party3"]]
    assert all(w[3] == 0.0 for w in metrics["weights"][2:])
    assert gal["missing_at_predict"] == ["party2", "party3"]
    assert (fed.out / "metrics.json").exists() and (fed.out / "checkpoint" / "F_0004.npy").exists()


@pytest.mark.slow
def test_label_owner_killed_and_resumed(tmp_path, reference):
    """Started with ``--rounds 16`` over a file of 12 rounds: the resumed run keeps the flag."""
    with LocalFederation(tmp_path, parties=4, rounds=12, seed=0, transport=FAST_RETRY) as fed:
        owner = fed.label_owner("--rounds", "16")
        state = fed.out / "checkpoint" / "state.json"
        seen = 0
        deadline = time.monotonic() + 120
        while seen < 3 and time.monotonic() < deadline and owner.poll() is None:
            if state.exists():
                seen = len(json.loads(state.read_text())["rounds"])
            time.sleep(0.005)
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        done = len(json.loads(state.read_text())["rounds"])
        assert 3 <= done < 16, f"label owner was killed after {done} rounds"
        assert not (fed.out / "metrics.json").exists()
        metrics = train_federation(FederationConfig.for_resume(fed.out), resume=True)
        assert json.loads(state.read_text())["epoch"] == 1
        assert json.loads(state.read_text())["overrides"] == {"rounds": 16}
    same_values(metrics, reference[16])


def _resumed_round_one(party, rng):
    """Round 1, then round 1 again from a restarted label owner (a new seq epoch): both replies."""
    env = lambda body, seq, round=0: m.Envelope("s", round, "alice", "bob", seq, body)  # noqa: E731
    party.handle(env(m.Setup(np.arange(30), 1, 3, "regression"), 0))
    first = party.handle(env(m.FitRequest(rng.normal(size=(30, 1))), 1, round=1))
    with pytest.raises(ProtocolError, match="already done"):  # same incarnation: refused
        party.handle(env(m.FitRequest(rng.normal(size=(30, 1))), 2, round=1))
    again = party.handle(env(m.FitRequest(rng.normal(size=(30, 1))), 1 << RESUME_BITS, round=1))
    with pytest.raises(ProtocolError, match="replayed"):
        party.handle(env(m.FitRequest(rng.normal(size=(30, 1))), 1 << RESUME_BITS, round=2))
    return first, again


@pytest.mark.parametrize("local_loss", ["l2", "l1"])
def test_party_answers_a_resumed_label_owner_with_the_same_reply_recomputed(rng, local_loss):
    """A plain party keeps the round's model, not its n x K train predictions: asked again, it
    recomputes exactly the reply it sent, without a second fit."""
    table = FeatureTable(np.arange(30), rng.normal(size=(30, 3)))
    fits = []

    class Counting(PlainTrainer):
        def fit_round(self, round, residuals):
            fits.append(round)
            return super().fit_round(round, residuals)

    party = FeatureParty("bob", table, lambda s: Counting(LinearLearner(local_loss=local_loss)), label_owner="alice")
    first, again = _resumed_round_one(party, rng)
    assert callable(party._last_fit)  # no predictions held between rounds
    np.testing.assert_array_equal(again.predictions, first.predictions)
    assert fits == [1]


def test_a_trainer_that_cannot_recompute_its_reply_has_it_kept(rng):
    """A trainer without ``train_predictions`` (DP noise, ciphertexts: a recomputation would be a
    second release) gets the very reply it sent."""
    table = FeatureTable(np.arange(30), rng.normal(size=(30, 3)))

    class Noisy:
        def setup(self, X, setup):
            self.n = X.shape[0]

        def fit_round(self, round, residuals):
            return rng.normal(size=(self.n, 1))

    party = FeatureParty("bob", table, lambda s: Noisy(), label_owner="alice")
    first, again = _resumed_round_one(party, rng)
    assert again is first


def test_config_errors(tmp_path):
    certs = tmp_path / "certs"
    init_federation(certs, ["alice", "party1"])
    data = {"dataset": "breast_cancer", "parties": 2, "block": 1}
    good = party_config("party1", data=data, learner_seed=1, certs=certs, transcripts=None)
    (tmp_path / "p.toml").write_text(good)
    assert PartyConfig.load(tmp_path / "p.toml").table.n_features == 15
    for text, match in [
        (good + "\ncolour = 1\n", "tls.colour: unknown key"),
        (good.replace("party1.pem", "alice.pem").replace("party1.key", "alice.key"), "names organization 'alice'"),
        (party_config("party1", data=data, learner_seed=1, certs=None, transcripts=None, listen="0.0.0.0:0"), None),
        (good.replace('"block" = 1', "").replace("block = 1", "block = 0"), "data.block"),
        (good.replace('[privacy]\nresiduals = "plain"', '[privacy]\nresiduals = "paillier"'), "privacy.residuals: .*got 'paillier'"),
        (good.replace("seed = 1", 'seed = "one"'), "learner.seed: .*got 'one'"),
    ]:
        (tmp_path / "bad.toml").write_text(text)
        if match is None:  # insecure parses, but serving it off loopback is refused
            from securegal.deploy.party_process import serve_party
            with pytest.raises(ConfigError, match="loopback"):
                serve_party(PartyConfig.load(tmp_path / "bad.toml"))
            continue
        with pytest.raises(ConfigError, match=match):
            PartyConfig.load(tmp_path / "bad.toml")
    fed = federation_config(data={"dataset": "breast_cancer"}, peers={"party1": "127.0.0.1:1"}, rounds=2, seed=0,
                            out=tmp_path / "run", certs=certs)
    (tmp_path / "f.toml").write_text(fed)
    assert FederationConfig.load(tmp_path / "f.toml").parties == 2
    with pytest.raises(ConfigError, match="min_parties"):
        FederationConfig.load(tmp_path / "f.toml", min_parties=3)
    with pytest.raises(ConfigError, match="no usable checkpoint"):
        FederationConfig.for_resume(tmp_path / "run")


def test_insecure_flag(tmp_path, capsys):
    from securegal.cli import main

    data = {"dataset": "breast_cancer", "parties": 2, "block": 1}
    (tmp_path / "p.toml").write_text(party_config("party1", data=data, learner_seed=1, certs=None, transcripts=None)
                                     .replace("[tls]\ninsecure = true\n", ""))
    with pytest.raises(ConfigError, match=r"missing \[tls\]"):
        PartyConfig.load(tmp_path / "p.toml")
    assert PartyConfig.load(tmp_path / "p.toml", insecure=True).tls.insecure
    certs = tmp_path / "certs"
    init_federation(certs, ["party1"])
    (tmp_path / "tls.toml").write_text(party_config("party1", data=data, learner_seed=1, certs=certs, transcripts=None))
    assert main(["party", "serve", "--config", str(tmp_path / "tls.toml"), "--insecure"]) == 2
    assert "contradicts" in capsys.readouterr().err
    assert main(["train", "--dataset", "iris", "--insecure"]) == 2
