"""``securegal.train``: run GAL (and its baselines) on a dataset and write the run directory.

A run directory holds ``metrics.json`` (stable keys, parsed by other scripts), ``curve.png``
(test metric per round) and ``transcripts/<party>/`` (each party's view of the GAL run). With
``ground_truth=True`` it also holds ``ground_truth.npz``, the evaluation-only truth that
``securegal audit`` scores attacks against (see :func:`write_ground_truth`).
"""
from __future__ import annotations

import logging
import math
import numbers
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

from .data.datasets import Dataset, load_csv, load_dataset
from .data.split import RowSplit, contiguous_blocks, split_rows, vertical_split
from .deploy.config import MAX_ETA, MAX_PARTIES, MAX_ROUNDS
from .deploy.embedded import EmbeddedDeployment
from .deploy.federation import (Deployment, GalJob, MethodRun, TargetScaler,
                                party_learner, party_names)
from .errors import ConfigError
from .messages import TASKS
from .files import new_staging_dir, own_staging, private_dir, stale_staging, write_bytes_atomic, write_json_atomic
from .learners.registry import LEARNERS
from .metrics import metric_for
from .messages import WEIGHTINGS
from .privacy.dp.table import ColumnSpec
from .privacy.plan import PrivacyPlan, TrainerChoice
from .seam import ResidualChannel

log = logging.getLogger(__name__)

METHODS = ("gal", "alone", "joint", "gal_uniform")
DEFAULT_PARTIES = 4  # organizations when neither parties nor one table per organization says


def resolve_dataset(dataset: str | None, csv: str | Path | None, target: str | None,
                    missing: str = "impute", id_column: str | None = None, columns=None,
                    private: bool = False, task: str | None = None) -> Dataset:
    """``private``: feature-DP parties hold the CSV's columns, so its missing cells get the
    declared centres of ``columns`` (a ColumnSpec) or are refused, never the median. ``task``
    (``classification`` | ``regression``) says how to train the CSV's target (default: inferred)."""
    for name, value in (("dataset", dataset), ("csv", csv)):
        if value is not None and not isinstance(value, (str, Path)):
            raise ConfigError(f"{name} must be a {'built-in dataset name' if name == 'dataset' else 'file path'}, got "
                              f"a {type(value).__name__}" + (": write the frame to a CSV or Parquet file and pass its "
                                                             "path as csv=" if hasattr(value, "to_csv") else ""))
    if task is not None and task not in TASKS:
        raise ConfigError(f"--task must be classification or regression, got {task!r}")
    if csv is not None:
        if dataset is not None:
            raise ConfigError("give either --dataset or --csv, not both")
        if not target:
            raise ConfigError("--csv needs --target naming the label column")
        if private and isinstance(columns, dict):
            raise ConfigError("columns: one table (--csv or a dataset) takes one ColumnSpec for its columns; a dict "
                              "of per-organization ColumnSpecs is for one table per organization")
        centres = columns.declared().centre if private and columns is not None else None
        return load_csv(csv, target, task, missing=missing, id_column=id_column, centres=centres, private=private)
    if dataset is None:
        raise ConfigError("give --dataset NAME or --csv PATH --target COL")
    data = load_dataset(dataset)
    if task is not None and task != data.task:
        raise ConfigError(f"--task {task}: the built-in {dataset!r} is a {data.task} task (--task is for --csv)")
    return data


