"""Issue 10: a party's privacy budget belongs to its table and covers everything it releases.

Ledger per table across sessions and restarts (real processes), refusals before any work
(training rows, unfitted rounds, oversized replies, the party's policy), bad budgets and
ledgers, standardization with public column knowledge, and the label-DP split.
"""
import json
import math
import re
import resource
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from securegal import messages as m
from securegal.cli import main
from securegal.data.datasets import load_dataset
from securegal.data.split import split_rows
from securegal.deploy.localnet import federation_config, party_config
from securegal.deploy.networked import FederationConfig, train_federation
from securegal.deploy.party_process import PartyConfig, build_party
from securegal.privacy.dp.accountant import epsilon_of
from securegal.errors import BudgetExceeded, ConfigError, PolicyRefused
from securegal.parties.policy import PartyPolicy
from securegal.privacy.dp.documented import documented_columns
from securegal.privacy.dp.ledger import LedgerError, open_ledger, read_ledger
from securegal.privacy.dp.accountant import Budget
from securegal.privacy.dp.mechanisms import GaussianNoise, InsecureNoiseWarning, gram_sensitivity
from securegal.privacy.dp.ridge import DPRidge
from securegal.wire.codec import decode, encode

DATA = {"dataset": "breast_cancer", "parties": 2, "block": 1}
FAST_RETRY = {"attempts": 2, "timeout": 60.0, "backoff": 0.05, "backoff_max": 0.2}


def _party_file(tmp_path, privacy=None, policy=None, limits=None, name="p.toml"):
    text = party_config("party1", data=DATA, learner_seed=1, certs=None, transcripts=None,
                        privacy=privacy, limits=limits)
    if policy:
        text += "\n[policy]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in policy.items()) + "\n"
    path = tmp_path / name
    path.write_text(text)
    return path


def _send(endpoint, seq, body, round=0, session="s1"):
    reply = decode(endpoint.handle(encode(m.Envelope(session, round, "alice", "party1", seq, body))))
    return reply.body


ROWS = 569  # breast_cancer: the label owner holds every row, as the party does
HANDLES: dict[str, np.ndarray] = {}  # session -> the party's handle for each row (after alignment)


def H(session, rows):
    """How the party names rows ``rows`` in ``session``: its per-session handles."""
    return HANDLES[session][np.asarray(rows)]


def _align(endpoint, session, seq=0):
    """Alignment with every row selected (the party's handles kept in HANDLES); returns the next
    seq, or the first ErrorReply."""
    from securegal.align import LabelOwnerPsi

    psi = LabelOwnerPsi(list(range(ROWS)), session)
    reply = _send(endpoint, seq, psi.request(), session=session)
    if isinstance(reply, m.ErrorReply):
        return reply
    HANDLES[session] = psi.finish(reply).handles
    reply = _send(endpoint, seq + 1, m.PsiSelection(np.sort(HANDLES[session])), session=session)
    return reply if isinstance(reply, m.ErrorReply) else seq + 2


def _session(endpoint, session, train_ids, rounds=1, seq=0, finish=False):
    """Alignment (every row selected) + Setup + ``rounds`` fits (+ Finish); returns the next seq,
    or the first ErrorReply. ``train_ids`` are row numbers; the wire carries handles."""
    seq = _align(endpoint, session, seq)
    if isinstance(seq, m.ErrorReply):
        return seq
    ack = _send(endpoint, seq, m.Setup(H(session, train_ids), 2, rounds, "classification"), session=session)
    if isinstance(ack, m.ErrorReply):
        return ack
    for t in range(1, rounds + 1):
        reply = _send(endpoint, seq + t, m.FitRequest(np.zeros((len(train_ids), 2))), round=t, session=session)
        assert isinstance(reply, m.FitReply)
    if finish:
        assert isinstance(_send(endpoint, seq + rounds + 1, m.Finish(), session=session), m.FinishAck)
        return seq + rounds + 2
    return seq + rounds + 1


# --- the review's attack: nothing leaves a party unaccounted ------------------------------------

def test_predict_requests_for_training_rows_or_huge_rounds_are_refused_before_any_work(tmp_path):
    endpoint = build_party(PartyConfig.load(_party_file(tmp_path, {"epsilon": 1.0})))
    train_ids, other = np.arange(300), np.arange(300, 400)
    seq = _session(endpoint, "s1", train_ids, rounds=2)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for ids, rounds, code, needle in [
            (train_ids[:25], 2, "policy", "25 of the 25 requested rows are training rows"),
            (np.r_[other[:5], train_ids[:1]], 1, "policy", "1 of the 6 requested rows are training rows"),
            (other, 2 ** 31 - 1, "protocol", "this session fitted 2"),
            (other, 3, "protocol", "this session fitted 2"),
            (other, 0, "protocol", "0 rounds")]:
        reply = _send(endpoint, seq, m.PredictRequest(H("s1", ids), rounds))
        seq += 1
        assert isinstance(reply, m.ErrorReply) and reply.code == code and needle in reply.message, reply
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 50_000  # KiB: no reply was built
    reply = _send(endpoint, seq, m.PredictRequest(H("s1", other), 2))
    assert isinstance(reply, m.PredictReply) and np.shape(reply.predictions) == (2, 100, 2)
    endpoint.close()


