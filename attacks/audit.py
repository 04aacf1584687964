"""``securegal audit``: run every attack that applies on a run directory's transcripts.

Each attack sees one party's transcript (read with :func:`securegal.transcript.read_transcript`)
and its declared side knowledge, drawn from the run's evaluation-only ``ground_truth.npz``: a
seeded fraction of the training labels (label inference), a seeded fraction of the victim's
rows (feature reconstruction), and for model completion the attacker's own columns. Scores are
computed on the rows outside the side knowledge. The result goes to ``RUN_DIR/audit.json``.
"""
from __future__ import annotations

import json
import math
from statistics import NormalDist
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from securegal.errors import ConfigError
from securegal.messages import TASKS
from securegal.transcript import Transcript, read_transcript

from . import (active_predictions, active_residuals, hat_matrix, inversion_net, label_clustering, label_inversion,
               label_rounds, model_completion)
from .features import KnownRows
from .labels import KnownLabels, class_set
from .result import AttackResult
from .stats import ALPHA, bayes_bound
from .verdict import verdicts
from .views import as_array, is_encrypted

GROUND_TRUTH = "ground_truth.npz"
AUDIT = "audit.json"
PLOT = "audit_advantage.png"
#: The residual-channel name of a malicious label owner sending crafted residuals.
CRAFTED = "crafted"
#: ``metrics["active"]["attack"]`` of a run with a feature party crafting its predictions.
CRAFTED_PREDICTIONS = "crafted_predictions"


class NothingReleased(ConfigError):
    """A party's transcript holds no payload of the kind an attack needs (e.g. it never answered)."""


@dataclass(frozen=True)
class GroundTruth:
    """Evaluation-only truth of a run: training sample IDs, their labels, every party's columns."""

    sample_ids: np.ndarray
    labels: np.ndarray
    features: dict[str, np.ndarray]
    opened: dict[str, np.ndarray]  # party -> (rounds, n, K) predictions the label owner opened
    handles: dict[str, np.ndarray] = field(default_factory=dict)  # party -> its row handle of each row

    def rows(self, sample_ids: np.ndarray) -> np.ndarray:
        """Positions of ``sample_ids`` in the truth arrays: the label owner's row numbers, or one
        party's row handles of this session (every ID must be present)."""
        for keys in (self.sample_ids, *self.handles.values()):
            order = np.argsort(keys)
            pos = np.searchsorted(keys, sample_ids, sorter=order)
            pos = order[np.clip(pos, 0, len(order) - 1)]
            if len(keys) and np.all(keys[pos] == sample_ids):
                return pos
        raise ConfigError("the transcript's training sample IDs are not in ground_truth.npz")


@dataclass(frozen=True)
class RunView:
    run_dir: Path
    metrics: dict
    label_owner: str
    feature_parties: tuple[str, ...]
    truth: GroundTruth

    def transcript(self, party: str) -> Transcript:
        return read_transcript(self.run_dir / "transcripts" / party)


@dataclass(frozen=True)
class AuditRow:
    """An :class:`AttackResult` plus what the attacker's payloads were (``view``), the epsilon
    protecting the victim, whether the view understates the attacker's (``understates``), and
    for label-DP victims the Bayes bound on label accuracy (``bayes_bound``)."""

    result: AttackResult
    view: str
    epsilon: float = math.inf
    understates: bool = False
    bayes_bound: float | None = None
    overstates: bool = False  # the view is a noise-free stand-in for a DP release: a worst case

    def to_dict(self) -> dict:
        d = {**self.result.to_dict(), "normalized_advantage": self.result.normalized_advantage,
             "view": self.view, "epsilon": self.epsilon, "understates": self.understates,
             "overstates": self.overstates}
        if self.bayes_bound is not None:
            r = self.result
            upper = r.score - NormalDist().inv_cdf(1 - ALPHA) * (r.score_se or 0.0)
            d.update(bayes_bound=self.bayes_bound, within_bayes_bound=bool(upper <= self.bayes_bound))
        return d


