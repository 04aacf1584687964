"""What label-inference attacks share: side knowledge, guesses, the prior baseline, scoring."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metrics import accuracy, mad, macro_auc, permutation_p, r2_per_column
from .result import AttackResult, make_result

TASKS = ("classification", "regression")


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

    Classification: accuracy and AUC; regression: R^2 and MAD.
    """
    truth = np.asarray(truth).reshape(-1)
    mask = np.ones(truth.size, dtype=bool)
    mask[known.index] = False
    if not mask.any():
        raise ValueError("every label is known: nothing left to score the attack on")
    t = truth[mask]
    if check_task(task) == "classification":
        g, scores = guess.values[mask], guess.class_scores[mask]
        acc = lambda y: accuracy(y, g)  # noqa: E731
        auc = lambda y: macro_auc(y, scores, guess.classes)  # noqa: E731
        return [
            make_result(attack, attacker, victim, "accuracy", acc(t), accuracy(t, baseline.values[mask]),
                        permutation_p(acc, t, acc(t))),
            make_result(attack, attacker, victim, "auc", auc(t),
                        macro_auc(t, baseline.class_scores[mask], baseline.classes), permutation_p(auc, t, auc(t))),
        ]
    g = guess.values[mask]
    r2 = lambda y: r2_per_column(y, g)[0]  # noqa: E731
    err = lambda y: mad(y, g)  # noqa: E731
    return [
        make_result(attack, attacker, victim, "r2", r2(t), r2_per_column(t, baseline.values[mask])[0],
                    permutation_p(r2, t, r2(t))),
        make_result(attack, attacker, victim, "mad", err(t), mad(t, baseline.values[mask]),
                    permutation_p(err, t, err(t), higher_is_better=False)),
    ]
