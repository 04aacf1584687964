"""The embedded deployment: the label owner plus M-1 feature parties in this process, every message
still encoded with the wire codec and recorded in per-party transcripts."""
from __future__ import annotations

import secrets
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..align import FeaturePartyPsi
from ..data.datasets import Dataset
from ..data.parquet_table import ParquetTable
from ..data.split import Block, RowSplit, party_tables, vertical_split
from ..data.tables import FeatureTable
from ..parties.endpoint import PartyEndpoint
from ..parties.feature_party import FeatureParty
from ..parties.label_owner import LabelOwner
from ..parties.messenger import Messenger
from ..parties.policy import PartyPolicy
from ..privacy.plain import check_streamable
from ..transcript import TranscriptWriter
from ..transport.inprocess import InProcessTransport
from .federation import LABEL_OWNER, GalJob, MethodRun, TargetScaler, party_learner, party_names, run_method


def table_privacy(job: GalJob, dataset: Dataset, block: Block, name: str, table, ids=None):
    """A DP party's ledger and column map for this run (None for a party without feature-DP):
    in memory, or ``<job.ledger_dir>/<name>.securegal-ledger.json`` (``securegal train --ledger``).
    Columns: ``job.columns`` (a ColumnSpec for the whole dataset, or {party name: ColumnSpec of
    its own table} with one table per organization) or the built-in dataset's documented ones."""
    if not hasattr(job.trainers, "open_table"):
        return None
    from ..errors import ConfigError
    from ..privacy.dp.documented import documented_columns
    from ..privacy.dp.ledger import table_identity

    path = job.ledger_dir / f"{name}.securegal-ledger.json" if job.ledger_dir is not None else None
    fingerprint, formerly = table_identity(table.ids if ids is None else ids, table.X, keys=table.ids)
    if isinstance(job.columns, dict):  # one table per organization: each party's own declaration
        if name not in job.columns:
            raise ConfigError(f"feature-DP party {name!r} has no column declaration (--columns: one [NAME] per party)")
        return job.trainers.open_table(name, fingerprint, job.columns[name], ledger_path=path, formerly=formerly,
                                       n_rows=len(table.X))
    columns = job.columns or documented_columns(dataset.name, dataset.X.shape[1],
                                                job.trainers.config_for(name).epsilon)
    if columns is None:
        raise ConfigError(f"feature-DP on {dataset.name!r} needs public per-column bounds or centres/scales "
                          "(docs/privacy.md section 6): --columns FILE (train(columns=ColumnSpec(...)); with "
                          "--label-owner/--party one [NAME] table per party), or [privacy.columns] in each "
                          "party.toml when networked")
    if columns.d != dataset.X.shape[1]:
        names = f" ({', '.join(dataset.columns[:20])})" if dataset.columns else ""
        raise ConfigError(f"the column declaration has {columns.d} columns, {dataset.name!r} has "
                          f"{dataset.X.shape[1]} feature columns{names}")
    return job.trainers.open_table(name, fingerprint, columns.select(block.columns), ledger_path=path,
                                   formerly=formerly, n_rows=len(table.X))


def _check_predictable(party: FeatureParty, ids: np.ndarray) -> None:
    """Refuse, before anything is spent, a run whose validation and test rows ``ids`` a DP party
    would not predict for: rows an earlier run on its ledger trained on or disclosed."""
    from ..errors import PolicyRefused

    try:
        party.check_predictable(ids)
    except PolicyRefused as exc:
        ledger = party.privacy.ledger
        raise PolicyRefused(f"party {party.name!r} would not predict this run's validation and test rows, so the "
                            f"run would spend its budget on models nobody can evaluate: {exc}. An earlier run on "
                            "this --ledger used them; with the same split (--seed), --dp-predict non-training "
                            f"answers them again (the table has epsilon {ledger.remaining():.4g} of "
                            f"{ledger.budget.epsilon:.4g} left)") from exc


