"""``securegal.train``: run GAL (and its baselines) on a dataset and write the run directory.

A run directory holds ``metrics.json`` (stable keys, parsed by other scripts), ``curve.png``
(test metric per round) and ``transcripts/<party>/`` (each party's view of the GAL run). With
``ground_truth=True`` it also holds ``ground_truth.npz``, the evaluation-only truth that
``securegal audit`` scores attacks against (see :func:`write_ground_truth`).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .data.datasets import Dataset, load_csv, load_dataset
from .data.split import Block, RowSplit, contiguous_blocks, split_rows, vertical_split
from .errors import ConfigError
from .federation import TargetScaler, check_trainers, TrainerChoice, build_embedded, party_names, plain_trainers
from .learners.registry import LEARNERS
from .metrics import metric_for
from .parties.label_owner import LabelOwner, RoundResult
from .parties.layers import PlainResiduals, ResidualChannel

log = logging.getLogger(__name__)

METHODS = ("gal", "alone", "joint", "gal_uniform")


@dataclass(frozen=True)
class MethodRun:
    """One trained method's scores in the original target units."""

    test: float
    per_round: list[float]
    validation_per_round: list[float]
    weights: list[list[float]]
    eta: list[float]
    parties: list[str]
    stopped: str | None
    absent: list[list[str]] = field(default_factory=list)  # per round: parties dropped from it
    missing_at_predict: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = {"test": self.test, "per_round": self.per_round, "validation_per_round": self.validation_per_round}
        if self.stopped:
            d["stopped"] = self.stopped
        if any(self.absent):
            d["absent_per_round"] = self.absent
        if self.missing_at_predict:
            d["missing_at_predict"] = self.missing_at_predict
        return d


def resolve_dataset(dataset: str | None, csv: str | Path | None, target: str | None) -> Dataset:
    if csv is not None:
        if dataset is not None:
            raise ConfigError("give either --dataset or --csv, not both")
        if not target:
            raise ConfigError("--csv needs --target naming the label column")
        return load_csv(csv, target)
    if dataset is None:
        raise ConfigError("give --dataset NAME or --csv PATH --target COL")
    return load_dataset(dataset)


def _evaluate(owner: LabelOwner, dataset: Dataset, ids: np.ndarray, scaler: TargetScaler) -> list[float]:
    if len(ids) == 0:
        return []
    _, score = metric_for(dataset.task)
    F = owner.predict_rounds(ids)
    return [score(dataset.y[ids], scaler.inverse(F[t])) for t in range(1, F.shape[0])]


def run_method(owner: LabelOwner, dataset: Dataset, split: RowSplit, scaler: TargetScaler,
               on_round: Callable[[RoundResult], None] | None = None,
               start: Callable[[LabelOwner], None] = LabelOwner.setup) -> MethodRun:
    """Set up (or ``start`` otherwise, e.g. resume), fit, evaluate on validation and test, and
    close one federation."""
    try:
        start(owner)
        model = owner.fit(on_round)
        test = _evaluate(owner, dataset, split.test, scaler)
        val = _evaluate(owner, dataset, split.validation, scaler)
        owner.finish()
    finally:
        if owner.messenger is not None:
            owner.messenger.close()
    names = list(model.parties)
    if not test:  # stopped before the first round: the score of F0 alone
        _, score = metric_for(dataset.task)
        F0 = np.tile(model.init, (len(split.test), 1))
        test = [score(dataset.y[split.test], scaler.inverse(F0))]
    return MethodRun(test[-1], test, val, [[r.weights.get(p, 0.0) for p in names] for r in model.rounds],
                     [r.eta for r in model.rounds], names, model.stopped, [list(r.absent) for r in model.rounds],
                     sorted(model.missing_at_predict))


def _check(parties: int, learner: str, rounds: int, seed: int) -> None:
    if not isinstance(parties, int) or parties < 1:
        raise ConfigError(f"--parties must be a positive integer, got {parties!r}")
    if not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(f"--rounds must be a positive integer, got {rounds!r}")
    if learner not in LEARNERS:
        raise ConfigError(f"unknown learner {learner!r}; choose one of {', '.join(LEARNERS)}")
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, got {seed!r}")


