"""``securegal audit``: measure label and feature leakage on run directories (see attacks/README.md).

Three ways in: ``RUN_DIR ...`` (embedded runs with ``ground_truth.npz``), ``RUN_DIR --as NAME
--data PATH`` (one organization's self-audit from its own transcript and data), ``--active
NAME --out DIR`` (train a federation with a malicious label owner and score the attack); plus
``--sweep OUT`` (train plain, CKKS and DP runs and audit them all). Each takes the options
:data:`ACCEPTS` lists and refuses the others.
"""
from __future__ import annotations

import argparse
import math
import shlex
from pathlib import Path

from ..errors import ConfigError
from ..messages import RESIDUAL_MODES

#: Defaults of the options that not every way in takes; they are None in the parsed arguments
#: until :func:`run` has checked which options were given.
DEFAULTS = {"known_labels": 0.05, "known_rows": 0.05, "seed": 0, "net_steps": 1500, "parties": 4, "rounds": 10,
            "train_seed": 0, "epsilons": [0.5, 1.0, 3.0, 8.0], "label_epsilons": []}

_AUDITS = {"--known-labels", "--known-rows", "--seed", "--net-steps", "--no-report"}
_TRAINS = {"--dataset", "--csv", "--target", "--id-column", "--parties", "--rounds", "--train-seed", "--overwrite"}
#: Each way in -> the options it takes; any other option given is refused.
ACCEPTS = {
    "RUN_DIR": {*_AUDITS, "--rows-curve", "--plot"},
    "--as NAME": {*_AUDITS, "--as", "--data", "--id-column", "--ledger", "--target", "--out", "--session"},
    "--sweep OUT": {*_AUDITS, *_TRAINS, "--rows-curve", "--plot", "--sweep", "--epsilons", "--label-epsilons",
                    "--no-ckks", "--columns"},
    "--active crafted_residuals": {*_AUDITS, *_TRAINS, "--rows-curve", "--active", "--out", "--epsilon",
                                   "--columns"},
    "--active crafted_predictions": {*_AUDITS, *_TRAINS, "--rows-curve", "--active", "--out", "--residuals",
                                     "--label-epsilon"},
    "--active psi_membership": {"--no-report", "--dataset", "--parties", "--rounds", "--train-seed", "--overwrite",
                                "--active", "--out"},
}


def _dest(flag: str) -> str:
    return "party" if flag == "--as" else flag[2:].replace("-", "_")


def _default(dest: str) -> str:
    value = DEFAULTS[dest]
    return f" (default: {','.join(f'{v:g}' for v in value) if isinstance(value, list) else value})"


def check_options(args, mode: str) -> None:
    """Refuse every option given that ``mode`` (a key of :data:`ACCEPTS`) does not take, then fill
    in the defaults."""
    given = sorted(f for f in set().union(*ACCEPTS.values()) if getattr(args, _dest(f)) not in (None, False))
    stray = [f for f in given if f not in ACCEPTS[mode]]
    if stray:
        owners = [m for m, accepted in ACCEPTS.items() if stray[0] in accepted]
        active = [m for m in ACCEPTS if m.startswith("--active ")]
        if set(active) <= set(owners):
            owners = [m for m in owners if m not in active] + ["--active NAME"]
        raise ConfigError(f"audit {mode} does not take {', '.join(stray)} ({stray[0]} is for {', '.join(owners)})")
    for dest, value in DEFAULTS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, value)