def test_reply_size_is_checked_against_the_limit_before_any_work(tmp_path):
    # the limit still admits the alignment's request (569 points of 32 bytes)
    endpoint = build_party(PartyConfig.load(_party_file(tmp_path, limits={"max_message_bytes": 20000})))
    seq = _session(endpoint, "s1", np.arange(25), rounds=5)
    reply = _send(endpoint, seq, m.PredictRequest(H("s1", np.arange(300, 569)), 5))  # 269 x 5 x 2 x 8 > 20000
    assert isinstance(reply, m.ErrorReply) and reply.code == "protocol"
    assert "would be 21520 bytes, over this party's max_message_bytes 20000" in reply.message
    assert isinstance(_send(endpoint, seq + 1, m.PredictRequest(H("s1", np.arange(300, 400)), 5)), m.PredictReply)


def test_party_policy(tmp_path):
    path = _party_file(tmp_path, {"epsilon": 2.0, "session_epsilon": 0.2},
                       policy={"min_rows": 100, "max_sessions": 3, "predict": "none", "residuals": ["plain"]})
    endpoint = build_party(PartyConfig.load(path))
    small = _session(endpoint, "s0", np.arange(50))
    assert small.code == "policy" and "at least 100 training rows" in small.message
    seq = _session(endpoint, "s1", np.arange(200))
    reply = _send(endpoint, seq, m.PredictRequest(H("s1", np.arange(300, 310)), 1), session="s1")
    assert reply.code == "policy" and "predict = 'none'" in reply.message
    _send(endpoint, seq + 1, m.Finish(), session="s1")
    endpoint.close()
    # max_sessions is counted in the ledger: a restart does not reset it; s0, refused at setup,
    # counts too (its intersection told the label owner which IDs the table holds)
    endpoint = build_party(PartyConfig.load(path))
    seq = _session(endpoint, "s2", np.arange(200))
    _send(endpoint, seq, m.Finish(), session="s2")
    fourth = _session(endpoint, "s3", np.arange(200))
    assert fourth.code == "policy" and "served 3 sessions, the policy's max_sessions is 3" in fourth.message
    endpoint.close()
    with pytest.raises(ConfigError, match="learner 'linear' is not among the policy's learners"):
        PartyConfig.load(_party_file(tmp_path, policy={"learners": ["mlp"]}))
    with pytest.raises(ConfigError, match="policy.predict"):
        PartyConfig.load(_party_file(tmp_path, policy={"predict": "any"}))
    with pytest.raises(ConfigError, match=r"\[privacy\] residuals 'plain' is not among the policy's residuals \['ckks'\]"):
        PartyConfig.load(_party_file(tmp_path, policy={"residuals": ["ckks"]}))


def test_intersections_alone_count_as_sessions_and_are_bounded(tmp_path):
    """A label owner ran 40 intersections of 500 chosen IDs each, selecting one row and finishing:
    every one was answered (all 569 members found), none counted toward max_sessions, and the
    one session the policy allowed was still there afterwards."""
    from securegal.align import LabelOwnerPsi

    path = _party_file(tmp_path, {"epsilon": 1.0}, policy={"min_rows": 20, "max_sessions": 2, "max_psi_ids": 600})
    endpoint = build_party(PartyConfig.load(path))
    for i in range(2):
        psi = LabelOwnerPsi(list(range(500 * i, 500 * i + 500)), f"probe{i}")
        reply = _send(endpoint, 0, psi.request(), session=f"probe{i}")
        assert isinstance(reply, m.PsiReply)
        handles = psi.finish(reply).handles
        one = _send(endpoint, 1, m.PsiSelection(np.sort(handles[handles >= 0])[:1]), session=f"probe{i}")
        assert one.code == "policy" and "selected 1 rows, fewer than the 20" in one.message, one.message
    third = _align(endpoint, "probe2")
    assert third.code == "policy" and "served 2 sessions, the policy's max_sessions is 2" in third.message
    endpoint.close()
    endpoint = build_party(PartyConfig.load(path))  # a DP party counts them in its ledger
    assert _align(endpoint, "probe3").code == "policy"
    endpoint.close()
    (tmp_path / "b").mkdir()
    # the operator starts the table afresh, knowingly: its ledger and the machine's record of it go
    from securegal.privacy.dp.registry import state_dir

    (tmp_path / "party1.securegal-ledger.json").unlink()
    shutil.rmtree(state_dir() / "tables")
    path = _party_file(tmp_path / "b", {"epsilon": 1.0}, policy={"max_psi_ids": 100})
    endpoint = build_party(PartyConfig.load(path))
    big = _send(endpoint, 0, LabelOwnerPsi(list(range(101)), "big").request(), session="big")
    assert big.code == "policy" and "asks to match 101 IDs, this party's policy max_psi_ids is 100" in big.message
    assert isinstance(_align(endpoint, "fine"), m.ErrorReply)  # 569 IDs: over the cap too
    endpoint.close()


