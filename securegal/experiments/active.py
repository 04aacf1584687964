"""Active attacks run end to end: a federation is trained with one malicious party, then scored.

``crafted_residuals``: the label owner sends random crafted residuals instead of the true ones
(:class:`CraftedResiduals`, a residual channel passed to the public ``securegal.train(...,
channel=...)``), keeps the replies, and solves them for each feature party's columns
(:mod:`securegal.attacks.active_residuals`). The run is scored like the passive attacks; with
``epsilon`` every feature party protects its releases with DP (the run's ``--epsilon``).

``crafted_predictions``: one feature party (the first) adds crafted pushes to the predictions it
returns (:class:`CraftedPredictions`, a trainer passed to ``securegal.train(..., trainers=...)``)
against the real label owner, which combines them with its fitted weights and line-searched
step; the run is then scored with :mod:`securegal.attacks.active_predictions` on what reached
the party. ``residuals="ckks"`` or ``label_epsilon`` put the label owner's protection in force.
The run's ``metrics.json`` names the malicious party under ``active``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import ConfigError, ProtocolError
from ..files import write_json_atomic
from ..messages import EncryptedPayload
from ..seam import plain_bytes

#: Active attacks ``securegal audit --active NAME`` can run.
ACTIVE = ("crafted_residuals", "crafted_predictions", "psi_membership")


class CraftedResiduals:
    """A malicious label owner's residual channel: every party receives crafted residuals.

    A :class:`securegal.seam.ResidualChannel` on plaintext (``name``, ``setup_fields``, ``seal``,
    ``open``, ``report``); the feature parties see an ordinary plain run.
    """

    name = "crafted"

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    def setup_fields(self, party: str) -> Mapping[str, object]:
        return {"residuals": "plain"}

    def seal(self, residuals: np.ndarray, round: int, party: str) -> np.ndarray:
        from ..attacks.active_residuals import crafted_residuals

        n, k = np.shape(residuals)
        return crafted_residuals(n, k, round, self.seed)

    def open(self, payload, round: int, party: str, shape: tuple[int, ...]) -> np.ndarray:
        if not isinstance(payload, np.ndarray) or payload.shape != tuple(shape) or not np.isfinite(payload).all():
            raise ProtocolError(f"predictions of {party!r} in round {round}: expected finite plaintext {tuple(shape)}")
        return payload.astype(np.float64, copy=False)

    def reply_bytes(self, party: str, shape: tuple[int, ...]) -> int:
        return plain_bytes(shape)

    def report(self) -> dict:
        return {"malicious_label_owner": {"residuals": "crafted", "seed": self.seed}}


def train_crafted(out: Path | str, *, dataset: str | None = None, csv: str | Path | None = None,
                  target: str | None = None, parties: int = 4, rounds: int = 10, seed: int = 0,
                  epsilon: float | None = None, overwrite: bool = False, progress: bool = False,
                  id_column: str | None = None, columns=None) -> Path:
    """Train a federation whose label owner sends crafted residuals into ``out`` (with the
    evaluation-only ground truth the audit scores against); ``epsilon``: feature-DP budget,
    ``columns``: the CSV's public column knowledge for it (as ``securegal train --columns``)."""
    from .. import train
    from ..privacy.plan import FeatureDP, PrivacyPlan

    if epsilon is not None and not (isinstance(epsilon, (int, float)) and epsilon > 0):
        raise ConfigError(f"--epsilon must be > 0, got {epsilon!r}")
    plan = PrivacyPlan(feature_dp=FeatureDP(epsilon=float(epsilon))) if epsilon is not None else PrivacyPlan()
    train(dataset, csv=csv, target=target, parties=parties, rounds=rounds, seed=seed, out=out, overwrite=overwrite,
          ground_truth=True, progress=progress, plan=plan, channel=CraftedResiduals(seed + 1), id_column=id_column,
          columns=columns)
    return Path(out)


