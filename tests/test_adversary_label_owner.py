"""Issue 10, "The review's attack", scripted: a malicious label owner against a real DP party.

The party is a real ``securegal party serve`` process (breast_cancer, its 15 columns, lifetime
epsilon 1). The label owner sends every message the protocol lets it send, through the real
gRPC transport and wire codec: as many sessions as the party admits, Setup with crafted
``n_outputs`` and ``rounds``, crafted residuals every round, predict requests for training rows,
for rows trained in *earlier* sessions, for more rounds than fitted, oversized ones, replays,
repeated rounds and messages of another session. It keeps every reply the party sends and runs
the feature-reconstruction attack (:mod:`attacks.hat_matrix`) with 25 known rows on the rows the
table's DP guarantee covers (every row any session trained on). It also measures the party
process's resident memory before and after.

Rows no session ever trained on are not covered: the default policy (``predict =
"non-training"``) answers predictions for them with the exact round models, which discloses
them (docs/privacy.md section 6); the test prints that number too.
"""
from __future__ import annotations

import numpy as np
import pytest

from attacks.active_residuals import crafted_residuals
from attacks.features import KnownRows, score_features
from attacks.hat_matrix import reconstruct
from securegal import messages as m
from securegal.align import LabelOwnerPsi
from securegal.data.datasets import load_dataset
from securegal.data.split import party_tables, vertical_split
from securegal.errors import ProtocolError
from securegal.transport.grpc_client import GrpcTransport, RetryPolicy
from securegal.wire.codec import decode, encode

from .test_table_budget import _party_file, _serve, _stop

ROWS = 569
MAX_MESSAGE = 100_000  # the party's configured limits.max_message_bytes
KNOWN = 25
K = 16  # outputs the attacker asks for: >= the party's 15 columns, so one round could span them


def _rss_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


class Adversary:
    """A label owner that keeps every byte the party releases and tries everything."""

    def __init__(self, transport: GrpcTransport):
        self.transport = transport
        self.seq: dict[str, int] = {}
        self.released: list[tuple[str, str, np.ndarray, np.ndarray]] = []  # (session, kind, table rows, values)
        self.refused: list[tuple[str, str]] = []  # (what was tried, the party's error code)
        self.handles: dict[str, np.ndarray] = {}  # session -> the party's handle of each table row

    def send(self, session: str, body, round: int = 0, seq: int | None = None):
        if seq is None:
            seq = self.seq.get(session, -1) + 1
            self.seq[session] = seq
        raw = self.transport.call("party1", encode(m.Envelope(session, round, "alice", "party1", seq, body)))
        return decode(raw).body

    def expect_refusal(self, what: str, session: str, body, **kw) -> str:
        reply = self.send(session, body, **kw)
        assert isinstance(reply, m.ErrorReply), (what, reply)
        self.refused.append((what, reply.code))
        return reply.message

    def open(self, session: str) -> np.ndarray:
        psi = LabelOwnerPsi(list(range(ROWS)), session)
        reply = self.send(session, psi.request())
        self.handles[session] = psi.finish(reply).handles
        assert isinstance(self.send(session, m.PsiSelection(np.sort(self.handles[session]))), m.PsiSelectionAck)
        return self.handles[session]

    def keep(self, session: str, kind: str, rows: np.ndarray, values) -> None:
        self.released.append((session, kind, np.asarray(rows), np.asarray(values, dtype=np.float64)))


def _attack(adv: Adversary, truth: np.ndarray, rows: np.ndarray, seed: int) -> tuple[float, float, int]:
    """Hat-matrix reconstruction of ``truth[rows]`` from every released column about those rows,
    with 25 known rows: (R^2, the no-transcript baseline's R^2, released columns used)."""
    columns = []
    for _, _, released_rows, values in adv.released:
        values = values.reshape(values.shape[0], -1) if values.ndim == 2 else \
            np.concatenate(list(values), axis=1)  # (rounds, n, K) -> (n, rounds*K)
        if not np.isin(rows, released_rows).all():
            continue  # a release about other rows
        pos = {int(r): i for i, r in enumerate(released_rows)}
        columns.append(values[[pos[int(r)] for r in rows]])
    if not columns:
        return float("nan"), float("nan"), 0
    stacked = np.hstack(columns)
    pick = np.random.default_rng(seed).choice(len(rows), KNOWN, replace=False)
    known = KnownRows(pick, truth[rows][pick])
    est = reconstruct([stacked], known)
    r2, = [r for r in score_features("hat_matrix", "alice", "party1", est, truth[rows], known) if r.metric == "r2"]
    return r2.score, r2.baseline, stacked.shape[1]


