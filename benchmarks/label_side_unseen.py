"""Independent re-measurement of the label side on data and settings the developers did not use.

    flock /tmp/heavy.lock .venv/bin/python benchmarks/label_side_unseen.py --out /tmp/labelside

For every configuration: `securegal train --save-ground-truth` (CLI, subprocess), `securegal
audit RUN --no-report` (CLI), then from each curious feature party's transcript only:
- the audit's label_inversion / label_clustering accuracy, baseline, advantage, its Bayes bound;
- a stronger passive attack the audit does not run: sum the residuals of *all* rounds, argmax
  (sign with one output), scored on the same unknown rows against the same prior baseline;
- under --label-epsilon: is any received residual the exact one (round 1: onehot(y) - 1/K or
  y - 1/2, since F0 = 0)? empirical noise std against z * sensitivity;
- does the *order* of the rows in Setup.train_ids say anything about the labels (eta^2 of
  position by class), which matters when the label owner's file is sorted by class.
Separately: a multi-table run (label owner file sorted by class; parties hold overlapping
subsets under string IDs) and what a feature party can tell about the label owner's ID set.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CLI = [str(ROOT / ".venv/bin/securegal")]

from attacks import stats  # noqa: E402
from attacks.audit import _choose, _rng, _setup, load_run  # noqa: E402
from attacks.views import as_array  # noqa: E402


def make_data(out: Path) -> dict[str, Path]:
    from mlxtend.data import autompg_data, boston_housing_data, iris_data
    from sklearn.datasets import load_digits
    files = {}

    def write(name, X, y):
        df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
        df.insert(0, "id", range(len(df)))
        df["y"] = y
        files[name] = out / f"{name}.csv"
        df.to_csv(files[name], index=False)

    X, y = autompg_data()
    write("autompg_bin", X, (y > np.median(y)).astype(int))          # mlxtend, binarized at the median
    X, y = boston_housing_data()
    write("boston_bin", X, (y > np.median(y)).astype(int))           # mlxtend, binarized at the median
    d = load_digits()
    write("digits_parity", d.data, d.target % 2)                     # sklearn digits, odd/even
    # Multi-table: mlxtend iris, the label owner's file sorted by class (as the source is), string IDs.
    X, y = iris_data()
    rng = np.random.default_rng(12345)
    ids = np.array([f"p{v:05d}" for v in rng.choice(99999, 150, replace=False)])
    lo_rows = np.sort(rng.choice(150, 128, replace=False))            # the label owner holds 128 of 150, class order kept
    p1_rows = rng.permutation(rng.choice(150, 135, replace=False))
    p2_rows = rng.permutation(rng.choice(150, 140, replace=False))
    pd.DataFrame({"id": ids[lo_rows], "a0": X[lo_rows, 0], "y": y[lo_rows]}).to_csv(out / "iris_alice.csv", index=False)
    pd.DataFrame({"id": ids[p1_rows], "b0": X[p1_rows, 1], "b1": X[p1_rows, 2]}).to_csv(out / "iris_p1.csv", index=False)
    pd.DataFrame({"id": ids[p2_rows], "c0": X[p2_rows, 3]}).to_csv(out / "iris_p2.csv", index=False)
    np.savez(out / "iris_multi_truth.npz", ids=ids, lo_rows=lo_rows, p1_rows=p1_rows, p2_rows=p2_rows, y=y)
    return files


PLAN = {
    "digits": ((4, 10, None), (4, 10, 0.5), (4, 10, 1), (4, 10, 8), (2, 1, 1), (8, 10, 1), (8, 1, 8)),
    "digits_parity": ((4, 10, None), (4, 10, 0.5), (4, 10, 1), (4, 10, 8), (2, 1, 1), (8, 10, 1)),
    "autompg_bin": ((4, 10, None), (4, 10, 1), (8, 1, 8), (2, 1, 0.5)),
    "boston_bin": ((4, 10, 1), (4, 10, 8), (2, 10, 1)),
    "iris": ((4, 10, 1),),
    "breast_cancer": ((4, 10, None), (4, 10, 1)),
}


def configs(files: dict[str, Path], out: Path):
    csv = lambda name: ["--csv", str(files[name]), "--id", "id", "--target", "y"]  # noqa: E731
    ds = lambda name: ["--dataset", name]  # noqa: E731
    grid = []
    for src, name in ((ds("digits"), "digits"), (csv("digits_parity"), "digits_parity"),
                      (csv("autompg_bin"), "autompg_bin"), (csv("boston_bin"), "boston_bin"),
                      (ds("iris"), "iris"), (ds("breast_cancer"), "breast_cancer")):
        for M, T, eps in PLAN[name]:
            grid.append((name, M, T, eps, src))
    multi = ["--label-owner", f"alice={out / 'iris_alice.csv'}", "--party", f"party1={out / 'iris_p1.csv'}",
             "--party", f"party2={out / 'iris_p2.csv'}", "--id", "id", "--target", "y"]
    grid.append(("iris_multi_sorted", 3, 10, 1, multi))
    grid.append(("iris_multi_sorted", 3, 10, None, multi))
    return grid


def run(cmd: list[str]) -> tuple[int, str]:
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    return p.returncode, (p.stdout + p.stderr)


def own_analysis(run_dir: Path, eps, known_fraction=0.05, seed=0, multi=None) -> list[dict]:
    from securegal.transcript import read_alignment, read_transcript
    if multi is None:
        rv = load_run(run_dir)
        metrics, lo, parties = rv.metrics, rv.label_owner, rv.feature_parties
    else:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        lo, parties = "alice", ("party1", "party2")
        t = np.load(multi / "iris_multi_truth.npz")
        label_of = dict(zip(t["ids"], t["y"]))
    out = []
    block = metrics.get("privacy", {}).get(lo) if metrics.get("privacy") else None
    for party in parties:
        tr = read_transcript(run_dir / "transcripts" / party)
        setup = _setup(tr, "received")
        ids = np.asarray(setup.train_ids, dtype=np.int64)
        n, k = len(ids), int(setup.n_outputs)
        rounds = [as_array(p, (n, k)) for _, p in tr.payloads("fit_request", "received")]
        if multi is None:
            truth = np.asarray(rv.truth.labels[rv.truth.rows(ids)]).astype(int)
        else:
            h, own_ids = read_alignment(run_dir / "transcripts" / party, lo, tr.sessions[0])
            id_of = dict(zip(h.tolist(), own_ids.tolist()))
            truth = np.array([label_of[id_of[int(x)]] for x in ids]).astype(int)
        known = _choose(n, known_fraction, _rng(seed, "labels", party))
        mask = np.ones(n, bool)
        mask[known] = False
        classes = np.arange(max(k, 2))
        S = np.sum(rounds, axis=0)
        guess = (S[:, 0] > 0).astype(int) if k == 1 else np.argmax(S, axis=1)
        prior = np.bincount(truth[known], minlength=len(classes))
        base = int(np.argmax(prior))
        acc = float(np.mean(guess[mask] == truth[mask]))
        bacc = float(np.mean(truth[mask] == base))
        se = float(np.sqrt(acc * (1 - acc) / mask.sum()))
        pi = float(np.bincount(truth, minlength=len(classes)).max() / n)
        row = dict(party=party, n=n, K=k, rounds=len(rounds), sum_acc=acc, sum_base=bacc, sum_adv=acc - bacc, se=se)
        if eps is not None:
            delta = float(block["delta"]) if block else 1e-5
            bound = stats.bayes_bound(float(eps), pi, delta)
            row.update(bound=bound, violation=bool(acc - 2.33 * se > bound))
            exact = (truth[:, None] == classes[None, :k] if k > 1 else truth[:, None] == 1).astype(float)
            exact = exact - (1.0 / k if k > 1 else 0.5)
            diff = rounds[0] - exact
            z = float(block["noise_multiplier"]["residuals"]) * float(block["mechanism"]["sensitivity"])
            row.update(rows_exact_r1=int(np.sum(np.all(np.abs(diff) < 1e-9, axis=1))),
                       noise_std=float(diff.std()), expected_std=z)
        # position of each training row in the Setup (and every fit_request) against its label
        pos = np.arange(n) / n
        means = np.array([pos[truth == c].mean() if np.any(truth == c) else 0.5 for c in classes])
        counts = np.bincount(truth, minlength=len(classes))
        near = np.array([truth[known][np.argmin(np.abs(known - i))] for i in range(n)])
        row["order_attack_acc"] = float(np.mean(near[mask] == truth[mask]))  # nearest known row by position
        row["order_eta2"] = float(np.sum(counts * (means - pos.mean()) ** 2) / np.sum((pos - pos.mean()) ** 2))
        out.append(row)
    return out


def psi_view(run_dir: Path, out: Path) -> list[dict]:
    """What each feature party of the multi-table run can say about the label owner's ID set:
    its own IDs selected vs the truth (held by the label owner), and what the PSI request holds."""
    from securegal.transcript import read_alignment
    t = np.load(out / "iris_multi_truth.npz")
    ids, lo = t["ids"], set(t["ids"][t["lo_rows"]])
    res = []
    for party, rows in (("party1", t["p1_rows"]), ("party2", t["p2_rows"])):
        d = run_dir / "transcripts" / party
        tr = __import__("securegal.transcript", fromlist=["read_transcript"]).read_transcript(d)
        req = next(r for r in tr.select("psi_request", "received"))
        sel = next(r for r in tr.select("psi_selection", "received"))
        session = req.envelope.session
        al = read_alignment(d, "alice", session)
        own = ids[rows]
        in_set = np.array([i in lo for i in own])
        selected = np.isin(own, al[1]) if al is not None else np.zeros(len(own), bool)
        other = t["p2_rows"] if party == "party1" else t["p1_rows"]
        held_elsewhere = np.isin(own, ids[other])
        res.append(dict(party=party, own=len(own), request_points=len(req.envelope.body.points) // 32,
                        label_owner_rows=len(lo), selected=int(selected.sum()),
                        in_label_owner_set=int(in_set.sum()),
                        selected_not_in_set=int(np.sum(selected & ~in_set)),
                        in_set_not_selected=int(np.sum(in_set & ~selected)),
                        in_set_not_selected_missing_elsewhere=int(np.sum(in_set & ~selected & ~held_elsewhere)),
                        selection_handles=len(sel.envelope.body.handles)))
    return res


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/labelside")
    ap.add_argument("--only", default=None, help="comma-separated dataset names")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = make_data(out)
    results = []
    for name, M, T, eps, src in configs(files, out):
        if args.only and name not in args.only.split(","):
            continue
        tag = f"{name}-M{M}-T{T}-e{eps if eps is not None else 'none'}"
        rd = out / "runs" / tag
        cmd = CLI + ["train", *src, *([] if name.endswith("multi_sorted") else ["-M", str(M)]), "-T", str(T), *([] if name.endswith("multi_sorted") else ["--save-ground-truth"]), "--no-progress",
                     "--out", str(rd), "--overwrite"] + (["--label-epsilon", str(eps)] if eps is not None else [])
        rc, text = run(cmd)
        entry = dict(dataset=name, M=M, T=T, eps=eps, train_cmd=" ".join(cmd), train_rc=rc)
        if rc != 0:
            entry["error"] = text.strip().splitlines()[-3:]
            results.append(entry)
            print(tag, "TRAIN FAILED", entry["error"], flush=True)
            continue
        multi = name.endswith("multi_sorted")
        acmd = CLI + ["audit", str(rd), "--no-report", "--net-steps", "100"] + (
            ["--as", "alice", "--data", str(out / "iris_alice.csv"), "--id-column", "id", "--target", "y"] if multi else [])
        rc, text = run(acmd)
        entry.update(audit_cmd=" ".join(acmd), audit_rc=rc)
        if rc != 0:
            entry["error"] = text.strip().splitlines()[-3:]
        else:
            audit = json.loads((rd / ("self-audit/alice/audit.json" if multi else "audit.json")).read_text())
            entry["audit"] = [{k: a.get(k) for k in ("attack", "attacker", "metric", "score", "baseline", "advantage",
                                                      "p_value", "bayes_bound", "within_bayes_bound")}
                              for a in audit["attacks"]
                              if a["victim"] == audit.get("run", {}) or a["attack"] in ("label_inversion", "label_clustering", "model_completion")]
        entry["own"] = own_analysis(rd, eps, multi=out if multi else None)
        if name == "iris_multi_sorted":
            entry["psi"] = psi_view(rd, out)
        results.append(entry)
        print(tag, json.dumps(entry.get("own"))[:600], entry.get("error", ""), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