def test_default_policy_answers_the_label_owners_evaluation():
    policy = PartyPolicy()
    training = lambda ids: ids < 10  # noqa: E731  (rows 0..9 are the session's training rows)
    policy.check_predict(np.arange(10, 20), training)  # test/validation rows: fine
    with pytest.raises(PolicyRefused, match="5 of the 10 requested rows are training rows"):
        policy.check_predict(np.arange(5, 15), training)
    with pytest.raises(PolicyRefused, match="no predict requests"):
        PartyPolicy(predict="none").check_predict(np.arange(10, 20), training)
    with pytest.raises(PolicyRefused, match="at least 20"):
        policy.check_setup(19, "plain", 0)


# --- the ledger: one per table, refusals with what is left and what was asked -----------------

def test_sessions_share_the_tables_lifetime_budget_in_process(tmp_path):
    path = _party_file(tmp_path, {"epsilon": 1.0, "session_epsilon": 0.4})
    cfg = PartyConfig.load(path)
    endpoint = build_party(cfg)
    outcomes = [_session(endpoint, f"s{i}", np.arange(300), finish=True) for i in range(3)]
    refused = [o for o in outcomes if isinstance(o, m.ErrorReply)]
    assert len(refused) == 1 and refused[0].code == "budget_exceeded"
    assert "left" in refused[0].message and "asked 0.4" in refused[0].message
    endpoint.close()
    ledger = read_ledger(cfg.ledger)
    assert ledger.epsilon_spent <= 1.0 and [s.session for s in ledger.spent_by_session()] == ["s0", "s1"]


def _returned(ledger):
    """(kind, round) of the counted entries, and the refunds' (session, reason, how many)."""
    counted = [(e.release.what, e.release.round) for i, e in enumerate(ledger.entries) if not ledger.returned(i)]
    return counted, [(r.session, r.reason, len(r.entries)) for r in ledger.refunds]


def _open(endpoint, session, rounds):
    """Alignment and a Setup for ``rounds`` rounds on rows 0-299, nothing fitted; the next seq."""
    assert _align(endpoint, session) == 2
    assert isinstance(_send(endpoint, 2, m.Setup(H(session, np.arange(300)), 2, rounds, "classification"),
                            session=session), m.SetupAck)
    return 3


def _fit(endpoint, session, seq, round):
    reply = _send(endpoint, seq, m.FitRequest(np.zeros((300, 2))), round=round, session=session)
    assert isinstance(reply, m.FitReply)
    return seq + 1


def test_a_session_ends_paying_only_for_what_it_released(tmp_path):
    """Reservations are settled at Finish, when a new session replaces an expired one, and when the
    party stops: s0 released nothing, s1 one round of three, s2 (expired) one of two, s3 (open when
    the party stopped) nothing. The DP standardization, reused by every session, stays paid."""
    cfg = PartyConfig.load(_party_file(tmp_path, {"epsilon": 1.0, "session_epsilon": 0.3}))
    endpoint = build_party(cfg)
    seq = _open(endpoint, "s0", 3)
    assert isinstance(_send(endpoint, seq, m.Finish(), session="s0"), m.FinishAck)
    std_only = read_ledger(cfg.ledger)
    assert _returned(std_only) == ([("std_mean", 0), ("std_scale", 0)], [("s0", "finished", 3)])
    seq = _fit(endpoint, "s1", _open(endpoint, "s1", 3), 1)
    assert isinstance(_send(endpoint, seq, m.Finish(), session="s1"), m.FinishAck)
    _fit(endpoint, "s2", _open(endpoint, "s2", 2), 1)
    endpoint.party.session_timeout = 0.0  # s2 goes quiet: the next session's alignment expires it
    _open(endpoint, "s3", 2)
    endpoint.close()
    ledger = read_ledger(cfg.ledger)
    counted, refunds = _returned(ledger)
    assert refunds == [("s0", "finished", 3), ("s1", "finished", 3), ("s2", "expired", 3), ("s3", "party stopped", 3)]
    assert counted == [("std_mean", 0), ("std_scale", 0)] + [("gram", 1), ("stat", 1), ("pred", 1)] * 2
    assert ledger.epsilon_spent == pytest.approx(epsilon_of([e.release for i, e in enumerate(ledger.entries)
                                                             if not ledger.returned(i)], 1e-5, "pld"))
    assert std_only.epsilon_spent < ledger.epsilon_spent < std_only.epsilon_spent + 2 * 0.3
    assert [(s.session, s.releases, s.returned) for s in ledger.spent_by_session()] == [
        ("s0", 2, 3), ("s1", 3, 3), ("s2", 3, 3), ("s3", 0, 3)]


