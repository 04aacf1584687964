"""Issue 10's malicious label owner (tests/test_adversary_label_owner.py) on data and settings
the test does not use: other datasets, narrow and wide parties, epsilon 1 and 8, other crafted
residuals, 25 and 100 known rows.

Per configuration a real ``securegal party serve`` process serves one party's columns with a
lifetime DP budget; the adversary (the test's :class:`Adversary`, subclassed only to align any
number of rows) opens sessions until the ledger refuses, sends crafted residuals, probes every
refusal the test probes (it keeps, rather than asserts on, anything the party answers), then
attacks the rows the guarantee covers (trained on, never predicted) with the hat-matrix and
inversion-network attacks, and reports R^2 against the no-transcript baseline and the party's
RSS. Side knowledge: ``known`` of the covered rows, drawn with seeds 0, 1, 2 (all reported).

    flock /tmp/heavy.lock .venv/bin/python benchmarks/adversary_unseen.py --out /tmp/adv [--only NAME ...]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attacks import inversion_net  # noqa: E402
from attacks.active_residuals import crafted_residuals  # noqa: E402
from attacks.features import KnownRows, score_features  # noqa: E402
from attacks.hat_matrix import reconstruct  # noqa: E402
from securegal import messages as m  # noqa: E402
from securegal.align import LabelOwnerPsi  # noqa: E402
from securegal.data.datasets import load_dataset  # noqa: E402
from securegal.data.split import party_tables, vertical_split  # noqa: E402
from securegal.deploy.localnet import party_config  # noqa: E402
from securegal.privacy.dp.registry import STATE_ENV  # noqa: E402
from securegal.transport.grpc_client import GrpcTransport, RetryPolicy  # noqa: E402
from tests.test_adversary_label_owner import Adversary, _rss_kib  # noqa: E402
from tests.test_table_budget import _serve, _stop  # noqa: E402

# Boston (mlxtend, no documented stats in securegal): public domain bounds from the variables'
# definitions (percentages 0..100, CHAS a 0/1 dummy, NOX in parts per 10 million, RAD an index
# 1..24, B = 1000 (Bk - 0.63)^2 in [0, 396.9], ...), not from the data.
BOSTON_LOWER = [0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 10, 0, 0]
BOSTON_UPPER = [100, 100, 100, 1, 1, 10, 100, 15, 24, 1000, 25, 396.9, 100]


@dataclass
class Config:
    name: str
    dataset: str
    parties: int = 2
    block: int = 1
    epsilon: float = 1.0
    session_epsilon: float | None = 0.3
    K: int = 16
    rounds: int = 4
    residuals: str = "gauss"   # gauss | huge (x1e6: saturates the residual clip) | rowpick | sign
    mode: str = "test"         # test: later sessions train other rows; all: every session trains the victims
    known: tuple = (25, 100)
    victims: float = 0.55      # share of rows session 1 trains on (the covered rows)
    disclose: float = 0.15     # share of rows the adversary has predicted for it (outside the guarantee)
    csv: bool = False          # serve the whole dataset as a CSV party (all columns), declared columns
    max_message: int = 100_000
    extra: dict = field(default_factory=dict)


CONFIGS = [
    Config("wine-eps1", "wine"),
    Config("wine-eps8", "wine", epsilon=8.0, session_epsilon=2.4),
    Config("wine-narrow2-eps1", "wine", parties=6),
    Config("diabetes-eps1", "diabetes"),
    Config("diabetes-eps8", "diabetes", epsilon=8.0, session_epsilon=2.4),
    Config("diabetes-narrow2-eps1-all", "diabetes", parties=5, mode="all"),
    Config("boston-eps1", "boston"),
    Config("boston-narrow2-eps1", "boston", parties=6),
    Config("digits32-eps1", "digits", max_message=400_000),
    Config("digits64csv-eps1", "digits", csv=True, max_message=400_000),
    Config("wine-eps1-huge", "wine", residuals="huge"),
    Config("wine-eps1-rowpick", "wine", residuals="rowpick"),
    Config("diabetes-eps1-sign-K2-R1-all", "diabetes", residuals="sign", K=2, rounds=1, mode="all"),
    Config("diabetes-eps1-onesession-all", "diabetes", session_epsilon=None, mode="all", K=64, rounds=2,
           max_message=400_000),
    Config("diabetes-eps8-onesession-all", "diabetes", epsilon=8.0, session_epsilon=None, mode="all", K=64,
           rounds=2, max_message=400_000),
    Config("diabetes-eps1-all", "diabetes", mode="all"),
    # repeated training IDs in Setup (run_dup)
    Config("dup-wine-eps1", "wine", mode="dup", known=(25,), extra={"targets": 50, "disclosed": 30}),
    Config("dup-diabetes-eps1", "diabetes", mode="dup", known=(25, 100), extra={"targets": 140, "disclosed": 60, "fill": 0.7}),
    Config("dup-boston-narrow2-eps1", "boston", parties=6, mode="dup", known=(25,),
           extra={"targets": 60, "disclosed": 30}),
    Config("dup-wine-eps1-1MB", "wine", mode="dup", known=(25,), max_message=1_000_000,
           extra={"targets": 50, "disclosed": 30}),
    Config("dup-diabetes-eps1-1MB", "diabetes", mode="dup", known=(25, 100), max_message=1_000_000,
           extra={"targets": 140, "disclosed": 60}),
    Config("dup-boston-narrow2-eps1-1MB", "boston", parties=6, mode="dup", known=(25,), max_message=1_000_000,
           extra={"targets": 60, "disclosed": 30}),
    Config("dup-wine-eps8-1MB", "wine", epsilon=8.0, session_epsilon=2.4, mode="dup", known=(25,),
           max_message=1_000_000, extra={"targets": 50, "disclosed": 30}),
    Config("dup-digits32-eps1", "digits", mode="dup", known=(25, 100), max_message=400_000,
           extra={"targets": 150, "disclosed": 80}),
]


def residuals(kind: str, n: int, K: int, t: int) -> np.ndarray:
    if kind == "gauss":
        return crafted_residuals(n, K, t)
    if kind == "huge":
        return 1e6 * crafted_residuals(n, K, t)
    if kind == "sign":
        return np.sign(crafted_residuals(n, K, t))
    if kind == "rowpick":  # output j is an indicator of one row: the reply spans the hat matrix's columns
        r = np.zeros((n, K))
        r[(np.arange(K) + K * (t - 1)) % n, np.arange(K)] = 1.0
        return r
    raise ValueError(kind)


class Adv(Adversary):
    """The test's adversary, aligning ``ids`` (the test's is fixed to breast_cancer's 569 rows)."""

    def __init__(self, transport, ids):
        super().__init__(transport)
        self.ids = ids
        self.answered: list[str] = []  # probes the party answered instead of refusing

    def open(self, session):
        psi = LabelOwnerPsi(self.ids, session)
        self.handles[session] = psi.finish(self.send(session, psi.request())).handles
        ack = self.send(session, m.PsiSelection(np.sort(self.handles[session])))
        assert isinstance(ack, m.PsiSelectionAck), ack
        return self.handles[session]

    def probe(self, what, session, body, rows=None, **kw):
        """Expect a refusal; keep whatever the party releases instead."""
        try:
            reply = self.send(session, body, **kw)
        except Exception as exc:  # the transport refusing (over its limit) is a refusal too
            self.refused.append((what, type(exc).__name__))
            return None
        if isinstance(reply, m.ErrorReply):
            self.refused.append((what, reply.code))
        else:
            self.answered.append(what)
            if rows is not None and hasattr(reply, "predictions"):
                self.keep(session, "probe:" + what, rows, reply.predictions)
        return reply


