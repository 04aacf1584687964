"""The plain layer: residuals and predictions travel in the clear (plain GAL, no protection)."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..errors import LayerMismatch
from ..learners.base import FittedModel, Learner, bind
from ..messages import Payload, Setup
from ..seam import plain_array


class PlainResiduals:
    """No protection: residuals travel in the clear (plain GAL)."""

    name = "plain"

    def setup_fields(self, party: str) -> Mapping[str, object]:
        return {"residuals": "plain"}

    def seal(self, residuals: np.ndarray, round: int, party: str) -> Payload:
        return np.ascontiguousarray(residuals, dtype=np.float64)

    def open(self, payload: Payload, round: int, party: str, shape: tuple[int, ...]) -> np.ndarray:
        return plain_array(payload, shape, f"predictions of {party!r} in round {round}")

    def report(self) -> dict:
        return {}


class PlainTrainer:
    """Fits the party's learner to plaintext residuals and releases its train predictions."""

    def __init__(self, learner: Learner):
        self.learner = learner
        self.models: dict[int, FittedModel] = {}
        self._n = self._k = 0

    def setup(self, X_train: np.ndarray, setup: Setup) -> None:
        if setup.residuals != "plain":
            raise LayerMismatch(f"this party only accepts plain residuals, the label owner asked for {setup.residuals!r}")
        self._n, self._k = X_train.shape[0], setup.n_outputs
        # per-block work (ridge: the Gram factor) once; the trainer keeps no other copy of X_train
        self._bound = bind(self.learner, X_train)
        self.models.clear()

    def fit_round(self, round: int, residuals: Payload) -> Payload:
        r = plain_array(residuals, (self._n, self._k), f"residuals of round {round}")
        model, predictions = self._bound.fit_predict(r)  # train predictions come with the fit
        self.models[round] = model
        return np.asarray(predictions, dtype=np.float64)

    def predict(self, X: np.ndarray, rounds: int) -> Payload:
        out = np.zeros((rounds, X.shape[0], self._k))
        for t, model in self.models.items():
            if t <= rounds:
                out[t - 1] = model.predict(X)
        return out

    def report(self) -> dict:
        return {}


def plain_trainers(name: str, index: int, learner: Learner):
    """The plain layer's trainer choice: every party fits its learner to plaintext residuals."""
    return lambda setup: PlainTrainer(learner)

