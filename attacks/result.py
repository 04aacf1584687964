"""The common result of every attack: a score, a no-transcript baseline, the advantage, and how
sure the audit is about it (see :mod:`.stats`)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from . import stats

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
    ``p_value`` is the one-sided p-value of "the transcript adds nothing" (paired sign-flip test
    over the ``n_scored`` rows), ``mda`` the minimum detectable advantage at level ``alpha`` on
    those rows, ``se`` the advantage's standard error, ``score_se`` / ``baseline_se`` those of
    the two scores (DeLong's for AUC), ``floor_mda`` the MDA's lower bound at ``alpha`` (so
    :func:`.stats.detectable` can give the MDA at another level).
    """

    attack: str
    attacker: str
    victim: str
    metric: str
    score: float
    baseline: float
    advantage: float
    p_value: float | None = None
    mda: float | None = None
    se: float | None = None
    score_se: float | None = None
    baseline_se: float | None = None
    n_scored: int | None = None
    alpha: float | None = None
    floor_mda: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def normalized_advantage(self) -> float:
        """The advantage on a 0..1 "fraction of the way to perfect" scale: as is for accuracy,
        AUC and R^2; for MSE and MAD the fraction of the baseline's error removed."""
        if self.metric in LOWER_IS_BETTER:
            return self.advantage / self.baseline if self.baseline > 0 else 0.0
        return self.advantage


def make_result(attack: str, attacker: str, victim: str, metric: str, score: float,
                baseline: float, p_value: float | None = None) -> AttackResult:
    """Build an :class:`AttackResult` without a significance test, computing the oriented advantage."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {sorted(METRICS)}")
    score, baseline = float(score), float(baseline)
    if not (math.isfinite(score) and math.isfinite(baseline)):
        raise ValueError(f"{attack}: non-finite {metric} score={score!r} baseline={baseline!r}")
    advantage = baseline - score if metric in LOWER_IS_BETTER else score - baseline
    return AttackResult(attack, attacker, victim, metric, score, baseline, advantage, p_value)


def measured(attack: str, attacker: str, victim: str, metric: str, score: float, baseline: float,
             attack_rows: np.ndarray, baseline_rows: np.ndarray, *, floor_se: float = 0.0,
             score_se: float | None = None, baseline_se: float | None = None, floor_mda: float = 0.0,
             seed: int = 0) -> AttackResult:
    """An :class:`AttackResult` with the paired test and the MDA of :mod:`.stats`, from the two
    scores and their per-row contributions (each sums to its score up to rounding).

    ``floor_se``: the standard error of an uninformative attacker (the MDA's floor, see
    :func:`.stats.paired_test`); accuracy also uses the baseline score's own (binomial) error.
    ``score_se`` / ``baseline_se`` replace the row-independent standard errors (DeLong's for AUC);
    ``floor_mda`` is a lower bound on the MDA (R^2: :func:`.stats.r2_floor`).
    """
    u, v = np.asarray(attack_rows, np.float64), np.asarray(baseline_rows, np.float64)
    base = make_result(attack, attacker, victim, metric, score, baseline)
    scale = 2.0 if metric == "auc" else 1.0
    contrib = v - u if metric in LOWER_IS_BETTER else u - v
    baseline_se = stats.score_se(v) if baseline_se is None else baseline_se
    score_se = stats.score_se(u) if score_se is None else score_se
    if metric == "accuracy" and math.isfinite(baseline_se):  # the binomial spread of a chance guesser
        floor_se = max(floor_se, baseline_se)
    test = stats.paired_test(contrib, base.advantage, null_scale=scale, seed=seed, floor_se=floor_se,
                             floor_mda=floor_mda)
    return AttackResult(base.attack, attacker, victim, metric, base.score, base.baseline, base.advantage,
                        test.p_value, test.mda, test.se, score_se, baseline_se, int(u.size),
                        stats.ALPHA, float(floor_mda))