def _check(parties, learner, rounds, seed, weighting, eta, eta_max) -> tuple:
    """Every setting of a run, before anything is written (bounds: MAX_PARTIES, MAX_ROUNDS); the
    numbers as Python ints and floats (numpy scalars are accepted: ``for seed in np.arange(5)``).
    Messages name the command-line flag, which is the keyword argument with '-' for '_'."""
    def whole(name, value, low, high):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or not low <= value <= high:
            raise ConfigError(f"--{name} must be an integer in {low}..{high}, got {value!r}")
        return int(value)

    def step(name, value):
        if value is not None and (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real)
                                  or not math.isfinite(value) or not 0 < value <= MAX_ETA):
            raise ConfigError(f"--{name} must be a number in (0, {MAX_ETA:g}], got {value!r}")
        return None if value is None else float(value)

    if learner not in LEARNERS:
        raise ConfigError(f"unknown learner {learner!r}; choose one of {', '.join(LEARNERS)}")
    if weighting not in (None, *WEIGHTINGS):
        raise ConfigError(f"--weights must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
    return (whole("parties", parties, 1, MAX_PARTIES), whole("rounds", rounds, 1, MAX_ROUNDS),
            whole("seed", seed, 0, 2**32 - 1), step("eta", eta), step("eta-max", eta_max))


def _check_arguments(plan, flags: dict, learner_options, fractions: dict, calibrate, columns, out,
                     paths: dict, deployment) -> None:
    """The Python API's argument types (the command line gives them right by construction): each
    a one-line ConfigError naming the argument, where they failed deep inside or were taken for
    true ("no" is truthy)."""
    if not isinstance(plan, PrivacyPlan):
        raise ConfigError(f"plan must be a PrivacyPlan (e.g. PrivacyPlan(feature_dp=FeatureDP(epsilon=1)) or "
                          f"LAYERS['dp'].plan(1.0)), got {plan!r}")
    for name, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            raise ConfigError(f"{name} must be True or False, got {value!r}")
    if calibrate is not None and not isinstance(calibrate, (bool, np.bool_)):
        raise ConfigError(f"calibrate must be True, False or None (the plan's default), got {calibrate!r}")
    if learner_options is not None and not isinstance(learner_options, dict):
        raise ConfigError(f"learner_options must be a dict of the learner's keyword arguments, got {learner_options!r}")
    for name, value in fractions.items():
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{name} must be a number in (0, 1), got {value!r}")
    if columns is not None and not isinstance(columns, (ColumnSpec, dict)):
        raise ConfigError(f"columns must be a ColumnSpec (securegal.privacy.dp.table), or with one table per "
                          f"organization a dict of party name -> ColumnSpec, got {type(columns).__name__}")
    if flags.get("ground_truth") and out is None:
        raise ConfigError("ground_truth writes ground_truth.npz into the run directory: give out")
    for name, value in paths.items():
        if value is not None and not isinstance(value, (str, Path)):
            raise ConfigError(f"{name} must be a {'column name' if name == 'id_column' else 'path'}, got {value!r}")
    if not callable(getattr(deployment, "build", None)):
        raise ConfigError(f"deployment must be a Deployment (e.g. securegal.deploy.embedded.EmbeddedDeployment()), "
                          f"got {deployment!r}")
    supports = getattr(deployment, "supports", frozenset())  # a home-made deployment without it honours neither
    unsupported = [name for name in ("baselines", "ground_truth") if flags.get(name) and name not in supports]
    if unsupported:
        raise ConfigError(f"{' and '.join(unsupported)} {'need' if len(unsupported) > 1 else 'needs'} every party's "
                          f"data in this process; the {deployment.name} deployment does not have it")


def check_out_dir(out: str | Path | None, overwrite: bool) -> Path | None:
    """The run directory ``out`` if it may receive results; nothing is written here."""
    if out is None:
        return None
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"--out {str(out)!r} is not empty; choose a new directory or pass --overwrite")
    return out


def _staging_prefix(out: Path) -> str:
    return f".{out.name}.partial-"


def _staging_dir(out: Path) -> Path:
    """A new private staging directory beside ``out`` (``.<out>.partial-<host>-<pid>-*``); first,
    those that runs killed outright left behind (their process gone) are removed."""
    private_dir(out.parent)
    prefix = _staging_prefix(out)
    for stale in stale_staging(out.parent, prefix):
        shutil.rmtree(stale, ignore_errors=True)
        log.info("removed %s, left by a run that was killed", stale)
    return new_staging_dir(out.parent, prefix)


def _publish(staging: Path, out: Path) -> None:
    """Move a finished run from its staging directory to ``out`` (replacing earlier results there)."""
    if not out.exists():
        os.replace(staging, out)
        return
    for pattern in RESULTS:
        for p in out.glob(pattern):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)
    for entry in staging.iterdir():
        os.replace(entry, out / entry.name)
    staging.rmdir()


