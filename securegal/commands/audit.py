"""``securegal audit``: measure label and feature leakage on run directories (see attacks/README.md)."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..errors import ConfigError


def _fractions(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated fractions, got {text!r}") from None


def add_parser(sub) -> None:
    p = sub.add_parser("audit", description="Run the attack suite (label and feature inference) on run "
                       "directories and report each attack's advantage; or train a sweep of plain, CKKS and "
                       "DP runs first (--sweep). See attacks/README.md.")
    p.add_argument("runs", nargs="*", type=Path, metavar="RUN_DIR",
                   help="run directories written by `securegal train --save-ground-truth`")
    p.add_argument("--known-labels", type=float, default=0.05, metavar="FRACTION",
                   help="fraction of training labels a feature party knows (side knowledge)")
    p.add_argument("--known-rows", type=float, default=0.05, metavar="FRACTION",
                   help="fraction of a victim's training rows the label owner knows (side knowledge)")
    p.add_argument("--rows-curve", type=_fractions, default=None, metavar="F1,F2,...",
                   help="also report equality-solving R^2 at these known-row fractions")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the side-knowledge draw and the attacks")
    p.add_argument("--plot", type=Path, default=None, metavar="PNG",
                   help="advantage-vs-epsilon plot when several runs are given (default: next to the first run)")
    p.add_argument("--net-steps", type=int, default=1500, metavar="N", help="training steps of the inversion network")
    sweep = p.add_argument_group("sweep: train plain, ckks and DP runs of one task into OUT, then audit them")
    sweep.add_argument("--sweep", type=Path, metavar="OUT", help="train the sweep into OUT instead of auditing RUN_DIRs")
    sweep.add_argument("--dataset", metavar="NAME", help="offline dataset of the sweep")
    sweep.add_argument("--csv", type=Path, metavar="PATH", help="CSV of the sweep")
    sweep.add_argument("--target", metavar="COLUMN", help="label column of --csv")
    sweep.add_argument("--parties", "-M", type=int, default=4, metavar="M", help="parties of the sweep's runs")
    sweep.add_argument("--rounds", "-T", type=int, default=10, metavar="T", help="rounds of the sweep's runs")
    sweep.add_argument("--train-seed", type=int, default=0, metavar="N", help="seed of the sweep's runs")
    sweep.add_argument("--epsilons", type=_fractions, default=[0.5, 1.0, 3.0, 8.0], metavar="E1,E2,...",
                       help="feature parties' DP budgets of the sweep's DP runs")
    sweep.add_argument("--label-epsilons", type=_fractions, default=[], metavar="E1,E2,...",
                       help="label owner's label-DP budgets of extra runs (classification)")
    sweep.add_argument("--no-ckks", action="store_true", help="leave the CKKS run out of the sweep")
    sweep.add_argument("--overwrite", action="store_true", help="replace earlier sweep runs in OUT")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        from securegal.attacks import audit
    except ModuleNotFoundError:
        raise ConfigError("securegal.attacks is not installed: install the package (pip install -e .)") from None
    known_labels = audit.check_fraction("--known-labels", args.known_labels)
    known_rows = audit.check_fraction("--known-rows", args.known_rows)
    for f in args.rows_curve or []:
        audit.check_fraction("--rows-curve fraction", f)
    if args.net_steps < 1:
        raise ConfigError(f"--net-steps must be >= 1, got {args.net_steps}")
    if args.sweep is not None:
        if args.runs:
            raise ConfigError("give RUN_DIRs or --sweep OUT, not both")
        if args.parties < 2 or args.rounds < 1 or args.train_seed < 0:
            raise ConfigError(f"the sweep needs --parties >= 2, --rounds >= 1 and --train-seed >= 0, got "
                              f"{args.parties}, {args.rounds} and {args.train_seed}")
        from securegal.experiments.sweep import train_sweep

        args.runs = train_sweep(args.sweep, dataset=args.dataset, csv=args.csv, target=args.target,
                                parties=args.parties, rounds=args.rounds, seed=args.train_seed,
                                epsilons=tuple(args.epsilons), label_epsilons=tuple(args.label_epsilons),
                                ckks=not args.no_ckks, overwrite=args.overwrite)
        args.plot = args.plot or args.sweep / audit.PLOT
    elif not args.runs:
        raise ConfigError("give at least one RUN_DIR (or --sweep OUT --dataset NAME)")
    elif any(v is not None for v in (args.dataset, args.csv, args.target)):
        raise ConfigError("--dataset/--csv/--target belong to --sweep")
    for run_dir in args.runs:  # fail fast, before any attack runs
        audit.load_run(run_dir)
    results = []
    for run_dir in args.runs:
        result = audit.audit_run(run_dir, known_labels, known_rows, args.seed, args.rows_curve, args.net_steps)
        print(audit.format_table(result))
        print(f"  wrote {Path(run_dir) / audit.AUDIT}\n")
        results.append(result)
    if len(results) > 1:
        path = args.plot or args.runs[0].resolve().parent / audit.PLOT
        audit.plot_advantage(results, path)
        eps = ", ".join("inf" if math.isinf(r["epsilon"]) else f"{r['epsilon']:g}" for r in results)
        print(f"wrote {path} (advantage vs epsilon over runs at epsilon = {eps})")
    return 0
