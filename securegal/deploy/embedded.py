"""The embedded deployment: the label owner plus M-1 feature parties in this process, every message
still encoded with the wire codec and recorded in per-party transcripts."""
from __future__ import annotations

import secrets
from pathlib import Path

from ..data.datasets import Dataset
from ..data.split import Block, RowSplit, party_tables, vertical_split
from ..parties.endpoint import PartyEndpoint
from ..parties.feature_party import FeatureParty
from ..parties.label_owner import LabelOwner
from ..parties.messenger import Messenger
from ..transcript import TranscriptWriter
from ..transport.inprocess import InProcessTransport
from .federation import LABEL_OWNER, GalJob, MethodRun, TargetScaler, party_learner, party_names, run_method


def table_privacy(job: GalJob, dataset: Dataset, block: Block, name: str, table):
    """A DP party's ledger and column map for this run (None for a party without feature-DP):
    in memory, or ``<job.ledger_dir>/<name>.securegal-ledger.json`` (``securegal train --ledger``).
    Columns: ``job.columns`` (for the whole dataset) or the built-in dataset's documented ones."""
    if not hasattr(job.trainers, "open_table"):
        return None
    from ..errors import ConfigError
    from ..privacy.dp.documented import documented_columns
    from ..privacy.dp.ledger import table_fingerprint

    columns = job.columns or documented_columns(dataset.name, dataset.X.shape[1],
                                                job.trainers.config_for(name).epsilon)
    if columns is None:
        raise ConfigError(f"feature-DP on {dataset.name!r} needs public per-column bounds or centres/scales "
                          "(docs/privacy.md section 6): --columns FILE (train(columns=ColumnSpec(...))), or "
                          "[privacy.columns] in each party.toml when networked")
    if columns.d != dataset.X.shape[1]:
        raise ConfigError(f"the column declaration has {columns.d} columns, {dataset.name!r} has "
                          f"{dataset.X.shape[1]} feature columns")
    path = job.ledger_dir / f"{name}.securegal-ledger.json" if job.ledger_dir is not None else None
    return job.trainers.open_table(name, table_fingerprint(table.ids, table.X), columns.select(block.columns),
                                   ledger_path=path)


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
        try:
            for i in range(1, len(blocks)):
                learner = party_learner(dataset, blocks[i], i, job)
                factory = job.trainers(names[i], i, learner)
                party = FeatureParty(names[i], tables[i], factory, label_owner=LABEL_OWNER,
                                     privacy=table_privacy(job, dataset, blocks[i], names[i], tables[i]))
                endpoints[names[i]] = PartyEndpoint(party, writer(names[i]))
        except BaseException:  # release the ledgers already opened
            for ep in endpoints.values():
                ep.close()
            raise
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
