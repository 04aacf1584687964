"""``securegal train``: one federation on the embedded default, with optional baselines."""
from __future__ import annotations

import time
from pathlib import Path

from ..errors import ConfigError
from ..messages import LOCAL_LOSSES, PREDICT_MODES, RESIDUAL_MODES, TASKS, WEIGHTINGS
from ..summary import summary


def add_parser(sub) -> None:
    from ..data import datasets
    from ..learners import registry
    from ..privacy.dp.accountant import ACCOUNTANTS
    from ..privacy.registry import LAYERS

    layers = "\n".join(f"  {name:<10} {layer.summary}" for name, layer in LAYERS.items())
    p = sub.add_parser(
        "train", description="Train GAL in this process (the embedded default) or, with --federation, as the label "
                             "owner of a networked federation. Every flag is honoured in both modes or refused with "
                             "a one-line error.",
        epilog=f"learners (--learner):\n{registry.describe()}\n\ndatasets (--dataset):\n{datasets.describe()}\n\n"
               f"privacy layers (--residuals, --epsilon, --label-epsilon):\n{layers}")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", help="offline dataset, listed below (default breast_cancer)")
    src.add_argument("--csv", type=Path, help="your own CSV file (header row, numeric cells)")
    p.add_argument("--target", help="label column of --csv or of --label-owner's table")
    p.add_argument("--task", choices=TASKS,
                   help="how to train --target (default: text or at most 20 distinct integers is classification; "
                        "say regression for, e.g., a length of stay in days)")
    orgs = p.add_argument_group("one table per organization (aligned by private set intersection on --id)")
    orgs.add_argument("--label-owner", metavar="NAME=FILE", help="the label owner's table (CSV or Parquet, with --target)")
    orgs.add_argument("--party", metavar="NAME=FILE", action="append", help="a feature party's table (repeat)")
    orgs.add_argument("--id", dest="id_column", metavar="COL",
                      help="the ID column every table has (with --csv: the file's ID column, kept out of the features)")
    p.add_argument("--missing", choices=("impute", "refuse"),
                   help="missing cells: impute (the column median, with an indicator column; default; a feature-DP "
                        "party's cells get their --columns centres instead, and no indicator column) or refuse")
    p.add_argument("--parties", "-M", type=int, help="number of organizations M, the label owner included (default 4)")
    p.add_argument("--learner", help="local learner, listed below (default linear)")
    p.add_argument("--rounds", "-T", type=int, help="GAL rounds T (default 10)")
    p.add_argument("--seed", type=int, help="seed of the split and the learners (default 0); with --federation the split and "
                   "the label owner's learner: each party seeds its own (party.toml [learner] seed)")
    p.add_argument("--baselines", action="store_true", help="also train Alone, Joint and GAL with uniform weights")
    p.add_argument("--out", type=Path, help="run directory (default runs/<dataset>-<time>)")
    p.add_argument("--overwrite", action="store_true", help="replace the results in a non-empty --out")
    p.add_argument("--weights", choices=WEIGHTINGS,
                   help="assistance weights (default learned; uniform under --epsilon/--label-epsilon)")
    p.add_argument("--eta", type=float, help="fixed step instead of the line search (default under DP: 0.75 * M / T)")
    p.add_argument("--eta-max", type=float, help="upper bound of the line-searched step (default 10); refused "
                   "where the step is fixed (--eta, or under DP)")
    p.add_argument("--local-loss", choices=LOCAL_LOSSES, help="local learners' loss (default l1 for L1 tasks, else l2)")
    p.add_argument("--residuals", choices=RESIDUAL_MODES,
                   help="how residuals travel to feature parties: plain (default), or ckks: encrypted under the "
                        "label owner's key")
    p.add_argument("--hidden-membership", action="store_true",
                   help="feature parties never learn which of their rows are used: each fits on all its rows, "
                        "on encrypted residuals (zero where the label owner has none); needs --residuals ckks "
                        "and feature-DP with feedback at every party (docs/alignment.md)")
    dp = p.add_argument_group("differential privacy (docs/privacy.md); defaults in securegal.privacy.plan")
    dp.add_argument("--epsilon", type=float, help="each feature party's (epsilon, delta)-DP budget for the run")
    dp.add_argument("--delta", type=float, help="delta of the DP budgets (default 1e-5); must be < 1/n")
    dp.add_argument("--accountant", choices=ACCOUNTANTS, help="privacy accountant: pld (exact for these full-batch Gaussians; default), rdp or prv")
    dp.add_argument("--dp-feature-clip", type=float, help="B: feature rows (scaled by 1/sqrt(d)) clipped to this norm "
                    "(default: by the n training rows, sqrt(n)/20 within [0.5, 2])")
    dp.add_argument("--dp-residual-clip", type=float, help="C: residual rows clipped to this norm (default 1)")
    dp.add_argument("--dp-prediction-clip", type=float, help="C_f: returned prediction rows clipped to this norm "
                    "(default 0.01); only plain residuals with feedback release them")
    dp.add_argument("--dp-feedback", choices=("on", "off"),
                    help="release noised per-row train predictions (budget share 0.1); default on with plain "
                         "residuals, off with --residuals ckks, where their noise bound is too loose to help "
                         "(docs/privacy.md 5b)")
    dp.add_argument("--ledger", type=Path, metavar="DIR",
                    help="keep each DP party's privacy ledger in DIR (one file per party; under --label-epsilon "
                         "the label column's too), so that its budget is a lifetime budget across runs (default: in "
                         "memory, one run); `securegal ledger show`")
    dp.add_argument("--columns", type=Path, metavar="FILE",
                    help="TOML with public per-column knowledge of every feature column (keys lower, upper, "
                         "centre, scale, dp_epsilon, as party.toml [privacy.columns]): what DP parties standardize "
                         "with (default: a built-in dataset's documented ranges; required for --csv --epsilon). "
                         "With --label-owner/--party: one [NAME] table per --party, for that party's own columns")
    dp.add_argument("--session-epsilon", type=float, metavar="E",
                    help="with --ledger: the most one run may add to each feature party's lifetime epsilon "
                         "(default: all that is left; a networked party sets its own in party.toml)")
    dp.add_argument("--dp-predict", choices=[mode for mode in PREDICT_MODES if mode != "none"],
                    help="with --ledger: which rows each feature party predicts for across the runs on its ledger: "
                         "once (default: rows no run trained on, each answered by one run at most) or non-training "
                         "(such rows in any number of runs); a networked party sets its own [policy] predict")
    dp.add_argument("--label-epsilon", type=float,
                    help="label-DP budget of the label owner's residuals (classification; plain residuals); with "
                         "--ledger, the label column's lifetime budget")
    dp.add_argument("--label-session-epsilon", type=float, metavar="E",
                    help="with --ledger: the most one run may add to the label column's lifetime epsilon (default: "
                         "all that is left)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--save-ground-truth", action="store_true",
                   help="also write ground_truth.npz (evaluation-only copy of the training labels and "
                        "features) so that `securegal audit` can score attacks on this run (embedded only)")
    net = p.add_argument_group("networked federation (parties run `securegal party serve`)")
    mode = net.add_mutually_exclusive_group()
    mode.add_argument("--federation", type=Path, help="federation.toml: data, parties' addresses, TLS, output dir; "
                      "flags given here override its keys")
    mode.add_argument("--resume", type=Path, metavar="DIR", help="continue the checkpointed networked run in DIR")
    net.add_argument("--insecure", action="store_true",
                     help="no TLS, no peer authentication: loopback demos only (refused elsewhere, warns loudly)")
    net.add_argument("--min-parties", type=int, help="stop cleanly when fewer parties (label owner included) answer "
                     "(default: every configured party)")
    p.set_defaults(func=run)