def train(dataset: str | None = None, *, csv: str | Path | None = None, target: str | None = None,
          parties: int | None = None, learner: str = "linear", rounds: int = 10, seed: int = 0, baselines: bool = False,
          out: str | Path | None = None, overwrite: bool = False, plan: PrivacyPlan | None = None,
          weighting: str | None = None, eta: float | None = None, eta_max: float | None = None,
          test_fraction: float = 0.2, validation_fraction: float = 0.1, learner_options: dict | None = None,
          local_loss: str | None = None, progress: bool | None = False, ground_truth: bool = False,
          deployment: Deployment | None = None, channel: ResidualChannel | None = None,
          trainers: TrainerChoice | None = None, missing: str = "impute", id_column: str | None = None,
          columns=None, ledger: str | Path | None = None, calibrate: bool | None = None,
          task: str | None = None, command: str | None = None) -> dict:
    """Train GAL (and with ``baselines`` Alone, Joint and GAL-uniform) and return ``metrics.json``'s content.

    >>> from securegal.privacy.plan import FeatureDP, PrivacyPlan
    >>> metrics = train("wine", parties=4, rounds=3, plan=PrivacyPlan(feature_dp=FeatureDP(epsilon=3)))  # doctest: +SKIP
    >>> metrics["gal"]["test"], metrics["privacy"]                                                   # doctest: +SKIP

    Data: a built-in ``dataset`` name, or ``csv`` (a CSV or Parquet path; a pandas frame must be
    written to a file first) with its label column ``target``, an optional ``id_column`` kept out of
    the features, ``missing`` ("impute" | "refuse") and ``task`` ("classification" | "regression";
    by default a target of text or at most 20 distinct integers is classification, e.g. pass
    ``task="regression"`` for a length of stay in days). ``parties`` organizations split the columns
    (the first is the label owner; default 4, or with one table per organization their number); ``rounds`` boosting rounds; ``seed`` the row split and the
    learners; ``test_fraction``/``validation_fraction`` the split. ``out`` is the run directory
    (metrics.json, curve.png, transcripts/; refused if it holds results unless ``overwrite``; with
    ``ground_truth`` also ground_truth.npz for the audit); ``progress`` shows a bar per round (True:
    always, also into a log file or a notebook; None: only on a terminal, the command's default).
    ``command``: the command line the run came from, kept in metrics.json for the audit's
    "reproduce" (``securegal train`` passes its own).

    ``plan`` says what protects the run (default: plain); ``weighting``/``eta`` default to the
    plan's :meth:`~securegal.privacy.plan.PrivacyPlan.owner_policy` (so does ``calibrate``: the
    per-party multipliers fitted on the validation rows under feature-DP); ``eta_max`` (default 10)
    caps the line-searched step and is refused when the step is fixed. ``deployment`` says where the
    feature parties run (default :class:`~securegal.deploy.embedded.EmbeddedDeployment`); the
    baselines always run embedded. ``channel`` and ``trainers`` replace the plan's layers, for
    studies only (noisy parties, a malicious label owner); they are reported as such.

    Feature-DP parties standardize with public column knowledge, never their exact training
    statistics: ``columns`` (a :class:`~securegal.privacy.dp.table.ColumnSpec` for the whole
    dataset, or with one table per organization {party name: ColumnSpec of its table}) or the
    built-in dataset's documented ranges. Each keeps its spend in its table's
    ledger: in memory, or with ``ledger`` (a directory) one persistent file per party. Under
    label-DP the row split is unstratified (it must not depend on the labels).

    Raises :class:`~securegal.errors.ConfigError` for invalid input, before anything is written, and
    :class:`~securegal.errors.BudgetExceeded` when a budget cannot cover the run. A run a budget
    stops part-way returns what it learned, with ``metrics["gal"]["stopped"]`` saying why;
    ``metrics["notes"]`` lists what the run's guarantees do not cover.
    """
    plan = plan if plan is not None else PrivacyPlan()
    deployment = deployment or EmbeddedDeployment()
    if parties is None:  # with one table per organization, their number
        parties = 1 + len(deployment.tables) if getattr(deployment, "tables", None) else DEFAULT_PARTIES
    _check_arguments(plan, dict(baselines=baselines, overwrite=overwrite, ground_truth=ground_truth,
                                **({} if progress is None else {"progress": progress})),
                     learner_options, dict(test_fraction=test_fraction, validation_fraction=validation_fraction),
                     calibrate, columns, out, dict(out=out, ledger=ledger, id_column=id_column), deployment)
    parties, rounds, seed, eta, eta_max = _check(parties, learner, rounds, seed, weighting, eta, eta_max)
    test_fraction, validation_fraction = float(test_fraction), float(validation_fraction)  # np.float32 too
    final_dir = check_out_dir(out, overwrite)
    local_parties = getattr(deployment, "local_parties", False)  # the feature parties are built here from the plan
    # A networked label owner's eta_max was checked with federation.toml (FederationConfig.load);
    # parties reporting DP fix its step only at setup.
    policy = plan.owner_policy(parties=parties, rounds=rounds, weighting=weighting, eta=eta, calibrate=calibrate,
                               eta_max=eta_max if local_parties else None)
    local_dp = plan.feature_dp is not None and local_parties and not getattr(deployment, "tables", None)
    data = resolve_dataset(dataset, csv, target, missing, id_column, columns, private=local_dp, task=task)
    blocks = deployment.blocks(data, parties)
    # Under label-DP the split must not depend on the labels: unstratified, from the seed alone.
    split = split_rows(data, seed, test_fraction, validation_fraction, stratify=plan.label_dp is None)
    scaler = TargetScaler.fit(data, data.y[split.train])
    # Everything impossible is refused here, before any file is written or any data moves.
    names = deployment.names(parties)
    if len(names) == 1 and plan.layer != "plain":  # refused, not ignored: nothing to protect
        raise ConfigError(f"the {plan.layer} layer protects what the label owner and the feature parties exchange; "
                          "with --parties 1 there is no feature party (the label owner trains alone)")
    plan.check(learner=learner, loss=data.loss, n_train=len(split.train), rounds=rounds,
               parties=names[1:], weighting=policy.weighting,
               local_parties=local_parties)
    common = dict(learner=learner, seed=seed, scaler=scaler, learner_options=dict(learner_options or {}),
                  local_loss=local_loss, **({} if eta_max is None else {"eta_max": eta_max}))
    job = GalJob.from_plan(plan, dataset=data, n_train=len(split.train), parties=parties, rounds=rounds,
                           weighting=weighting, eta=eta, calibrate=calibrate, owner=names[0], **common)
    if channel is not None:  # studies only: a channel the plan does not describe
        if hasattr(channel, "preflight"):
            channel.preflight(len(split.train), rounds, data.loss)
        job.channel = channel
    if trainers is not None:
        if hasattr(trainers, "open_table") and plan.feature_dp is None and (weighting is None or eta is None):
            warnings.warn("train(trainers=...) with DP trainers and a plan without feature-DP: the label owner "
                          "learns weights and line-searches its step on the parties' noised predictions (plain "
                          "GAL's policy); give plan=PrivacyPlan(feature_dp=FeatureDP(...)) for the DP policy",
                          UserWarning, stacklevel=2)
        job.trainers = trainers
    job.columns = columns
    if plan.feature_dp is not None and plan.feature_dp.session_epsilon is not None and ledger is None:
        raise ConfigError("--session-epsilon caps what a run adds to each feature party's lifetime budget, which "
                          "needs a ledger (--ledger DIR)")
    if plan.feature_dp is not None and plan.feature_dp.predict != "once" and ledger is None:
        raise ConfigError(f"--dp-predict {plan.feature_dp.predict} says which rows each feature party predicts for "
                          "across the runs on its ledger, which needs one (--ledger DIR)")
    if plan.feature_dp is not None and plan.feature_dp.predict == "none":
        raise ConfigError("feature-DP predict 'none': an embedded run evaluates its model on the validation and "
                          "test rows, which such parties never answer")
    if plan.label_dp is not None and plan.label_dp.session_epsilon is not None and ledger is None:
        raise ConfigError("--label-session-epsilon caps what a run adds to the label column's lifetime budget, "
                          "which needs a ledger (--ledger DIR, or [label_dp] ledger)")
    if ledger is not None:
        if not hasattr(job.trainers, "open_table") and plan.label_dp is None:
            raise ConfigError("--ledger keeps the feature-DP parties' ledgers and the label column's; it needs "
                              "--epsilon or --label-epsilon")
        if not Path(ledger).is_dir():
            raise ConfigError(f"ledger directory {str(ledger)!r} (--ledger, or [label_dp] ledger) must be an existing "
                              "directory (one ledger file per party)")
        job.ledger_dir = Path(ledger)
    jobs = {"gal": (deployment, blocks, job, data)}
    if baselines:
        embedded = EmbeddedDeployment(owner=names[0])
        joint_data = deployment.joined(data) if getattr(deployment, "tables", None) else data
        joint = (contiguous_blocks(joint_data.X.shape[1], 1) if data.image_shape is None
                 else vertical_split(joint_data, 1))
        for method, where, method_blocks, weights, method_data in (
                ("alone", embedded, blocks[:1], "learned", data), ("joint", embedded, joint, "learned", joint_data),
                ("gal_uniform", deployment, blocks, "uniform", data)):
            jobs[method] = (where, method_blocks, GalJob(channel=PrivacyPlan().channel(), weighting=weights,
                                                         rounds=rounds, eta=policy.eta, **common), method_data)
    _check_learners(jobs)
    # The run writes into a private staging directory beside --out and publishes it only when it
    # finished (or stopped cleanly): a failed run leaves nothing that looks like a result.
    run_dir = labels = None
    try:
        run_dir = _staging_dir(final_dir) if final_dir is not None else None
        if ledger is not None and plan.label_dp is not None:
            labels = _label_ledger(job, plan, data, Path(ledger), names[0])
        metrics = _run_jobs(jobs, data, split, scaler, plan, deployment, run_dir, ground_truth, progress,
                            parties=parties, rounds=rounds, seed=seed, learner=learner, blocks=blocks,
                            command=command)
    except BaseException:
        if run_dir is not None:
            shutil.rmtree(run_dir, ignore_errors=True)
        elif final_dir is not None:  # stopped while the staging directory was made
            for made in own_staging(final_dir.parent, _staging_prefix(final_dir)):
                shutil.rmtree(made, ignore_errors=True)
        raise
    finally:
        if labels is not None:
            try:
                job.channel.settle_ledger("run ended")  # rounds a stopped run did not release go back
            finally:
                labels.close()
    if run_dir is not None:
        _publish(run_dir, final_dir)
    return metrics


