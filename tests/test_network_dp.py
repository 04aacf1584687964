"""DP feature parties in the networked mode: party.toml [privacy] budgets, reports, refusal."""
import json
import queue
import threading
from contextlib import contextmanager

import pytest

from securegal.errors import ConfigError, PartyRefused
from securegal.deploy.localnet import federation_config, party_config
from securegal.deploy.networked import FederationConfig, train_federation
from securegal.deploy.party_process import PartyConfig, serve_party
from securegal.privacy.dp.accountant import epsilon_of
from securegal.privacy.dp.layers import DPTrainers
from securegal.privacy.dp.ledger import read_ledger
from securegal.privacy.dp.trainer import NO_FEEDBACK_SHARES, DPConfig
from securegal.run import train

FAST_RETRY = {"attempts": 2, "timeout": 60.0, "backoff": 0.05, "backoff_max": 0.2}
DATA = {"dataset": "breast_cancer", "parties": 3, "block": 1}


def load_party(tmp_path, privacy=None, residuals="plain", learner="linear"):
    text = party_config("party1", data=DATA, learner_seed=1, certs=None, transcripts=None, residuals=residuals,
                        privacy=privacy).replace('name = "linear"', f'name = "{learner}"')
    (tmp_path / "p.toml").write_text(text)
    return PartyConfig.load(tmp_path / "p.toml")


def test_party_privacy_config(tmp_path):
    assert load_party(tmp_path).plan.feature_dp is None
    assert load_party(tmp_path, {"epsilon": 3}).plan.feature_dp.config("plain") == DPConfig(3.0, 1e-5, gram_by_columns=True)
    cfg = load_party(tmp_path, {"epsilon": 2.0, "delta": 1e-6, "accountant": "prv", "feature_clip": 0.3,
                                "residual_clip": 2.0, "prediction_clip": 0.05, "feedback": "on"}).plan
    assert cfg.feature_dp.config(cfg.residuals) == DPConfig(2.0, 1e-6, "prv", feature_clip=0.3, residual_clip=2.0,
                                                           prediction_clip=0.05, gram_by_columns=True)
    off = load_party(tmp_path, {"epsilon": 2.0, "feedback": "off"}).plan
    assert off.feature_dp.config(off.residuals) == DPConfig(2.0, 1e-5, shares=dict(NO_FEEDBACK_SHARES),
                                                           gram_by_columns=True)
    ckks = load_party(tmp_path, {"epsilon": 1.0}, residuals="ckks").plan
    assert ckks.feature_dp.config(ckks.residuals).shares == NO_FEEDBACK_SHARES


@pytest.mark.parametrize("privacy, kw, match", [
    ({"epsilon": 0.0}, {}, r"epsilon must be a finite number > 0, got 0.0"),
    ({"epsilon": -1}, {}, "epsilon must be"),
    # not "session_epsilon 0.3 exceeds the table's lifetime epsilon -1" (review A C1)
    ({"epsilon": -1.0, "session_epsilon": 0.3}, {}, r"epsilon must be a finite number > 0, got -1.0"),
    ({"epsilon": "three"}, {}, r"privacy.epsilon: .*got 'three'"),
    ({"epsilon": 1.0, "delta": 1.5}, {}, r"delta must be a finite number > 0 and < 1, got 1.5"),
    ({"epsilon": 1.0, "accountant": "gdp"}, {}, "accountant must be one of .* got 'gdp'"),
    ({"epsilon": 1.0, "feature_clip": 0}, {}, "feature_clip must be"),
    ({"epsilon": 1.0, "prediction_clip": -0.5}, {}, "prediction_clip must be"),
    ({"epsilon": 1.0, "prediction_clip": 0.1, "feedback": "off"}, {}, "prediction_clip .* releases none"),
    ({"epsilon": 1.0, "prediction_clip": 0.1}, {"residuals": "ckks"}, "prediction_clip .* no effect on ckks"),
    ({"epsilon": 1.0, "feedback": "maybe"}, {}, r"privacy.feedback: .*got 'maybe'"),
    ({"epsilon": 1.0, "sigma": 2}, {}, r"privacy.sigma: unknown key"),
    ({"delta": 1e-6, "accountant": "rdp"}, {}, r"accountant \(--accountant\), delta \(--delta\) set without a DP budget"),
    ({"epsilon": 1.0}, {"learner": "gb"}, "feature-DP .* is implemented for the learners linear, mlp .*, not 'gb'"),
    ({"epsilon": 1.0}, {"learner": "mlp", "residuals": "ckks"}, "'mlp' cannot run on ckks residuals with feature-DP"),
    ({"epsilon": 1.0, "residual_clip": 1.0}, {"residuals": "ckks"}, "residual_clip is the label owner's"),
])
def test_party_privacy_config_errors(tmp_path, privacy, kw, match):
    with pytest.raises(ConfigError, match=match) as err:
        load_party(tmp_path, privacy, **kw)
    assert str(tmp_path / "p.toml") in str(err.value) and "\n" not in str(err.value)