def command_line(args) -> str | None:
    """The ``securegal`` command these arguments came from, run where it was (its paths may be
    relative), for metrics.json; None when called from Python without one."""
    import shlex

    argv = getattr(args, "argv", None)
    return here(shlex.join(["securegal", *argv])) if argv is not None else None


def here(command: str) -> str:
    """``command`` run in this working directory (a recorded command's paths may be relative)."""
    import os
    import shlex

    return f"cd {shlex.quote(os.getcwd())} && {command}"


def plan_from_args(args):
    """The run's :class:`~securegal.privacy.plan.PrivacyPlan` from the DP and residual flags."""
    from ..privacy.plan import PrivacyPlan

    return PrivacyPlan.from_options(
        residuals=args.residuals or "plain", epsilon=args.epsilon, label_epsilon=args.label_epsilon,
        label_session_epsilon=args.label_session_epsilon, session_epsilon=args.session_epsilon,
        predict=args.dp_predict,
        delta=args.delta, accountant=args.accountant, feature_clip=args.dp_feature_clip,
        residual_clip=args.dp_residual_clip, prediction_clip=args.dp_prediction_clip, feedback=args.dp_feedback,
        hidden_membership=args.hidden_membership)


def columns_from_file(path: Path | None, epsilon: float | None):
    """The :class:`~securegal.privacy.dp.table.ColumnSpec` of ``--columns FILE`` (None without it)."""
    if path is None:
        return None
    if epsilon is None:
        raise ConfigError("--columns is what feature-DP parties standardize with; it needs --epsilon")
    from ..deploy import config as schema
    from ..privacy.dp.table import ColumnSpec

    section, _ = schema.read(path, schema.ColumnsSection)
    try:
        return ColumnSpec(section.lower, section.upper, section.centre, section.scale, section.dp_epsilon,
                          source=f"declared in {path.name}")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def columns_by_organization(path: Path | None, epsilon: float | None, parties: list[str]) -> dict | None:
    """``--columns FILE`` with one table per organization: {party name: ColumnSpec} for each
    ``--party`` name in ``parties``; None without the flag."""
    if path is None:
        if epsilon is not None:
            raise ConfigError(f"feature-DP parties {', '.join(parties)} standardize with public per-column bounds or "
                              "centres/scales, never their training statistics: give --columns FILE with one [NAME] "
                              "table per --party (docs/privacy.md section 6)")
        return None
    if epsilon is None:
        raise ConfigError("--columns is what feature-DP parties standardize with; it needs --epsilon")
    from ..deploy import config as schema
    from ..privacy.dp.table import ColumnSpec

    sections, _ = schema.read(path, schema.OrganizationColumns)
    sections = sections.root
    unknown = sorted(set(sections) - set(parties))
    missing = sorted(set(parties) - set(sections))
    if unknown or missing:
        raise ConfigError(f"{path}: needs one [NAME] table per --party ({', '.join(sorted(parties))}); "
                          + (f"unknown {unknown}" if unknown else f"missing {missing}"))
    out = {}
    for name, c in sections.items():
        try:
            out[name] = ColumnSpec(c.lower, c.upper, c.centre, c.scale, c.dp_epsilon, source=f"declared in {path.name}")
        except ConfigError as exc:
            raise ConfigError(f"{path}: [{name}]: {exc}") from None
    return out


