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
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from securegal.errors import ConfigError
from securegal.transcript import Transcript, read_transcript

from . import active_residuals, hat_matrix, inversion_net, label_clustering, label_inversion, model_completion
from .features import KnownRows
from .labels import KnownLabels, class_set
from .result import AttackResult
from .views import as_array, is_encrypted

GROUND_TRUTH = "ground_truth.npz"
AUDIT = "audit.json"
PLOT = "audit_advantage.png"
#: The residual-channel name of a malicious label owner sending crafted residuals.
CRAFTED = "crafted"


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
    """An :class:`AttackResult` plus what the attacker's payloads were (``view``)."""

    result: AttackResult
    view: str
    epsilon: float = math.inf

    def to_dict(self) -> dict:
        return {**self.result.to_dict(), "view": self.view, "epsilon": self.epsilon}


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
    if task not in ("classification", "regression") or len(names) < 2:
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


def label_attacks(run: RunView, party: str, known_fraction: float, seed: int = 0) -> list[AuditRow]:
    """Feature party ``party`` attacks the label owner's labels from its received residuals."""
    tr = run.transcript(party)
    setup = _setup(tr, "received")
    ids = np.asarray(setup.train_ids, dtype=np.int64)
    n, k = len(ids), int(setup.n_outputs)
    payloads = [p for _, p in tr.payloads("fit_request", "received")]
    if not payloads:
        raise NothingReleased(f"transcript of {party!r} holds no residuals (fit_request) to attack")
    rounds = [as_array(p, (n, k)) for p in payloads]
    pos = run.truth.rows(ids)
    truth = run.truth.labels[pos]
    task = run.metrics["task"]
    known_idx = _choose(n, known_fraction, _rng(seed, "labels", party))
    known = KnownLabels(known_idx, truth[known_idx])
    classes = class_set(k) if task == "classification" else None
    own = _standardize_truth(run.truth.features[party][pos])
    victim = run.label_owner
    results = (label_inversion.run(rounds, task, known, truth, party, victim, classes)
               + label_clustering.run(rounds, task, known, truth, party, victim, classes, seed)
               + model_completion.run(own, rounds, task, known, truth, party, victim, classes))
    view = _view_name(payloads)
    eps = party_epsilon(run.metrics, victim)
    return [AuditRow(r, view, eps) for r in results]


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


def feature_attacks(run: RunView, victim: str, known_fraction: float, seed: int = 0,
                    steps: int = 1500) -> list[AuditRow]:
    """The label owner attacks ``victim``'s features from the predictions it returned."""
    tr = run.transcript(run.label_owner)
    ids, rounds, view = _victim_predictions(run, tr, victim)
    X = _standardize_truth(run.truth.features[victim][run.truth.rows(ids)])
    known_idx = _choose(len(ids), known_fraction, _rng(seed, "rows", victim))
    known = KnownRows(known_idx, X[known_idx])
    attacker = run.label_owner
    if run.metrics.get("residuals") == CRAFTED:
        results = active_residuals.run(rounds, known, X, attacker, victim)
    else:
        results = (hat_matrix.run(rounds, known, X, attacker, victim)
                   + inversion_net.run(rounds, known, X, attacker, victim, seed, steps))
    eps = party_epsilon(run.metrics, victim)
    return [AuditRow(r, view, eps) for r in results]


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


def party_epsilon(metrics: dict, party: str) -> float:
    """The DP budget protecting ``party``'s data in a run (``metrics["privacy"]``), infinity if none."""
    block = (metrics.get("privacy") or {}).get(party)
    try:
        return float(block["epsilon_budget"])
    except (TypeError, KeyError, ValueError):
        return math.inf


def _curve_or_nothing(run: RunView, victim: str, fractions: list[float], seed: int) -> list[dict]:
    try:
        return known_rows_curve(run, victim, fractions, seed)
    except NothingReleased:
        return []


def run_epsilon(run: RunView) -> float:
    """The smallest feature-party epsilon budget of a run (infinity when their releases are not DP)."""
    return min(party_epsilon(run.metrics, p) for p in run.feature_parties)