def test_federation_residual_clip_needs_ckks(tmp_path):
    text = federation_config(data={"dataset": "breast_cancer"}, peers={"party1": "127.0.0.1:1"}, rounds=2, seed=0,
                             out=tmp_path / "run", certs=None, extra={"residual_clip": 1.0})
    (tmp_path / "f.toml").write_text(text)
    with pytest.raises(ConfigError, match="residual_clip .* needs residuals = 'ckks'"):
        FederationConfig.load(tmp_path / "f.toml")
    (tmp_path / "f.toml").write_text(text.replace('residuals = "plain"', 'residuals = "ckks"'))
    assert FederationConfig.load(tmp_path / "f.toml").plan.declared_clip == 1.0


@contextmanager
def parties_in_threads(tmp_path, privacy: dict, parties: int = 3, residuals: str = "plain", once=(), policy=None):
    """`securegal party serve` for party1..party{parties-1}, each in a thread on loopback (no TLS);
    the parties named in ``once`` serve one session (``--once``); ``policy`` gives a party's
    ``[policy]`` keys. Yields addresses and threads."""
    addresses, running, threads = {}, [], {}
    try:
        for i in range(1, parties):
            name = f"party{i}"
            path = tmp_path / f"{name}.toml"
            path.write_text(party_config(name, data={**DATA, "parties": parties, "block": i}, learner_seed=i,
                                         certs=None, transcripts=None, privacy=privacy.get(name),
                                         residuals=residuals)
                            + "".join(f"\n[policy]\n{key} = {json.dumps(value)}\n"
                                      for key, value in (policy or {}).get(name, {}).items()))
            ready, stop = queue.Queue(), threading.Event()
            thread = threading.Thread(target=serve_party, args=(PartyConfig.load(path),),
                                      kwargs={"stop": stop, "on_ready": ready.put, "once": name in once}, daemon=True)
            thread.start()
            running.append((thread, stop))
            threads[name] = thread
            addresses[name] = f"127.0.0.1:{ready.get(timeout=60)}"
        yield addresses, threads
    finally:
        for thread, stop in running:
            stop.set()
            thread.join(30)


def assert_calibrated_uniform(metrics, parties):
    """Uniform weights times the per-party multipliers the label owner fitted on validation rows."""
    multipliers = metrics["gal"]["multipliers"]
    assert set(multipliers) == set(metrics["party_names"])
    for row in metrics["weights"]:
        assert row == pytest.approx([multipliers[p] / parties for p in metrics["party_names"]])


def federation(tmp_path, peers, rounds, out="run", **kw):
    path = tmp_path / f"{out}.toml"
    path.write_text(federation_config(data={"dataset": "breast_cancer"}, peers=peers, rounds=rounds, seed=0,
                                      out=tmp_path / out, certs=None, transport=FAST_RETRY, **kw))
    return FederationConfig.load(path)