def _fractions(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated fractions, got {text!r}") from None


def add_parser(sub) -> None:
    p = sub.add_parser("audit", description="Run the attack suite (label and feature inference) on run "
                       "directories and report a verdict per attack (audit.json, audit.md, audit.html); or audit "
                       "one party from its own transcript and data (--as), run an active attack (--active), or "
                       "train a sweep of plain, CKKS and DP runs first (--sweep). Each way in takes only the "
                       "options it uses and refuses the others. Auditing RUN_DIRs writes each audit into its "
                       "RUN_DIR, replacing an earlier one, so it takes no --out or --overwrite. See "
                       "attacks/README.md.")
    p.add_argument("runs", nargs="*", type=Path, metavar="RUN_DIR",
                   help="run directories written by `securegal train --save-ground-truth` (or, with --as, "
                        "the directory holding transcripts/NAME)")
    p.add_argument("--known-labels", type=float, metavar="FRACTION",
                   help="fraction of training labels a feature party knows (side knowledge)" + _default("known_labels"))
    p.add_argument("--known-rows", type=float, metavar="FRACTION",
                   help="fraction of a victim's training rows the label owner knows (side knowledge)"
                        + _default("known_rows"))
    p.add_argument("--rows-curve", type=_fractions, default=None, metavar="F1,F2,...",
                   help="also report equality-solving R^2 at these known-row fractions")
    p.add_argument("--seed", type=int, metavar="N",
                   help="seed of the side-knowledge draw and the attacks" + _default("seed"))
    p.add_argument("--plot", type=Path, default=None, metavar="PNG",
                   help="advantage-vs-epsilon plot when several RUN_DIRs or --sweep are given (default: next to "
                        "the first run)")
    p.add_argument("--net-steps", type=int, metavar="N",
                   help="training steps of the inversion network" + _default("net_steps"))
    p.add_argument("--no-report", action="store_true", help="write audit.json only (no audit.md / audit.html)")
    own = p.add_argument_group("self-audit: one party's exposure from its own transcript and its own data")
    own.add_argument("--as", dest="party", metavar="NAME", help="the party auditing itself (its transcript)")
    own.add_argument("--data", type=Path, metavar="PATH",
                     help="the party's own data: a CSV with an ID column, or its party.toml / federation.toml")
    own.add_argument("--id-column", metavar="COL", help="sample-ID column of a --data CSV (default: 'id' "
                                                        "if present, else row numbers); also of the --sweep or "
                                                        "--active CSV, whose rows are otherwise numbered")
    own.add_argument("--ledger", type=Path, metavar="PATH",
                     help="a DP feature party's privacy ledger (default: the one its party.toml names)")
    own.add_argument("--session", metavar="ID", help="the session to audit when the transcript holds several (a "
                                                     "party process serves one after another; default: the latest "
                                                     "that trained)")
    own.add_argument("--target", metavar="COLUMN", help="label column (label owner's --data CSV; also the --sweep CSV's)")
    own.add_argument("--out", type=Path, metavar="DIR", help="report directory (default: RUN_DIR/self-audit/NAME); "
                                                             "with --active: the run directory to train into")
    act = p.add_argument_group("active attacks: train a federation with a malicious party, then score it")
    act.add_argument("--active", metavar="NAME", help="crafted_residuals: the label owner sends crafted residuals; "
                     "crafted_predictions: a feature party crafts the predictions it returns; psi_membership: what a "
                     "feature party learns about the label owner's set from the private set intersection")
    act.add_argument("--epsilon", type=float, default=None, metavar="E",
                     help="feature parties' DP budget in the crafted_residuals run")
    act.add_argument("--residuals", choices=RESIDUAL_MODES, default=None,
                     help="residual mode of the crafted_predictions run (default plain)")
    act.add_argument("--label-epsilon", type=float, default=None, metavar="E",
                     help="label owner's label-DP budget in the crafted_predictions run")
    sweep = p.add_argument_group("sweep: train plain, ckks and DP runs of one task into OUT, then audit them")
    sweep.add_argument("--sweep", type=Path, metavar="OUT", help="train the sweep into OUT instead of auditing RUN_DIRs")
    sweep.add_argument("--dataset", metavar="NAME", help="offline dataset of the sweep or the --active run")
    sweep.add_argument("--csv", type=Path, metavar="PATH", help="CSV of the sweep or the --active run")
    sweep.add_argument("--parties", "-M", type=int, metavar="M",
                       help="parties of the sweep's or --active run" + _default("parties"))
    sweep.add_argument("--rounds", "-T", type=int, metavar="T",
                       help="rounds of the sweep's or --active run" + _default("rounds"))
    sweep.add_argument("--train-seed", type=int, metavar="N",
                       help="seed of the sweep's or --active run" + _default("train_seed"))
    sweep.add_argument("--epsilons", type=_fractions, metavar="E1,E2,...",
                       help="feature parties' DP budgets of the sweep's DP runs" + _default("epsilons"))
    sweep.add_argument("--label-epsilons", type=_fractions, metavar="E1,E2,...",
                       help="label owner's label-DP budgets of extra runs (classification)")
    sweep.add_argument("--no-ckks", action="store_true", help="leave the CKKS run out of the sweep")
    sweep.add_argument("--columns", type=Path, metavar="FILE",
                       help="public per-column knowledge of the --csv's feature columns, for its DP runs (as "
                            "securegal train --columns; a built-in dataset has its documented ones)")
    sweep.add_argument("--overwrite", action="store_true",
                       help="replace earlier sweep / --active runs (RUN_DIR audits replace their audit.json anyway)")
    p.set_defaults(func=run)


def _self_audit(args, audit) -> int:
    from securegal.attacks.self_audit import self_audit

    from .audit_data import load_own_data

    if len(args.runs) != 1:
        raise ConfigError("--as NAME audits one RUN_DIR (the directory holding transcripts/NAME)")
    if args.data is None:
        raise ConfigError("--as NAME needs --data PATH: the party's own data (CSV or its config)")
    data = load_own_data(args.data, args.id_column, args.target, args.ledger, party=args.party)
    data_cmd = f"--data {shlex.quote(str(args.data))}" + "".join(
        f" {flag} {shlex.quote(str(v))}" for flag, v in (("--id-column", args.id_column), ("--target", args.target),
                                                         ("--ledger", args.ledger)) if v)
    result = self_audit(args.runs[0], args.party, data, known_labels=args.known_labels,
                              known_rows=args.known_rows, seed=args.seed, steps=args.net_steps, out=args.out,
                              report=not args.no_report, data_command=data_cmd, session=args.session)
    print(audit.format_table(result))
    out = args.out or Path(args.runs[0]) / "self-audit" / args.party
    print(f"  wrote {out}/audit.json" + ("" if args.no_report else ", audit.md, audit.html"))
    return 0


def _active(args, audit) -> int:
    from securegal.experiments.active import train_crafted, train_crafted_predictions

    if args.runs:
        raise ConfigError("--active trains its own run into --out DIR: give no RUN_DIR")
    if args.out is None:
        raise ConfigError("--active needs --out DIR (where the malicious run is written)")
    common = dict(dataset=args.dataset, csv=args.csv, target=args.target, parties=args.parties, rounds=args.rounds,
                  seed=args.train_seed, overwrite=args.overwrite, progress=True, id_column=args.id_column)
    if args.active == "psi_membership":
        return _psi_membership(args, audit)
    if args.active == "crafted_predictions":
        run_dir = train_crafted_predictions(args.out, residuals=args.residuals or "plain",
                                            label_epsilon=args.label_epsilon, **common)
        layer = (f" --residuals {args.residuals}" if args.residuals else "") + (
            f" --label-epsilon {args.label_epsilon:g}" if args.label_epsilon is not None else "")
    else:
        from .train import columns_from_file

        run_dir = train_crafted(args.out, epsilon=args.epsilon, columns=columns_from_file(args.columns, args.epsilon),
                                **common)
        layer = (f" --epsilon {args.epsilon:g}" if args.epsilon is not None else "") + (
            f" --columns {shlex.quote(str(args.columns))}" if args.columns is not None else "")
    result = audit.audit_run(run_dir, args.known_labels, args.known_rows, args.seed, args.rows_curve,
                             args.net_steps, report=False)
    source = f"--dataset {args.dataset}" if args.dataset else f"--csv {shlex.quote(str(args.csv))} --target " \
        f"{shlex.quote(str(args.target))}" + (f" --id-column {shlex.quote(args.id_column)}" if args.id_column else "")
    result["train_command"] = (f"securegal audit --active {args.active} {source} --parties {args.parties} "
                               f"--rounds {args.rounds} --train-seed {args.train_seed}{layer}"
                               f" --out {args.out} --overwrite")
    audit.write_audit(run_dir, result, not args.no_report)
    print(audit.format_table(result))
    print(f"  wrote {run_dir / audit.AUDIT}" + ("" if args.no_report else ", audit.md, audit.html"))
    return 0


def _psi_membership(args, audit) -> int:
    from securegal.experiments.membership import audit_psi_membership, train_psi_membership

    run_dir = train_psi_membership(args.out, dataset=args.dataset or "breast_cancer", parties=args.parties,
                                   rounds=args.rounds, seed=args.train_seed, overwrite=args.overwrite, progress=True)
    result = audit_psi_membership(run_dir, report=not args.no_report)
    print(audit.format_table(result))
    print(f"  wrote {run_dir / audit.AUDIT}" + ("" if args.no_report else ", audit.md, audit.html"))
    return 0


def _mode(args) -> str:
    """The way in ``args`` ask for: a key of :data:`ACCEPTS`."""
    if args.party is not None:
        return "--as NAME"
    if args.active is not None:
        from securegal.experiments.active import ACTIVE

        if args.active not in ACTIVE:
            raise ConfigError(f"unknown active attack {args.active!r}; choose one of {', '.join(ACTIVE)}")
        return f"--active {args.active}"
    return "--sweep OUT" if args.sweep is not None else "RUN_DIR"


def run(args) -> int:
    try:
        from securegal.attacks import audit, report
    except ModuleNotFoundError:
        raise ConfigError("securegal.attacks is not installed: install the package (pip install -e .)") from None
    mode = _mode(args)
    check_options(args, mode)
    known_labels = audit.check_fraction("--known-labels", args.known_labels)
    known_rows = audit.check_fraction("--known-rows", args.known_rows)
    for f in args.rows_curve or []:
        audit.check_fraction("--rows-curve fraction", f)
    if args.net_steps < 1:
        raise ConfigError(f"--net-steps must be >= 1, got {args.net_steps}")
    if mode == "--as NAME":
        return _self_audit(args, audit)
    if mode.startswith("--active "):
        return _active(args, audit)
    if mode == "--sweep OUT":
        if args.runs:
            raise ConfigError("give RUN_DIRs or --sweep OUT, not both")
        if args.parties < 2 or args.rounds < 1 or args.train_seed < 0:
            raise ConfigError(f"the sweep needs --parties >= 2, --rounds >= 1 and --train-seed >= 0, got "
                              f"{args.parties}, {args.rounds} and {args.train_seed}")
        from securegal.experiments.sweep import train_sweep

        from .train import columns_from_file, here

        columns = columns_from_file(args.columns, min(args.epsilons, default=None))
        source = f"--dataset {shlex.quote(args.dataset)}" if args.dataset else \
            f"--csv {shlex.quote(str(args.csv))} --target {shlex.quote(str(args.target))}" + (
                f" --id {shlex.quote(args.id_column)}" if args.id_column else "")
        command = here(f"securegal train {source} --parties {args.parties} --rounds {args.rounds} "
                       f"--seed {args.train_seed}")
        args.runs = train_sweep(args.sweep, dataset=args.dataset, csv=args.csv, target=args.target,
                                id_column=args.id_column, columns=columns, command=command,
                                columns_flag=f"--columns {shlex.quote(str(args.columns))}" if args.columns else "",
                                parties=args.parties, rounds=args.rounds, seed=args.train_seed,
                                epsilons=tuple(args.epsilons), label_epsilons=tuple(args.label_epsilons),
                                ckks=not args.no_ckks, overwrite=args.overwrite, progress=True)
        args.plot = args.plot or args.sweep / audit.PLOT
    elif not args.runs:
        raise ConfigError("give at least one RUN_DIR (or --sweep OUT --dataset NAME, --as NAME, --active NAME)")
    elif args.plot is not None and len(args.runs) < 2:
        raise ConfigError(f"--plot {args.plot} draws the advantage over several RUN_DIRs; got one")
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
