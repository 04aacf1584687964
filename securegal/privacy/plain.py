"""The plain layer: residuals and predictions travel in the clear (plain GAL, no protection)."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ..errors import ConfigError, LayerMismatch
from ..learners.base import FittedModel, Learner, bind
from ..messages import Payload, Setup
from ..seam import plain_array, plain_bytes


def check_streamable(who: str, learner: str, local_loss: str, residuals: str, feature_dp: bool) -> None:
    """Refuse (ConfigError naming ``who``) what a party streaming its table cannot run: it fits
    the linear learner with local loss l2 batch by batch, on plain residuals (or label-DP ones),
    without feature-DP (whose releases need the whole table's statistics)."""
    if learner != "linear" or local_loss != "l2":
        raise ConfigError(f"{who} streams its table: it runs only the linear learner with local loss l2, not "
                          f"{learner!r} with {local_loss!r}")
    if feature_dp or residuals not in ("plain", "label-dp"):
        raise ConfigError(f"{who} streams its table: it runs only plain residuals (or label-DP) without "
                          f"feature-DP, not {residuals!r} residuals" + (" with feature-DP" if feature_dp else ""))


class PlainResiduals:
    """No protection: residuals travel in the clear (plain GAL)."""

    name = "plain"

    def setup_fields(self, party: str) -> Mapping[str, object]:
        return {"residuals": "plain"}

    def seal(self, residuals: np.ndarray, round: int, party: str) -> Payload:
        return np.ascontiguousarray(residuals, dtype=np.float64)

    def open(self, payload: Payload, round: int, party: str, shape: tuple[int, ...]) -> np.ndarray:
        return plain_array(payload, shape, f"predictions of {party!r} in round {round}")

    def reply_bytes(self, party: str, shape: tuple[int, ...]) -> int:
        return plain_bytes(shape)

    def report(self) -> dict:
        return {}


class PlainTrainer:
    """Fits the party's learner to plaintext residuals and releases its train predictions."""

    def __init__(self, learner: Learner):
        self.learner = learner
        self.models: dict[int, FittedModel] = {}
        self._n = self._k = 0

    def feature_dtype(self, shape: tuple[int, int]) -> np.dtype:
        """The dtype the learner keeps a training block of ``shape`` in (float32 for a large l2
        ridge block), so the party can build its standardized rows in it without a float64 copy."""
        stored = getattr(self.learner, "stored_dtype", None)
        return np.dtype(np.float64) if stored is None else stored(shape)

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

    def train_predictions(self, round: int) -> np.ndarray:
        """Round ``round``'s train predictions again (the same computation, the same values)."""
        return np.asarray(self._bound.predict_train(self.models[round]), dtype=np.float64)

    def predict(self, X: np.ndarray, rounds: int) -> Payload:
        out = np.zeros((rounds, X.shape[0], self._k))
        for t, model in self.models.items():
            if t <= rounds:
                out[t - 1] = model.predict(X)
        return out

    def report(self) -> dict:
        return {}

    def streamed(self, party: str) -> "StreamedTrainer":
        """This trainer for ``party``'s streamed table (LayerMismatch unless the learner is the
        linear one with local loss l2). A trainer without this method cannot stream."""
        from ..learners.linear import LinearLearner

        learner = self.learner
        if not isinstance(learner, LinearLearner) or learner.local_loss != "l2":
            what = f"local loss {learner.local_loss}" if isinstance(learner, LinearLearner) else \
                f"learner {getattr(learner, 'name', type(learner).__name__)!r}"
            raise LayerMismatch(f"party {party!r} streams its table: it runs only the linear learner with local "
                                f"loss l2, not {what}")
        return StreamedTrainer(learner.lam)


def plain_trainers(name: str, index: int, learner: Learner):
    """The plain layer's trainer choice: every party fits its learner to plaintext residuals."""
    return lambda setup: PlainTrainer(learner)


class StreamedTrainer:
    """:class:`PlainTrainer` for a party that streams its table (a
    :class:`~securegal.data.parquet_table.ParquetTable`): the linear l2 learner fitted batch by
    batch (:class:`~securegal.learners.streamed.StreamedRidge`), its rows given as
    :class:`~securegal.data.parquet_table.RowSelection` and standardized here."""

    def __init__(self, lam: float):
        self.lam = lam
        self.models: dict[int, FittedModel] = {}
        self._ridge = None
        self._k = 0

    def setup(self, rows, setup: Setup) -> None:
        from ..learners.streamed import StreamedRidge

        if setup.residuals != "plain":
            raise LayerMismatch(f"this party only accepts plain residuals, the label owner asked for {setup.residuals!r}")
        self._ridge, self._k = StreamedRidge(rows, self.lam), setup.n_outputs
        self.models.clear()

    def fit_round(self, round: int, residuals: Payload) -> Payload:
        r = plain_array(residuals, (self._ridge.n, self._k), f"residuals of round {round}")
        model, predictions = self._ridge.fit_predict(r)
        self.models[round] = model
        return predictions

    def train_predictions(self, round: int) -> np.ndarray:
        """Round ``round``'s train predictions again (the same computation, the same values)."""
        return self._ridge.predict([self.models[round]], self._ridge.rows)[0]

    def predict(self, rows, rounds: int) -> Payload:
        out = np.zeros((rounds, rows.n, self._k))
        fitted = sorted(t for t in self.models if t <= rounds)
        if fitted and rows.n:
            out[np.array(fitted) - 1] = self._ridge.predict([self.models[t] for t in fitted], rows)
        return out

    def report(self) -> dict:
        return {}
