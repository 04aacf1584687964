"""Standardization inside the DP guarantee: a fixed per-column affine map, never exact statistics.

A DP party must not z-score its columns with the exact training mean and standard deviation:
every release would then depend on them, and one outlier row moves them (and so the releases)
without bound. Two ways keep standardization inside the guarantee:

(a) **Declared** (domain knowledge, e.g. age in [0, 120]): per-column bounds ``[l_j, u_j]``
    and/or centres ``c_j`` and scales ``s_j``. The map is ``x -> (clip(x, l, u) - c) / s``, with
    ``c = (l + u) / 2`` and ``s = (u - l) / 2`` when only bounds are given (columns then lie in
    [-1, 1]). It does not depend on the data: no privacy cost.
(b) **DP estimates** from declared bounds. With ``m = (l + u) / 2`` and half-widths
    ``w = (u - l) / 2``, two Gaussian releases over the clipped values rescaled to [-1, 1],
    ``y_ij = (clip(x_ij, l_j, u_j) - m_j) / w_j``:

    - ``std_mean``:  ``S1_j = sum_i y_ij``,   replace-one L2 sensitivity ``2 sqrt(d)``;
    - ``std_scale``: ``S2_j = sum_i y_ij^2``, replace-one L2 sensitivity ``sqrt(d)``

    (replacing row i changes each ``y_ij`` within [-1, 1], by at most 2, and each ``y_ij^2``
    within [0, 1], by at most 1; d columns). Rescaling by the declared ranges first makes the
    noise proportional to each column's range, so narrow columns are not swamped by wide ones.
    The centre ``m + w S1~ / n`` and the scale ``w sqrt(S2~ / n - (S1~ / n)^2)`` (clamped to
    ``[min_scale w, w]``) are post-processing of the releases; n is public. The releases are recorded in the table's ledger like any other, and
    the resulting map can be stored with the ledger and reused by later sessions for free.

Downstream mechanisms (e.g. DP ridge) bound their own sensitivities by clipping rows after this
map, so their bounds hold for any fixed map; under adaptive composition a map computed from
earlier releases is fixed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ...errors import ConfigError
from .accountant import PlannedRelease
from .mechanisms import GaussianNoise, gaussian_mechanism

LEDGER_OUTPUT = "standardization"  # name of the stored map in a table's ledger


def _vector(name: str, values, d: int | None = None) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0 or (d is not None and v.size != d):
        want = f"{d} values" if d is not None else "a non-empty list"
        raise ConfigError(f"{name} must be {want} (one per column), got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ConfigError(f"{name} must be finite, got {v.tolist()}")
    return v


@dataclass(frozen=True)
class ColumnBounds:
    """Public per-column bounds ``lower[j] < upper[j]`` declared by the party."""

    lower: tuple[float, ...]
    upper: tuple[float, ...]

    def __post_init__(self) -> None:
        lo = _vector("lower bounds", self.lower)
        hi = _vector("upper bounds", self.upper, lo.size)
        bad = np.flatnonzero(~(lo < hi))
        if bad.size:
            j = int(bad[0])
            raise ConfigError(f"column {j}: lower bound {float(lo[j])} must be < upper bound {float(hi[j])}")
        object.__setattr__(self, "lower", tuple(lo.tolist()))
        object.__setattr__(self, "upper", tuple(hi.tolist()))

    @property
    def d(self) -> int:
        return len(self.lower)

    @property
    def middle(self) -> np.ndarray:
        return (np.asarray(self.lower) + np.asarray(self.upper)) / 2.0

    @property
    def half_width(self) -> np.ndarray:
        return (np.asarray(self.upper) - np.asarray(self.lower)) / 2.0

    def clip(self, X: np.ndarray) -> np.ndarray:
        return np.clip(X, np.asarray(self.lower), np.asarray(self.upper))


@dataclass(frozen=True)
class Standardizer:
    """``x -> (clip(x, bounds) - centre) / scale`` per column (no clipping without bounds).

    ``source`` says where the numbers come from: "declared" or "dp" (post-processed releases).
    """

    centre: tuple[float, ...]
    scale: tuple[float, ...]
    bounds: ColumnBounds | None = None
    source: str = "declared"

    def __post_init__(self) -> None:
        c = _vector("centres", self.centre)
        s = _vector("scales", self.scale, c.size)
        if not (s > 0).all():
            raise ConfigError(f"scales must be > 0, got {s.tolist()}")
        if self.bounds is not None and self.bounds.d != c.size:
            raise ConfigError(f"{self.bounds.d} bounds for {c.size} centres")
        if self.source not in ("declared", "dp"):
            raise ConfigError(f"source must be 'declared' or 'dp', got {self.source!r}")
        object.__setattr__(self, "centre", tuple(c.tolist()))
        object.__setattr__(self, "scale", tuple(s.tolist()))

    @property
    def d(self) -> int:
        return len(self.centre)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.d:
            raise ValueError(f"expected features of shape (n, {self.d}), got {X.shape}")
        if self.bounds is not None:
            X = self.bounds.clip(X)
        return (X - np.asarray(self.centre)) / np.asarray(self.scale)

    def to_dict(self) -> dict:
        out = {"centre": list(self.centre), "scale": list(self.scale), "source": self.source}
        if self.bounds is not None:
            out["lower"], out["upper"] = list(self.bounds.lower), list(self.bounds.upper)
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> "Standardizer":
        try:
            bounds = ColumnBounds(tuple(d["lower"]), tuple(d["upper"])) if "lower" in d else None
            return cls(tuple(d["centre"]), tuple(d["scale"]), bounds, d["source"])
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"malformed standardization {dict(d)!r:.120}: {exc}") from None


def declared_standardizer(lower: Sequence[float] | None = None, upper: Sequence[float] | None = None,
                          centre: Sequence[float] | None = None,
                          scale: Sequence[float] | None = None) -> Standardizer:
    """The map of declared (public) bounds and/or centres and scales; see the module docstring."""
    if (lower is None) != (upper is None):
        raise ConfigError("give both lower and upper bounds, or neither")
    if (centre is None) != (scale is None):
        raise ConfigError("give both centres and scales, or neither")
    bounds = ColumnBounds(tuple(lower), tuple(upper)) if lower is not None else None
    if centre is None:
        if bounds is None:
            raise ConfigError("declare per-column bounds or centres and scales")
        return Standardizer(tuple(bounds.middle), tuple(bounds.half_width), bounds)
    return Standardizer(tuple(centre), tuple(scale), bounds)


# --- DP estimates -----------------------------------------------------------------------------

def mean_sensitivity(bounds: ColumnBounds) -> float:
    """Replace-one L2 sensitivity of ``S1 = sum_i y_i`` (rows ``y_i`` in [-1, 1]^d): ``2 sqrt(d)``."""
    return 2.0 * math.sqrt(bounds.d)


def second_moment_sensitivity(bounds: ColumnBounds) -> float:
    """Replace-one L2 sensitivity of ``S2 = sum_i y_i^2`` (entries in [0, 1]): ``sqrt(d)``."""
    return math.sqrt(bounds.d)


def standardization_plan(bounds: ColumnBounds, mean_share: float = 0.5) -> list[PlannedRelease]:
    """The two releases of a DP estimate, splitting their budget (in the Gaussian / RDP sense,
    as :func:`~securegal.privacy.dp.accountant.scales_for_shares`) ``mean_share`` : rest."""
    if not (isinstance(mean_share, (int, float)) and 0 < mean_share < 1):
        raise ConfigError(f"mean_share must be in (0, 1), got {mean_share!r}")
    return [PlannedRelease("std_mean", scale=1 / math.sqrt(mean_share),
                           sensitivity=mean_sensitivity(bounds)),
            PlannedRelease("std_scale", scale=1 / math.sqrt(1 - mean_share),
                           sensitivity=second_moment_sensitivity(bounds))]


def _features(X: np.ndarray, bounds: ColumnBounds) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != bounds.d or X.shape[0] < 1:
        raise ValueError(f"expected features of shape (n >= 1, {bounds.d}), got {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("features must be finite")
    return (bounds.clip(X) - bounds.middle) / bounds.half_width


def private_moments(X: np.ndarray, bounds: ColumnBounds, noise_multipliers: Mapping[str, float],
                    noise: GaussianNoise) -> tuple[np.ndarray, np.ndarray]:
    """The two releases ``(S1~, S2~)``; record them (``standardization_plan``) before calling."""
    Y = _features(X, bounds)
    s1 = gaussian_mechanism(Y.sum(axis=0), mean_sensitivity(bounds),
                            noise_multipliers["std_mean"], noise)
    s2 = gaussian_mechanism((Y ** 2).sum(axis=0), second_moment_sensitivity(bounds),
                            noise_multipliers["std_scale"], noise)
    return s1, s2


def standardizer_from_moments(s1: np.ndarray, s2: np.ndarray, n_rows: int, bounds: ColumnBounds,
                              min_scale: float = 0.05) -> Standardizer:
    """Post-processing: centre ``m + w S1~/n`` (within the bounds) and scale
    ``w sqrt(S2~/n - (S1~/n)^2)`` clamped to ``[min_scale * w, w]``."""
    if not (isinstance(min_scale, (int, float)) and 0 < min_scale <= 1):
        raise ConfigError(f"min_scale must be in (0, 1], got {min_scale!r}")
    shift = np.clip(np.asarray(s1) / n_rows, -1.0, 1.0)
    second = np.clip(np.asarray(s2) / n_rows, 0.0, 1.0)
    var = np.clip(second - shift ** 2, min_scale ** 2, 1.0)
    w = bounds.half_width
    return Standardizer(tuple(bounds.middle + w * shift), tuple(w * np.sqrt(var)), bounds, "dp")


def dp_standardizer(ledger, X: np.ndarray, bounds: ColumnBounds, session: str, epsilon: float,
                    noise: GaussianNoise, mean_share: float = 0.5) -> Standardizer:
    """The table's DP standardization, paid once from its ledger.

    Reuses the map stored in ``ledger`` for these bounds (free: post-processing of recorded
    releases); otherwise calibrates the two releases to raise the lifetime epsilon by at most
    ``epsilon``, records them under ``session`` (BudgetExceeded, nothing drawn, if they do not
    fit), draws the noise and stores the map with the ledger.
    """
    from .ledger import calibrate_session

    stored = ledger.output(LEDGER_OUTPUT)
    if stored is not None:
        std = Standardizer.from_dict(stored)
        if std.bounds == bounds and std.source == "dp":
            return std
    X = np.asarray(X, dtype=np.float64)
    _features(X, bounds)  # refuse bad input before anything is spent
    plan = standardization_plan(bounds, mean_share)
    z = calibrate_session(ledger, plan, session_epsilon=epsilon, n_rows=X.shape[0])
    releases = [p.at(z) for p in plan]
    ledger.record(releases, session)
    s1, s2 = private_moments(X, bounds, {r.what: r.noise_multiplier for r in releases}, noise)
    std = standardizer_from_moments(s1, s2, X.shape[0], bounds)
    ledger.store_output(LEDGER_OUTPUT, std.to_dict())
    return std
