"""Label inference (b): cluster the residuals stacked across rounds; known labels name clusters.

Works without knowing the loss: rows with the same label get similar residual trajectories.
The stack is only rescaled as a whole, never per column: residuals share one scale by
construction, and per-column standardization would blow up late rounds whose residuals are
near zero for every well-fitted row.
Classification uses one cluster per class, named one-to-one by the known labels;
regression uses up to ten clusters and predicts each cluster's known-label mean.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans

from .labels import KnownLabels, LabelGuess, check_task, frequency_scores, prior_guess, score_labels
from .result import AttackResult
from .views import stack_rounds

NAME = "label_clustering"
MAX_REGRESSION_CLUSTERS = 10


def infer(residual_rounds: list[np.ndarray], task: str, known: KnownLabels,
          classes: np.ndarray | None = None, seed: int = 0) -> LabelGuess:
    """Guess every row's label from all rounds' residuals."""
    Z = stack_rounds(residual_rounds)
    Z = (Z - Z.mean(axis=0)) / max(float(Z.std()), 1e-300)
    known.check_rows(Z.shape[0])
    if check_task(task) == "classification":
        if classes is None:
            raise ValueError("classification needs the class set")
        n_clusters = len(classes)
    else:
        n_clusters = min(MAX_REGRESSION_CLUSTERS, known.index.size)
    n_clusters = min(n_clusters, np.unique(Z, axis=0).shape[0])
    groups = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(Z)
    if task == "regression":
        fallback = float(np.mean(known.values))
        means = np.array([known.values[groups[known.index] == g].mean()
                          if np.any(groups[known.index] == g) else fallback for g in range(n_clusters)])
        return LabelGuess(means[groups])
    freq = frequency_scores(groups, known, classes, n_clusters)
    # One cluster per class: name them one-to-one by the known labels (Hungarian assignment on
    # the known-label counts), so a cluster no known label fell into takes the class left over.
    cluster_idx, class_idx = linear_sum_assignment(-freq)
    naming = np.argmax(freq, axis=1)
    naming[cluster_idx] = class_idx
    scores = 0.5 * np.eye(len(classes))[naming][groups] + 0.5 * freq[groups]
    return LabelGuess(classes[naming[groups]], scores, classes)


def run(residual_rounds: list[np.ndarray], task: str, known: KnownLabels, truth: np.ndarray,
        attacker: str, victim: str, classes: np.ndarray | None = None, seed: int = 0) -> list[AttackResult]:
    """Cluster all rounds and score against ``truth`` on the unknown rows."""
    guess = infer(residual_rounds, task, known, classes, seed)
    base = prior_guess(guess.values.shape[0], task, known, classes)
    return score_labels(NAME, attacker, victim, task, guess, base, truth, known)