def check_fraction(name: str, value: float) -> float:
    """A side-knowledge fraction strictly between 0 and 1."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number in (0, 1), got {value!r}") from None
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{name} must lie strictly between 0 and 1, got {value!r}")
    return value


def load_run(run_dir: Path | str) -> RunView:
    """Read a run directory's metrics and ground truth; :class:`ConfigError` when malformed."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory {str(run_dir)!r} does not exist")
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        names = [str(n) for n in metrics["party_names"]]
        task = metrics["task"]
    except FileNotFoundError:
        raise ConfigError(f"{run_dir} has no metrics.json: not a securegal run directory") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{run_dir}/metrics.json is malformed ({exc})") from None
    if task not in TASKS or len(names) < 2:
        raise ConfigError(f"{run_dir}/metrics.json: need a task and at least two parties to audit")
    if not (run_dir / "transcripts").is_dir():
        raise ConfigError(f"{run_dir} has no transcripts/ directory")
    path = run_dir / GROUND_TRUTH
    if not path.is_file():
        raise ConfigError(f"{run_dir} has no {GROUND_TRUTH} (the side knowledge and truth the audit needs); "
                          "re-run `securegal train ... --save-ground-truth`")
    try:
        with np.load(path, allow_pickle=False) as npz:
            truth = GroundTruth(np.asarray(npz["sample_ids"], dtype=np.int64), np.asarray(npz["labels"]),
                                {n: np.asarray(npz[f"features.{n}"], dtype=np.float64) for n in names},
                                {n: np.asarray(npz[f"opened.{n}"], dtype=np.float64) for n in names
                                 if f"opened.{n}" in npz.files},
                                {n: np.asarray(npz[f"handles.{n}"], dtype=np.int64) for n in names
                                 if f"handles.{n}" in npz.files})
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{path} is unreadable or incomplete ({exc})") from None
    n = truth.sample_ids.shape[0]
    if truth.labels.shape[0] != n or any(f.ndim != 2 or f.shape[0] != n for f in truth.features.values()):
        raise ConfigError(f"{path}: arrays disagree on the number of training rows")
    return RunView(run_dir, metrics, names[0], tuple(names[1:]), truth)


def _setup(transcript: Transcript, direction: str, peer: str | None = None):
    for rec in transcript.select("setup", direction):
        if peer is None or peer in (rec.sender, rec.receiver):
            return rec.envelope.body
    raise ConfigError(f"transcript of {transcript.party!r} holds no setup message"
                      + (f" with {peer!r}" if peer else ""))


def _view_name(payloads: list) -> str:
    enc = [p for p in payloads if is_encrypted(p)]
    if not enc:
        return "plaintext"
    return f"{enc[0].scheme} ciphertext bytes" + ("" if len(enc) == len(payloads) else " (mixed)")


def _rng(seed: int, *keys: str) -> np.random.Generator:
    return np.random.default_rng([seed, *(int.from_bytes(k.encode()[:8].ljust(8, b"\0"), "little") for k in keys)])


