"""The common result of every attack: a score, a no-transcript baseline, and the advantage."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

#: Metrics where a lower value means a better attack; their advantage is ``baseline - score``.
LOWER_IS_BETTER = frozenset({"mse", "mad"})

#: Every metric an attack may report.
METRICS = frozenset({"accuracy", "auc", "r2", "mad", "mse"})


@dataclass(frozen=True)
class AttackResult:
    """One attack's measured leakage on one victim, in one metric.

    ``advantage`` is oriented so that a positive value always means the attacker did better
    than a baseline attacker with the same side knowledge and no transcript:
    ``score - baseline`` for accuracy, AUC and R^2; ``baseline - score`` for MSE and MAD.
    ``p_value`` is the chance that a guess carrying no information about the victim would score
    at least as well: the fraction of random re-pairings of the scored rows' truth with the
    attacker's guesses whose score is as good (a permutation test; small means real leakage).
    """

    attack: str
    attacker: str
    victim: str
    metric: str
    score: float
    baseline: float
    advantage: float
    p_value: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def make_result(attack: str, attacker: str, victim: str, metric: str, score: float,
                baseline: float, p_value: float | None = None) -> AttackResult:
    """Build an :class:`AttackResult`, computing the oriented advantage."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {sorted(METRICS)}")
    score, baseline = float(score), float(baseline)
    if not (math.isfinite(score) and math.isfinite(baseline)):
        raise ValueError(f"{attack}: non-finite {metric} score={score!r} baseline={baseline!r}")
    advantage = baseline - score if metric in LOWER_IS_BETTER else score - baseline
    return AttackResult(attack, attacker, victim, metric, score, baseline, advantage, p_value)
