"""Feature reconstruction (c): an active label owner that sends crafted residuals.

Instead of true pseudo-residuals, a malicious label owner sends random Gaussian "residuals".
A linear-smoother learner answers ``H r`` with ``H`` projecting onto the span of ``[X, 1]``,
so once the crafted rounds supply d + 1 independent columns the replies span the victim's
feature space exactly, whatever the labels; the attacker stops when a round adds no rank
(it does not need to know d). The replies are then solved with the equality-solving attack.

The malicious label owner that sends them in a real federation is
:class:`securegal.experiments.active.CraftedResiduals` (``securegal audit --active
crafted_residuals``); such a run's ``metrics.json`` says ``"residuals": "crafted"`` and the
audit scores this attack on it.
"""
from __future__ import annotations

import numpy as np

from . import hat_matrix
from .features import KnownRows, score_features
from .result import AttackResult
from .views import stack_rounds

NAME = "active_residuals"


def crafted_residuals(n: int, n_outputs: int, round_: int, seed: int = 0) -> np.ndarray:
    """The crafted residuals (n, n_outputs) for ``round_``: standard normal, reproducible per round."""
    if n < 1 or n_outputs < 1 or round_ < 0:
        raise ValueError(f"need n >= 1, n_outputs >= 1, round >= 0; got {n}, {n_outputs}, {round_}")
    return np.random.default_rng([int(seed), int(round_)]).standard_normal((n, n_outputs))


def span_saturated(prediction_rounds: list[np.ndarray]) -> bool:
    """True once the last round added no new direction to the replies' span (attack can stop)."""
    if len(prediction_rounds) < 2:
        return False
    before = hat_matrix.span_basis(stack_rounds(prediction_rounds[:-1])).shape[1]
    after = hat_matrix.span_basis(stack_rounds(prediction_rounds)).shape[1]
    return after == before


def reconstruct(prediction_rounds: list[np.ndarray], known: KnownRows) -> np.ndarray:
    """Solve the replies to crafted residuals for the victim's features."""
    return hat_matrix.reconstruct(prediction_rounds, known)


def run(prediction_rounds: list[np.ndarray], known: KnownRows, truth: np.ndarray,
        attacker: str, victim: str) -> list[AttackResult]:
    """Score the active attack on the replies to crafted rounds."""
    return score_features(NAME, attacker, victim, reconstruct(prediction_rounds, known), truth, known)