def _choose(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    k = min(max(1, int(round(fraction * n))), n - 1)
    return np.sort(rng.choice(n, k, replace=False))


def _standardize_truth(X: np.ndarray) -> np.ndarray:
    sd = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


#: Label attacks whose accuracy the label-DP Bayes bound applies to (they see only the release
#: and other rows' labels; model completion also uses the attacker's own columns).
BAYES_CHECKED = ("label_inversion", "label_rounds", "label_clustering", "active_predictions")


def score_label_attacks(rounds: list[np.ndarray], task: str, n_outputs: int, truth: np.ndarray,
                        own: np.ndarray | None, attacker: str, victim: str, known_fraction: float, seed: int,
                        view: str, privacy: dict | None = None) -> list[AuditRow]:
    """Every label attack of ``attacker`` on the residual ``rounds`` it received, scored against
    ``truth`` (the victim's labels, aligned to the rounds' rows). Model completion needs the
    attacker's own columns ``own`` and is left out without them. ``privacy``: the victim's
    privacy block (its epsilon and delta), if DP protects its labels."""
    n = truth.shape[0]
    known_idx = _choose(n, known_fraction, _rng(seed, "labels", attacker))
    known = KnownLabels(known_idx, truth[known_idx])
    classes = class_set(n_outputs) if task == "classification" else None
    results = (label_inversion.run(rounds, task, known, truth, attacker, victim, classes)
               + label_rounds.run(rounds, task, known, truth, attacker, victim, classes)
               + label_clustering.run(rounds, task, known, truth, attacker, victim, classes, seed))
    if own is not None:
        results += model_completion.run(own, rounds, task, known, truth, attacker, victim, classes)
    return _bayes_rows(results, task, truth, privacy, view)


def _bayes_rows(results, task: str, truth: np.ndarray, privacy: dict | None, view: str) -> list[AuditRow]:
    eps, delta = block_epsilon(privacy)
    bound = None
    if task == "classification" and math.isfinite(eps):
        prior = float(np.max(np.bincount(np.asarray(truth, dtype=np.int64)))) / truth.shape[0]
        bound = bayes_bound(eps, prior, delta)
    return [AuditRow(r, view, eps, bayes_bound=bound if (r.metric == "accuracy" and r.attack in BAYES_CHECKED)
                     else None) for r in results]


def active_prediction_attack(run: RunView, known_fraction: float, seed: int = 0) -> list[AuditRow]:
    """The malicious feature party of a ``crafted_predictions`` run reads the labels from the
    residuals that came back after its pushes (its transcript; its pushes from its own seed)."""
    spec = run.metrics["active"]
    party = str(spec["party"])
    tr = run.transcript(party)
    setup = _setup(tr, "received")
    ids = np.asarray(setup.train_ids, dtype=np.int64)
    n, k = len(ids), int(setup.n_outputs)
    records = list(tr.select("fit_request", "received"))
    if not records:
        raise NothingReleased(f"transcript of {party!r} holds no residuals (fit_request) to attack")
    payloads = [rec.payload for rec in records]
    pushes = [active_predictions.crafted_pushes(n, k, rec.round, int(spec["seed"]),
                                                float(spec.get("fraction", active_predictions.FRACTION)),
                                                float(spec.get("amplitude", active_predictions.AMPLITUDE)))
              for rec in records]
    truth = run.truth.labels[run.truth.rows(ids)]
    task = run.metrics["task"]
    known_idx = _choose(n, known_fraction, _rng(seed, "labels", party))
    known = KnownLabels(known_idx, truth[known_idx])
    classes = class_set(k) if task == "classification" else None
    results = active_predictions.run([as_array(p, (n, k)) for p in payloads], pushes, task, known, truth, party,
                                     run.label_owner, classes)
    return _bayes_rows(results, task, truth, privacy_block(run.metrics, run.label_owner), _view_name(payloads))


def label_attacks(run: RunView, party: str, known_fraction: float, seed: int = 0) -> list[AuditRow]:
    """Feature party ``party`` attacks the label owner's labels from its received residuals."""
    tr = run.transcript(party)
    setup = _setup(tr, "received")
    ids = np.asarray(setup.train_ids, dtype=np.int64)
    n, k = len(ids), int(setup.n_outputs)
    payloads = [p for _, p in tr.payloads("fit_request", "received")]
    if not payloads:
        raise NothingReleased(f"transcript of {party!r} holds no residuals (fit_request) to attack")
    pos = run.truth.rows(ids)
    own = _standardize_truth(run.truth.features[party][pos])
    victim = run.label_owner
    return score_label_attacks([as_array(p, (n, k)) for p in payloads], run.metrics["task"], k,
                               run.truth.labels[pos], own, party, victim, known_fraction, seed,
                               _view_name(payloads), privacy_block(run.metrics, victim))


def _victim_predictions(run: RunView, tr: Transcript, victim: str) -> tuple[np.ndarray, list[np.ndarray], str]:
    """The victim's training IDs, its per-round predictions as the label owner sees them, and the view.

    Ciphertexts the label owner holds the key for are replaced by what it decrypted (recorded by
    the run); without that record the audit falls back to the bytes and says it understates.
    """
    setup = _setup(tr, "sent", victim)
    ids = np.asarray(setup.train_ids, dtype=np.int64)
    n, k = len(ids), int(setup.n_outputs)
    payloads = [rec.payload for rec in tr.select("fit_reply", "received") if rec.sender == victim]
    if not payloads:
        raise NothingReleased(f"transcript of {tr.party!r} holds no predictions (fit_reply) from {victim!r}")
    view = _view_name(payloads)
    if view == "plaintext":
        return ids, [as_array(p, (n, k)) for p in payloads], view
    opened = run.truth.opened.get(victim)
    if opened is not None and opened.shape[1:] == (n, k):
        return ids, list(opened), view.replace("bytes", "decrypted by the label owner (key holder)")
    view += " (the label owner holds the key and would decrypt: this understates)"
    return ids, [as_array(p, (n, k)) for p in payloads], view


def score_feature_attacks(rounds: list[np.ndarray], X: np.ndarray, attacker: str, victim: str,
                          known_fraction: float, seed: int, steps: int, view: str, crafted: bool = False,
                          privacy: dict | None = None, understates: bool = False,
                          overstates: bool = False) -> list[AuditRow]:
    """Every feature attack of ``attacker`` on the prediction ``rounds`` it received from
    ``victim``, scored against ``X`` (the victim's standardized columns, aligned to the rows)."""
    known_idx = _choose(X.shape[0], known_fraction, _rng(seed, "rows", victim))
    known = KnownRows(known_idx, X[known_idx])
    if crafted:
        results = active_residuals.run(rounds, known, X, attacker, victim)
    else:
        results = (hat_matrix.run(rounds, known, X, attacker, victim)
                   + inversion_net.run(rounds, known, X, attacker, victim, seed, steps))
    eps, _ = block_epsilon(privacy)
    return [AuditRow(r, view, eps, understates=understates, overstates=overstates) for r in results]


def feature_attacks(run: RunView, victim: str, known_fraction: float, seed: int = 0,
                    steps: int = 1500) -> list[AuditRow]:
    """The label owner attacks ``victim``'s features from the predictions it returned."""
    tr = run.transcript(run.label_owner)
    ids, rounds, view = _victim_predictions(run, tr, victim)
    X = _standardize_truth(run.truth.features[victim][run.truth.rows(ids)])
    return score_feature_attacks(rounds, X, run.label_owner, victim, known_fraction, seed, steps, view,
                                 crafted=run.metrics.get("residuals") == CRAFTED,
                                 privacy=privacy_block(run.metrics, victim), understates="understates" in view)


def known_rows_curve(run: RunView, victim: str, fractions: list[float], seed: int = 0) -> list[dict]:
    """Equality-solving R^2 on ``victim`` as the known-row fraction grows."""
    tr = run.transcript(run.label_owner)
    ids, rounds, _ = _victim_predictions(run, tr, victim)
    X = _standardize_truth(run.truth.features[victim][run.truth.rows(ids)])
    out = []
    for fraction in fractions:
        known_idx = _choose(len(ids), check_fraction("known-rows fraction", fraction), _rng(seed, "rows", victim))
        r2 = hat_matrix.run(rounds, KnownRows(known_idx, X[known_idx]), X, run.label_owner, victim)[0]
        out.append({"victim": victim, "d": int(X.shape[1]), "fraction": fraction, "known_rows": int(known_idx.size),
                    "r2": r2.score, "baseline": r2.baseline})
    return out


def privacy_block(metrics: dict, party: str) -> dict | None:
    """``party``'s entry in a run's ``metrics["privacy"]`` (its DP ledger), None without DP."""
    block = (metrics.get("privacy") or {}).get(party)
    return block if isinstance(block, dict) else None


def block_epsilon(block: dict | None) -> tuple[float, float]:
    """(epsilon budget, delta) of a privacy block; (infinity, 0) without one."""
    try:
        return float(block["epsilon_budget"]), float(block.get("delta", 0.0))
    except (TypeError, KeyError, ValueError):
        return math.inf, 0.0


def party_epsilon(metrics: dict, party: str) -> float:
    """The DP budget protecting ``party``'s data in a run (``metrics["privacy"]``), infinity if none."""
    return block_epsilon(privacy_block(metrics, party))[0]


def _curve_or_nothing(run: RunView, victim: str, fractions: list[float], seed: int) -> list[dict]:
    try:
        return known_rows_curve(run, victim, fractions, seed)
    except NothingReleased:
        return []


def run_epsilon(run: RunView) -> float:
    """The smallest feature-party epsilon budget of a run (infinity when their releases are not DP)."""
    return min(party_epsilon(run.metrics, p) for p in run.feature_parties)


def layers_in_force(metrics: dict, label_owner: str | None = None) -> dict:
    """The privacy layers of a run as ``metrics.json`` records them: the residual mode, the
    registered layer (``plan.layer``), each DP-protected party's epsilon, the mode's name for
    plots and the smallest epsilon in force."""
    residuals = metrics.get("residuals") or "plain"
    privacy = metrics.get("privacy") or {}
    names = metrics.get("party_names") or []
    owner = label_owner or (names[0] if names else None)
    eps = {p: block_epsilon(b)[0] for p, b in privacy.items() if isinstance(b, dict)}
    label_dp = eps.get(owner) if owner is not None else None
    feature_dp = {p: e for p, e in eps.items() if p != owner}
    if label_dp is not None:
        mode = "label-DP"
    elif feature_dp:
        mode = "feature-DP" + (" + CKKS" if residuals == "ckks" else "")
    else:
        mode = {"ckks": "CKKS", "crafted": "crafted residuals"}.get(residuals, residuals)
    plan = metrics.get("plan") if isinstance(metrics.get("plan"), dict) else {}
    # the registry's name for what is in force, from what the run records the parties released
    # (not from the plan's claim, which in runs before 2026-12-05 named only a networked label
    # owner's own layer); the same rule as securegal.privacy.plan.layer_name, which attacks may
    # not import
    layer = "+".join((["ckks"] if residuals == "ckks" else []) + (["dp"] if feature_dp else [])
                     + (["label-dp"] if label_dp is not None else [])) or "plain"
    owner_layer = plan.get("layer")
    return {"residuals": residuals, "mode": mode, "layer": layer if owner_layer else None,
            "owner_layer": owner_layer if owner_layer not in (None, layer) else None, "label_dp_epsilon": label_dp,
            "feature_dp_epsilon": feature_dp, "epsilon": min(eps.values()) if eps else math.inf}


def train_command(metrics: dict, run_dir: Path) -> str:
    """The ``securegal train`` command that reproduces an embedded run: the one it recorded, else
    (a run trained from Python) rebuilt from ``metrics.json``, where a CSV's path, target, ID
    column and column bounds are not recorded and stand as placeholders."""
    if isinstance(metrics.get("command"), str):
        return metrics["command"]
    layers = layers_in_force(metrics)
    known = {"diabetes", "boston", "iris", "wine", "breast_cancer", "digits", "blob", "mnist"}
    dataset = metrics.get("dataset")
    source = f"--dataset {dataset}" if dataset in known else \
        f"--csv PATH/{dataset}.csv --target LABEL_COLUMN [--id ID_COLUMN] [--columns FILE]"
    parts = [f"securegal train {source} --parties {metrics.get('parties')} --rounds {metrics.get('rounds')}",
             f"--seed {metrics.get('seed')} --learner {metrics.get('learner', 'linear')}"]
    if layers["residuals"] == "ckks":
        parts.append("--residuals ckks")
    eps = set(layers["feature_dp_epsilon"].values())
    if eps:
        parts.append(f"--epsilon {min(eps):g}")
    if layers["label_dp_epsilon"] is not None:
        parts.append(f"--label-epsilon {layers['label_dp_epsilon']:g}")
    return " ".join(parts + ["--save-ground-truth", f"--out {run_dir}"])


def run_jobs(jobs: list[tuple[str, Callable[[], list[AuditRow]]]], progress: bool | None = None):
    """Run ``(name, job)`` pairs with a progress bar on a terminal; returns rows, timings, skipped."""
    from tqdm import tqdm

    rows: list[AuditRow] = []
    timings, skipped = {}, []
    bar = tqdm(jobs, desc="audit", unit="attack set", leave=False, dynamic_ncols=True,
               disable=None if progress is None else not progress)
    for name, job in bar:
        bar.set_postfix_str(name)
        t0 = time.perf_counter()
        try:
            rows += job()
        except NothingReleased as exc:
            skipped.append(str(exc))
        timings[name] = round(time.perf_counter() - t0, 3)
    bar.close()
    return rows, timings, skipped


def finish_audit(audit: dict, rows: list[AuditRow]) -> dict:
    """Add the rows and their verdicts to ``audit``."""
    audit["attacks"] = [r.to_dict() for r in rows]
    audit["verdicts"] = verdicts(audit["attacks"])
    return audit


def audit_run(run_dir: Path | str, known_labels: float = 0.05, known_rows: float = 0.05, seed: int = 0,
              rows_curve: list[float] | None = None, steps: int = 1500, progress: bool | None = None,
              report: bool = True) -> dict:
    """Run every attack that applies on one run directory (embedded, with ``ground_truth.npz``)
    and write ``audit.json`` (and with ``report`` ``audit.md`` and ``audit.html``); returns the audit."""
    known_labels = check_fraction("--known-labels", known_labels)
    known_rows = check_fraction("--known-rows", known_rows)
    run = load_run(run_dir)
    jobs = [(f"labels:{p}", lambda p=p: label_attacks(run, p, known_labels, seed)) for p in run.feature_parties]
    jobs += [(f"features:{v}", lambda v=v: feature_attacks(run, v, known_rows, seed, steps))
             for v in run.feature_parties]
    active = run.metrics.get("active")
    if isinstance(active, dict) and active.get("attack") == CRAFTED_PREDICTIONS:
        jobs.append((f"active:{active.get('party')}", lambda: active_prediction_attack(run, known_labels, seed)))
    rows, timings, skipped = run_jobs(jobs, progress)
    audit = {
        "kind": "embedded", "run": str(run.run_dir), "dataset": run.metrics.get("dataset"),
        "task": run.metrics.get("task"), "residuals": run.metrics.get("residuals"),
        "epsilon": run_epsilon(run), "layers": layers_in_force(run.metrics, run.label_owner),
        "privacy": run.metrics.get("privacy") or {}, "known_labels": known_labels, "known_rows": known_rows,
        "seed": seed, "n_train": int(run.truth.sample_ids.size), "seconds": timings, "nothing_to_attack": skipped,
        "train_command": (train_command(run.metrics, run.run_dir)
                          if run.metrics.get("residuals") != CRAFTED and not run.metrics.get("active") else None),
        "command": f"securegal audit {run.run_dir} --known-labels {known_labels:g} --known-rows {known_rows:g} "
                   f"--seed {seed}" + (f" --net-steps {steps}" if steps != 1500 else ""),
    }
    if isinstance(active, dict):  # what the label owner made of the malicious party's replies
        names = [str(p) for p in run.metrics.get("party_names", [])]
        column = names.index(str(active.get("party"))) if str(active.get("party")) in names else None
        weights = [w[column] for w in run.metrics.get("weights") or [] if column is not None and len(w) > column]
        audit["active"] = {**active, "weights": weights, "eta": run.metrics.get("eta")}
        if active.get("attack") == CRAFTED_PREDICTIONS:
            shown = ", ".join(f"{w:.3g}" for w in weights)
            audit["notes"] = [f"{active.get('party')} crafted its predictions (+-{active.get('amplitude')} on a "
                              f"{active.get('fraction')} share of rows each round); the label owner gave its replies "
                              f"the weights [{shown}] with steps eta "
                              f"[{', '.join(f'{e:.3g}' for e in run.metrics.get('eta') or [])}]"]
    finish_audit(audit, rows)
    if rows_curve:
        audit["known_rows_curve"] = [pt for v in run.feature_parties
                                     for pt in _curve_or_nothing(run, v, rows_curve, seed)]
    write_audit(run.run_dir, audit, report)
    return audit


def write_audit(out_dir: Path, audit: dict, report: bool = True) -> None:
    """``audit.json`` (and the human reports ``audit.md``, ``audit.html``) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json(out_dir / AUDIT, audit)
    if report:
        from .report import write_reports

        write_reports(json.loads(json.dumps(_finite(audit), allow_nan=False)), out_dir)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_finite(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def _finite(value):
    """JSON has no infinity: write non-finite floats as the strings "inf", "-inf", "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def format_table(audit: dict) -> str:
    """The audit as text: one verdict line per attack and victim, then every metric's numbers."""
    layers = audit.get("layers", {})
    head = (f"{'attack':<20}{'attacker':<10}{'victim':<10}{'metric':<9}{'score':>8}{'baseline':>9}"
            f"{'advantage':>10}{'MDA':>7}{'p':>8}  view")
    lines = [f"audit of {audit['run']} ({audit.get('dataset') or 'dataset not recorded'}, layers: {layers.get('mode', audit.get('residuals'))}, "
             f"epsilon={layers.get('epsilon', audit['epsilon'])}, known labels {audit['known_labels']:.0%}, known rows {audit['known_rows']:.0%})"]
    for v in audit.get("verdicts", []):
        lines.append(f"  {v['attack']:<20}{v['attacker']} -> {v['victim']}: {v['text']}")
    lines += ["", head, "-" * len(head)]
    for a in audit["attacks"]:
        p = "" if a.get("p_value") is None else f"{a['p_value']:.4f}"
        mda = "" if a.get("mda") is None else f"{a['mda']:.3f}"
        extra = ""
        if "bayes_bound" in a:
            extra = f"  [Bayes bound {a['bayes_bound']:.3f}: {'within' if a['within_bayes_bound'] else 'EXCEEDED'}]"
        lines.append(f"{a['attack']:<20}{a['attacker']:<10}{a['victim']:<10}{a['metric']:<9}{a['score']:>8.3f}"
                     f"{a['baseline']:>9.3f}{a['advantage']:>10.3f}{mda:>7}{p:>8}  {a['view']}{extra}")
    for reason in audit.get("nothing_to_attack", []):
        lines.append(f"  nothing to attack: {reason}")
    for pt in audit.get("known_rows_curve", []):
        lines.append(f"  hat_matrix R^2 on {pt['victim']} (d={pt['d']}) with {pt['known_rows']} known rows "
                     f"({pt['fraction']:.0%}): {pt['r2']:.3f}")
    return "\n".join(lines)