def test_a_setup_naming_a_row_more_than_once_is_refused_before_anything_is_reserved(tmp_path):
    """Found by an independent re-measurement: a Setup naming one row 60 times made every release
    move by 60 times its stated sensitivity in that row (hat-matrix R^2 0.88 at epsilon 1 from the
    predict replies). Every party refuses repeated training rows; the DP party reserves nothing."""
    cfg = PartyConfig.load(_party_file(tmp_path, {"epsilon": 1.0}))
    endpoint = build_party(cfg)
    assert _align(endpoint, "s0") == 2
    rows = np.r_[np.repeat(7, 60), np.arange(100, 400)]
    reply = _send(endpoint, 2, m.Setup(H("s0", rows), 1, 300, "regression"), session="s0")
    assert isinstance(reply, m.ErrorReply) and reply.code == "protocol"
    assert reply.message == ("train_ids name 59 of their 360 rows more than once; every training row is named once")
    endpoint.close()
    assert read_ledger(cfg.ledger).entries == ()


def test_a_second_process_cannot_serve_the_same_table(tmp_path):
    cfg = PartyConfig.load(_party_file(tmp_path, {"epsilon": 1.0}))
    first = build_party(cfg)
    with pytest.raises(LedgerError, match="in use by another process"):
        build_party(cfg)
    first.close()
    build_party(cfg).close()  # the lock went with the first


@pytest.mark.parametrize("privacy, needle", [
    ({"epsilon": -1.0}, "epsilon must be a finite number > 0, got -1.0"),
    ({"epsilon": math.nan}, "epsilon must be a finite number > 0, got nan"),
    ({"epsilon": math.inf}, "epsilon must be a finite number > 0, got inf"),
    ({"epsilon": 1.0, "delta": 0.0}, "delta must be a finite number > 0"),
    ({"epsilon": 1.0, "delta": 0.002}, "delta must be < 1/n"),
    ({"epsilon": 1.0, "session_epsilon": -0.5}, "session_epsilon"),
    ({"session_epsilon": 0.5}, "privacy.session_epsilon set without a DP budget"),
])
def test_bad_budgets_are_one_line_errors_and_release_nothing(tmp_path, privacy, needle):
    path = _party_file(tmp_path, privacy)
    with pytest.raises(ConfigError, match=needle) as err:
        build_party(PartyConfig.load(path))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "party1.securegal-ledger.json").exists()


