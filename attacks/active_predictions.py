"""Label inference (d): an active feature party that crafts the predictions it returns.

A curious feature party adds crafted "pushes" to its honest replies: each round a random
quarter of the rows gets +A or -A (A = ``AMPLITUDE``, large next to the residuals). The label
owner folds every reply into its model with assistance weights it fits to the residuals and a
step it line-searches on the labels, so what comes back next round (the residuals after the
push) depends on the labels through that combination: how far each pushed row moved, and
where it came to rest relative to its label.

The party reads the labels from what it received: per row, every round's residuals, their
change from one round to the next, and that change signed by its own push; a logistic
regression (classification) or ridge (regression) trained on its known labels maps them to
a label. It knows its pushes (its own secret seed) and reads the residuals as they reached
it: plaintext, label-DP-noised, or CKKS ciphertext bytes (:func:`.views.as_array`). The
baseline is the majority class (or mean) of the known labels.

The malicious party that sends the pushes in a real federation is
:class:`securegal.experiments.active.CraftedPredictions` (``securegal audit --active
crafted_predictions``); such a run's ``metrics.json`` names it under ``active``.
"""
from __future__ import annotations

import numpy as np

from .labels import KnownLabels, LabelGuess, check_task, prior_guess, score_labels
from .result import AttackResult
from .views import standardize

NAME = "active_predictions"
#: Share of rows pushed each round, and the push size (residuals of a classifier are within +-1).
FRACTION = 0.25
AMPLITUDE = 4.0


def crafted_pushes(n: int, n_outputs: int, round_: int, seed: int = 0, fraction: float = FRACTION,
                   amplitude: float = AMPLITUDE) -> np.ndarray:
    """What the malicious party adds to its honest reply in ``round_``: (n, n_outputs), +-amplitude
    on a random ``fraction`` of the rows (all outputs of a row alike), zero elsewhere."""
    if n < 1 or n_outputs < 1 or round_ < 0 or not 0 < fraction <= 1 or not amplitude > 0:
        raise ValueError(f"need n, n_outputs >= 1, round >= 0, fraction in (0, 1], amplitude > 0; got "
                         f"{n}, {n_outputs}, {round_}, {fraction}, {amplitude}")
    rng = np.random.default_rng([int(seed), int(round_), 0x9e3])
    pushed = rng.random(n) < fraction
    sign = rng.choice((-1.0, 1.0), size=n)
    return np.repeat((pushed * sign * amplitude)[:, None], n_outputs, axis=1)


def response_features(received: list[np.ndarray], pushes: list[np.ndarray]) -> np.ndarray:
    """Per row: each round's residuals, their change after each push, and that change signed by
    the push (n, K (3T - 2)), standardized."""
    R = [np.asarray(r, dtype=np.float64).reshape(len(r), -1) for r in received]
    if not R:
        raise ValueError("no residual rounds to read")
    parts = list(R)
    for t in range(len(R) - 1):
        delta = R[t + 1] - R[t]
        parts += [delta, delta * np.sign(np.asarray(pushes[t], dtype=np.float64).reshape(delta.shape))]
    return standardize(np.hstack(parts))


def guess(received: list[np.ndarray], pushes: list[np.ndarray], task: str, known: KnownLabels,
          classes: np.ndarray | None = None) -> LabelGuess:
    """The party's label guess for every row from the residuals that came back after its pushes."""
    from sklearn.linear_model import LogisticRegression, Ridge

    Z = response_features(received, pushes)
    n = Z.shape[0]
    known.check_rows(n)
    if check_task(task) == "regression":
        model = Ridge(alpha=1.0).fit(Z[known.index], known.values.astype(np.float64))
        return LabelGuess(model.predict(Z))
    values = known.values.astype(np.int64)
    if np.unique(values).size < 2:  # one class known: nothing to separate, the prior is all there is
        return prior_guess(n, task, known, classes)
    model = LogisticRegression(C=1.0, max_iter=2000).fit(Z[known.index], values)
    proba = model.predict_proba(Z)
    scores = np.zeros((n, len(classes)))
    for j, c in enumerate(model.classes_):
        scores[:, int(np.searchsorted(classes, c))] = proba[:, j]
    return LabelGuess(classes[np.argmax(scores, axis=1)], scores, classes)


def run(received: list[np.ndarray], pushes: list[np.ndarray], task: str, known: KnownLabels, truth: np.ndarray,
        attacker: str, victim: str, classes: np.ndarray | None = None) -> list[AttackResult]:
    """Score the crafted-prediction attack against the majority / mean of the known labels."""
    n = np.asarray(truth).shape[0]
    g = guess(received, pushes, task, known, classes)
    return score_labels(NAME, attacker, victim, task, g, prior_guess(n, task, known, classes), truth, known)