def write_party(cfg: Config, work: Path) -> tuple[Path, np.ndarray, list]:
    """party.toml (as tests/test_table_budget.py::_party_file builds it), the victim's raw
    columns and the IDs the label owner aligns."""
    work.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(cfg.dataset)
    privacy = {"epsilon": cfg.epsilon, **({"session_epsilon": cfg.session_epsilon} if cfg.session_epsilon else {})}
    if cfg.csv:
        truth = dataset.X
        ids = [f"r{i}" for i in range(len(truth))]
        with open(work / "table.csv", "w") as f:
            f.write("id," + ",".join(f"c{j}" for j in range(truth.shape[1])) + "\n")
            for i, row in enumerate(truth):
                f.write(ids[i] + "," + ",".join(repr(float(v)) for v in row) + "\n")
        data = {"csv": "table.csv", "id_column": "id"}
        privacy["columns"] = {"lower": [0.0] * truth.shape[1], "upper": [16.0] * truth.shape[1],
                              "dp_epsilon": 0.1 * cfg.epsilon}  # digits' documented pixel range, as built-in
        privacy["ledger"] = "party1.securegal-ledger.json"
    else:
        block = vertical_split(dataset, cfg.parties)[cfg.block]
        truth = party_tables(dataset, [block])[0].X
        ids = list(range(len(truth)))
        data = {"dataset": cfg.dataset, "parties": cfg.parties, "block": cfg.block}
        if cfg.dataset == "boston":
            privacy["columns"] = {"lower": [float(BOSTON_LOWER[j]) for j in block.columns],
                                  "upper": [float(BOSTON_UPPER[j]) for j in block.columns]}
    text = party_config("party1", data=data, learner_seed=1, certs=None, transcripts=None, privacy=privacy,
                        limits={"max_message_bytes": cfg.max_message})
    (work / "party.toml").write_text(text)
    return work / "party.toml", np.asarray(truth, dtype=np.float64), ids