def _label_ledger(job: GalJob, plan: PrivacyPlan, data: Dataset, directory: Path, owner: str):
    """The label column's lifetime ledger (``<owner>.labels.securegal-ledger.json`` in ``directory``),
    with this run's label-DP releases reserved in it before any is sent."""
    import uuid

    from .privacy.dp.accountant import Budget
    from .privacy.dp.ledger import open_ledger, table_identity

    codes = np.unique(np.asarray(data.y), return_inverse=True)[1].reshape(-1, 1)
    table, formerly = table_identity(data.row_ids(), codes)
    config = plan.label_dp.config()
    ledger = open_ledger(directory / f"{owner}.labels.securegal-ledger.json", table,
                         Budget(config.epsilon, config.delta), config.accountant, n_rows=len(codes), formerly=formerly)
    try:
        job.channel.bind_ledger(ledger, f"labels-{uuid.uuid4().hex[:16]}")
    except BaseException:
        ledger.close()
        raise
    return ledger


def _run_jobs(jobs, data, split, scaler, plan, deployment, run_dir, ground_truth, progress, *, parties, rounds,
              seed, learner, blocks, command=None) -> dict:
    job = jobs["gal"][2]
    if ground_truth and run_dir is not None:
        job.channel = OpenedRecorder(job.channel)
    started = time.perf_counter()
    results: dict[str, MethodRun] = {}
    reports: dict = {}
    for method, (where, method_blocks, method_job, method_data) in jobs.items():
        if method != "gal" and gal_owner.common is not None:  # baselines on the rows every party holds
            split = RowSplit(*(gal_owner.aligned(getattr(split, f)) for f in ("train", "validation", "test")))
        owner = where.build(method_job, method_data, split, method_blocks,
                            run_dir=run_dir if method == "gal" else None)
        if method == "gal":
            gal_owner, gal_split = owner, split
        bar = _progress(method, rounds, progress) if progress is not False else None
        try:
            results[method] = where.run(owner, method_data, split, scaler, (lambda r: bar.update(1)) if bar else None)
        finally:
            if bar is not None:
                bar.close()
        if method == "gal":
            settle = getattr(owner.channel, "settle_ledger", None)
            if settle is not None:  # a run that stopped early gives back what it did not release, before reporting
                settle("run ended")
            channel_report = dict(owner.channel.report())
            privacy = {**channel_report.pop("privacy", {}),
                       **(method_job.trainers.report() if hasattr(method_job.trainers, "report") else {})}
            reports.update(channel_report)
            if privacy:
                reports["privacy"] = privacy
    metric, _ = metric_for(data.task)
    gal = results["gal"]
    metrics = {
        "dataset": data.name, "task": data.task, "metric": metric, "loss": data.loss, "parties": parties,
        "party_names": gal.parties, "rounds": rounds, "seed": seed, "learner": learner,
        "residuals": getattr(job.channel, "name", "plain"), "plan": plan.describe(), "deployment": deployment.name,
        "n_train": int(gal_owner.n), "n_validation": int(len(gal_owner.aligned(gal_split.validation))),
        "n_test": int(len(gal_owner.aligned(gal_split.test))),
        "gal": gal.as_dict(), "weights": gal.weights, "eta": gal.eta,
        "seconds": round(time.perf_counter() - started, 3),
    }
    for method in METHODS[1:]:
        if method in results:
            metrics[method] = results[method].as_dict()
    if len(results) > 1 and (plan.feature_dp is not None or plan.label_dp is not None):
        metrics["baselines_not_private"] = ("Alone, Joint and GAL-uniform ran on the same tables without any privacy "
                                            "layer and outside every ledger: evaluation only, like ground_truth.npz")
    metrics["data"] = _data_block(data, blocks, gal.parties, gal_owner, getattr(deployment, "tables", None))
    metrics.update(reports)
    metrics["notes"] = privacy_notes(metrics)
    if command is not None:  # how the run was made (the audit's "reproduce")
        metrics["command"] = command
    if run_dir is not None:
        if ground_truth:
            write_ground_truth(run_dir / GROUND_TRUTH, data, gal_owner, blocks, deployment.names(parties),
                               job.channel.opened)
        write_json_atomic(run_dir / "metrics.json", metrics)
        from .plots import plot_curves

        plot_curves(metrics, run_dir / "curve.png")
    return metrics