def test_networked_dp_parties_report_like_in_process(tmp_path):
    """Each party's own budget from its party.toml; the label owner fixes weights/eta as the
    in-process --epsilon run does; the parties' accountants reach metrics.json unchanged. With
    M = 4, breast_cancer's blocks have 7, 7 and 9 columns: party1 and party2 re-split their
    shares by their columns, party3 keeps the default split, in both deployments."""
    budgets = {"party1": {"epsilon": 3.0}, "party2": {"epsilon": 1.0, "accountant": "prv"}, "party3": {"epsilon": 2.0}}
    with parties_in_threads(tmp_path, budgets, parties=4) as (peers, _):
        metrics = train_federation(federation(tmp_path, peers, rounds=3))
    ref = train("breast_cancer", parties=4, rounds=3, seed=0, weighting="uniform", eta=1.0,
                trainers=DPTrainers(configs={"party1": DPConfig(3.0, 1e-5, gram_by_columns=True),
                                             "party2": DPConfig(1.0, 1e-5, "prv", gram_by_columns=True),
                                             "party3": DPConfig(2.0, 1e-5, gram_by_columns=True)}))
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["privacy"] == metrics["privacy"]
    assert set(metrics["privacy"]) == {"party1", "party2", "party3"}
    # what was in force, as the embedded run says (it said "plain": review B F2)
    assert metrics["plan"]["layer"] == "dp" and metrics["plan"]["owner_layer"] == "plain"
    assert metrics["plan"]["feature_dp_parties"] == ["party1", "party2", "party3"]
    for party, block in metrics["privacy"].items():
        expected = ref["privacy"][party]
        assert block["epsilon_budget"] == budgets[party]["epsilon"]
        assert 0 < block["epsilon_spent"] <= block["epsilon_budget"]
        assert block["releases"] == expected["releases"]  # same plan, same calibrated noise, same history
        assert len(block["releases"]) == 1 + 2 * 3  # gram once, stat + pred each round
        for key in ("epsilon_spent", "delta", "accountant", "noise_multiplier", "mechanism"):
            assert block[key] == expected[key], key
    shares = {party: block["mechanism"]["shares"] for party, block in metrics["privacy"].items()}
    assert shares["party1"]["gram"] == pytest.approx(0.3 * (8 / 9) ** 0.5)
    assert shares["party3"] == {"gram": 0.3, "stat": 0.6, "pred": 0.1}
    assert metrics["eta"] == ref["eta"] == [1.0] * 3
    assert ref["weights"] == [[1 / 4] * 4] * 3
    # with DP parties the label owner then scales each party's weights by a multiplier fitted on
    # its validation rows (PrivacyPlan.owner_policy); the in-process study path above does not
    assert_calibrated_uniform(metrics, 4)


def test_budget_too_small_is_refused_at_setup(tmp_path):
    """party1's budget cannot cover the rounds: it refuses Setup (nothing released), the label
    owner stops with that reason and closes party2's session, which then serves a new one.
    party2 released nothing in the aborted session, so its reservation is given back."""
    # party2's lifetime budget is 3, at most 1.2 per session (and 0.3 once for its DP standardization
    # from breast_cancer's documented bounds, which stays paid: later sessions reuse it).
    budgets = {"party1": {"epsilon": 1e-6}, "party2": {"epsilon": 3.0, "session_epsilon": 1.2}}
    with parties_in_threads(tmp_path, budgets, once={"party1"}) as (peers, threads):
        with pytest.raises(PartyRefused, match=r"party 'party1' refused \(budget_exceeded\): .*left 1e-06 of "
                                               r"epsilon 1e-06, asked at least"):
            train_federation(federation(tmp_path, peers, rounds=2))
        assert not (tmp_path / "run").exists()  # nothing that looks like a result, not even the directory
        threads["party1"].join(30)
        assert not threads["party1"].is_alive()  # --once: a refused setup ends its one session
        ledger = read_ledger(tmp_path / "party2.securegal-ledger.json")
        (aborted,) = ledger.spent_by_session()
        assert (aborted.releases, aborted.returned) == (2, 3)  # std_mean, std_scale kept; gram, stat, pred back
        assert {e.release.what for i, e in enumerate(ledger.entries) if ledger.returned(i)} == {"gram", "stat", "pred"}
        assert ledger.epsilon_spent == pytest.approx(epsilon_of(
            [e.release for e in ledger.entries if e.release.what.startswith("std_")], 1e-5, "pld"))
        assert ledger.epsilon_spent <= 0.3 + 1e-9 and ledger.refunds[0].reason == "finished"
        metrics = train_federation(federation(tmp_path, {"party2": peers["party2"]}, rounds=2, out="again"))
    assert list(metrics["privacy"]) == ["party2"] and len(metrics["privacy"]["party2"]["releases"]) == 5
    after = read_ledger(tmp_path / "party2.securegal-ledger.json")
    assert after.epsilon_spent == pytest.approx(ledger.epsilon_spent + 1.2, abs=1e-3)  # the session's full slice
    assert len(after.refunds) == 1  # a complete session keeps its reservation as it is


