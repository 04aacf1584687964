"""Each organization of a multi-process federation audits itself; do the verdicts match the truths?

    flock /tmp/heavy.lock .venv/bin/python benchmarks/network_audit.py --out runs/network-audit

Runs the network demo (``securegal.deploy.localnet.LocalFederation``: every feature party its own
``securegal party serve`` process with mutual TLS, the label owner its own ``securegal train
--federation`` process) in four settings, then lets every organization audit itself as a
separate ``securegal audit RUN --as NAME --data ITS_CONFIG`` process (its own transcript and its
own data, nothing shared), and checks the verdicts against what is known to be true:

- plain (breast_cancer, M = 4, T = 10): labels LEAK (label inversion accuracy 1.0) and every
  party's features LEAK (hat-matrix R^2 >= 0.9 with 5% known rows);
- CKKS at n of about 5,000 (a synthetic binary task, 4,999 training rows, one CSV per
  organization): no label leak detected, minimum detectable advantage <= 0.02 AUC (the
  per-attack MDA at alpha = 0.01; the verdicts' Bonferroni-level MDA is printed beside it);
- feature-DP at epsilon = 1: no feature leak detected, and each party's report shows its ledger;
- label-DP at epsilon = 1: label accuracy within the Bayes bound e^eps pi / (e^eps pi + 1 - pi).

Prints the verdict table (markdown) and one line per truth; exits 1 if any verdict disagrees.
``--settings plain`` runs one setting (the test suite's version, about a minute).
"""
from __future__ import annotations

import argparse
import json
import os
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from securegal.deploy.localnet import LocalFederation, securegal_command
from securegal.privacy.dp.registry import STATE_ENV

EPSILON = 1.0
R2_BAR, MDA_BAR = 0.9, 0.02
SETTINGS = ("plain", "feature-dp", "label-dp", "ckks")
ROUNDS = 10


def _synthetic(root: Path, train_rows: int) -> tuple[dict, callable]:
    """A binary task with ``train_rows`` training rows (70% of the table) split into one CSV per
    organization: the label owner's 4 columns and labels (rows numbered 0..n-1, as the
    networked label owner numbers a CSV without IDs), each party's ``id`` and 4 columns."""
    from sklearn.datasets import make_classification

    n = math.ceil(train_rows / 0.7) + 1
    X, y = make_classification(n_samples=n, n_features=16, n_informative=8, random_state=0)
    root.mkdir(parents=True, exist_ok=True)
    ids = np.arange(n)

    def write(path: Path, header: list[str], cols: np.ndarray) -> None:
        np.savetxt(path, cols, delimiter=",", header=",".join(header), comments="", fmt="%.10g")

    write(root / "alice.csv", [f"x{j}" for j in range(4)] + ["label"], np.column_stack([X[:, :4], y]))
    for i in range(1, 4):
        cols = range(4 * i, 4 * i + 4)
        write(root / f"party{i}.csv", ["id"] + [f"x{j}" for j in cols], np.column_stack([ids, X[:, list(cols)]]))
    return ({"csv": str(root / "alice.csv"), "target": "label"},
            lambda i: {"csv": str(root / f"party{i}.csv"), "id_column": "id"})