def attack(adv: Adv, truth: np.ndarray, rows: np.ndarray, known: int, seed: int, net: bool) -> dict:
    """The test's ``_attack`` with ``known`` rows, plus the inversion network on the same columns."""
    columns = []
    for _, _, released_rows, values in adv.released:
        values = values.reshape(values.shape[0], -1) if values.ndim == 2 else np.concatenate(list(values), axis=1)
        if not np.isin(rows, released_rows).all():
            continue
        pos = {int(r): i for i, r in enumerate(released_rows)}
        columns.append(values[[pos[int(r)] for r in rows]])
    if not columns or known >= len(rows) - 10:
        return {}
    stacked = np.hstack(columns)
    pick = np.random.default_rng(seed).choice(len(rows), known, replace=False)
    kr = KnownRows(pick, truth[rows][pick])
    out = {"columns": stacked.shape[1]}
    r2, = [r for r in score_features("hat_matrix", "alice", "party1", reconstruct([stacked], kr), truth[rows], kr)
           if r.metric == "r2"]
    out.update(hat=r2.score, baseline=r2.baseline, hat_adv=r2.score - r2.baseline, hat_p=r2.p_value)
    if net:
        r2n, = [r for r in inversion_net.run([stacked], kr, truth[rows], "alice", "party1") if r.metric == "r2"]
        out.update(net=r2n.score, net_adv=r2n.score - r2n.baseline)
    return out