def test_eta_max_is_refused_once_the_parties_turn_out_to_run_dp_and_their_budgets_come_back(tmp_path):
    """federation.toml's eta_max cannot be honoured when the parties run feature-DP (they fix the
    step), which the label owner learns at setup: it refuses, closes the sessions and the parties
    settle them, so the refusal costs them no budget."""
    budgets = {"party1": {"epsilon": 1.0}, "party2": {"epsilon": 1.0}}
    with parties_in_threads(tmp_path, budgets) as (peers, _):
        with pytest.raises(ConfigError, match=r"eta_max .*the step is fixed \(under DP at 0.75 \* M / T\): drop it"):
            train_federation(federation(tmp_path, peers, rounds=2, extra={"eta_max": 5.0}))
    assert not (tmp_path / "run").exists()  # nothing that looks like a result, not even the directory
    for party in budgets:
        ledger = read_ledger(tmp_path / f"{party}.securegal-ledger.json")
        assert [r.reason for r in ledger.refunds] == ["finished"]
        assert {e.release.what for i, e in enumerate(ledger.entries) if not ledger.returned(i)} <= {"std_mean", "std_scale"}


@pytest.mark.slow
def test_networked_dp_on_ckks_residuals(tmp_path):
    """ckks + DP: the party needs the label owner's declared residual clip (refused without it),
    then reports the same releases as the in-process CkksDPTrainer run (no feedback by default,
    a flood release per predict reply), and both label owners calibrate."""
    from securegal.privacy.plan import FeatureDP, PrivacyPlan

    with parties_in_threads(tmp_path, {"party1": {"epsilon": 3.0}, "party2": {"epsilon": 3.0}},
                            residuals="ckks") as (peers, _):
        with pytest.raises(PartyRefused, match="residual clip"):
            train_federation(federation(tmp_path, peers, rounds=2, residuals="ckks"))
        metrics = train_federation(federation(tmp_path, peers, rounds=2, out="clipped", residuals="ckks",
                                              extra={"residual_clip": 1.0}))
    ref = train("breast_cancer", parties=3, rounds=2, seed=0, weighting="uniform", eta=1.125,
                plan=PrivacyPlan(residuals="ckks", feature_dp=FeatureDP(epsilon=3.0)))
    assert metrics["residuals"] == "ckks" and metrics["eta"] == [1.125, 1.125]
    for party in ("party1", "party2"):
        block, expected = metrics["privacy"][party], ref["privacy"][party]
        assert block["epsilon_spent"] <= 3.0 and block["releases"] == expected["releases"]
        # the two predict replies (test, validation): the flood that hides the circuit's error
        assert [(r["round"], r["what"]) for r in block["releases"]] == [(1, "gram"), (1, "stat"), (2, "stat"),
                                                                        (0, "flood"), (0, "flood")]
        assert block["noise_multiplier"] == expected["noise_multiplier"]
    for run in (metrics, ref):  # calibrated on the validation reply, which evaluation then reuses
        assert_calibrated_uniform(run, 3)


def test_resumed_label_owner_keeps_the_dp_choices(tmp_path):
    """The label owner dies after round 1; resumed, it keeps uniform weights and the fixed eta,
    and the parties' reports (from their later replies) cover the whole run."""
    class Crash(Exception):
        pass

    def crash(result):
        if result.round == 1:
            raise Crash

    with parties_in_threads(tmp_path, {"party1": {"epsilon": 3.0}, "party2": {"epsilon": 3.0}}) as (peers, _):
        cfg = federation(tmp_path, peers, rounds=3)
        with pytest.raises(Crash):
            train_federation(cfg, on_round=crash)
        metrics = train_federation(FederationConfig.for_resume(cfg.out), resume=True)
    assert metrics["eta"] == [0.75] * 3
    assert_calibrated_uniform(metrics, 3)  # the resumed owner kept the calibration too
    for block in metrics["privacy"].values():
        assert [(r["round"], r["what"]) for r in block["releases"]] == [
            (1, "gram"), (1, "stat"), (1, "pred"), (2, "stat"), (2, "pred"), (3, "stat"), (3, "pred")]
        assert block["epsilon_spent"] <= block["epsilon_budget"] == 3.0