def _bad_ledgers(path: Path, good: bytes):
    yield "truncated", good[:len(good) // 2], "is truncated or not JSON"
    yield "empty", b"", "is empty"
    doc = json.loads(good)
    doc["entries"] = []
    yield "edited", json.dumps(doc).encode(), "is corrupted"


def test_corrupted_truncated_or_foreign_ledgers_are_refused_and_kept(tmp_path, capsys):
    path = _party_file(tmp_path, {"epsilon": 1.0})
    cfg = PartyConfig.load(path)
    endpoint = build_party(cfg)
    _session(endpoint, "s1", np.arange(300))
    endpoint.close()
    good = cfg.ledger.read_bytes()
    for what, data, needle in _bad_ledgers(cfg.ledger, good):
        cfg.ledger.write_bytes(data)
        with pytest.raises(LedgerError, match=needle) as err:
            build_party(cfg)
        assert "\n" not in str(err.value) and cfg.ledger.read_bytes() == data, what  # never reset
        assert main(["party", "serve", "--config", str(path), "--once"]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1
    cfg.ledger.write_bytes(good)
    foreign = tmp_path / "foreign.json"
    open_ledger(foreign, "sha256:" + "0" * 64, Budget(1.0, 1e-5)).close()
    (tmp_path / "q.toml").write_text(path.read_text().replace("party1.securegal-ledger.json", "foreign.json"))
    with pytest.raises(LedgerError, match="belongs to table sha256:0000"):
        build_party(PartyConfig.load(tmp_path / "q.toml"))
    changed = tmp_path / "r.toml"
    changed.write_text(path.read_text().replace("epsilon = 1.0", "epsilon = 5.0"))
    with pytest.raises(LedgerError, match="a table's lifetime budget cannot be changed"):
        build_party(PartyConfig.load(changed))
    assert read_ledger(cfg.ledger).epsilon_spent > 0


# --- real processes: three sessions, a restart, three more --------------------------------------

def _serve(path: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "securegal.cli", "party", "serve", "--config", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if "serving on port" not in line:
        proc.kill()
        raise AssertionError(f"party did not start: {line!r} {proc.stderr.read()}")
    return proc, int(line.split("serving on port ")[1].split()[0])


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(30)


@pytest.mark.slow
def test_lifetime_budget_across_sessions_and_a_restart_with_real_processes(tmp_path):
    path = _party_file(tmp_path, {"epsilon": 1.0, "session_epsilon": 0.3})
    ledger_path = tmp_path / "party1.securegal-ledger.json"
    outcomes = []
    for life in range(2):
        proc, port = _serve(path)
        try:
            if life == 0:  # a second `party serve` on the same table refuses to start, one line
                second = subprocess.run([sys.executable, "-m", "securegal.cli", "party", "serve", "--config",
                                         str(path)], capture_output=True, text=True, timeout=120)
                assert second.returncode == 2 and "in use by another process" in second.stderr
                assert len(second.stderr.strip().splitlines()) == 1
            for i in range(3):
                out = f"run{life}{i}"
                (tmp_path / f"{out}.toml").write_text(federation_config(
                    data={"dataset": "breast_cancer"}, peers={"party1": f"127.0.0.1:{port}"}, rounds=2, seed=i,
                    out=tmp_path / out, certs=None, transport=FAST_RETRY))
                try:
                    metrics = train_federation(FederationConfig.load(tmp_path / f"{out}.toml", insecure=True))
                    outcomes.append(("ok", metrics["privacy"]["party1"]))
                except BudgetExceeded as exc:
                    outcomes.append(("refused", str(exc)))
        finally:
            _stop(proc)
    ok = [o for kind, o in outcomes if kind == "ok"]
    refused = [o for kind, o in outcomes if kind == "refused"]
    assert len(ok) >= 3 and refused, outcomes  # 0.3 per session: at most 3 fit in 1 (a 4th only if PLD allows)
    assert all("budget_exceeded" in r and "left" in r and "asked 0.3" in r for r in refused)
    assert outcomes[:3] == [o for o in outcomes[:3] if o[0] == "ok"]
    ledger = read_ledger(ledger_path)
    assert ledger.epsilon_spent <= 1.0
    # per session gram, stat, pred; once, in the first: the DP standardization (std_mean, std_scale)
    # from breast_cancer's documented bounds, stored with the ledger and reused by later sessions
    assert len(ledger.spent_by_session()) == len(ok) and len(ledger.entries) == 3 * len(ok) + 2
    assert [e.release.what for e in ledger.entries].count("std_mean") == 1
    for block in ok:
        assert block["epsilon_budget"] == 1.0 and block["ledger"]["lifetime_epsilon_spent"] <= 1.0
    shown = subprocess.run([sys.executable, "-m", "securegal.cli", "ledger", "show", str(ledger_path),
                            "--releases"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0
    for s in ledger.spent_by_session():
        assert shown.stdout.count(s.session[:24]) == 1 + s.releases  # the session line and its releases


# --- standardization inside the guarantee --------------------------------------------------------

def seeded(seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureNoiseWarning)
        return GaussianNoise(seed)


@pytest.mark.parametrize("rows", [120, 10_000])  # the default feature clip at those rows: 0.55 and 2
@pytest.mark.parametrize("coordinate_clip", ["default", None, 1.5])
def test_an_outlier_neighbour_moves_the_gram_and_statistic_by_at_most_their_sensitivity(coordinate_clip, rows):
    """Public column map, then the party's row map (the library default, and each map by name):
    the released upper triangle of the Gram and the statistic move by at most the sensitivity
    the ledger records, however far out the neighbour's row is."""
    from securegal.privacy.dp.trainer import DPConfig, release_plan

    wine = load_dataset("wine")
    std = documented_columns("wine", 13).declared()
    options = {} if coordinate_clip == "default" else {"coordinate_clip": coordinate_clip}
    config = DPConfig(1.0, 1e-5, **options).for_rows(rows)
    ridge = config.ridge()
    fmap = ridge.feature_map(13)
    recorded = {p.what: p.sensitivity for p in release_plan(config, 3)}
    assert recorded["gram"] == ridge.gram_sensitivity == gram_sensitivity(config.feature_clip, config.intercept)
    assert recorded["stat"] == ridge.statistic_sensitivity
    X = wine.X[:120]
    r = np.random.default_rng(0).normal(size=(120, 3))
    r[7] = [5.0, -5.0, 5.0]  # the changed row's residual as large as the clip allows
    for sigmas in (-1e6, -10, 10, 100, 1e6):
        neighbour = X.copy()
        neighbour[7] = X.mean(axis=0) + sigmas * X.std(axis=0)
        P, Q = fmap(std(X)), fmap(std(neighbour))
        moved = np.linalg.norm(np.triu(P.T @ P - Q.T @ Q)[:-1, :])  # the released upper triangle (corner is public)
        assert moved <= recorded["gram"] * (1 + 1e-12), (sigmas, moved, recorded["gram"])
        # the stat release itself, with the same noise draw on both tables
        moved = np.linalg.norm(ridge.private_statistic(P, r, 2.0, seeded(1)) - ridge.private_statistic(Q, r, 2.0, seeded(1)))
        assert moved <= recorded["stat"] * (1 + 1e-12), (sigmas, moved, recorded["stat"])
        assert np.array_equal(P[np.arange(120) != 7], Q[np.arange(120) != 7])


def test_dp_parties_report_a_public_column_map_not_training_statistics(tmp_path, capsys):
    from securegal.run import train
    from securegal.privacy.plan import FeatureDP, PrivacyPlan

    metrics = train("wine", parties=3, rounds=2, plan=PrivacyPlan(feature_dp=FeatureDP(epsilon=2.0)))
    for block in metrics["privacy"].values():
        assert "wine dataset's documentation" in block["mechanism"]["standardization"]
        assert "not the training mean/std" in block["mechanism"]["standardization"]
        assert block["ledger"]["lifetime_epsilon_spent"] <= 2.0
    csv = tmp_path / "t.csv"
    csv.write_text("a,b,c,y\n" + "\n".join(f"{i},{i % 7},{i % 3},{i % 2}" for i in range(60)))
    with pytest.raises(ConfigError, match="needs public per-column bounds"):
        train(csv=csv, target="y", parties=3, rounds=2, plan=PrivacyPlan(feature_dp=FeatureDP(epsilon=2.0)))
    (tmp_path / "cols.toml").write_text("lower = [0, 0, 0]\nupper = [60, 6, 2]\n")
    argv = ["train", "--csv", str(csv), "--target", "y", "-M", "3", "-T", "2", "--epsilon", "2", "--no-progress",
            "--columns", str(tmp_path / "cols.toml")]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert all("declared in cols.toml" in b["mechanism"]["standardization"] for b in metrics["privacy"].values())
    (tmp_path / "cols.toml").write_text("lower = [0, 0]\nupper = [60, 6]\n")
    assert main([*argv, "--out", str(tmp_path / "run2")]) == 2
    assert "the column declaration has 2 columns, 't' has 3 feature columns (a, b, c)" in capsys.readouterr().err
    assert not (tmp_path / "run2").exists()


def test_train_ledger_dir_makes_embedded_budgets_persistent(tmp_path, capsys):
    args = ["train", "--dataset", "wine", "-M", "3", "-T", "2", "--epsilon", "1", "--ledger", str(tmp_path),
            "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    files = sorted(p.name for p in tmp_path.glob("*.securegal-ledger.json"))
    assert files == ["party1.securegal-ledger.json", "party2.securegal-ledger.json"]
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "b")]) == 2  # the same split's rows were disclosed
    assert re.search(r"the table has epsilon [0-9.e-]+ of 1 left", capsys.readouterr().err)  # how little is left
    assert main([*args, "--out", str(tmp_path / "b"), "--dp-predict", "non-training"]) == 2
    err = capsys.readouterr().err  # the first run took the whole lifetime budget
    assert "budget_exceeded" in err and "smallest session" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b" / "metrics.json").exists()
    assert main(["train", "--dataset", "wine", "--ledger", str(tmp_path), "--out", str(tmp_path / "c"),
                 "--no-progress"]) == 2
    assert "needs --epsilon or --label-epsilon" in capsys.readouterr().err


# --- label-DP: the split does not depend on the labels ------------------------------------------

def test_label_dp_split_does_not_depend_on_the_labels(monkeypatch):
    from dataclasses import replace

    wine = load_dataset("wine")
    rng = np.random.default_rng(5)
    for trial in range(10):
        y = wine.y.copy()
        i = int(rng.integers(len(y)))
        y[i] = (y[i] + 1) % 3
        a = split_rows(wine, trial, 0.2, 0.1, stratify=False)
        b = split_rows(replace(wine, y=y), trial, 0.2, 0.1, stratify=False)
        assert all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("train", "validation", "test"))
    import securegal.run as run

    seen = []
    real = run.split_rows
    monkeypatch.setattr(run, "split_rows", lambda *a, **kw: seen.append(kw["stratify"]) or real(*a, **kw))
    from securegal.privacy.plan import PrivacyPlan

    run.train("wine", parties=2, rounds=1, plan=PrivacyPlan.from_options(label_epsilon=5.0), weighting="uniform",
              eta=0.5)
    run.train("wine", parties=2, rounds=1)
    assert seen == [False, True]


def test_own_tables_declare_each_partys_columns_for_embedded_dp(tmp_path, capsys):
    """``train --label-owner A=a.csv --party B=b.csv --id COL --epsilon E --columns FILE``: one
    [NAME] table per party, for its own columns; --ledger keeps each party's ledger."""
    rng = np.random.default_rng(0)
    n = 120
    x = rng.normal(size=(n, 3))
    y = (x.sum(axis=1) > 0).astype(int)
    (tmp_path / "a.csv").write_text("pid,a1,y\n" + "".join(f"p{i},{x[i, 0]:.4f},{y[i]}\n" for i in range(n)))
    (tmp_path / "b.csv").write_text("pid,b1,b2\n" + "".join(f"p{i},{50 + 10 * x[i, 1]:.4f},{x[i, 2]:.4f}\n"
                                                          for i in range(n)))
    base = ["train", "--label-owner", f"alice={tmp_path / 'a.csv'}", "--party", f"bank={tmp_path / 'b.csv'}",
            "--id", "pid", "--target", "y", "-T", "2", "--epsilon", "1", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "r0")]) == 2
    assert "give --columns FILE with one [NAME] table per --party" in capsys.readouterr().err
    cols = tmp_path / "cols.toml"
    for text, needle in (("[bank]\nlower = [0]\nupper = [100]\n", "[bank] declares 1 columns, bank's table has 2"),
                         ("[bonk]\nlower = [0, -5]\nupper = [100, 5]\n", "unknown ['bonk']"),
                         ("[bank]\nlower = [0, -5]\n", "[bank]: ")):
        cols.write_text(text)
        assert main([*base, "--columns", str(cols), "--out", str(tmp_path / "r1")]) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err
    cols.write_text("[bank]\nlower = [0, -5]\nupper = [100, 5]\n")
    (tmp_path / "ledgers").mkdir()
    assert main([*base, "--columns", str(cols), "--ledger", str(tmp_path / "ledgers"),
                 "--out", str(tmp_path / "r2")]) == 0
    block = json.loads((tmp_path / "r2" / "metrics.json").read_text())["privacy"]["bank"]
    assert block["mechanism"]["standardization"].startswith("declared bounds (mid-range/half-width), declared in "
                                                            "cols.toml")
    ledger = read_ledger(tmp_path / "ledgers" / "bank.securegal-ledger.json")
    assert 0 < ledger.epsilon_spent <= 1.0
    assert main([*base, "--columns", str(cols), "--ledger", str(tmp_path / "ledgers"), "--dp-predict",
                 "non-training", "--out", str(tmp_path / "r3")]) == 2  # the lifetime budget went to the first run
    assert "budget_exceeded" in capsys.readouterr().err


