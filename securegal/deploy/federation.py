"""What every deployment shares: party names, the label owner's target scaling, and
:class:`GalJob`, one GAL training as the label owner runs it (settings plus the plan's layers).

A deployment decides only where the feature parties run and how bytes reach them
(:mod:`securegal.deploy.embedded`, :mod:`securegal.deploy.networked`); the round loop
(:class:`~securegal.parties.label_owner.LabelOwner`) and the party state machine
(:class:`~securegal.parties.feature_party.FeatureParty`) are the same everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from ..core.assistance import DEFAULT_ETA_MAX
from ..core.losses import make_loss
from ..data.datasets import Dataset
from ..data.split import Block, RowSplit
from ..learners.base import Learner
from ..learners.registry import make_learner
from ..metrics import metric_for
from ..parties.feature_party import FeatureParty
from ..parties.label_owner import LabelOwner, RoundResult
from ..parties.messenger import Messenger
from ..privacy.plain import plain_trainers
from ..privacy.plan import TrainerChoice
from ..messages import LABEL_OWNER
from ..seam import ResidualChannel


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


@dataclass
class GalJob:
    """One GAL training: the settings every deployment honours and the layers the plan built.

    ``channel`` and ``trainers`` come from :meth:`PrivacyPlan.channel` / :meth:`PrivacyPlan.trainers`
    (studies may replace them: noisy parties, a malicious label owner). ``own_trainers`` is the
    label owner's own block, always plain (it never releases anything).
    """

    learner: str
    seed: int
    rounds: int
    scaler: TargetScaler
    channel: ResidualChannel
    trainers: TrainerChoice = plain_trainers
    weighting: str = "learned"
    eta: float | None = None
    eta_max: float = DEFAULT_ETA_MAX
    learner_options: dict = field(default_factory=dict)
    local_loss: str | None = None
    min_parties: int = 1
    own_trainers: TrainerChoice = plain_trainers
    # DP parties' tables (embedded): public column knowledge (None: the dataset's documented one)
    # and where their ledgers persist (None: in memory, one run).
    columns: object = None
    ledger_dir: Path | None = None
    # The parties fit on all their rows and never learn which are used (PrivacyPlan.hidden_membership).
    hidden_membership: bool = False
    # Penalty of the label owner's per-party multipliers fitted on the validation rows after the
    # last round (PrivacyPlan.owner_policy; None: none).
    calibration: float | None = None
    # Under label-DP: the plain layer for the label owner's own exact-label Alone model, which the
    # calibration weighs too (OwnerPolicy.exact_alone; None: no such model).
    alone_channel: ResidualChannel | None = None

    @classmethod
    def from_plan(cls, plan, *, dataset: Dataset, n_train: int, parties: int, rounds: int,
                  weighting: str | None = None, eta: float | None = None, calibrate: bool | None = None,
                  owner: str | None = None, **settings) -> "GalJob":
        """The job the plan describes: its channel (preflighted on ``n_train`` rows), its trainer
        choice and its owner policy (weights and step under DP)."""
        policy = plan.owner_policy(parties=parties, rounds=rounds, weighting=weighting, eta=eta, calibrate=calibrate)
        channel = plan.channel(owner)
        if hasattr(channel, "preflight"):
            channel.preflight(n_train, rounds, dataset.loss)
        return cls(rounds=rounds, channel=channel, trainers=plan.trainers(), weighting=policy.weighting,
                   eta=policy.eta, hidden_membership=plan.hidden_membership, calibration=policy.calibration,
                   alone_channel=type(plan)().channel() if policy.exact_alone else None, **settings)

    def local_loss_for(self, dataset: Dataset) -> str:
        return self.local_loss or make_loss(dataset.loss, dataset.n_outputs).local_loss

    def label_owner(self, own: FeatureParty, dataset: Dataset, split: RowSplit, peers: list[str],
                    messenger: Messenger | None) -> LabelOwner:
        """The round loop for ``peers``: it aligns its rows with theirs by private set intersection
        (:mod:`securegal.align`) before setup, in every deployment."""
        from ..align import LabelOwnerPsi

        loss = make_loss(dataset.loss, dataset.n_outputs)
        return LabelOwner(own=own, train_ids=split.train, y_train=self.scaler.forward(dataset.y[split.train]),
                          loss=loss, peers=peers, messenger=messenger, channel=self.channel, rounds=self.rounds,
                          weighting=self.weighting, eta=self.eta, eta_max=self.eta_max,
                          min_parties=self.min_parties, task=dataset.task,
                          setup_options={"local_loss": self.local_loss_for(dataset)},
                          aligner=LabelOwnerPsi, align_ids=dataset.row_ids(),
                          eval_ids=np.concatenate([split.validation, split.test]),
                          hidden_membership=self.hidden_membership, calibration=self.calibration,
                          alone_channel=self.alone_channel)


def party_learner(dataset: Dataset, block: Block, index: int, job: GalJob) -> Learner:
    """Party ``index``'s fresh learner: the task's local loss unless the job overrides it."""
    return make_learner(job.learner, local_loss=job.local_loss_for(dataset), seed=job.seed * 1000 + index,
                        patch_shape=block.patch_shape, **job.learner_options)


@dataclass(frozen=True)
class MethodRun:
    """One trained method's scores in the original target units."""

    test: float
    per_round: list[float]
    validation_per_round: list[float]
    weights: list[list[float]]
    eta: list[float]
    parties: list[str]
    stopped: str | None
    absent: list[list[str]] = field(default_factory=list)  # per round: parties dropped from it
    missing_at_predict: list[str] = field(default_factory=list)
    multipliers: dict[str, float] = field(default_factory=dict)  # the owner policy's calibration
    outsized: dict[str, list[int]] = field(default_factory=dict)  # party -> rounds its predictions were no fit

    def as_dict(self) -> dict:
        d = {"test": self.test, "per_round": self.per_round, "validation_per_round": self.validation_per_round}
        if self.multipliers:
            d["multipliers"] = self.multipliers
        if self.stopped:
            d["stopped"] = self.stopped
        if any(self.absent):
            d["absent_per_round"] = self.absent
        if self.missing_at_predict:
            d["missing_at_predict"] = self.missing_at_predict
        if self.outsized:
            d["outsized_predictions"] = self.outsized
        return d


