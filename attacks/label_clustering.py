"""Label inference (b): cluster the residuals stacked across rounds; known labels name clusters.

Works without knowing the loss: rows with the same label get similar residual trajectories.
Classification uses one cluster per class, each named by its known labels' frequencies;
regression uses up to ten clusters and predicts each cluster's known-label mean.
"""
from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans

from .labels import KnownLabels, LabelGuess, check_task, frequency_scores, prior_guess, score_labels
from .result import AttackResult
from .views import stack_rounds, standardize

NAME = "label_clustering"
MAX_REGRESSION_CLUSTERS = 10


def infer(residual_rounds: list[np.ndarray], task: str, known: KnownLabels,
          classes: np.ndarray | None = None, seed: int = 0) -> LabelGuess:
    """Guess every row's label from all rounds' residuals."""
    Z = standardize(stack_rounds(residual_rounds))
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
    scores = freq[groups]
    return LabelGuess(classes[np.argmax(scores, axis=1)], scores, classes)


def run(residual_rounds: list[np.ndarray], task: str, known: KnownLabels, truth: np.ndarray,
        attacker: str, victim: str, classes: np.ndarray | None = None, seed: int = 0) -> list[AttackResult]:
    """Cluster all rounds and score against ``truth`` on the unknown rows."""
    guess = infer(residual_rounds, task, known, classes, seed)
    base = prior_guess(guess.values.shape[0], task, known, classes)
    return score_labels(NAME, attacker, victim, task, guess, base, truth, known)