def _clinic(base: Path, name: str, order: np.ndarray, privacy: dict) -> PartyConfig:
    rng = np.random.default_rng(7)
    X = np.round(rng.normal(size=(60, 3)), 4)
    rows = "".join(f"pt-{i:03d},{X[i, 0]},{X[i, 1]},{X[i, 2]}\n" for i in order)
    (base / f"{name}.csv").write_text("pid,a,b,c\n" + rows)
    (base / f"{name}.toml").write_text(party_config(
        "party1", data={"csv": f"{name}.csv", "id_column": "pid"}, learner_seed=1, certs=None, transcripts=None,
        privacy={"columns": {"centre": [0, 0, 0], "scale": [1, 1, 1]}, **privacy}))
    return PartyConfig.load(base / f"{name}.toml")


def test_the_same_rows_in_another_order_are_the_same_table(tmp_path):
    """The review served a shuffled export of a DP party's CSV beside the original and got a fresh
    lifetime budget (PLD 1.47 against 1): the fingerprint took row numbers and file order. It is
    now over each row's own ID, in ID order, so the export finds the original's ledger."""
    from securegal.deploy.party_process import open_table_privacy

    first = _clinic(tmp_path, "clinic", np.arange(60), {"epsilon": 1.0})
    open_table_privacy(first).close()
    shuffled = _clinic(tmp_path, "clinic_export2", np.random.default_rng(1).permutation(60), {"epsilon": 1.0})
    with pytest.raises(LedgerError, match="already has its ledger at .*clinic.csv.securegal-ledger.json") as info:
        open_table_privacy(shuffled)
    assert "\n" not in str(info.value) and not (tmp_path / "clinic_export2.csv.securegal-ledger.json").exists()


