"""Evaluation metrics on score matrices: accuracy (percent) and mean absolute deviation."""
from __future__ import annotations

import numpy as np


def accuracy(y: np.ndarray, F: np.ndarray) -> float:
    """Percent of rows whose top score is the label (K = 1: score > 0 means class 1)."""
    F = np.asarray(F)
    pred = (F[:, 0] > 0).astype(np.int64) if F.shape[1] == 1 else F.argmax(axis=1)
    return float(100.0 * np.mean(pred == np.asarray(y)))


def mad(y: np.ndarray, F: np.ndarray) -> float:
    """Mean absolute deviation between targets and predictions."""
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    return float(np.mean(np.abs(y - np.asarray(F).reshape(y.shape))))


def metric_for(task: str) -> tuple[str, callable]:
    return ("accuracy", accuracy) if task == "classification" else ("mad", mad)
