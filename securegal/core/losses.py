"""Overarching losses L(y, F): value, constant minimizer F0 and pseudo-residuals -dL/dF.

The smooth losses also give ``along(y, F, direction)``: the first and second derivatives of
the loss along a direction, which the assisted learning rate's Newton search uses.

Each loss works on a score matrix ``F`` of shape (n, K). Labels are class indices (n,) for the
cross-entropies and targets (n,) or (n, K) for the regressions. Values are means over rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.special import expit, log_expit

# eta -> (d/d eta, d^2/d eta^2) of a loss along a fixed direction; see the losses' ``along``.
Derivatives = Callable[[float], tuple[float, float]]

from ..errors import ConfigError
from ..messages import LOCAL_LOSSES


def check_local_loss(local_loss: str) -> str:
    if local_loss not in LOCAL_LOSSES:
        raise ConfigError(f"unknown local loss {local_loss!r}; choose one of {', '.join(LOCAL_LOSSES)}")
    return local_loss


# Rows per step of the cross-entropy's value, residual and line search: their temporaries are
# K x CHUNK_ROWS floats, never n-sized (at 8M rows each was 128 MB, a fresh mapping each time).
CHUNK_ROWS = 1 << 15


def _row_chunks(n: int) -> list[tuple[int, int]]:
    return [(a, min(a + CHUNK_ROWS, n)) for a in range(0, n, CHUNK_ROWS)]


def _as_scores(F: np.ndarray, n: int, k: int) -> np.ndarray:
    F = np.asarray(F, dtype=np.float64)
    if F.shape != (n, k):
        raise ValueError(f"scores must have shape ({n}, {k}), got {F.shape}")
    return F


def _by_class(F: np.ndarray) -> np.ndarray:
    """``F`` (n, K) as a (K, n) C-contiguous copy shifted so each row's maximum is 0.

    Reductions over the classes then run along the long rows: several times faster than
    scipy's softmax over a short last axis.
    """
    Ft = np.ascontiguousarray(F.T)
    Ft -= Ft.max(axis=0)
    return Ft


def _class_labels(y: np.ndarray, n_classes: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"class labels must be 1-D, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError("class labels must be integers 0..K-1")
        y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"class labels must lie in 0..{n_classes - 1}, got range {y.min()}..{y.max()}")
    return y


def _targets(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2:
        raise ValueError(f"regression targets must be (n,) or (n, K), got shape {y.shape}")
    if not np.isfinite(y).all():
        raise ValueError("regression targets must be finite")
    return y


@dataclass(frozen=True)
class CrossEntropy:
    """Multi-class softmax cross-entropy over K >= 2 classes."""

    n_classes: int
    name: str = "cross_entropy"
    local_loss: str = "l2"

    def __post_init__(self):
        if self.n_classes < 2:
            raise ValueError(f"cross-entropy needs at least 2 classes, got {self.n_classes}")

    @property
    def n_outputs(self) -> int:
        return self.n_classes

    def init(self, y: np.ndarray) -> np.ndarray:
        """Class log-priors (the constant minimizer), shape (K,)."""
        y = _class_labels(y, self.n_classes)
        counts = np.bincount(y, minlength=self.n_classes).astype(np.float64)
        priors = (counts + 1e-12) / (counts.sum() + 1e-12 * self.n_classes)
        return np.log(priors)

    def value(self, y: np.ndarray, F: np.ndarray) -> float:
        y = _class_labels(y, self.n_classes)
        n = y.shape[0]
        F = _as_scores(F, n, self.n_classes)
        rows, total = np.arange(min(n, CHUNK_ROWS)), 0.0
        for a, b in _row_chunks(n):
            shifted = _by_class(F[a:b])
            log_normalizer = np.log(np.exp(shifted).sum(axis=0))
            total += float((log_normalizer - shifted[y[a:b], rows[:b - a]]).sum())
        return total / n if n else float("nan")  # the mean over no rows, as np.mean gives

    def residual(self, y: np.ndarray, F: np.ndarray) -> np.ndarray:
        """onehot(y) - softmax(F): the negative gradient of the per-row loss."""
        y = _class_labels(y, self.n_classes)
        n = y.shape[0]
        F = _as_scores(F, n, self.n_classes)
        r, rows = np.empty((n, self.n_classes)), np.arange(min(n, CHUNK_ROWS))
        for a, b in _row_chunks(n):
            probs = np.exp(_by_class(F[a:b]))
            probs /= probs.sum(axis=0)
            np.negative(probs.T, out=r[a:b])
            r[a:b][rows[:b - a], y[a:b]] += 1.0
        return r

    def along(self, y: np.ndarray, F: np.ndarray, direction: np.ndarray) -> "Derivatives":
        """First and second derivative of ``eta -> value(y, F + eta * direction)``.

        Each evaluation works ``CHUNK_ROWS`` rows at a time in two small reused buffers: the
        only n-sized arrays are the transposed scores and direction, made once per search."""
        y = _class_labels(y, self.n_classes)
        n = y.shape[0]
        F = _as_scores(F, n, self.n_classes)
        d = _as_scores(direction, n, self.n_classes)
        if n == 0:
            raise ValueError("the line search needs at least one row")
        chunks = _row_chunks(n)
        rows = np.arange(min(n, CHUNK_ROWS))
        d_label = sum(float(d[a:b][rows[:b - a], y[a:b]].sum()) for a, b in chunks) / n
        # Classes along the first axis: every reduction over classes runs along the long rows.
        Ft, dt = np.ascontiguousarray(F.T), np.ascontiguousarray(d.T)
        p, tmp = np.empty((self.n_classes, len(rows))), np.empty((self.n_classes, len(rows)))

        def derivatives(eta: float) -> tuple[float, float]:
            g = h = 0.0
            for a, b in chunks:
                pc, tc, dc = p[:, :b - a], tmp[:, :b - a], dt[:, a:b]
                np.multiply(dc, eta, out=pc)
                np.add(pc, Ft[:, a:b], out=pc)
                np.subtract(pc, pc.max(axis=0), out=pc)
                np.exp(pc, out=pc)
                np.divide(pc, pc.sum(axis=0), out=pc)  # softmax(F + eta d), transposed
                pd = np.multiply(pc, dc, out=tc).sum(axis=0)
                np.multiply(tc, dc, out=tc)  # p d^2
                g += float(pd.sum())
                h += float(tc.sum()) - float(np.dot(pd, pd))
            return g / n - d_label, h / n

        return derivatives


@dataclass(frozen=True)
class BinaryCrossEntropy:
    """Logistic loss with one score column; labels in {0, 1}."""

    name: str = "binary_cross_entropy"
    local_loss: str = "l2"

    @property
    def n_outputs(self) -> int:
        return 1

    def init(self, y: np.ndarray) -> np.ndarray:
        y = _class_labels(y, 2)
        p = np.clip(y.mean(), 1e-12, 1 - 1e-12)
        return np.array([np.log(p / (1 - p))])

    def value(self, y: np.ndarray, F: np.ndarray) -> float:
        y = _class_labels(y, 2)
        F = _as_scores(F, y.shape[0], 1)[:, 0]
        return float(-(y * log_expit(F) + (1 - y) * log_expit(-F)).mean())

    def residual(self, y: np.ndarray, F: np.ndarray) -> np.ndarray:
        y = _class_labels(y, 2)
        F = _as_scores(F, y.shape[0], 1)
        return y[:, None] - expit(F)

    def along(self, y: np.ndarray, F: np.ndarray, direction: np.ndarray) -> "Derivatives":
        """First and second derivative of ``eta -> value(y, F + eta * direction)``."""
        y = _class_labels(y, 2)
        F = _as_scores(F, y.shape[0], 1)[:, 0]
        d = _as_scores(direction, y.shape[0], 1)[:, 0]
        d2 = d * d

        def derivatives(eta: float) -> tuple[float, float]:
            s = expit(F + eta * d)
            return float(np.dot(s - y, d) / d.size), float(np.dot(s * (1.0 - s), d2) / d.size)

        return derivatives


@dataclass(frozen=True)
class L2Loss:
    """Half mean squared error 0.5 * mean ||y - F||^2 (residual y - F)."""

    n_targets: int = 1
    name: str = "l2"
    local_loss: str = "l2"

    @property
    def n_outputs(self) -> int:
        return self.n_targets

    def init(self, y: np.ndarray) -> np.ndarray:
        return _targets(y).mean(axis=0)

    def value(self, y: np.ndarray, F: np.ndarray) -> float:
        y = _targets(y)
        F = _as_scores(F, *y.shape)
        return float(0.5 * ((y - F) ** 2).sum(axis=1).mean())

    def residual(self, y: np.ndarray, F: np.ndarray) -> np.ndarray:
        y = _targets(y)
        return y - _as_scores(F, *y.shape)

    def along(self, y: np.ndarray, F: np.ndarray, direction: np.ndarray) -> "Derivatives":
        """First and second derivative of ``eta -> value(y, F + eta * direction)`` (a parabola)."""
        y = _targets(y)
        gap = y - _as_scores(F, *y.shape)
        d = _as_scores(direction, *y.shape)
        n = y.shape[0]
        gap_d, d_d = float(np.vdot(gap, d)) / n, float(np.vdot(d, d)) / n
        return lambda eta: (eta * d_d - gap_d, d_d)


@dataclass(frozen=True)
class L1Loss:
    """Mean absolute error (residual sign(y - F), its negative subgradient)."""

    n_targets: int = 1
    name: str = "l1"
    local_loss: str = "l1"

    @property
    def n_outputs(self) -> int:
        return self.n_targets

    def init(self, y: np.ndarray) -> np.ndarray:
        return np.median(_targets(y), axis=0)

    def value(self, y: np.ndarray, F: np.ndarray) -> float:
        y = _targets(y)
        F = _as_scores(F, *y.shape)
        return float(np.abs(y - F).sum(axis=1).mean())

    def residual(self, y: np.ndarray, F: np.ndarray) -> np.ndarray:
        y = _targets(y)
        return np.sign(y - _as_scores(F, *y.shape))


LOSSES = ("cross_entropy", "binary_cross_entropy", "l2", "l1")


def make_loss(name: str, n_outputs: int):
    """The loss called ``name``; ``n_outputs`` is the class count (CE) or target count."""
    if name == "cross_entropy":
        return CrossEntropy(n_outputs)
    if name == "binary_cross_entropy":
        return BinaryCrossEntropy()
    if name == "l2":
        return L2Loss(n_outputs)
    if name == "l1":
        return L1Loss(n_outputs)
    raise ValueError(f"unknown loss {name!r}; choose one of {LOSSES}")
