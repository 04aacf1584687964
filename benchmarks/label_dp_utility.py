"""Label-DP study: GAL whose residual broadcasts are label-DP, against Alone and plain GAL.

    PYTHONPATH=. python benchmarks/label_dp_utility.py --splits 10

M=4, linear learners (no feature-DP), delta=1e-5, T rounds with uniform weights, a fixed step
eta = 0.75 M / T and F0 = 0 (enforced by the label owner under label-DP), residual rows clipped
to C = 1. Alone sends nothing and is label-private by construction. Prints a markdown table.
"""
from __future__ import annotations

import argparse

import numpy as np

from securegal.privacy.registry import LAYERS
from securegal.run import train

EPSILONS = (1.0, 3.0, 8.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--datasets", default="breast_cancer,wine")
    args = ap.parse_args()
    eta = 0.75 * 4 / args.rounds
    print("| dataset (acc %, splits) | Alone | " + " | ".join(f"label-DP eps={e:g}" for e in EPSILONS)
          + " | GAL (plain) |")
    print("|" + "---|" * (len(EPSILONS) + 3))
    for name in args.datasets.split(","):
        rows = []
        for seed in range(args.splits):
            base = train(name, parties=4, rounds=10, seed=seed, baselines=True)
            row = [base["alone"]["test"]]
            for eps in EPSILONS:
                m = train(name, parties=4, rounds=args.rounds, seed=seed, weighting="uniform", eta=eta,
                          plan=LAYERS["label-dp"].plan(eps, residual_clip=1.0))
                if m["privacy"]["alice"]["epsilon_spent"] > eps:
                    raise RuntimeError("epsilon_spent exceeds the budget")
                row.append(m["gal"]["test"])
            row.append(base["gal"]["test"])
            rows.append(row)
        a = np.array(rows)
        cells = [f"{a[:, j].mean():.1f} ({a[:, j].std():.1f})" for j in range(a.shape[1])]
        print(f"| {name} ({args.splits}) | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