def _evaluate(owner: LabelOwner, dataset: Dataset, ids: np.ndarray, scaler: TargetScaler) -> list[float]:
    ids = owner.aligned(ids)  # rows some party lacks are not scored (they could not be predicted)
    if len(ids) == 0:
        return []
    _, score = metric_for(dataset.task)
    F = owner.predict_rounds(ids)
    return [score(dataset.y[ids], scaler.inverse(F[t])) for t in range(1, F.shape[0])]


def run_method(owner: LabelOwner, dataset: Dataset, split: RowSplit, scaler: TargetScaler,
               on_round: Callable[[RoundResult], None] | None = None,
               start: Callable[[LabelOwner], None] = LabelOwner.setup,
               before_finish: Callable[[LabelOwner], None] | None = None) -> MethodRun:
    """Set up (or ``start`` otherwise, e.g. resume), fit, evaluate on validation and test, and
    close one federation (``before_finish`` is called just before the parties are told: a
    checkpoint notes it)."""
    try:
        start(owner)
        model = owner.fit(on_round)
        if owner.calibration is not None:
            rows = owner.aligned(split.validation)
            owner.calibrate(rows, scaler.forward(dataset.y[rows]))
        test = _evaluate(owner, dataset, split.test, scaler)
        val = _evaluate(owner, dataset, split.validation, scaler)
        if before_finish is not None:
            before_finish(owner)
        owner.finish()
    finally:
        if owner.messenger is not None:
            owner.messenger.close()
    names = list(model.parties)
    if not test:  # stopped before the first round: the score of F0 alone
        _, score = metric_for(dataset.task)
        rows = owner.aligned(split.test)
        F0 = np.tile(model.init, (len(rows), 1))
        test = [score(dataset.y[rows], scaler.inverse(F0))]
    return MethodRun(test[-1], test, val, [[r.weights.get(p, 0.0) for p in names] for r in model.rounds],
                     [r.eta for r in model.rounds], names, model.stopped, [list(r.absent) for r in model.rounds],
                     sorted(model.missing_at_predict), dict(model.multipliers),
                     {p: list(ts) for p, ts in model.outsized.items()})


class Deployment(Protocol):
    """Where the feature parties run. ``blocks`` cuts the label owner's view of the columns,
    ``build`` returns a ready :class:`LabelOwner` and ``run`` starts, fits, evaluates and closes
    it (:func:`run_method`, plus checkpoints where the deployment keeps them). ``local_parties``:
    the feature parties are built in this process from the plan (else each runs its own);
    ``supports``: which of ``train``'s options that need every party's data here (``baselines``,
    ``ground_truth``) it honours; ``train`` refuses the others."""

    name: str
    local_parties: bool
    supports: frozenset[str]

    def blocks(self, dataset: Dataset, parties: int) -> list[Block]: ...

    def build(self, job: GalJob, dataset: Dataset, split: RowSplit, blocks: list[Block], *,
              run_dir=None) -> LabelOwner: ...

    def run(self, owner: LabelOwner, dataset: Dataset, split: RowSplit, scaler: TargetScaler,
            on_round=None): ...
