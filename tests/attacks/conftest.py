"""Synthetic plain-GAL transcripts for the attack tests: a label owner and one victim party.

The simulation is deliberately small and independent of securegal's core: cross-entropy or L2
residuals, the victim fits ridge on its own features each round, the label owner adds a damped
step. It yields exactly the arrays a transcript would carry.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from securegal.learners.linear import LinearLearner


@dataclass
class SyntheticRun:
    task: str
    n_outputs: int
    y: np.ndarray                 # (n,) labels or targets
    X_victim: np.ndarray          # (n, d) the victim's (standardized) features
    residuals: list[np.ndarray]   # per round (n, K): what the victim received
    predictions: list[np.ndarray]  # per round (n, K): what the label owner received


def _softmax(F):
    e = np.exp(F - F.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def simulate(n=400, d=6, n_classes=3, rounds=10, task="classification", seed=0, learner=None):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X_owner = rng.standard_normal((n, 3))
    w = rng.standard_normal((d + 3, max(n_classes, 1)))
    logits = np.hstack([X, X_owner]) @ w
    learner = learner or LinearLearner(lam=1e-3)
    if task == "classification":
        y = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
        onehot = np.eye(n_classes)[y]
        F = np.tile(np.log(onehot.mean(axis=0) + 1e-12), (n, 1))
        residual = lambda F: onehot - _softmax(F)  # noqa: E731
        K = n_classes
    else:
        y = logits[:, 0] * 3.0 + 10.0 + rng.standard_normal(n)
        F = np.full((n, 1), y.mean())
        residual = lambda F: y[:, None] - F  # noqa: E731
        K = 1
    residuals, predictions = [], []
    for _ in range(rounds):
        r = residual(F)
        f = learner.fit(X, r).predict(X)
        owner = LinearLearner(lam=1e-3).fit(X_owner, r).predict(X_owner)
        residuals.append(r)
        predictions.append(f)
        F = F + 0.5 * (f + owner)
    return SyntheticRun(task, K, y, X, residuals, predictions)


@pytest.fixture(scope="session")
def ce_run():
    return simulate()


@pytest.fixture(scope="session")
def l2_run():
    return simulate(task="regression", d=5)
