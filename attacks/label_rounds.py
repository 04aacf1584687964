"""Label inference (d): the residuals of every round a feature party received, summed.

Under label-DP every round carries fresh noise around a residual whose true-class column stays
positive (``onehot(y) - softmax(F_t)`` while the score is below 1; the sign of ``y - F_t`` for L1
and L2 while the fit has not passed the label), so summing T rounds grows the signal about T
times and the noise about sqrt(T) times: with many rounds this reads more labels than the first
round alone (:mod:`.label_inversion`). The sum is then inverted like one round.
"""
from __future__ import annotations

import numpy as np

from . import label_inversion
from .labels import KnownLabels, prior_guess, score_labels
from .result import AttackResult

NAME = "label_rounds"


def run(residual_rounds: list[np.ndarray], task: str, known: KnownLabels, truth: np.ndarray,
        attacker: str, victim: str, classes: np.ndarray | None = None) -> list[AttackResult]:
    """Invert the sum of ``residual_rounds`` and score against ``truth`` (unknown rows)."""
    if not residual_rounds:
        raise ValueError("the summed-rounds attack needs at least one round of residuals")
    summed = np.sum([np.asarray(r, dtype=np.float64) for r in residual_rounds], axis=0)
    guess = label_inversion.infer(summed, task, known, classes)
    base = prior_guess(summed.shape[0], task, known, classes)
    return score_labels(NAME, attacker, victim, task, guess, base, truth, known)
