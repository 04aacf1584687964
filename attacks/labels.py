"""What label-inference attacks share: side knowledge, guesses, the prior baseline, scoring."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from securegal.messages import TASKS

from . import stats
from .metrics import accuracy, mad, macro_auc, r2_per_column
from .result import AttackResult, measured


@dataclass(frozen=True)
class KnownLabels:
    """Side knowledge: the labels of some training rows (``index`` into the n rows)."""

    index: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        index = np.asarray(self.index, dtype=np.int64).reshape(-1)
        values = np.asarray(self.values).reshape(-1)
        if index.shape != values.shape:
            raise ValueError(f"known labels: {index.size} rows but {values.size} values")
        if index.size == 0:
            raise ValueError("known labels: at least one known label is needed")
        if np.unique(index).size != index.size or index.min() < 0:
            raise ValueError("known labels: row indices must be distinct and non-negative")
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "values", values)

    def check_rows(self, n: int) -> None:
        if self.index.max() >= n:
            raise ValueError(f"known labels index row {int(self.index.max())} but there are {n} rows")


@dataclass(frozen=True)
class LabelGuess:
    """An attacker's guess for every row: ``values`` (n,), and for classification per-class
    ``class_scores`` (n, C) ordered like ``classes`` (used for AUC)."""

    values: np.ndarray
    class_scores: np.ndarray | None = None
    classes: np.ndarray | None = None


def check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")
    return task


def class_set(n_outputs: int) -> np.ndarray:
    """Class labels 0..C-1 for a model with ``n_outputs`` outputs (one output means binary)."""
    if n_outputs < 1:
        raise ValueError(f"n_outputs must be >= 1, got {n_outputs}")
    return np.arange(max(int(n_outputs), 2))


def frequency_scores(groups: np.ndarray, known: KnownLabels, classes: np.ndarray,
                     n_groups: int) -> np.ndarray:
    """Per-group class frequencies of the known labels (Laplace-smoothed), shape (n_groups, C)."""
    counts = np.ones((n_groups, len(classes)))
    for j, c in enumerate(classes):
        np.add.at(counts[:, j], groups[known.index][known.values == c], 1.0)
    return counts / counts.sum(axis=1, keepdims=True)


def prior_guess(n: int, task: str, known: KnownLabels, classes: np.ndarray | None = None) -> LabelGuess:
    """The no-transcript attacker: the known labels' majority class (or mean) for every row."""
    check_task(task)
    if task == "regression":
        return LabelGuess(np.full(n, float(np.mean(known.values))))
    freq = frequency_scores(np.zeros(n, dtype=np.int64), known, classes, 1)[0]
    return LabelGuess(np.full(n, classes[int(np.argmax(freq))]), np.tile(freq, (n, 1)), classes)


def score_labels(attack: str, attacker: str, victim: str, task: str, guess: LabelGuess,
                 baseline: LabelGuess, truth: np.ndarray, known: KnownLabels) -> list[AttackResult]:
    """Score a guess and its baseline on the rows whose labels the attacker did not know.

    Classification: accuracy and AUC; regression: R^2 and MAD. Each comes with the paired
    sign-flip test and minimum detectable advantage of :mod:`.stats`.
    """
    truth = np.asarray(truth).reshape(-1)
    mask = np.ones(truth.size, dtype=bool)
    mask[known.index] = False
    if not mask.any():
        raise ValueError("every label is known: nothing left to score the attack on")
    t = truth[mask]
    who = (attack, attacker, victim)
    if check_task(task) == "classification":
        g, b, classes = guess.values[mask], baseline.values[mask], guess.classes
        gs, bs = guess.class_scores[mask], baseline.class_scores[mask]
        return [
            measured(*who, "accuracy", accuracy(t, g), accuracy(t, b),
                     stats.accuracy_contrib(t, g), stats.accuracy_contrib(t, b)),
            measured(*who, "auc", macro_auc(t, gs, classes), macro_auc(t, bs, baseline.classes),
                     stats.macro_auc_contrib(t, gs, classes), stats.macro_auc_contrib(t, bs, baseline.classes),
                     floor_se=stats.mann_whitney_se(t, classes), score_se=stats.auc_se(t, gs, classes),
                     baseline_se=stats.auc_se(t, bs, baseline.classes)),
        ]
    g, b = guess.values[mask], baseline.values[mask]
    return [
        measured(*who, "r2", r2_per_column(t, g)[0], r2_per_column(t, b)[0],
                 stats.r2_contrib(t, g), stats.r2_contrib(t, b), floor_mda=stats.r2_floor(t.size)),
        measured(*who, "mad", mad(t, g), mad(t, b), stats.mad_contrib(t, g), stats.mad_contrib(t, b)),
    ]