def prepare_out_dir(out: str | Path | None, overwrite: bool) -> Path | None:
    if out is None:
        return None
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(f"--out {str(out)!r} is not empty; choose a new directory or pass --overwrite")
        for name in ("metrics.json", "curve.png", "transcripts", GROUND_TRUTH):
            p = out / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_json_atomic(path: Path, data: dict) -> None:
    """Write ``data`` so that a reader sees the old file or the whole new one, never a part."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def train(dataset: str | None = None, *, csv: str | Path | None = None, target: str | None = None,
          parties: int = 4, learner: str = "linear", rounds: int = 10, seed: int = 0, baselines: bool = False,
          out: str | Path | None = None, overwrite: bool = False, channel: ResidualChannel | None = None,
          trainers: TrainerChoice = plain_trainers, weighting: str = "learned", eta: float | None = None,
          eta_max: float = 10.0, test_fraction: float = 0.2, validation_fraction: float = 0.1,
          learner_options: dict | None = None, local_loss: str | None = None, progress: bool = False,
          ground_truth: bool = False,
          split_blocks: Callable[[Dataset, int], list[Block]] = vertical_split,
          build_gal: Callable[..., LabelOwner] = build_embedded, run_gal: Callable[..., MethodRun] = run_method) -> dict:
    """Train GAL (and with ``baselines`` Alone, Joint and GAL-uniform) and return ``metrics.json``'s content.

    >>> metrics = train("wine", parties=4, rounds=5, baselines=True)   # doctest: +SKIP
    >>> metrics["gal"]["test"], metrics["alone"]["test"]               # doctest: +SKIP

    ``split_blocks``, ``build_gal`` and ``run_gal`` replace how GAL's federation is cut, built and
    run (the networked label owner in :mod:`securegal.network` uses them); baselines stay embedded.
    """
    data = resolve_dataset(dataset, csv, target)
    _check(parties, learner, rounds, seed)
    blocks = split_blocks(data, parties)
    split = split_rows(data, seed, test_fraction, validation_fraction)
    scaler = TargetScaler.fit(data, data.y[split.train])
    # Privacy layers refuse an impossible budget here, before any data moves.
    if hasattr(trainers, "preflight"):
        trainers.preflight(len(split.train), rounds, party_names(parties)[1:], learner=learner)
    if hasattr(channel, "preflight"):
        channel.preflight(len(split.train), rounds, data.loss)
    check_trainers(data, blocks, trainers, learner=learner, seed=seed, local_loss=local_loss,
                   learner_options=learner_options)
    run_dir = prepare_out_dir(out, overwrite)
    started = time.perf_counter()
    common = dict(learner=learner, seed=seed, rounds=rounds, scaler=scaler, eta_max=eta_max, eta=eta,
                  learner_options=learner_options, local_loss=local_loss)
    plans = {"gal": dict(blocks=blocks, channel=channel, trainers=trainers, run_dir=run_dir, weighting=weighting)}
    if baselines:
        plans["alone"] = dict(blocks=blocks[:1])
        plans["joint"] = dict(blocks=contiguous_blocks(data.X.shape[1], 1) if data.image_shape is None else vertical_split(data, 1))
        plans["gal_uniform"] = dict(blocks=blocks, weighting="uniform")
    if ground_truth and run_dir is not None:
        plans["gal"]["channel"] = OpenedRecorder(channel or PlainResiduals())
    results: dict[str, MethodRun] = {}
    reports: dict = {}
    for method, plan in plans.items():
        build, run = (build_gal, run_gal) if method == "gal" else (build_embedded, run_method)
        owner = build(data, split, **common, **plan)
        bar = _progress(method, rounds) if progress else None
        try:
            results[method] = run(owner, data, split, scaler, (lambda r: bar.update(1)) if bar else None)
        finally:
            if bar is not None:
                bar.close()
        if method == "gal":
            channel_report = dict(owner.channel.report())
            privacy = {**channel_report.pop("privacy", {}),
                       **(trainers.report() if hasattr(trainers, "report") else {})}
            reports.update(channel_report)
            if privacy:
                reports["privacy"] = privacy
    metric, _ = metric_for(data.task)
    gal = results["gal"]
    metrics = {
        "dataset": data.name, "task": data.task, "metric": metric, "loss": data.loss, "parties": parties,
        "party_names": gal.parties, "rounds": rounds, "seed": seed, "learner": learner,
        "residuals": getattr(channel, "name", "plain"), "n_train": int(len(split.train)),
        "n_validation": int(len(split.validation)), "n_test": int(len(split.test)),
        "gal": gal.as_dict(), "weights": gal.weights, "eta": gal.eta,
        "seconds": round(time.perf_counter() - started, 3),
    }
    for method in METHODS[1:]:
        if method in results:
            metrics[method] = results[method].as_dict()
    metrics.update(reports)
    if run_dir is not None:
        if ground_truth:
            write_ground_truth(run_dir / GROUND_TRUTH, data, split, blocks, party_names(parties),
                               plans["gal"]["channel"].opened)
        write_json_atomic(run_dir / "metrics.json", metrics)
        from .plots import plot_curves

        plot_curves(metrics, run_dir / "curve.png")
    return metrics


GROUND_TRUTH = "ground_truth.npz"


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


def write_ground_truth(path: Path, data: Dataset, split: RowSplit, blocks: list, names: list[str],
                       opened: dict[str, dict[int, np.ndarray]]) -> None:
    """Evaluation-only ground truth for the leakage audit; never an input to any party.

    Arrays (``np.savez``, no pickle): ``sample_ids`` (the training IDs), ``labels`` (their labels
    in original units), ``features.<party>`` (each party's raw columns for those rows) and
    ``opened.<party>`` / ``opened_rounds.<party>`` (the predictions the label owner opened from
    each party, per round: its own view, decrypted when the transcript holds ciphertexts). The
    audit hands an attack only its declared side knowledge and its own view drawn from here (a
    fraction of the labels, a few of the victim's rows, the attacker's own columns) and scores
    it on the rest.
    """
    ids = split.train
    arrays = {"sample_ids": ids, "labels": data.y[ids]}
    for name, block in zip(names, blocks):
        arrays[f"features.{name}"] = data.X[np.ix_(ids, block.columns)]
    for name, rounds in opened.items():
        order = sorted(rounds)
        arrays[f"opened.{name}"] = np.stack([rounds[t] for t in order])
        arrays[f"opened_rounds.{name}"] = np.asarray(order, dtype=np.int64)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)


def _progress(method: str, rounds: int):
    from tqdm import tqdm

    return tqdm(total=rounds, desc=f"{method:<11}", unit="round", leave=False, dynamic_ncols=True, disable=None)