def test_a_party_whose_port_is_taken_leaves_no_ledger_behind(tmp_path):
    """`party serve` opened (and created) its table's ledger before it found its port busy
    (review A C1): the port is taken first."""
    import socket

    from securegal.deploy.localnet import party_config

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        (tmp_path / "p.toml").write_text(party_config("party1", data=DATA, learner_seed=1, certs=None, transcripts=None,
                                                      listen=f"127.0.0.1:{port}", privacy={"epsilon": 1.0}))
        cfg = PartyConfig.load(tmp_path / "p.toml", insecure=True)
        with pytest.raises(ConfigError, match=f"port {port} is in use"):
            serve_party(cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.toml"]


def test_a_second_session_is_not_answered_for_rows_an_earlier_one_disclosed(tmp_path):
    """Review A M1: the same split run again gave the label owner more projections of the same
    validation and test rows each time (R^2 0.97 after four runs). Under the default predict =
    "once" party1's second session answers none of them: the run goes on without party1's terms
    and says so, and party1's ledger records no more disclosed rows. party2 (predict =
    "non-training") answers again."""
    budgets = {"party1": {"epsilon": 3.0, "session_epsilon": 1.0}, "party2": {"epsilon": 3.0, "session_epsilon": 1.0}}
    with parties_in_threads(tmp_path, budgets, policy={"party2": {"predict": "non-training"}}) as (peers, _):
        first = train_federation(federation(tmp_path, peers, rounds=2))
        disclosed = read_ledger(tmp_path / "party1.securegal-ledger.json").output("rows_disclosed")["count"]
        second = train_federation(federation(tmp_path, peers, rounds=2, out="again"))
    assert "missing_at_predict" not in first["gal"] and disclosed > 0
    assert second["gal"]["missing_at_predict"] == ["party1"]
    (note,) = [n for n in second["notes"] if "exact predictions" in n]
    assert note.startswith("outside the guarantee: party2 answered") and "party1" not in note
    assert read_ledger(tmp_path / "party1.securegal-ledger.json").output("rows_disclosed")["count"] == disclosed
    assert 0 < second["privacy"]["party1"]["epsilon_spent"]  # its training releases were made and counted


def test_a_reused_session_id_does_not_pass_for_the_session_that_disclosed_the_rows(tmp_path):
    """Verifier G N1: the rows a session disclosed could be asked again within it, and the
    allowance was keyed by the session id, which the label owner chooses: three complete sessions
    all named "s9" had the same rows answered three times. The allowance is now keyed by a value
    the party draws at each setup."""
    import numpy as np

    from securegal import messages as m
    from securegal.align import LabelOwnerPsi
    from securegal.transport.grpc_client import GrpcTransport, RetryPolicy
    from securegal.wire.codec import decode, encode

    with parties_in_threads(tmp_path, {"party1": {"epsilon": 3.0, "session_epsilon": 0.5}}, parties=2) as (peers, _):
        transport = GrpcTransport(peers, insecure=True, retry=RetryPolicy(attempts=1, timeout=60.0, backoff=0.05,
                                                                          backoff_max=0.2))
        seqs = {}

        def send(session, body, rnd=0):
            seqs[session] = seqs.get(session, -1) + 1
            return decode(transport.call("party1", encode(m.Envelope(session, rnd, "alice", "party1",
                                                                     seqs[session], body)))).body

        def one_session(session):
            seqs.pop(session, None)
            psi = LabelOwnerPsi(list(range(569)), session)
            handles = psi.finish(send(session, psi.request())).handles
            assert isinstance(send(session, m.PsiSelection(np.sort(handles))), m.PsiSelectionAck)
            assert isinstance(send(session, m.Setup(handles[:200], 2, 1, "classification")), m.SetupAck)
            assert isinstance(send(session, m.FitRequest(np.zeros((200, 2))), 1), m.FitReply)
            first = send(session, m.PredictRequest(handles[300:350], 1))
            again = send(session, m.PredictRequest(handles[300:350], 1))  # within the session: answered
            send(session, m.Finish())
            return first, again

        first, again = one_session("s9")
        assert isinstance(first, m.PredictReply) and isinstance(again, m.PredictReply)
        refused, _ = one_session("s9")
        assert isinstance(refused, m.ErrorReply) and refused.code == "policy"
        assert "50 of the 50 requested rows were disclosed by an earlier session" in refused.message
        transport.close()