def test_a_delta_too_large_for_the_table_is_refused_naming_the_file(tmp_path):
    with pytest.raises(ConfigError, match="clinic.toml: delta must be < 1/n") as info:
        _clinic(tmp_path, "clinic", np.arange(60), {"epsilon": 1.0, "delta": 1 / 60})
    assert "\n" not in str(info.value) and not list(tmp_path.glob("*ledger*"))


def test_an_epsilon_too_small_for_the_documented_estimate_names_epsilon():
    with pytest.raises(ConfigError, match="epsilon 5e-324 is too small"):
        documented_columns("breast_cancer", 30, 5e-324)


def test_refused_requests_are_noted_without_their_bytes(tmp_path):
    """Ten refused 16 MiB requests for a foreign session grew the party's transcript from 230 KB to
    168 MB (review W): a refused request over 64 KiB is now noted by header, size and digest only."""
    from securegal.parties.endpoint import REFUSED_KEPT_BYTES
    from securegal.transcript import read_transcript

    text = party_config("party1", data=DATA, learner_seed=1, certs=None, transcripts=str(tmp_path / "tr"))
    (tmp_path / "p.toml").write_text(text)
    endpoint = build_party(PartyConfig.load(tmp_path / "p.toml"))
    seq = _session(endpoint, "s1", np.arange(300))
    messages = tmp_path / "tr" / "messages.bin"
    before = messages.stat().st_size
    big = m.FitRequest(np.zeros((REFUSED_KEPT_BYTES // 8 + 10, 2)))
    for i in range(3):
        assert _send(endpoint, seq + i, big, round=1, session="not-the-session").code == "protocol"
    small = _send(endpoint, seq + 3, m.FitRequest(np.zeros((3, 2))), round=1, session="not-the-session")
    assert small.code == "protocol"
    endpoint.close()
    grown = messages.stat().st_size - before
    assert grown < 4 * 2048, grown  # three error replies and the one small refused request
    index = [json.loads(x) for x in (tmp_path / "tr" / "index.jsonl").read_text().splitlines()]
    noted = [e for e in index if e.get("refused")]
    assert len(noted) == 3 and all(e["bytes"] > REFUSED_KEPT_BYTES and len(e["sha256"]) == 64 for e in noted)
    tr = read_transcript(tmp_path / "tr")  # readers skip the notes
    assert len(tr.records) == len(index) - 3


def test_many_small_refused_requests_cannot_fill_the_transcript(tmp_path, monkeypatch):
    """300 refused requests just under 64 KiB each grew the transcript by 19 MB (re-verification
    of review W F9): past a total, refused requests are noted without their bytes too."""
    from securegal.parties import endpoint as endpoint_mod

    monkeypatch.setattr(endpoint_mod, "REFUSED_KEPT_TOTAL", 100_000)
    text = party_config("party1", data=DATA, learner_seed=1, certs=None, transcripts=str(tmp_path / "tr"))
    (tmp_path / "p.toml").write_text(text)
    endpoint = build_party(PartyConfig.load(tmp_path / "p.toml"))
    messages = tmp_path / "tr" / "messages.bin"
    before = messages.stat().st_size if messages.exists() else 0
    almost = m.FitRequest(np.zeros((endpoint_mod.REFUSED_KEPT_BYTES // 16 - 100, 2)))
    for i in range(20):
        assert _send(endpoint, i, almost, round=1, session="nobody").code == "protocol"
    endpoint.close()
    assert messages.stat().st_size - before < 100_000 + 20 * 2048
    index = [json.loads(x) for x in (tmp_path / "tr" / "index.jsonl").read_text().splitlines()]
    assert sum(1 for e in index if e.get("refused")) >= 18


def test_a_fit_or_predict_between_an_intersection_and_its_setup_is_a_protocol_error(tmp_path):
    """After a finished session, a FitRequest sent after the next intersection but before Setup got
    an `internal` error (the last session's round count was still set and no trainer existed;
    found by review W's state fuzzer)."""
    endpoint = build_party(PartyConfig.load(_party_file(tmp_path)))
    seq = _session(endpoint, "s1", np.arange(300), rounds=3, finish=True)
    seq = _align(endpoint, "s2")
    for body in (m.FitRequest(np.zeros((300, 2))), m.PredictRequest(H("s2", np.arange(300, 310)), 1)):
        reply = _send(endpoint, seq, body, round=1, session="s2")
        assert reply.code == "protocol" and "before setup" in reply.message, reply.message
        seq += 1
    endpoint.close()
