"""Paired comparisons of GAL-DP design variants on split seeds disjoint from the study's (0-19).

    PYTHONPATH=. python benchmarks/privacy_utility_tuning.py --datasets wine,diabetes --seeds 100:140

Every variant of one split gets the same split and, where the release plan is the same, the same
noise draw (seeded noise: a study, not a deployment), so the differences are the variants' own.
Prints each variant's mean test score and its mean difference from the first variant with the
standard error over splits (docs/privacy.md section 8). ``a+b`` combines two variants, e.g.
``no-feedback+noise-ridge-2``; ``winsor-A-BX`` is the coordinate-wise row map at a = A, B = X.
``--datasets synthetic5000`` uses privacy_utility.py's generated table with 5,000 rows;
``--residuals ckks`` runs the variants as CKKS+DP (docs/he.md).
"""
from __future__ import annotations

import argparse
import math
import tempfile
import warnings
from pathlib import Path

import numpy as np

from privacy_utility import synthetic_csv
from securegal.privacy.dp.mechanisms import InsecureNoiseWarning
from securegal.privacy.dp.table import ColumnSpec
from securegal.privacy.plan import FeatureDP, PrivacyPlan
from securegal.run import train

PARTIES, ROUNDS = 4, 3
# name -> (FeatureDP options, train options); the first one is the reference
VARIANTS = {
    "calibrated": ({}, {}),
    "fixed": ({}, {"calibrate": False}),
    "no-feedback": ({"feedback": False}, {}),
    **{f"feature-clip-{b:g}": ({"feature_clip": b}, {}) for b in (0.5, 0.75, 1.0, 1.5, 2.0)},
    **{f"prediction-clip-{c:g}": ({"prediction_clip": c}, {}) for c in (0.1, 0.3)},
    **{f"residual-clip-{c:g}": ({"residual_clip": c}, {}) for c in (0.5, 0.7, 0.75, 0.8, 0.9, 0.95, 1.5, 2.0)},
    **{f"rounds-{t}": ({}, {"rounds": t}) for t in (1, 2, 5)},
    "local-l2": ({}, {"local_loss": "l2"}),
    # the budget split gram / stat / pred (default 0.3 / 0.6 / 0.1 from 8 columns per party, with
    # less for the gram below; given shares are used as they are)
    **{f"shares-{g:g}-{st:g}-0.1": ({"shares": {"gram": g, "stat": st, "pred": 0.1}}, {})
       for g, st in ((0.1, 0.8), (0.2, 0.7), (0.3, 0.6), (0.4, 0.5))},
    # the default split given explicitly: not re-split by the party's columns
    "shares-0.33-0.67": ({"shares": {"gram": 0.33, "stat": 0.67}, "feedback": False}, {}),
    **{f"validation-{v:g}": ({}, {"validation_fraction": v}) for v in (0.15, 0.2, 0.3)},
    "total-weight-0.5": ({}, {"eta": 0.5 * PARTIES / ROUNDS}),
    "total-weight-1.5": ({}, {"eta": 1.5 * PARTIES / ROUNDS}),
    # the feature map: coordinate-wise clip at a (z -> clip(z, -a, a) B / (a sqrt d)) instead of the
    # row projection onto the ball of radius B
    **{f"winsor-{a:g}-B{b:g}": ({"coordinate_clip": a, "feature_clip": b}, {})
       for a in (0.5, 0.75, 1.0, 1.5, 2.0, 3.0) for b in (0.5, 0.75, 1.0)},
    # the ridge floor lam n + noise_ridge sigma_G sqrt(p)
    **{f"noise-ridge-{f:g}": ({"noise_ridge": f}, {}) for f in (0.25, 0.5, 2.0, 4.0)},
    **{f"lam-{lam:g}": ({"lam": lam}, {}) for lam in (1e-4, 1e-2, 3e-2, 1e-1)},
}


def options(variant: str) -> tuple[dict, dict]:
    """A variant's (FeatureDP options, train options); ``a+b`` combines variants a and b."""
    dp, train_options = {}, {}
    for part in variant.split("+"):
        dp.update(VARIANTS[part][0])
        train_options.update(VARIANTS[part][1])
    return dp, train_options


def source(dataset: str, workdir: Path) -> dict:
    """``train``'s data arguments for a built-in dataset, or for ``synthetic<N>``: privacy_utility.py's
    generated regression table with N rows, whose standard-normal columns are public knowledge."""
    if not dataset.startswith("synthetic"):
        return {"dataset": dataset}
    rows = int(dataset[len("synthetic"):])
    path = workdir / f"{dataset}.csv"
    if not path.exists():
        synthetic_csv(path, n=rows)
    return {"csv": path, "target": "y", "columns": ColumnSpec(centre=[0.0] * 16, scale=[1.0] * 16,
                                                               source="the generator (public)")}


def score(data: dict, seed: int, epsilon: float, variant: str, residuals: str = "plain") -> float:
    dp, train_options = options(variant)
    plan = PrivacyPlan(residuals=residuals, feature_dp=FeatureDP(epsilon=epsilon, seed=10_000 + seed, **dp))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureNoiseWarning)
        metrics = train(**data, parties=PARTIES, seed=seed, plan=plan, **{"rounds": ROUNDS, **train_options})
    return float(metrics["gal"]["test"])


def tuning_seeds(text: str) -> range:
    """``start:stop`` split seeds, refused where they overlap the study's 0-19."""
    start, stop = (int(v) for v in text.split(":"))
    if start < 20:
        raise ValueError(f"use split seeds >= 20 (got {text}): 0-19 are the study's")
    return range(start, stop)


def paired_line(label: str, values: np.ndarray, ref: np.ndarray) -> str:
    """``label``, the mean score over splits, and its paired difference from ``ref`` with the
    difference's standard error."""
    diff = values - ref
    se = diff.std(ddof=1) / math.sqrt(len(diff)) if len(diff) > 1 else 0.0
    return f"{label} mean {values.mean():6.2f}  diff {diff.mean():+6.2f} (se {se:.2f})  [{len(diff)} splits]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="wine,diabetes", help="built-in names, or synthetic<N> (N generated rows)")
    ap.add_argument("--seeds", default="100:140", help="split seeds start:stop (keep them off 0-19)")
    ap.add_argument("--epsilon", type=float, default=1.0)
    ap.add_argument("--residuals", choices=("plain", "ckks"), default="plain",
                    help="ckks: CKKS+DP (no feedback unless a variant sets it)")
    ap.add_argument("--variants", default="calibrated,fixed",
                    help=f"comma-separated, of {', '.join(VARIANTS)}; a+b combines two")
    args = ap.parse_args()
    variants = args.variants.split(",")
    unknown = {part for v in variants for part in v.split("+")} - set(VARIANTS)
    if unknown:
        ap.error(f"unknown variants {sorted(unknown)}")
    try:
        seeds = tuning_seeds(args.seeds)
    except ValueError as exc:
        ap.error(str(exc))
    with tempfile.TemporaryDirectory(prefix="securegal-tuning-") as workdir:
        for name in args.datasets.split(","):
            data = source(name, Path(workdir))
            scores = {v: np.array([score(data, s, args.epsilon, v, args.residuals) for s in seeds]) for v in variants}
            label = f"{name:14s} eps={args.epsilon:g}" + (" ckks" if args.residuals == "ckks" else "")
            for v, values in scores.items():
                print(paired_line(f"{label} {v:16s}", values, scores[variants[0]]), flush=True)


if __name__ == "__main__":
    main()
