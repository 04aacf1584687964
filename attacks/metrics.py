"""Scoring functions shared by the attacks (pure functions of arrays)."""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of exact matches."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred))


def binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of ``score`` for the boolean ``positive`` (ties count one half); 0.5 if one class."""
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    ranks = rankdata(np.asarray(score, dtype=np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def macro_auc(y_true: np.ndarray, class_scores: np.ndarray, classes: np.ndarray) -> float:
    """One-vs-rest AUC averaged over the classes present in ``y_true``.

    ``class_scores[:, j]`` scores class ``classes[j]``; with two classes this is the binary AUC.
    """
    y_true = np.asarray(y_true)
    class_scores = np.asarray(class_scores, dtype=np.float64)
    if len(classes) == 2:
        return binary_auc(y_true == classes[1], class_scores[:, 1] - class_scores[:, 0])
    aucs = [binary_auc(y_true == c, class_scores[:, j]) for j, c in enumerate(classes)
            if np.any(y_true == c) and not np.all(y_true == c)]
    return float(np.mean(aucs)) if aucs else 0.5


def r2_per_column(truth: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """R^2 of each column; a constant true column scores 1 if matched exactly, else 0."""
    truth = _as_2d(truth)
    estimate = _as_2d(estimate)
    if truth.shape != estimate.shape:
        raise ValueError(f"shape mismatch: truth {truth.shape} vs estimate {estimate.shape}")
    ss_res = ((truth - estimate) ** 2).sum(axis=0)
    ss_tot = ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)
    safe = np.where(ss_tot > 0, ss_tot, 1.0)
    return np.where(ss_tot > 0, 1.0 - ss_res / safe, np.where(ss_res > 0, 0.0, 1.0))


def mse_per_column(truth: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Mean squared error of each column."""
    return ((_as_2d(truth) - _as_2d(estimate)) ** 2).mean(axis=0)


def mad(truth: np.ndarray, estimate: np.ndarray) -> float:
    """Mean absolute deviation between targets and estimates."""
    return float(np.mean(np.abs(np.asarray(truth, float) - np.asarray(estimate, float))))


def _as_2d(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a[:, None] if a.ndim == 1 else a