def privacy_notes(metrics: dict) -> list[str]:
    """What the run's guarantees do not cover, in words (metrics.json ``notes``; the command's
    summary prints them): the one place these caveats are decided."""
    owner = metrics["party_names"][0]
    privacy = metrics.get("privacy", {})
    notes = []
    dp_parties = [p for p in privacy if p != owner]
    asked = [p for p in dp_parties if p not in metrics["gal"].get("missing_at_predict", [])]
    if asked and metrics.get("plan", {}).get("membership") != "hidden":
        notes.append(f"outside the guarantee: {', '.join(asked)} answered exact predictions for the "
                     f"{metrics['n_validation']} validation and {metrics['n_test']} test rows, which disclose those "
                     "rows' features (a ledger file counts them as disclosed; a networked party withholds them with "
                     "party.toml [policy] predict = \"none\"; docs/privacy.md section 6)")
    labels = privacy.get(owner)
    if isinstance(labels, dict) and "label_dp" in metrics.get("plan", {}) and "ledger" not in labels:
        notes.append("label-DP is counted per run: runs on the same labels add up (a label ledger keeps their "
                     "lifetime budget: ledger=DIR, --ledger DIR or [label_dp] ledger)")
    return notes


def _data_block(data: Dataset, blocks, names, owner, tables=None) -> dict:
    """Which columns each party contributed (names where this process knows them: every party
    embedded, the label owner's own networked), how the table was encoded, and the alignment."""
    out: dict = {"columns": {}, "n_columns": {}}
    for i, (name, block) in enumerate(zip(names, blocks)):
        if len(block.columns):
            out["n_columns"][name] = int(len(block.columns))
            if tables and i > 0:
                out["columns"][name] = list(tables[name].columns)
            elif data.columns is not None:
                out["columns"][name] = [data.columns[j] for j in block.columns]
    for name, count in owner.party_columns.items():
        out["n_columns"].setdefault(name, count)
    out.update(data.encoding or {"categorical": {}, "imputed": {}})
    if owner.common is not None:
        out["aligned_rows"] = int(owner.common.sum())
        out["label_owner_rows"] = int(len(owner.common))
    return out


