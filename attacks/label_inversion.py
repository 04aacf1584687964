"""Label inference (a): invert the first residual broadcast a feature party receives.

Cross-entropy residuals are ``onehot(y) - softmax(F0)`` (or ``y - sigmoid(F0)`` with one output),
so the label is the argmax (or the sign). L2 residuals are ``y - mean(y)`` and L1 residuals
``sign(y - median(y))``: the attacker fits ``y ~ a * r + b`` on its known labels, which recovers
L2 targets exactly and L1 targets up to the two known-label group means.
"""
from __future__ import annotations

import numpy as np

from .labels import KnownLabels, LabelGuess, check_task, prior_guess, score_labels
from .result import AttackResult

NAME = "label_inversion"


def infer(residuals: np.ndarray, task: str, known: KnownLabels, classes: np.ndarray | None = None) -> LabelGuess:
    """Guess every row's label from one round's residuals (n, K)."""
    r = np.asarray(residuals, dtype=np.float64)
    r = r[:, None] if r.ndim == 1 else r
    known.check_rows(r.shape[0])
    if check_task(task) == "regression":
        design = np.column_stack([r.mean(axis=1), np.ones(r.shape[0])])
        coef, *_ = np.linalg.lstsq(design[known.index], known.values.astype(np.float64), rcond=None)
        return LabelGuess(design @ coef)
    if classes is None:
        raise ValueError("classification needs the class set")
    if len(classes) != max(r.shape[1], 2):
        raise ValueError(f"{r.shape[1]} residual columns cannot name {len(classes)} classes")
    # Column j is class j by the protocol's encoding (one output: class 1 when positive).
    scores = np.column_stack([-r[:, 0], r[:, 0]]) if r.shape[1] == 1 else r
    return LabelGuess(classes[np.argmax(scores, axis=1)], scores, classes)


def run(residual_rounds: list[np.ndarray], task: str, known: KnownLabels, truth: np.ndarray,
        attacker: str, victim: str, classes: np.ndarray | None = None) -> list[AttackResult]:
    """Attack the first round of ``residual_rounds`` and score against ``truth`` (unknown rows)."""
    if not residual_rounds:
        raise ValueError("label inversion needs at least one round of residuals")
    first = np.asarray(residual_rounds[0], dtype=np.float64)
    guess = infer(first, task, known, classes)
    base = prior_guess(first.shape[0], task, known, classes)
    return score_labels(NAME, attacker, victim, task, guess, base, truth, known)