def run_dup(cfg: Config, out: Path) -> dict:
    """Repeated training IDs: Setup names each of N target rows m times (until 2026-12-04 the
    party did not refuse repeats; now it answers ``protocol`` and this run records the refusal),
    one output, N rounds; round t's residual is the clip C on target t's copies
    only, so its round model is G^-1 (m C phi_t + noise). Predict replies for other rows (the
    policy answers them: they leave the guarantee) give Phi_d theta_t exactly; column t is a
    fixed linear map of phi_t, solved with the hat-matrix attack on the targets' known rows."""
    path, truth, ids = write_party(cfg, out / cfg.name)
    n = len(truth)
    order = np.random.default_rng(12345).permutation(n)
    N = cfg.extra.get("targets", 50)
    targets, disclosed = np.sort(order[:N]), np.sort(order[N:N + cfg.extra.get("disclosed", 30)])
    copies = max(1, min(int(cfg.extra.get("fill", 0.8) * cfg.max_message / 8), 99_000) // N)  # delta 1e-5 needs n < 1e5
    t0 = time.time()
    proc, port = _serve(path)
    transport = GrpcTransport({"party1": f"127.0.0.1:{port}"}, insecure=True,
                              retry=RetryPolicy(attempts=2, timeout=300.0, backoff=0.05, backoff_max=0.2))
    log: dict = {"config": asdict(cfg), "d": int(truth.shape[1]), "n": n, "copies": copies, "targets": N}
    embeddings = []
    try:
        before = _rss_kib(proc.pid)
        adv = Adv(transport, ids)
        session = 0
        while session < 10:
            session += 1
            s = f"s{session}"
            h = adv.open(s)
            train = np.repeat(h[targets], copies)
            reply = adv.send(s, m.Setup(train, 1, N, "regression"))
            if not isinstance(reply, m.SetupAck):
                log["last_refusal"] = f"{reply.code}: {reply.message}"
                break
            for t in range(1, N + 1):
                r = np.zeros((len(train), 1))
                r[(t - 1) * copies:t * copies] = 1.0
                fit = adv.send(s, m.FitRequest(r), round=t)
                assert isinstance(fit, m.FitReply), fit
            pred = adv.send(s, m.PredictRequest(h[disclosed], N))
            if not isinstance(pred, m.PredictReply):
                log["predict_refused"] = f"{pred.code}: {pred.message}"
                break
            embeddings.append(np.asarray(pred.predictions)[:, :, 0])  # (N targets, disclosed rows)
            adv.send(s, m.Finish())
        after = _rss_kib(proc.pid)
    finally:
        transport.close()
        _stop(proc)
    from securegal.commands.ledger import format_ledger
    from securegal.privacy.dp.ledger import read_ledger

    ledger = read_ledger(path.parent / "party1.securegal-ledger.json")
    log.update(sessions=len(embeddings), seconds=round(time.time() - t0, 1), epsilon_spent=ledger.epsilon_spent,
               ledger=[line.strip() for line in format_ledger(ledger).splitlines() if "guarantee" in line],
               rss_mib={"start": before["VmRSS"] / 1024, "end": after["VmRSS"] / 1024, "peak": after["VmHWM"] / 1024},
               rss_bound_ok=(after["VmHWM"] - before["VmRSS"]) * 1024 <= 8 * cfg.max_message + 96 * 2 ** 20,
               covered_rows=N, attacks={})
    if embeddings:
        np.savez(out / cfg.name / "embeddings.npz", *embeddings, targets=targets, truth=truth[targets])
        stacked = np.hstack(embeddings)
        for known in cfg.known:
            if known > N - 10:
                continue
            for seed in (0, 1, 2):
                pick = np.random.default_rng(seed).choice(N, known, replace=False)
                kr = KnownRows(pick, truth[targets][pick])
                r2, = [r for r in score_features("hat_matrix", "alice", "party1", reconstruct([stacked], kr),
                                                  truth[targets], kr) if r.metric == "r2"]
                r2n, = [r for r in inversion_net.run([stacked], kr, truth[targets], "alice", "party1")
                        if r.metric == "r2"]
                # each session has its own G: the hat-matrix attack per session, estimates averaged
                avg = np.mean([reconstruct([e], kr) for e in embeddings], axis=0)
                r2a, = [r for r in score_features("hat_matrix", "alice", "party1", avg, truth[targets], kr)
                        if r.metric == "r2"]
                log["attacks"][f"k{known}s{seed}"] = dict(
                    columns=stacked.shape[1], hat=r2.score, baseline=r2.baseline, hat_adv=r2.score - r2.baseline,
                    hat_p=r2.p_value, net=r2n.score, net_adv=r2n.score - r2n.baseline,
                    hat_avg=r2a.score, hat_avg_adv=r2a.score - r2a.baseline, hat_avg_p=r2a.p_value)
    return log


def run(cfg: Config, out: Path) -> dict:
    if cfg.mode == "dup":
        return run_dup(cfg, out)
    path, truth, ids = write_party(cfg, out / cfg.name)
    n = len(truth)
    order = np.random.default_rng(12345).permutation(n)  # fixed, not tuned
    nv, nd = int(cfg.victims * n), int(cfg.disclose * n)
    victims, disclosed, rest = np.sort(order[:nv]), np.sort(order[nv:nv + nd]), np.sort(order[nv + nd:])
    t0 = time.time()
    proc, port = _serve(path)
    transport = GrpcTransport({"party1": f"127.0.0.1:{port}"}, insecure=True,
                              retry=RetryPolicy(attempts=2, timeout=120.0, backoff=0.05, backoff_max=0.2))
    log: dict = {"config": asdict(cfg), "d": int(truth.shape[1]), "n": n}
    try:
        before = _rss_kib(proc.pid)
        adv = Adv(transport, ids)
        K, R = cfg.K, cfg.rounds
        h = adv.open("s1")
        reply = adv.send("s1", m.Setup(h[victims], K, R, "regression"))
        assert isinstance(reply, m.SetupAck), reply
        for t in range(1, R + 1):
            reply = adv.send("s1", m.FitRequest(residuals(cfg.residuals, nv, K, t)), round=t)
            assert isinstance(reply, m.FitReply), reply
            adv.keep("s1", f"fit{t}", victims, reply.predictions)
        adv.probe("fit the same round again", "s1", m.FitRequest(residuals(cfg.residuals, nv, K, 9)), round=R)
        adv.probe("replay an old seq", "s1", m.FitRequest(residuals(cfg.residuals, nv, K, 9)), round=R + 1, seq=1)
        adv.probe("predict the training rows", "s1", m.PredictRequest(h[victims[:25]], R), rows=victims[:25])
        adv.probe("predict 1 training row among others", "s1",
                  m.PredictRequest(np.r_[h[disclosed[:5]], h[victims[:1]]], R))
        adv.probe("predict rounds 0 for training rows", "s1", m.PredictRequest(h[victims[:25]], 0))
        adv.probe("predict 2^31-1 rounds", "s1", m.PredictRequest(h[disclosed[:10]], 2 ** 31 - 1))
        adv.probe("predict R+1 rounds", "s1", m.PredictRequest(h[disclosed[:10]], R + 1))
        adv.probe("predict duplicated training handle", "s1", m.PredictRequest(np.r_[h[victims[:1]], h[victims[:1]]], 1))
        adv.probe("a message of another session", "zzz", m.PredictRequest(h[victims[:10]], 1))
        adv.probe("predict rows never selected", "s1", m.PredictRequest(np.array([10 ** 9]), 1))
        adv.probe("fit over the transport limit", "s1", m.FitRequest(np.zeros((nv, cfg.max_message // nv + 1))),
                  round=R + 1)
        reply = adv.send("s1", m.PredictRequest(h[disclosed], R))  # allowed: leaves the guarantee
        if isinstance(reply, m.PredictReply):
            adv.keep("s1", "predict", disclosed, reply.predictions)
        else:
            log["predict_disclosed_refused"] = reply.message
        adv.send("s1", m.Finish())
        session = 1
        while session < 40:
            session += 1
            s = f"s{session}"
            h = adv.open(s)
            adv.probe("predict victims before setup (new session)", s, m.PredictRequest(h[victims[:25]], 1),
                      rows=victims[:25])
            # 100 rounds, one fitted: settled, the session pays for that one (2^31-1 rounds are
            # refused since 2026-12-04: their round models alone would pass the party's memory bound)
            train, rounds = (victims, R) if cfg.mode == "all" else (rest, 100)
            reply = adv.send(s, m.Setup(h[train], K, rounds, "regression"))
            if isinstance(reply, m.ErrorReply):
                adv.refused.append(("one more session", reply.code))
                log["last_refusal"] = f"{reply.code}: {reply.message}"
                break
            for t in range(1, (R if cfg.mode == "all" else 1) + 1):
                fit = adv.send(s, m.FitRequest(residuals(cfg.residuals, len(train), K, t + 10 * session)), round=t)
                if not isinstance(fit, m.FitReply):
                    log.setdefault("fit_refusals", []).append(f"{fit.code}: {fit.message}")
                    break
                adv.keep(s, f"fit{t}", train, fit.predictions)
            for rows in (victims, victims[:25], victims[-1:]):
                adv.probe("predict an earlier session's training rows", s, m.PredictRequest(h[rows], 1), rows=rows)
            adv.send(s, m.Finish())
        after = _rss_kib(proc.pid)
    finally:
        transport.close()
        _stop(proc)
        err = proc.stderr.read() if proc.stderr else ""
    from securegal.commands.ledger import format_ledger
    from securegal.privacy.dp.ledger import read_ledger

    ledger_file = path.parent / "party1.securegal-ledger.json"
    ledger = read_ledger(ledger_file)
    log.update(sessions=session - 1, refused=len(adv.refused), refusal_codes=sorted({c for _, c in adv.refused}),
               answered=adv.answered, releases=len(adv.released), seconds=round(time.time() - t0, 1),
               epsilon_spent=ledger.epsilon_spent,
               ledger=[line.strip() for line in format_ledger(ledger).splitlines() if "guarantee" in line],
               rss_mib={"start": before["VmRSS"] / 1024, "end": after["VmRSS"] / 1024, "peak": after["VmHWM"] / 1024},
               rss_bound_ok=(after["VmHWM"] - before["VmRSS"]) * 1024 <= 8 * cfg.max_message + 96 * 2 ** 20,
               stderr_tail=err[-600:])
    log["covered_rows"] = int(len(victims))
    log["attacks"] = {}
    for known in cfg.known:
        for seed in (0, 1, 2):
            res = attack(adv, truth, victims, known, seed, net=True)
            if res:
                log["attacks"][f"k{known}s{seed}"] = res
    res = attack(adv, truth, disclosed, min(25, len(disclosed) // 2), 0, net=False)
    log["disclosed_rows_k25"] = res
    return log


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/adv")
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for cfg in CONFIGS:
        if args.only and cfg.name not in args.only:
            continue
        if (out / cfg.name).exists():
            raise SystemExit(f"{out / cfg.name} exists (the ledger would carry over); remove it first")
        # each configuration is its own organization: its own registry of the machine's ledgers
        os.environ[STATE_ENV] = str(out / cfg.name / "state")
        try:
            log = run(cfg, out)
        except Exception as exc:  # report, keep going
            log = {"config": asdict(cfg), "error": f"{type(exc).__name__}: {exc}"}
        results.append(log)
        (out / f"{cfg.name}.json").write_text(json.dumps(log, indent=1, default=str))
        a = log.get("attacks", {})
        k25 = [v for k, v in a.items() if k.startswith("k25")]
        k100 = [v for k, v in a.items() if k.startswith("k100")]
        fmt = lambda vs, key: "/".join(f"{v[key]:+.3f}" for v in vs) or "-"  # noqa: E731
        print(f"{cfg.name}: d={log.get('d')} covered={log.get('covered_rows')} "
              f"base25={fmt(k25, 'baseline')} hat25={fmt(k25, 'hat')} adv25={fmt(k25, 'hat_adv')} "
              f"netadv25={fmt(k25, 'net_adv')} avgadv25={fmt(k25, 'hat_avg_adv') if k25 and 'hat_avg_adv' in k25[0] else '-'} adv100={fmt(k100, 'hat_adv')} netadv100={fmt(k100, 'net_adv')} "
              f"disclosed_hat={log.get('disclosed_rows_k25', {}).get('hat', float('nan')):.3f} "
              f"sessions={log.get('sessions')} answered={log.get('answered')} rss={log.get('rss_mib')} "
              f"{log.get('error', '')}", flush=True)
    (out / "summary.json").write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