class CraftedPredictions:
    """A malicious feature party's trainer: the honest reply plus crafted pushes
    (:func:`securegal.attacks.active_predictions.crafted_pushes`) every round.

    Wraps the layer's own trainer, so it speaks whatever the label owner asked for: plaintext
    (plain, label-DP) or CKKS, where it adds the pushes to the encrypted reply with the public
    context (a party can encrypt, not decrypt). Test-time predictions stay honest.
    """

    def __init__(self, inner, seed: int = 0):
        self.inner, self.seed = inner, int(seed)
        self._shape: tuple[int, int] | None = None

    def setup(self, X_train: np.ndarray, setup) -> None:
        self.inner.setup(X_train, setup)
        self._shape = (X_train.shape[0], int(setup.n_outputs))

    def fit_round(self, round: int, residuals):
        from ..attacks.active_predictions import crafted_pushes

        reply = self.inner.fit_round(round, residuals)
        push = crafted_pushes(*self._shape, round, self.seed)
        if isinstance(reply, EncryptedPayload):
            return self._add_encrypted(reply, push, round)
        return np.asarray(reply, dtype=np.float64) + push

    def _add_encrypted(self, reply: EncryptedPayload, push: np.ndarray, round: int) -> EncryptedPayload:
        from ..privacy.he import wire

        ctx, layout = self.inner.context, self.inner.smoother.layout
        cts = [ctx.load_ciphertext(b, "own reply") for b in reply.blobs]
        for ct, values in zip(cts, layout.input_vectors(push), strict=True):
            ctx.evaluator.add_plain_inplace(ct, ctx.encode(values, ctx.level_of(ct), ct.scale))
        return wire.pack(ctx, "predictions", self.inner.name, round, self._shape, wire.serialize(cts), layout)

    def predict(self, X: np.ndarray, rounds: int):
        return self.inner.predict(X, rounds)

    def report(self) -> dict:
        return self.inner.report()


class CraftedPredictionTrainers:
    """A trainer choice (``(name, index, learner) -> factory``) where party ``index`` is malicious
    (:class:`CraftedPredictions` around the layer's trainer); the others are the layer's."""

    def __init__(self, inner, index: int = 1, seed: int = 0):
        self.inner, self.index, self.seed = inner, int(index), int(seed)

    def __call__(self, name: str, index: int, learner):
        factory = self.inner(name, index, learner)
        if index != self.index:
            return factory
        return lambda setup: CraftedPredictions(factory(setup), self.seed)


def train_crafted_predictions(out: Path | str, *, dataset: str | None = None, csv: str | Path | None = None,
                              target: str | None = None, parties: int = 4, rounds: int = 10, seed: int = 0,
                              residuals: str = "plain", label_epsilon: float | None = None,
                              overwrite: bool = False, progress: bool = False, id_column: str | None = None) -> Path:
    """Train a federation whose first feature party crafts its predictions into ``out`` (with the
    evaluation-only ground truth the audit scores against); ``residuals`` / ``label_epsilon``: the
    label owner's protection. ``metrics.json`` gets an ``active`` block naming the party."""
    from .. import train
    from ..privacy.plan import PrivacyPlan

    if parties < 2:
        raise ConfigError(f"crafted_predictions needs a feature party: --parties >= 2, got {parties}")
    plan = PrivacyPlan.from_options(residuals=residuals, label_epsilon=label_epsilon)
    party_seed = seed + 1
    metrics = train(dataset, csv=csv, target=target, parties=parties, rounds=rounds, seed=seed, out=out,
                    overwrite=overwrite, ground_truth=True, progress=progress, plan=plan, id_column=id_column,
                    trainers=CraftedPredictionTrainers(plan.trainers(), 1, party_seed))
    from ..attacks.active_predictions import AMPLITUDE, FRACTION

    metrics["active"] = {"attack": "crafted_predictions", "party": metrics["party_names"][1], "seed": party_seed,
                         "fraction": FRACTION, "amplitude": AMPLITUDE}
    write_json_atomic(Path(out) / "metrics.json", metrics)
    return Path(out)
