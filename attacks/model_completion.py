"""Label inference (c): model completion (Fu et al., USENIX Security 2022), supervised variant.

The feature party trains a model on its own features plus everything it received (residuals of
every round, stacked) using its k known labels. The baseline is the same model trained on its
own features alone, so the advantage isolates what the transcript adds.
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression, RidgeCV

from .labels import KnownLabels, LabelGuess, check_task, prior_guess, score_labels
from .result import AttackResult
from .views import stack_rounds, standardize

NAME = "model_completion"
ALPHAS = np.logspace(-4, 4, 17)


def fit_predict(features: np.ndarray, task: str, known: KnownLabels, classes: np.ndarray | None) -> LabelGuess:
    """Train on the known rows of ``features`` and guess every row."""
    Z = standardize(features)
    known.check_rows(Z.shape[0])
    X_k, y_k = Z[known.index], known.values
    if check_task(task) == "regression":
        model = RidgeCV(alphas=ALPHAS).fit(X_k, y_k.astype(np.float64))
        return LabelGuess(model.predict(Z))
    present = np.unique(y_k)
    if not np.isin(present, classes).all():
        raise ValueError(f"known labels {present.tolist()} are not all in the class set {classes.tolist()}")
    if present.size < 2:
        return prior_guess(Z.shape[0], task, known, classes)
    model = LogisticRegression(C=1.0, max_iter=2000).fit(X_k, y_k)
    proba = model.predict_proba(Z)
    scores = np.zeros((Z.shape[0], len(classes)))
    for j, c in enumerate(model.classes_):
        scores[:, int(np.flatnonzero(classes == c)[0])] = proba[:, j]
    return LabelGuess(classes[np.argmax(scores, axis=1)], scores, classes)


def run(own_features: np.ndarray, residual_rounds: list[np.ndarray], task: str, known: KnownLabels,
        truth: np.ndarray, attacker: str, victim: str,
        classes: np.ndarray | None = None) -> list[AttackResult]:
    """Model completion with and without the transcript, scored on the unknown rows."""
    own = np.asarray(own_features, dtype=np.float64)
    received = stack_rounds(residual_rounds)
    if own.ndim != 2 or own.shape[0] != received.shape[0]:
        raise ValueError(f"own features {own.shape} do not match {received.shape[0]} transcript rows")
    guess = fit_predict(np.hstack([own, received]), task, known, classes)
    base = fit_predict(own, task, known, classes)
    return score_labels(NAME, attacker, victim, task, guess, base, truth, known)