def _check_learners(jobs: dict) -> None:
    """Let every job's trainer choice refuse its parties' learners (e.g. CKKS needs a linear
    smoother) before anything is written or sent."""
    for where, blocks, job, method_data in jobs.values():
        names = party_names(len(blocks))
        for i in range(1, len(blocks)):
            job.trainers(names[i], i, party_learner(method_data, blocks[i], i, job))


GROUND_TRUTH = "ground_truth.npz"
# What a run directory holds; --overwrite replaces exactly these. An audit of the run (securegal
# audit) writes audit.* and self-audit/ beside them: it describes the run it read, so it goes with
# it (an overwritten run's audit.html stood beside the new metrics).
RESULTS = ("metrics.json", "curve.png", "transcripts", GROUND_TRUTH, "audit.json", "audit.md", "audit.html",
           "audit_*.png", "self-audit")


class OpenedRecorder:
    """Wraps the label owner's residual channel and keeps the training-row predictions it opened.

    That is the label owner's own plaintext view (after decryption under CKKS), which its
    transcript holds only as ciphertexts; the audit needs it to attack as the key holder can.
    """

    def __init__(self, inner: ResidualChannel):
        self.inner = inner
        self.opened: dict[str, dict[int, np.ndarray]] = {}

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def open(self, payload, round: int, party: str, shape: tuple[int, ...]) -> np.ndarray:
        values = self.inner.open(payload, round, party, shape)
        if round > 0 and len(shape) == 2:
            self.opened.setdefault(party, {})[round] = np.array(values, dtype=np.float64)
        return values


