"""``securegal audit``: measure label and feature leakage on run directories (see attacks/README.md).

Three ways in: ``RUN_DIR ...`` (embedded runs with ``ground_truth.npz``), ``RUN_DIR --as NAME
--data PATH`` (one organization's self-audit from its own transcript and data), ``--active
NAME --out DIR`` (train a federation with a malicious label owner and score the attack); plus
``--sweep OUT`` (train plain, CKKS and DP runs and audit them all).
"""
from __future__ import annotations

import argparse
import math
import shlex
from pathlib import Path

from ..errors import ConfigError


def _fractions(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated fractions, got {text!r}") from None


def add_parser(sub) -> None:
    p = sub.add_parser("audit", description="Run the attack suite (label and feature inference) on run "
                       "directories and report a verdict per attack (audit.json, audit.md, audit.html); or audit "
                       "one party from its own transcript and data (--as), run an active attack (--active), or "
                       "train a sweep of plain, CKKS and DP runs first (--sweep). See attacks/README.md.")
    p.add_argument("runs", nargs="*", type=Path, metavar="RUN_DIR",
                   help="run directories written by `securegal train --save-ground-truth` (or, with --as, "
                        "the directory holding transcripts/NAME)")
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
    p.add_argument("--no-report", action="store_true", help="write audit.json only (no audit.md / audit.html)")
    own = p.add_argument_group("self-audit: one party's exposure from its own transcript and its own data")
    own.add_argument("--as", dest="party", metavar="NAME", help="the party auditing itself (its transcript)")
    own.add_argument("--data", type=Path, metavar="PATH",
                     help="the party's own data: a CSV with an ID column, or its party.toml / federation.toml")
    own.add_argument("--id-column", metavar="COL", help="sample-ID column of a --data CSV (default: 'id' "
                                                        "if present, else row numbers)")
    own.add_argument("--ledger", type=Path, metavar="PATH",
                     help="a DP feature party's privacy ledger (default: the one its party.toml names)")
    own.add_argument("--target", metavar="COLUMN", help="label column (label owner's --data CSV; also the --sweep CSV's)")
    own.add_argument("--out", type=Path, metavar="DIR", help="report directory (default: RUN_DIR/self-audit/NAME; "
                                                             "with --active: the run directory to train into)")
    act = p.add_argument_group("active attacks: train a federation with a malicious party, then score it")
    act.add_argument("--active", metavar="NAME", help="crafted_residuals: the label owner sends crafted residuals; "
                     "crafted_predictions: a feature party crafts the predictions it returns; psi_membership: what a "
                     "feature party learns about the label owner's set from the private set intersection")
    act.add_argument("--epsilon", type=float, default=None, metavar="E",
                     help="feature parties' DP budget in the crafted_residuals run")
    act.add_argument("--residuals", choices=("plain", "ckks"), default=None,
                     help="residual mode of the crafted_predictions run (default plain)")
    act.add_argument("--label-epsilon", type=float, default=None, metavar="E",
                     help="label owner's label-DP budget in the crafted_predictions run")
    sweep = p.add_argument_group("sweep: train plain, ckks and DP runs of one task into OUT, then audit them")
    sweep.add_argument("--sweep", type=Path, metavar="OUT", help="train the sweep into OUT instead of auditing RUN_DIRs")
    sweep.add_argument("--dataset", metavar="NAME", help="offline dataset of the sweep or the --active run")
    sweep.add_argument("--csv", type=Path, metavar="PATH", help="CSV of the sweep or the --active run")
    sweep.add_argument("--parties", "-M", type=int, default=4, metavar="M", help="parties of the sweep's runs")
    sweep.add_argument("--rounds", "-T", type=int, default=10, metavar="T", help="rounds of the sweep's runs")
    sweep.add_argument("--train-seed", type=int, default=0, metavar="N", help="seed of the sweep's runs")
    sweep.add_argument("--epsilons", type=_fractions, default=[0.5, 1.0, 3.0, 8.0], metavar="E1,E2,...",
                       help="feature parties' DP budgets of the sweep's DP runs")
    sweep.add_argument("--label-epsilons", type=_fractions, default=[], metavar="E1,E2,...",
                       help="label owner's label-DP budgets of extra runs (classification)")
    sweep.add_argument("--no-ckks", action="store_true", help="leave the CKKS run out of the sweep")
    sweep.add_argument("--overwrite", action="store_true", help="replace earlier sweep / --active runs")
    p.set_defaults(func=run)


def _self_audit(args, audit) -> int:
    from securegal.attacks.self_audit import self_audit, transcript_parties

    from .audit_data import load_own_data

    if len(args.runs) != 1:
        raise ConfigError("--as NAME audits one RUN_DIR (the directory holding transcripts/NAME)")
    if args.data is None:
        raise ConfigError("--as NAME needs --data PATH: the party's own data (CSV or its config)")
    if any(v is not None for v in (args.sweep, args.active, args.dataset, args.csv, args.epsilon, args.residuals,
                                   args.label_epsilon)):
        raise ConfigError("--as NAME is a self-audit: --sweep/--active/--dataset/--csv/--epsilon/--residuals/"
                          "--label-epsilon do not apply")
    transcript_parties(args.runs[0])  # fail fast on a directory without transcripts
    data = load_own_data(args.data, args.id_column, args.target, args.ledger)
    data_cmd = f"--data {shlex.quote(str(args.data))}" + "".join(
        f" {flag} {shlex.quote(str(v))}" for flag, v in (("--id-column", args.id_column), ("--target", args.target),
                                                         ("--ledger", args.ledger)) if v)
    result = self_audit(args.runs[0], args.party, data, known_labels=args.known_labels,
                              known_rows=args.known_rows, seed=args.seed, steps=args.net_steps, out=args.out,
                              report=not args.no_report, data_command=data_cmd)
    print(audit.format_table(result))
    out = args.out or Path(args.runs[0]) / "self-audit" / args.party
    print(f"  wrote {out}/audit.json" + ("" if args.no_report else ", audit.md, audit.html"))
    return 0


def _active(args, audit) -> int:
    from securegal.experiments.active import ACTIVE, train_crafted, train_crafted_predictions

    if args.active not in ACTIVE:
        raise ConfigError(f"unknown active attack {args.active!r}; choose one of {', '.join(ACTIVE)}")
    if args.runs or args.sweep is not None:
        raise ConfigError("--active trains its own run into --out DIR: give no RUN_DIR or --sweep")
    if args.out is None:
        raise ConfigError("--active needs --out DIR (where the malicious run is written)")
    common = dict(dataset=args.dataset, csv=args.csv, target=args.target, parties=args.parties, rounds=args.rounds,
                  seed=args.train_seed, overwrite=args.overwrite, progress=True)
    if args.active == "psi_membership":
        return _psi_membership(args, audit)
    if args.active == "crafted_predictions":
        if args.epsilon is not None:
            raise ConfigError("--epsilon (feature-DP) belongs to crafted_residuals; crafted_predictions attacks the "
                              "labels: give --residuals ckks or --label-epsilon E")
        run_dir = train_crafted_predictions(args.out, residuals=args.residuals or "plain",
                                            label_epsilon=args.label_epsilon, **common)
        layer = (f" --residuals {args.residuals}" if args.residuals else "") + (
            f" --label-epsilon {args.label_epsilon:g}" if args.label_epsilon is not None else "")
    else:
        if args.residuals is not None or args.label_epsilon is not None:
            raise ConfigError("--residuals/--label-epsilon belong to crafted_predictions; crafted_residuals takes "
                              "--epsilon E (feature-DP)")
        run_dir = train_crafted(args.out, epsilon=args.epsilon, **common)
        layer = f" --epsilon {args.epsilon:g}" if args.epsilon is not None else ""
    result = audit.audit_run(run_dir, args.known_labels, args.known_rows, args.seed, args.rows_curve,
                             args.net_steps, report=False)
    source = f"--dataset {args.dataset}" if args.dataset else f"--csv {args.csv} --target {args.target}"
    result["train_command"] = (f"securegal audit --active {args.active} {source} --parties {args.parties} "
                               f"--rounds {args.rounds} --train-seed {args.train_seed}{layer}"
                               f" --out {args.out} --overwrite")
    audit.write_audit(run_dir, result, not args.no_report)
    print(audit.format_table(result))
    print(f"  wrote {run_dir / audit.AUDIT}")
    return 0


def _psi_membership(args, audit) -> int:
    from securegal.experiments.membership import audit_psi_membership, train_psi_membership

    stray = [flag for flag, v in (("--csv", args.csv), ("--epsilon", args.epsilon), ("--residuals", args.residuals),
                                  ("--label-epsilon", args.label_epsilon)) if v is not None]
    if stray:
        raise ConfigError(f"{stray[0]} does not apply to psi_membership (a built-in --dataset, aligned by PSI)")
    run_dir = train_psi_membership(args.out, dataset=args.dataset or "breast_cancer", parties=args.parties,
                                   rounds=args.rounds, seed=args.train_seed, overwrite=args.overwrite, progress=True)
    result = audit_psi_membership(run_dir, report=not args.no_report)
    print(audit.format_table(result))
    print(f"  wrote {run_dir / audit.AUDIT}")
    return 0


def run(args) -> int:
    try:
        from securegal.attacks import audit, report
    except ModuleNotFoundError:
        raise ConfigError("securegal.attacks is not installed: install the package (pip install -e .)") from None
    known_labels = audit.check_fraction("--known-labels", args.known_labels)
    known_rows = audit.check_fraction("--known-rows", args.known_rows)
    for f in args.rows_curve or []:
        audit.check_fraction("--rows-curve fraction", f)
    if args.net_steps < 1:
        raise ConfigError(f"--net-steps must be >= 1, got {args.net_steps}")
    if args.party is not None:
        return _self_audit(args, audit)
    if args.data is not None or args.id_column is not None or args.ledger is not None:
        raise ConfigError("--data/--id-column/--ledger belong to a self-audit (--as NAME)")
    if args.active is not None:
        return _active(args, audit)
    if args.epsilon is not None:
        raise ConfigError("--epsilon belongs to --active (the sweep takes --epsilons)")
    if args.residuals is not None or args.label_epsilon is not None:
        raise ConfigError("--residuals/--label-epsilon belong to --active crafted_predictions "
                          "(the sweep takes --label-epsilons)")
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
                                ckks=not args.no_ckks, overwrite=args.overwrite, progress=True)
        args.plot = args.plot or args.sweep / audit.PLOT
    elif not args.runs:
        raise ConfigError("give at least one RUN_DIR (or --sweep OUT --dataset NAME, --as NAME, --active NAME)")
    elif any(v is not None for v in (args.dataset, args.csv, args.target)):
        raise ConfigError("--dataset/--csv/--target belong to --sweep or --active")
    for run_dir in args.runs:  # fail fast, before any attack runs
        audit.load_run(run_dir)
    results = []
    for run_dir in args.runs:
        result = audit.audit_run(run_dir, known_labels, known_rows, args.seed, args.rows_curve, args.net_steps,
                                 report=not args.no_report)
        print(audit.format_table(result))
        print(f"  wrote {Path(run_dir) / audit.AUDIT}" + ("" if args.no_report else ", audit.md, audit.html") + "\n")
        results.append(result)
    if len(results) > 1:
        path = args.plot or args.runs[0].resolve().parent / audit.PLOT
        report.plot_sweep(results, path)
        eps = ", ".join("inf" if math.isinf(r["layers"]["epsilon"]) else f"{r['layers']['epsilon']:g}" for r in results)
        print(f"wrote {path} (advantage vs epsilon over runs at epsilon = {eps})")
    return 0