@pytest.mark.slow
def test_a_malicious_label_owner_learns_nothing_beyond_the_dp_releases(tmp_path, capsys):
    path = _party_file(tmp_path, {"epsilon": 1.0, "session_epsilon": 0.3},
                       limits={"max_message_bytes": MAX_MESSAGE})
    dataset = load_dataset("breast_cancer")
    truth = party_tables(dataset, vertical_split(dataset, 2))[1].X  # the victim's raw columns
    proc, port = _serve(path)
    transport = GrpcTransport({"party1": f"127.0.0.1:{port}"}, insecure=True,
                              retry=RetryPolicy(attempts=2, timeout=120.0, backoff=0.05, backoff_max=0.2))
    try:
        before = _rss_kib(proc.pid)
        adv = Adversary(transport)
        victims, others = np.arange(300), np.arange(300, ROWS)
        rounds = 4

        # --- session 1: train on the victims with crafted residuals, then try to get more ----------
        h = adv.open("s1")
        assert isinstance(adv.send("s1", m.Setup(h[victims], K, rounds, "regression")), m.SetupAck)
        for t in range(1, rounds + 1):
            reply = adv.send("s1", m.FitRequest(crafted_residuals(len(victims), K, t)), round=t)
            assert isinstance(reply, m.FitReply)
            adv.keep("s1", f"fit{t}", victims, reply.predictions)
        adv.expect_refusal("fit the same round again", "s1", m.FitRequest(crafted_residuals(300, K, 9)), round=rounds)
        adv.expect_refusal("replay an old seq", "s1", m.FitRequest(crafted_residuals(300, K, 9)), round=rounds + 1,
                           seq=3)
        adv.expect_refusal("predict the training rows", "s1", m.PredictRequest(h[victims[:KNOWN]], rounds))
        adv.expect_refusal("predict one training row among others", "s1",
                           m.PredictRequest(np.r_[h[others[:5]], h[victims[:1]]], rounds))
        adv.expect_refusal("predict 2^31-1 rounds", "s1", m.PredictRequest(h[others[:10]], 2 ** 31 - 1))
        adv.expect_refusal("predict one round more than fitted", "s1", m.PredictRequest(h[others[:10]], rounds + 1))
        adv.expect_refusal("predict a reply over max_message_bytes", "s1", m.PredictRequest(h[others], rounds))
        adv.expect_refusal("a message of another session", "zzz", m.PredictRequest(h[others[:10]], 1))
        adv.expect_refusal("predict rows never selected", "s1", m.PredictRequest(np.array([10 ** 9]), 1))
        with pytest.raises(ProtocolError):  # the transport refuses a message over the limit unread
            adv.send("s1", m.FitRequest(np.zeros((300, MAX_MESSAGE // 300))), round=rounds + 1)
        # what the party's policy lets it answer: rows no session trained on (they leave the guarantee)
        reply = adv.send("s1", m.PredictRequest(h[others[:100]], rounds))
        assert isinstance(reply, m.PredictReply)
        adv.keep("s1", "predict", others[:100], reply.predictions)
        adv.send("s1", m.Finish())

        # --- more sessions: train on other rows, then ask for the victims of session 1 -------------
        session = 1
        while True:
            session += 1
            s = f"s{session}"
            h = adv.open(s)
            small = h[others[:5]]
            adv.expect_refusal("a session of 5 rows", s, m.Setup(small, K, rounds, "regression"))
            h = adv.open(s + "r")  # so many rounds that their models alone would pass the party's memory bound
            message = adv.expect_refusal("a Setup of 2^31-1 rounds", s + "r",
                                         m.Setup(h[others[100:]], K, 2 ** 31 - 1, "regression"))
            assert "round models alone would take" in message
            h = adv.open(s + "b")
            s += "b"
            reply = adv.send(s, m.Setup(h[others[100:]], K, 100, "regression"))  # fits one of 100 rounds
            if isinstance(reply, m.ErrorReply):
                adv.refused.append(("one more session", reply.code))
                assert reply.code == "budget_exceeded" and "left" in reply.message, reply
                break
            fit = adv.send(s, m.FitRequest(crafted_residuals(len(others) - 100, K, 1)), round=1)
            adv.keep(s, "fit1", others[100:], fit.predictions)
            for rows in (victims, victims[:KNOWN], victims[-1:]):
                message = adv.expect_refusal("predict rows an earlier session trained on", s,
                                             m.PredictRequest(h[rows], 1))
                assert "training rows of a session of this table" in message
            adv.send(s, m.Finish())
        after = _rss_kib(proc.pid)
    finally:
        transport.close()
        _stop(proc)

    r2, baseline, used = _attack(adv, truth, victims, seed=0)
    disclosed_r2, disclosed_baseline, _ = _attack(adv, truth, others[:100], seed=0)
    with capsys.disabled():
        print(f"\nadversary: {session - 1} sessions served, {len(adv.refused)} requests refused "
              f"({sorted({c for _, c in adv.refused})}); {len(adv.released)} releases kept")
        print(f"feature reconstruction on the {len(victims)} DP-covered rows, {KNOWN} known: R^2 {r2:.3f}, "
              f"no-transcript baseline {baseline:.3f} ({used} released columns per row)")
        print(f"(outside the guarantee: the 100 never-trained rows the policy predicts for: R^2 {disclosed_r2:.3f}, "
              f"baseline {disclosed_baseline:.3f})")
        print(f"party RSS: {before['VmRSS'] / 1024:.0f} MiB at start, {after['VmRSS'] / 1024:.0f} MiB after, "
              f"peak {after['VmHWM'] / 1024:.0f} MiB; max_message_bytes {MAX_MESSAGE}")
    assert r2 <= baseline + 0.05, (r2, baseline)
    # a bounded number of max-size messages in flight (frames, decoded arrays, the encoded reply)
    assert (after["VmHWM"] - before["VmRSS"]) * 1024 <= 8 * MAX_MESSAGE + 96 * 2 ** 20, (before, after)


def test_rows_trained_in_any_session_are_never_predicted_even_after_a_restart(tmp_path):
    from securegal.deploy.party_process import PartyConfig, build_party

    from .test_table_budget import H, _send, _session

    cfg = PartyConfig.load(_party_file(tmp_path, {"epsilon": 1.0, "session_epsilon": 0.3}))
    endpoint = build_party(cfg)
    seq = _session(endpoint, "s1", np.arange(200))
    reply = _send(endpoint, seq, m.PredictRequest(H("s1", np.arange(400, 450)), 1), session="s1")
    assert isinstance(reply, m.PredictReply)
    _send(endpoint, seq + 1, m.Finish(), session="s1")
    assert endpoint.party.privacy.row_roles(ROWS) == {"trained": 200, "disclosed": 50}
    endpoint.close()
    endpoint = build_party(cfg)  # a restart keeps the roles with the ledger
    seq = _session(endpoint, "s2", np.arange(300, 569))  # training on disclosed rows is allowed
    for rows, refused in ((np.arange(0, 10), 10), (np.r_[np.arange(200, 210), 5], 1), (np.arange(200, 300), 0)):
        reply = _send(endpoint, seq, m.PredictRequest(H("s2", rows), 1), session="s2")
        seq += 1
        if refused:
            assert reply.code == "policy" and f"{refused} of the {len(rows)} requested rows were training rows" \
                in reply.message, reply
        else:
            assert isinstance(reply, m.PredictReply)
    assert endpoint.party.privacy.row_roles(ROWS) == {"trained": 469, "disclosed": 150}
    endpoint.close()
    from securegal.commands.ledger import format_ledger
    from securegal.privacy.dp.ledger import read_ledger

    assert ("419 of 569 under the guarantee (trained on, never disclosed), 50 trained on but disclosed by "
            "predict replies, 100 disclosed only") in format_ledger(read_ledger(cfg.ledger))