def _federate(name: str, root: Path, rounds: int, **kwargs) -> tuple[Path, Path]:
    """Run one federation as separate processes; returns (run dir, config dir)."""
    workdir, out = root / f"{name}.federation", root / name
    shutil.rmtree(workdir, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    # each federation's parties are organizations of their own: their own registry of ledgers
    os.environ[STATE_ENV] = str(workdir / "state")
    started = time.perf_counter()
    with LocalFederation(workdir, parties=4, rounds=rounds, seed=0, out=out, **kwargs) as fed:
        code = fed.label_owner("--overwrite").wait()
        codes = fed.stop(grace=60.0)
    if code != 0 or any(codes.values()):
        raise SystemExit(f"{name}: the federation failed (label owner {code}, parties {codes}); see {workdir}")
    print(f"[{name}] federation: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return out, workdir / "config"


def _self_audit(run: Path, config: Path, party: str, steps: int) -> dict:
    data = config / ("federation.toml" if party == "alice" else f"{party}.toml")
    started = time.perf_counter()
    proc = subprocess.run(securegal_command("audit", str(run), "--as", party, "--data", str(data),
                                            "--net-steps", str(steps)), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"self-audit of {party} on {run} failed: {proc.stderr.strip()}")
    print(f"[{run.name}] self-audit {party}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return json.loads((run / "self-audit" / party / "audit.json").read_text())


def _rows(result: dict, attack: str, metric: str) -> list[dict]:
    return [a for a in result["attacks"] if a["attack"] == attack and a["metric"] == metric]


def _table(setting: str, result: dict) -> list[str]:
    out = []
    for v in result["verdicts"]:
        detail = _rows(result, v["attack"], v["metric"])
        row = next(a for a in detail if a["attacker"] == v["attacker"] and a["victim"] == v["victim"])
        acc = [a for a in _rows(result, v["attack"], "accuracy") if a["attacker"] == v["attacker"]]
        extra = ""
        if acc:
            extra = f"acc {acc[0]['score']:.3f}"
            if "bayes_bound" in acc[0]:
                extra += f" (Bayes bound {acc[0]['bayes_bound']:.3f}: " \
                         f"{'within' if acc[0]['within_bayes_bound'] else 'EXCEEDED'})"
        out.append(f"| {setting} | {result['party']} | {v['attack']} {v['attacker']}->{v['victim']} | "
                   f"{v['verdict']} | {v['metric']} {v['score']:.3f} vs {v['baseline']:.3f} | "
                   f"{row['mda']:.4f} / {v['mda']:.4f} | {v['p_value']:.4f} | {extra} |")
    return out


def _check(truths: list[tuple[str, bool]], name: str, ok: bool) -> None:
    truths.append((name, bool(ok)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/network-audit"))
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated subset of {', '.join(SETTINGS)}")
    p.add_argument("--ckks-train-rows", type=int, default=4999, help="training rows of the CKKS run")
    p.add_argument("--net-steps", type=int, default=300, help="training steps of the inversion network")
    args = p.parse_args(argv)
    settings = [x.strip() for x in args.settings.split(",") if x.strip()]
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        p.error(f"unknown settings {unknown}; choose from {', '.join(SETTINGS)}")
    rounds = ROUNDS
    root = args.out.resolve()
    root.mkdir(parents=True, exist_ok=True)
    lines = ["| setting | auditor | attack | verdict | primary metric vs baseline | MDA (attack / verdict) | p | "
             "accuracy |", "|---|---|---|---|---|---|---|---|"]
    truths: list[tuple[str, bool]] = []

    if "plain" in settings:
        _plain(root, rounds, args.net_steps, lines, truths)
    if "feature-dp" in settings:
        _feature_dp(root, rounds, args.net_steps, lines, truths)
    if "label-dp" in settings:
        _label_dp(root, rounds, args.net_steps, lines, truths)
    if "ckks" in settings:
        _ckks(root, rounds, args.net_steps, args.ckks_train_rows, lines, truths)
    print("\n".join(lines))
    print()
    for name, ok in truths:
        print(f"{'AGREES   ' if ok else 'DISAGREES'} {name}")
    return 0 if all(ok for _, ok in truths) else 1


PARTIES = ("party1", "party2", "party3")


def _plain(root: Path, rounds: int, steps: int, lines: list, truths: list) -> None:
    run, config = _federate("plain", root, rounds, dataset="breast_cancer")
    owner = _self_audit(run, config, "alice", steps)
    lines += _table("plain", owner)
    inversion = _rows(owner, "label_inversion", "accuracy")
    _check(truths, "plain: label owner finds every label verdict LEAKS, label inversion accuracy 1.0",
           all(v["verdict"] == "LEAKS" for v in owner["verdicts"]) and all(a["score"] == 1.0 for a in inversion))
    for party in PARTIES:
        own = _self_audit(run, config, party, steps)
        lines += _table("plain", own)
        hat = _rows(own, "hat_matrix", "r2")[0]
        verdict = next(v for v in own["verdicts"] if v["attack"] == "hat_matrix")
        _check(truths, f"plain: {party}'s features LEAK (hat-matrix R^2 {hat['score']:.3f} >= {R2_BAR})",
               hat["score"] >= R2_BAR and verdict["verdict"] == "LEAKS")


def _feature_dp(root: Path, rounds: int, steps: int, lines: list, truths: list) -> None:
    run, config = _federate("feature-dp", root, rounds, dataset="breast_cancer", privacy={"epsilon": EPSILON})
    for party in PARTIES:
        own = _self_audit(run, config, party, steps)
        lines += _table(f"feature-DP eps={EPSILON:g}", own)
        block = own["privacy"].get(party, {})
        _check(truths, f"feature-DP eps={EPSILON:g}: {party} finds no feature leak; its ledger shows "
                       f"{block.get('epsilon_this_session', float('nan')):.3f} of {block.get('epsilon_budget')}",
               all(v["verdict"] == "no leak detected" for v in own["verdicts"])
               and block.get("epsilon_budget") == EPSILON and "ledger" in block.get("source", ""))


def _label_dp(root: Path, rounds: int, steps: int, lines: list, truths: list) -> None:
    run, config = _federate("label-dp", root, rounds, dataset="breast_cancer",
                            federation_extra={"label_dp": {"epsilon": EPSILON}})
    owner = _self_audit(run, config, "alice", steps)
    lines += _table(f"label-DP eps={EPSILON:g}", owner)
    checked = [a for a in owner["attacks"] if "bayes_bound" in a]
    _check(truths, f"label-DP eps={EPSILON:g}: every label accuracy within the Bayes bound "
                   f"({max(a['score'] for a in checked):.3f} <= {checked[0]['bayes_bound']:.3f})",
           bool(checked) and all(a["within_bayes_bound"] for a in checked))


def _ckks(root: Path, rounds: int, steps: int, train_rows: int, lines: list, truths: list) -> None:
    owner_data, party_data = _synthetic(root / "synthetic-tables", train_rows)
    run, config = _federate("ckks", root, rounds, dataset=None, label_owner_data=owner_data,
                            party_data=party_data, residuals="ckks")
    owner = _self_audit(run, config, "alice", steps)
    lines += _table(f"CKKS n={owner['n_train']}", owner)
    worst = max(a["mda"] for a in owner["attacks"] if a["metric"] == "auc")
    _check(truths, f"CKKS n={owner['n_train']}: no label leak detected, MDA <= {MDA_BAR} AUC (largest "
                   f"per-attack MDA {worst:.4f}; at the verdicts' Bonferroni level "
                   f"{max(v['mda'] for v in owner['verdicts']):.4f})",
           all(v["verdict"] == "no leak detected" for v in owner["verdicts"]) and worst <= MDA_BAR)


if __name__ == "__main__":
    sys.exit(main())
