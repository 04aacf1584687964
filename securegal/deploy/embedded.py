"""The embedded deployment: the label owner plus M-1 feature parties in this process, every message
still encoded with the wire codec and recorded in per-party transcripts."""
from __future__ import annotations

import secrets
from pathlib import Path

from ..align import FeaturePartyPsi
from ..data.datasets import Dataset
from ..data.split import Block, RowSplit, party_tables, vertical_split
from ..parties.endpoint import PartyEndpoint
from ..parties.feature_party import FeatureParty
from ..parties.label_owner import LabelOwner
from ..parties.messenger import Messenger
from ..transcript import TranscriptWriter
from ..transport.inprocess import InProcessTransport
from .federation import LABEL_OWNER, GalJob, MethodRun, TargetScaler, party_learner, party_names, run_method


class EmbeddedDeployment:
    """Every party in this process: the default, and what the tests and baselines use."""

    name = "embedded"
    # What this deployment honours beyond the common job; other deployments refuse what they cannot.
    supports = frozenset({"baselines", "ground_truth", "parties", "dataset"})

    def blocks(self, dataset: Dataset, parties: int) -> list[Block]:
        return vertical_split(dataset, parties)

    def build(self, job: GalJob, dataset: Dataset, split: RowSplit, blocks: list[Block], *,
              run_dir: Path | None = None) -> LabelOwner:
        """A ready-to-run :class:`LabelOwner` whose peers are in-process feature parties."""
        names = party_names(len(blocks))
        tables = party_tables(dataset, blocks)

        def writer(name: str) -> TranscriptWriter | None:
            return TranscriptWriter(run_dir / "transcripts" / name, name) if run_dir is not None else None

        endpoints = {}
        ids = dataset.row_ids()
        for i in range(1, len(blocks)):
            learner = party_learner(dataset, blocks[i], i, job)
            party = FeatureParty(names[i], tables[i], job.trainers(names[i], i, learner), label_owner=LABEL_OWNER,
                                 aligner=lambda session, ids=ids: FeaturePartyPsi(ids, session))
            endpoints[names[i]] = PartyEndpoint(party, writer(names[i]))
        own = FeatureParty(LABEL_OWNER, tables[0], job.own_trainers(LABEL_OWNER, 0, party_learner(dataset, blocks[0], 0, job)))
        messenger = None
        if endpoints:
            transport = InProcessTransport({n: ep.handle for n, ep in endpoints.items()},
                                           on_close=lambda: [ep.close() for ep in endpoints.values()])
            messenger = Messenger(LABEL_OWNER, secrets.token_hex(8), transport, writer(LABEL_OWNER))
        return job.label_owner(own, dataset, split, names[1:], messenger)

    def run(self, owner: LabelOwner, dataset: Dataset, split: RowSplit, scaler: TargetScaler,
            on_round=None) -> MethodRun:
        return run_method(owner, dataset, split, scaler, on_round)
