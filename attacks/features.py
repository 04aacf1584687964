"""What feature-reconstruction attacks share: known rows, the mean baseline, scoring."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import stats
from .metrics import mse_per_column, r2_per_column
from .result import AttackResult, measured


@dataclass(frozen=True)
class KnownRows:
    """Side knowledge: the victim's feature rows ``values`` (k, d) at training rows ``index``."""

    index: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        index = np.asarray(self.index, dtype=np.int64).reshape(-1)
        values = np.asarray(self.values, dtype=np.float64)
        values = values[:, None] if values.ndim == 1 else values
        if values.ndim != 2 or values.shape[0] != index.size:
            raise ValueError(f"known rows: {index.size} indices but values of shape {values.shape}")
        if index.size == 0:
            raise ValueError("known rows: at least one known row is needed")
        if np.unique(index).size != index.size or index.min() < 0:
            raise ValueError("known rows: row indices must be distinct and non-negative")
        if not np.isfinite(values).all():
            raise ValueError("known rows: values must be finite")
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "values", values)

    def check_rows(self, n: int) -> None:
        if self.index.max() >= n:
            raise ValueError(f"known rows index row {int(self.index.max())} but there are {n} rows")


def mean_baseline(n: int, known: KnownRows) -> np.ndarray:
    """The no-transcript attacker: every row guessed as the mean of the known rows."""
    return np.tile(known.values.mean(axis=0), (n, 1))


def score_features(attack: str, attacker: str, victim: str, estimate: np.ndarray,
                   truth: np.ndarray, known: KnownRows) -> list[AttackResult]:
    """Mean per-feature R^2 and MSE on the rows the attacker did not know, against the mean
    baseline, each with the paired test and minimum detectable advantage of :mod:`.stats`. A
    column constant on those rows is left out (any guess of it scores R^2 1 or 0, which would
    only move both means), unless every column is."""
    truth = np.asarray(truth, dtype=np.float64)
    truth = truth[:, None] if truth.ndim == 1 else truth
    estimate = np.asarray(estimate, dtype=np.float64)
    if estimate.shape != truth.shape:
        raise ValueError(f"estimate {estimate.shape} does not match the victim's features {truth.shape}")
    mask = np.ones(truth.shape[0], dtype=bool)
    mask[known.index] = False
    if not mask.any():
        raise ValueError("every row is known: nothing left to score the attack on")
    base = mean_baseline(truth.shape[0], known)
    t, e, b = truth[mask], estimate[mask], base[mask]
    varying = t.std(axis=0) > 0
    if varying.any() and not varying.all():
        t, e, b = t[:, varying], e[:, varying], b[:, varying]
    who = (attack, attacker, victim)
    floor = stats.r2_floor(t.shape[0])
    base_mse = mse_per_column(t, b).mean()
    return [
        measured(*who, "r2", r2_per_column(t, e).mean(), r2_per_column(t, b).mean(),
                 stats.r2_contrib(t, e), stats.r2_contrib(t, b), floor_mda=floor),
        measured(*who, "mse", mse_per_column(t, e).mean(), base_mse,
                 stats.mse_contrib(t, e), stats.mse_contrib(t, b), floor_mda=floor * base_mse),
    ]