class EmbeddedDeployment:
    """Every party in this process: the default, and what the tests and baselines use.

    Without ``tables`` the parties are the column blocks of one dataset (demos and studies). With
    ``tables`` ({name: :class:`~securegal.data.party_file.PartyTable`}) each feature party holds
    its own table under its own IDs, and the label owner (named ``owner``) holds the dataset's
    rows under the dataset's IDs: the alignment is a real private set intersection.

    A table may be a :class:`~securegal.data.parquet_table.ParquetTable`: that party streams it
    (out of core; linear l2 learner, plain residuals or label-DP, no feature-DP, no baselines:
    anything else is refused with a ConfigError when the federation is built).

    ``psi=False``: no private set intersection, the parties are addressed by row index; only
    where every party already holds the same rows in the same order (column blocks of one
    dataset, or own tables with exactly the label owner's rows). For benchmarks that time GAL
    itself; PSI has its own (benchmarks/test_psi.py).
    """

    name = "embedded"
    # What this deployment honours beyond the common job; other deployments refuse what they cannot.
    local_parties = True
    supports = frozenset({"baselines", "ground_truth"})

    def __init__(self, tables: dict | None = None, owner: str = LABEL_OWNER, psi: bool = True):
        from ..errors import ConfigError
        from ..transcript import check_party_name

        if tables is not None and not isinstance(tables, dict):
            raise ConfigError(f"tables must be a dict {{party name: table}}, got a {type(tables).__name__}")
        if tables is not None and not tables:  # {} would silently become the column-block deployment
            raise ConfigError("tables is empty: give at least one feature party's table, or leave tables out "
                              "for the column blocks of one dataset")
        self.tables, self.owner, self.psi = dict(tables or {}), check_party_name(owner), psi
        for name, table in self.tables.items():
            check_party_name(name)
            if not hasattr(table, "ids") or not hasattr(table, "columns"):
                raise ConfigError(f"table {name!r} must be a PartyTable (securegal.data.party_file.read_party_file) "
                                  f"or a ParquetTable, got a {type(table).__name__}"
                                  + (": write the frame to a CSV or Parquet file and read it with read_party_file"
                                     if hasattr(table, "to_csv") else ""))
        if owner in self.tables:  # one transcript directory for two organizations, unreadable afterwards
            raise ConfigError(f"the label owner and a feature party are both named {owner!r}: organizations need "
                              "distinct names")

    def names(self, parties: int) -> list[str]:
        if self.tables and parties != 1 + len(self.tables):  # it was ignored and recorded in metrics.json
            from ..errors import ConfigError
            raise ConfigError(f"--parties {parties}: with one table per organization there are 1 + "
                              f"{len(self.tables)} = {1 + len(self.tables)} parties (the label owner and each table)")
        return [self.owner, *self.tables] if self.tables else [self.owner, *party_names(parties)[1:]]

    def blocks(self, dataset: Dataset, parties: int) -> list[Block]:
        if self.tables:  # each organization's own columns (the label owner's are the dataset's)
            return [Block(np.arange(dataset.X.shape[1]))] + [Block(np.arange(len(t.columns)))
                                                             for t in self.tables.values()]
        return vertical_split(dataset, parties)

    def joined(self, dataset: Dataset) -> Dataset:
        """The Joint baseline's data: every organization's columns side by side for the label
        owner's rows, matched by ID (evaluation only: one process holds every table here). Rows
        some party lacks are zeros; the baselines use only rows every party holds."""
        streamed = [name for name, t in self.tables.items() if isinstance(t, ParquetTable)]
        if streamed:
            from ..errors import ConfigError
            raise ConfigError(f"the baselines need every table in memory; {streamed[0]!r} streams its table")
        owner_ids = pd.Index(dataset.row_ids())
        blocks = [dataset.X]
        for table in self.tables.values():
            pos = pd.Index(table.ids).get_indexer(owner_ids)
            block = np.zeros((len(owner_ids), table.X.shape[1]))
            block[pos >= 0] = table.X[pos[pos >= 0]]
            blocks.append(block)
        return replace(dataset, X=np.hstack(blocks), columns=None)

    def build(self, job: GalJob, dataset: Dataset, split: RowSplit, blocks: list[Block], *,
              run_dir: Path | None = None) -> LabelOwner:
        """A ready-to-run :class:`LabelOwner` whose peers are in-process feature parties."""
        names = self.names(len(blocks))
        if self.tables and len(blocks) == 1 + len(self.tables):
            self._check_tables(job, dataset)
            tables = [FeatureTable(np.arange(len(dataset.y), dtype=np.int64), dataset.X)] + [
                t if isinstance(t, ParquetTable) else FeatureTable(np.arange(len(t.ids), dtype=np.int64), t.X)
                for t in self.tables.values()]
            # a streamed table's IDs are read from it when a session aligns (None here)
            row_ids = [dataset.row_ids()] + [None if isinstance(t, ParquetTable) else t.ids for t in self.tables.values()]
        else:
            tables = party_tables(dataset, blocks)
            row_ids = [dataset.row_ids()] * len(blocks)

        def writer(name: str) -> TranscriptWriter | None:
            return TranscriptWriter(run_dir / "transcripts" / name, name) if run_dir is not None else None

        endpoints = {}
        owner = names[0]
        try:
            for i in range(1, len(blocks)):
                learner = party_learner(dataset, blocks[i], i, job)
                factory = job.trainers(names[i], i, learner)
                privacy = table_privacy(job, dataset, blocks[i], names[i], tables[i], row_ids[i])
                party = FeatureParty(names[i], tables[i], factory, label_owner=owner,
                                     aligner=(lambda session, ids=row_ids[i], table=tables[i]:
                                              FeaturePartyPsi(table.ids if ids is None else ids, session))
                                     if self.psi else None,
                                     ids=row_ids[i], privacy=privacy,
                                     policy=PartyPolicy(predict=job.trainers.predict) if privacy is not None else None)
                endpoints[names[i]] = PartyEndpoint(party, writer(names[i]))
                _check_predictable(party, dataset.row_ids()[np.concatenate([split.validation, split.test])])
        except BaseException:  # release the ledgers already opened
            for ep in endpoints.values():
                ep.close()
            raise
        own = FeatureParty(owner, tables[0], job.own_trainers(owner, 0, party_learner(dataset, blocks[0], 0, job)))
        messenger = None
        if endpoints:
            transport = InProcessTransport({n: ep.handle for n, ep in endpoints.items()},
                                           on_close=lambda: [ep.close() for ep in endpoints.values()])
            messenger = Messenger(owner, secrets.token_hex(8), transport, writer(owner))
        owner_loop = job.label_owner(own, dataset, split, names[1:], messenger)
        if not self.psi:
            owner_loop.aligner = None
        return owner_loop

    def _check_tables(self, job: GalJob, dataset: Dataset) -> None:
        """Refuse what the own tables cannot honour: rows not aligned without PSI, and for a
        streamed table anything but the linear l2 learner on plain residuals without feature-DP."""
        from ..errors import ConfigError

        for name, table in self.tables.items():
            rows = table.n_rows if isinstance(table, ParquetTable) else len(table.ids)
            if not self.psi and rows != len(dataset.y):
                raise ConfigError(f"psi=False needs every table to hold the label owner's {len(dataset.y)} rows in "
                                  f"its order; {name!r} holds {rows}")
            if not isinstance(table, ParquetTable):
                continue
            check_streamable(f"party {name!r}", job.learner, job.local_loss_for(dataset),
                             getattr(job.channel, "name", type(job.channel).__name__), hasattr(job.trainers, "open_table"))

    def run(self, owner: LabelOwner, dataset: Dataset, split: RowSplit, scaler: TargetScaler,
            on_round=None) -> MethodRun:
        return run_method(owner, dataset, split, scaler, on_round)
