"""DP on CKKS residuals against DP on plain residuals: test metric and wall time.

    PYTHONPATH=. python benchmarks/hedp_utility.py --seeds 5 --json runs/hedp-utility.json

For each dataset (breast_cancer, wine), split seed and epsilon in {1, 3, 8} (delta = 1e-5,
M = 4, linear learners = DP ridge, T = 3, uniform weights, eta = 0.75 M / T, the library's
default DPConfig) it trains on the same split:

- ``plain-dp``: DPTrainer on plaintext residuals (clipped by the party, C_f = 0.01 feedback);
- ``ckks-dp``: CkksDPTrainer, the same budget plan (gram/stat/pred shares 0.3/0.6/0.1, less for
  the gram below 8 columns per party), the feedback noised with the data-independent CKKS bound;
- ``ckks-dp-nofb``: CkksDPTrainer with shares gram 0.33 / stat 0.67 (the same rule) and no
  per-row feedback (encrypted zeros are returned): the CLI default under CKKS.

Noise comes from the secure generator (one draw per run). Alone (the label owner's block only)
is reported from the same split. Prints a markdown table (mean (std) over seeds; seconds = mean
wall time of one training run, without baselines).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from securegal.privacy.plan import DP_STEP_WEIGHT
from securegal.privacy.registry import LAYERS
from securegal.run import train

DATASETS = ("breast_cancer", "wine")
EPSILONS = (1.0, 3.0, 8.0)
DELTA, PARTIES, ROUNDS = 1e-5, 4, 3


def variants(eps: float) -> dict:
    return {
        "plain-dp": lambda: dict(plan=LAYERS["dp"].plan(eps, delta=DELTA)),
        "ckks-dp": lambda: dict(plan=LAYERS["ckks+dp"].plan(eps, delta=DELTA, feedback=True)),
        "ckks-dp-nofb": lambda: dict(plan=LAYERS["ckks+dp"].plan(eps, delta=DELTA, feedback=False)),
    }


def run(seeds: int) -> list[dict]:
    rows = []
    eta = DP_STEP_WEIGHT * PARTIES / ROUNDS  # the plan's DP step, given explicitly as the study always did
    for dataset in DATASETS:
        for seed in range(seeds):
            base = train(dataset, parties=PARTIES, rounds=ROUNDS, seed=seed, baselines=True)
            for eps in EPSILONS:
                for name, make in variants(eps).items():
                    started = time.perf_counter()
                    m = train(dataset, parties=PARTIES, rounds=ROUNDS, seed=seed, weighting="uniform", eta=eta, **make())
                    seconds = time.perf_counter() - started
                    spent = max(b["epsilon_spent"] for b in m["privacy"].values())
                    rows.append({"dataset": dataset, "seed": seed, "epsilon": eps, "variant": name,
                                 "test": m["gal"]["test"], "alone": base["alone"]["test"], "seconds": seconds,
                                 "epsilon_spent": spent})
                    print(f"{dataset} seed={seed} eps={eps:g} {name}: {m['gal']['test']:.2f} "
                          f"({seconds:.2f} s, eps spent {spent:.3f})", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    names = list(variants(1.0))
    head = "| dataset | eps | Alone | " + " | ".join(f"{n} acc" for n in names) + " | " + \
           " | ".join(f"{n} s" for n in names) + " |"
    lines = [head, "|" + "---|" * (3 + 2 * len(names))]
    for dataset in DATASETS:
        for eps in EPSILONS:
            sel = [r for r in rows if r["dataset"] == dataset and r["epsilon"] == eps]
            alone = np.array([r["alone"] for r in sel if r["variant"] == names[0]])
            accs, secs = [], []
            for n in names:
                v = np.array([r["test"] for r in sel if r["variant"] == n])
                accs.append(f"{v.mean():.1f} ({v.std():.1f})")
                secs.append(f"{np.mean([r['seconds'] for r in sel if r['variant'] == n]):.2f}")
            lines.append(f"| {dataset} | {eps:g} | {alone.mean():.1f} | " + " | ".join(accs) + " | " + " | ".join(secs) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = run(args.seeds)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
