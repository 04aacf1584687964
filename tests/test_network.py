"""Networked federation: separate processes on 127.0.0.1 with real certificates (mutual TLS)."""
import json
import signal
import time

import numpy as np
import pytest

from securegal import messages as m
from securegal.certs import init_federation
from securegal.data.tables import FeatureTable
from securegal.errors import ConfigError, ProtocolError
from securegal.learners.linear import LinearLearner
from securegal.localnet import LocalFederation, federation_config, party_config
from securegal.network import FederationConfig, PartyConfig, train_federation
from securegal.parties.feature_party import RESUME_BITS, FeatureParty
from securegal.parties.layers import PlainTrainer
from securegal.run import train

FAST_RETRY = {"attempts": 3, "timeout": 30.0, "backoff": 0.05, "backoff_max": 0.2}


def same_values(a: dict, b: dict) -> None:
    a, b = (json.loads(json.dumps({k: v for k, v in d.items() if k != "seconds"})) for d in (a, b))
    assert a == b


@pytest.fixture(scope="module")
def reference():
    """The embedded (in-process) run the networked runs must reproduce."""
    return {T: train("breast_cancer", parties=4, rounds=T, seed=0) for T in (10, 30)}


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
def test_party_killed_mid_run_is_dropped(tmp_path):
    with LocalFederation(tmp_path, parties=4, rounds=6, seed=0, transport=FAST_RETRY) as fed:
        cfg = FederationConfig.load(fed.federation_toml)

        def kill_after(result):
            if result.round == 2:
                fed.kill("party3")

        metrics = train_federation(cfg, on_round=kill_after)
        assert fed.processes["party3"].returncode == -signal.SIGKILL
    gal = metrics["gal"]
    assert "stopped" not in gal and len(metrics["weights"]) == 6
    assert gal["absent_per_round"] == [[], []] + [["party3"]] * 4
    assert all(w[3] == 0.0 for w in metrics["weights"][2:]) and metrics["weights"][1][3] >= 0
    assert gal["missing_at_predict"] == ["party3"]


@pytest.mark.slow
def test_too_few_parties_stops_cleanly(tmp_path):
    with LocalFederation(tmp_path, parties=3, rounds=5, seed=0, transport=FAST_RETRY, min_parties=3) as fed:
        def kill_after(result):
            if result.round == 2:
                fed.kill("party2")

        metrics = train_federation(FederationConfig.load(fed.federation_toml), on_round=kill_after)
    assert "round 3: only 2 parties answered, --min-parties is 3" in metrics["gal"]["stopped"]
    assert len(metrics["weights"]) == 2 and len(metrics["gal"]["per_round"]) == 2
    assert metrics["gal"]["missing_at_predict"] == ["party2"]
    assert (fed.out / "metrics.json").exists() and (fed.out / "checkpoint" / "F_0002.npy").exists()


@pytest.mark.slow
def test_label_owner_killed_and_resumed(tmp_path, reference):
    with LocalFederation(tmp_path, parties=4, rounds=30, seed=0, transport=FAST_RETRY) as fed:
        owner = fed.label_owner()
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
        assert 3 <= done < 30, f"label owner was killed after {done} rounds"
        assert not (fed.out / "metrics.json").exists()
        metrics = train_federation(FederationConfig.for_resume(fed.out), resume=True)
        assert json.loads(state.read_text())["epoch"] == 1
    same_values(metrics, reference[30])


def test_party_answers_a_resumed_label_owner_with_the_kept_reply(rng):
    table = FeatureTable(np.arange(30), rng.normal(size=(30, 3)))
    fits = []

    class Counting(PlainTrainer):
        def fit_round(self, round, residuals):
            fits.append(round)
            return super().fit_round(round, residuals)

    party = FeatureParty("bob", table, lambda s: Counting(LinearLearner()), label_owner="alice")
    env = lambda body, seq, round=0: m.Envelope("s", round, "alice", "bob", seq, body)
    party.handle(env(m.Setup(np.arange(30), 1, 3, "regression"), 0))
    first = party.handle(env(m.FitRequest(rng.normal(size=(30, 1))), 1, round=1))
    with pytest.raises(ProtocolError, match="already done"):  # same incarnation: refused
        party.handle(env(m.FitRequest(rng.normal(size=(30, 1))), 2, round=1))
    again = party.handle(env(m.FitRequest(rng.normal(size=(30, 1))), 1 << RESUME_BITS, round=1))
    assert again is first and fits == [1]
    with pytest.raises(ProtocolError, match="replayed"):
        party.handle(env(m.FitRequest(rng.normal(size=(30, 1))), 1 << RESUME_BITS, round=2))


def test_config_errors(tmp_path):
    certs = tmp_path / "certs"
    init_federation(certs, ["alice", "party1"])
    data = {"dataset": "breast_cancer", "parties": 2, "block": 1}
    good = party_config("party1", data=data, learner_seed=1, certs=certs, transcripts=None)
    (tmp_path / "p.toml").write_text(good)
    assert PartyConfig.load(tmp_path / "p.toml").table.n_features == 15
    for text, match in [
        (good + "\ncolour = 1\n", "unknown keys"),
        (good.replace("party1.pem", "alice.pem").replace("party1.key", "alice.key"), "names organization 'alice'"),
        (party_config("party1", data=data, learner_seed=1, certs=None, transcripts=None, listen="0.0.0.0:0"), None),
        (good.replace('"block" = 1', "").replace("block = 1", "block = 0"), "block must be"),
        (good.replace('[privacy]\nresiduals = "plain"', '[privacy]\nresiduals = "ckks"'), "not available"),
        (good.replace("seed = 1", 'seed = "one"'), "wrong type"),
    ]:
        (tmp_path / "bad.toml").write_text(text)
        if match is None:  # insecure parses, but serving it off loopback is refused
            from securegal.network import serve_party
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
    with pytest.raises(ConfigError, match="missing 'tls'"):
        PartyConfig.load(tmp_path / "p.toml")
    assert PartyConfig.load(tmp_path / "p.toml", insecure=True).tls.insecure
    certs = tmp_path / "certs"
    init_federation(certs, ["party1"])
    (tmp_path / "tls.toml").write_text(party_config("party1", data=data, learner_seed=1, certs=certs, transcripts=None))
    assert main(["party", "serve", "--config", str(tmp_path / "tls.toml"), "--insecure"]) == 2
    assert "contradicts" in capsys.readouterr().err
    assert main(["train", "--dataset", "iris", "--insecure"]) == 2
