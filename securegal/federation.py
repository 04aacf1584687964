"""Assemble an embedded federation: the label owner plus M-1 feature parties in this process,
every message still encoded with the wire codec and recorded in per-party transcripts."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .core.losses import make_loss
from .data.datasets import Dataset
from .data.split import Block, RowSplit, party_tables
from .learners.base import Learner
from .learners.registry import make_learner
from .parties.endpoint import PartyEndpoint
from .parties.feature_party import FeatureParty, TrainerFactory
from .parties.label_owner import LabelOwner
from .parties.layers import PlainTrainer, ResidualChannel
from .parties.messenger import Messenger
from .transcript import TranscriptWriter
from .transport.inprocess import InProcessTransport

LABEL_OWNER = "alice"

# (party name, party index, learner) -> the factory that builds the party's trainer at setup.
TrainerChoice = Callable[[str, int, Learner], TrainerFactory]


def plain_trainers(name: str, index: int, learner: Learner) -> TrainerFactory:
    return lambda setup: PlainTrainer(learner)


def party_names(parties: int) -> list[str]:
    return [LABEL_OWNER] + [f"party{i}" for i in range(1, parties)]


@dataclass(frozen=True)
class TargetScaler:
    """The label owner standardizes regression targets privately; metrics use the original scale."""

    mean: float = 0.0
    scale: float = 1.0

    @classmethod
    def fit(cls, dataset: Dataset, y_train: np.ndarray) -> "TargetScaler":
        if dataset.task != "regression":
            return cls()
        sd = float(np.std(y_train))
        return cls(float(np.mean(y_train)), sd if sd > 0 else 1.0)

    def forward(self, y: np.ndarray) -> np.ndarray:
        return (y - self.mean) / self.scale if self.scale != 1.0 or self.mean != 0.0 else y

    def inverse(self, F: np.ndarray) -> np.ndarray:
        return F * self.scale + self.mean


def party_learner(dataset: Dataset, block: Block, index: int, *, learner: str, seed: int,
                  local_loss: str | None = None, learner_options: dict | None = None) -> Learner:
    """Party ``index``'s fresh learner: the task's local loss unless ``local_loss`` overrides it."""
    default_loss = make_loss(dataset.loss, dataset.n_outputs).local_loss
    return make_learner(learner, local_loss=local_loss or default_loss, seed=seed * 1000 + index,
                        patch_shape=block.patch_shape, **(learner_options or {}))


def check_trainers(dataset: Dataset, blocks: list[Block], trainers: TrainerChoice, **learner_args) -> None:
    """Let ``trainers`` refuse each feature party's learner (e.g. CKKS needs a linear smoother)
    before anything is written or sent."""
    for i in range(1, len(blocks)):
        trainers(party_names(len(blocks))[i], i, party_learner(dataset, blocks[i], i, **learner_args))


def build_embedded(dataset: Dataset, split: RowSplit, blocks: list[Block], *, learner: str, seed: int, rounds: int,
                   scaler: TargetScaler, channel: ResidualChannel | None = None,
                   trainers: TrainerChoice = plain_trainers, run_dir: Path | None = None,
                   weighting: str = "learned", eta: float | None = None, eta_max: float = 10.0,
                   learner_options: dict | None = None, local_loss: str | None = None) -> LabelOwner:
    """A ready-to-run :class:`LabelOwner` whose peers are in-process feature parties."""
    loss = make_loss(dataset.loss, dataset.n_outputs)
    names = party_names(len(blocks))
    tables = party_tables(dataset, blocks)
    session = secrets.token_hex(8)

    def learner_for(i: int) -> Learner:
        return party_learner(dataset, blocks[i], i, learner=learner, seed=seed, local_loss=local_loss,
                             learner_options=learner_options)

    def writer(name: str) -> TranscriptWriter | None:
        return TranscriptWriter(run_dir / "transcripts" / name, name) if run_dir is not None else None

    endpoints = {}
    for i in range(1, len(blocks)):
        party = FeatureParty(names[i], tables[i], trainers(names[i], i, learner_for(i)), label_owner=LABEL_OWNER)
        endpoints[names[i]] = PartyEndpoint(party, writer(names[i]))
    own = FeatureParty(LABEL_OWNER, tables[0], plain_trainers(LABEL_OWNER, 0, learner_for(0)))
    messenger = Messenger(LABEL_OWNER, session, InProcessTransport(endpoints), writer(LABEL_OWNER)) if endpoints else None
    y_train = scaler.forward(dataset.y[split.train])
    return LabelOwner(own=own, train_ids=split.train, y_train=y_train, loss=loss, peers=names[1:], messenger=messenger,
                      channel=channel, rounds=rounds, weighting=weighting, eta=eta, eta_max=eta_max, task=dataset.task)