def run(args) -> int:
    if args.federation or args.resume:
        return run_networked(args)
    if args.min_parties is not None or args.insecure:
        raise ConfigError("--min-parties and --insecure apply to networked runs (--federation or --resume)")
    from ..run import train

    if args.label_owner or args.party:
        return run_organizations(args, train)
    if args.id_column is not None and args.csv is None:
        raise ConfigError("--id names the ID column of --csv or of the --label-owner/--party tables; "
                          "built-in datasets have none")
    if args.target is not None and args.csv is None:
        raise ConfigError("--target names the label column of --csv; give --csv too (built-in datasets have theirs)")
    if args.missing is not None and args.csv is None:
        raise ConfigError("--missing says how missing cells of --csv or of the --label-owner/--party tables are "
                          "handled; built-in datasets have none")
    if args.dataset is None and args.csv is None:
        args.dataset = "breast_cancer"
    out = args.out or Path("runs") / f"{args.dataset or args.csv.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    given = {key: getattr(args, flag) for key, flag in (
        ("parties", "parties"), ("learner", "learner"), ("rounds", "rounds"), ("seed", "seed"),
        ("eta_max", "eta_max")) if getattr(args, flag) is not None}  # the rest take train()'s defaults
    if args.missing is not None:
        given["missing"] = args.missing
    metrics = train(args.dataset, csv=args.csv, target=args.target, id_column=args.id_column, task=args.task,
                    baselines=args.baselines, out=out,
                    overwrite=args.overwrite, plan=plan_from_args(args), weighting=args.weights, eta=args.eta,
                    local_loss=args.local_loss, progress=False if args.no_progress else None, ground_truth=args.save_ground_truth,
                    ledger=args.ledger, columns=columns_from_file(args.columns, args.epsilon),
                    command=command_line(args), **given)
    print(summary(metrics, out))
    return 3 if "stopped" in metrics["gal"] else 0