def write_ground_truth(path: Path, data: Dataset, owner, blocks: list, names: list[str],
                       opened: dict[str, dict[int, np.ndarray]]) -> None:
    """Evaluation-only ground truth for the leakage audit; never an input to any party.

    Arrays (``np.savez``, no pickle): ``sample_ids`` (the training IDs), ``labels`` (their labels
    in original units), ``features.<party>`` (each party's raw columns for those rows) and
    ``handles.<party>`` (that party's row handle of each training row in this session),
    ``opened.<party>`` / ``opened_rounds.<party>`` (the predictions the label owner opened from
    each party, per round: its own view, decrypted when the transcript holds ciphertexts). The
    audit hands an attack only its declared side knowledge and its own view drawn from here (a
    fraction of the labels, a few of the victim's rows, the attacker's own columns) and scores
    it on the rest.
    """
    ids = owner.train_ids
    arrays = {"sample_ids": ids, "labels": data.y[ids]}
    for name, handles in owner.handles.items():  # how each party named those rows in this session
        arrays[f"handles.{name}"] = handles[ids]
    for name, block in zip(names, blocks):
        arrays[f"features.{name}"] = data.X[np.ix_(ids, block.columns)]
    for name, rounds in opened.items():
        order = sorted(rounds)
        arrays[f"opened.{name}"] = np.stack([rounds[t] for t in order])
        arrays[f"opened_rounds.{name}"] = np.asarray(order, dtype=np.int64)
    write_bytes_atomic(path, lambda fh: np.savez(fh, **arrays))


def _progress(method: str, rounds: int, progress: bool | None):
    from tqdm import tqdm

    return tqdm(total=rounds, desc=f"{method:<11}", unit="round", leave=False, dynamic_ncols=True,
                disable=None if progress is None else False)  # None: on a terminal only