def audit_run(run_dir: Path | str, known_labels: float = 0.05, known_rows: float = 0.05, seed: int = 0,
              rows_curve: list[float] | None = None, steps: int = 1500) -> dict:
    """Run every attack that applies on one run directory and write ``audit.json``; returns its content."""
    known_labels = check_fraction("--known-labels", known_labels)
    known_rows = check_fraction("--known-rows", known_rows)
    run = load_run(run_dir)
    rows: list[AuditRow] = []
    timings, skipped = {}, []
    jobs = [(f"labels:{p}", lambda p=p: label_attacks(run, p, known_labels, seed)) for p in run.feature_parties]
    jobs += [(f"features:{v}", lambda v=v: feature_attacks(run, v, known_rows, seed, steps))
             for v in run.feature_parties]
    for name, job in jobs:
        t0 = time.perf_counter()
        try:
            rows += job()
        except NothingReleased as exc:
            skipped.append(str(exc))
        timings[name] = round(time.perf_counter() - t0, 3)
    audit = {
        "run": str(run.run_dir), "dataset": run.metrics.get("dataset"), "residuals": run.metrics.get("residuals"),
        "epsilon": run_epsilon(run), "known_labels": known_labels, "known_rows": known_rows, "seed": seed,
        "n_train": int(run.truth.sample_ids.size), "seconds": timings,
        "attacks": [r.to_dict() for r in rows], "nothing_to_attack": skipped,
    }
    if rows_curve:
        audit["known_rows_curve"] = [pt for v in run.feature_parties
                                     for pt in _curve_or_nothing(run, v, rows_curve, seed)]
    _write_json(run.run_dir / AUDIT, audit)
    return audit


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
    """The audit as a fixed-width table (one line per attack, victim and metric)."""
    head = (f"{'attack':<18}{'attacker':<10}{'victim':<10}{'metric':<9}{'score':>9}{'baseline':>10}"
            f"{'advantage':>11}{'p':>7}  view")
    lines = [f"audit of {audit['run']} ({audit['dataset']}, residuals={audit['residuals']}, "
             f"epsilon={audit['epsilon']}, known labels {audit['known_labels']:.0%}, known rows {audit['known_rows']:.0%})",
             head, "-" * len(head)]
    for a in audit["attacks"]:
        p = "" if a.get("p_value") is None else f"{a['p_value']:.3f}"
        lines.append(f"{a['attack']:<18}{a['attacker']:<10}{a['victim']:<10}{a['metric']:<9}{a['score']:>9.3f}"
                     f"{a['baseline']:>10.3f}{a['advantage']:>11.3f}{p:>7}  {a['view']}")
    for reason in audit.get("nothing_to_attack", []):
        lines.append(f"  nothing to attack: {reason}")
    for pt in audit.get("known_rows_curve", []):
        lines.append(f"  hat_matrix R^2 on {pt['victim']} (d={pt['d']}) with {pt['known_rows']} known rows "
                     f"({pt['fraction']:.0%}): {pt['r2']:.3f}")
    return "\n".join(lines)


def plot_advantage(audits: list[dict], path: Path) -> Path:
    """Mean advantage (over victims and runs) of each attack against the epsilon protecting its victim,
    one line per attack and residual mode (plain and DP runs share a line; CKKS runs get their own)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [{**row, "mode": a.get("residuals") or "plain"} for a in audits for row in a["attacks"]
            if row["metric"] in ("r2", "accuracy")]
    finite = sorted({float(r["epsilon"]) for r in rows if math.isfinite(float(r["epsilon"]))})
    inf_x = max(finite) * 3 if finite else 1.0
    series: dict[str, dict[float, list[float]]] = {}
    for row in rows:
        eps = float(row["epsilon"])
        x = eps if math.isfinite(eps) else inf_x
        mode = "" if row["mode"] == "plain" else f", {row['mode']} residuals"
        series.setdefault(f"{row['attack']} ({row['metric']}{mode})", {}).setdefault(x, []).append(row["advantage"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, points in sorted(series.items()):
        xs = sorted(points)
        ax.plot(xs, [float(np.mean(points[x])) for x in xs], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("epsilon protecting the victim's data (rightmost point: none)")
    ax.set_ylabel("attack advantage over baseline")
    ax.axhline(0.0, color="grey", lw=0.8)
    ticks = finite + ([inf_x] if any(not math.isfinite(float(r["epsilon"])) for r in rows) else [])
    ax.set_xticks(ticks, [f"{t:g}" if t in finite else "inf" for t in ticks])
    ax.minorticks_off()
    ax.legend(fontsize=8)
    ax.set_title("Leakage vs privacy budget")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