def _named_file(text: str, flag: str) -> tuple[str, Path]:
    from ..transport.certs import check_org_name

    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ConfigError(f"{flag} takes NAME=FILE, got {text!r}")
    return check_org_name(name), Path(path)


def run_organizations(args, train) -> int:
    """``--label-owner NAME=FILE --party NAME=FILE ... --id COL --target COL``: each organization's
    own table, read by its own (in-process) party and aligned by private set intersection."""
    from ..data.party_file import read_party_file
    from ..deploy.embedded import EmbeddedDeployment

    if args.dataset or args.csv:
        raise ConfigError("--label-owner/--party replace --dataset/--csv; give one or the other")
    if not (args.label_owner and args.party and args.id_column and args.target):
        raise ConfigError("one table per organization needs --label-owner NAME=FILE, at least one --party NAME=FILE, "
                          "--id COL and --target COL")
    if args.parties is not None:
        raise ConfigError("--parties is the number of --label-owner and --party tables here; drop it")
    if args.save_ground_truth:
        raise ConfigError("--save-ground-truth needs one table with every column; audit each organization on its "
                          "own transcript instead (securegal audit --as)")
    owner, owner_file = _named_file(args.label_owner, "--label-owner")
    files = {}
    for text in args.party:
        name, path = _named_file(text, "--party")
        if name in files or name == owner:
            raise ConfigError(f"organization names must be distinct, got {name!r} twice")
        files[name] = path
    columns = columns_by_organization(args.columns, args.epsilon, list(files))
    tables = {}
    for name, path in files.items():
        # a feature-DP party fills missing cells with its declared centres, never its rows' median
        spec = (columns or {}).get(name)
        tables[name] = read_party_file(path, args.id_column, target=args.target, missing=args.missing or "impute",
                                       centres=None if spec is None else spec.declared().centre,
                                       private=args.epsilon is not None)
        if spec is not None and spec.d != tables[name].X.shape[1]:
            raise ConfigError(f"{args.columns}: [{name}] declares {spec.d} columns, {name}'s table has "
                              f"{tables[name].X.shape[1]} feature columns")
    out = args.out or Path("runs") / f"{owner}-{time.strftime('%Y%m%d-%H%M%S')}"
    given = {key: getattr(args, key) for key in ("learner", "rounds", "seed", "eta_max") if getattr(args, key) is not None}
    metrics = train(csv=owner_file, target=args.target, id_column=args.id_column, task=args.task, parties=1 + len(tables),
                    deployment=EmbeddedDeployment(tables, owner=owner), baselines=args.baselines, out=out,
                    overwrite=args.overwrite, plan=plan_from_args(args), weighting=args.weights, eta=args.eta,
                    local_loss=args.local_loss, progress=False if args.no_progress else None, missing=args.missing or "impute",
                    ledger=args.ledger, columns=columns, command=command_line(args), **given)
    print(summary(metrics, out))
    return 3 if "stopped" in metrics["gal"] else 0


def run_networked(args) -> int:
    from ..deploy.networked import federation_from_args, train_federation

    cfg = federation_from_args(args)
    metrics = train_federation(cfg, resume=args.resume is not None, overwrite=args.overwrite,
                               progress=False if args.no_progress else None)
    print(summary(metrics, cfg.out))
    return 3 if "stopped" in metrics["gal"] else 0
