"""A feature party as its own process: ``securegal party serve --config party.toml``.

The party builds its trainer through its own :class:`~securegal.privacy.plan.PrivacyPlan` (from
``[privacy]``): the same layers, defaults and checks as an embedded run. Every check that can run
at start-up runs at start-up: the config schema, the learner and its options, the plan against
the learner, TLS files, and the listen address.
"""
from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..align import FeaturePartyPsi
from ..data.datasets import load_dataset
from ..data.parquet_table import ParquetTable
from ..data.party_file import read_party_file
from ..data.split import party_tables, vertical_split
from ..data.tables import FeatureTable
from ..errors import ConfigError
from ..files import private_dir
from ..learners.registry import make_learner
from ..parties.endpoint import PartyEndpoint
from ..parties.feature_party import HIDDEN, MEMBERSHIP_OPTION, FeatureParty
from ..parties.policy import SESSION_TIMEOUT, PartyPolicy
from ..privacy.dp.accountant import Budget
from ..privacy.dp.table import ColumnSpec
from ..privacy.plain import check_streamable
from ..privacy.plan import PrivacyPlan
from ..transcript import TranscriptWriter
from ..transport.address import split_address
from ..transport.certs import check_org_name
from ..transport.frames import FrameLimits
from ..wire.codec import Limits
from . import config as schema
from .middleware import privacy_reports, same_builtin_dataset
from .ready import ready_line
from .tls import TlsConfig

log = logging.getLogger(__name__)


def check_listen(address: str, where: str) -> str:
    """``host:port`` with a port in 0..65535 (0: any free port); ConfigError otherwise."""
    split_address(address, f"{where}: listen", any_port=True)
    return address


def _table(data: schema.PartyData, base: Path, columns: ColumnSpec | None, private: bool) \
        -> tuple[FeatureTable | ParquetTable, np.ndarray]:
    """The party's table keyed by row number (streamed: a ParquetTable), and each row's own ID
    (what the PSI aligns). A DP party (``private``) fills missing cells with the centres of its
    ``columns``, never its rows' median."""
    if data.stream:
        table = ParquetTable.open(base / data.csv, data.id_column)
        return table, table.ids
    if data.csv is not None:
        table = read_party_file(base / data.csv, data.id_column, missing=data.missing, private=private,
                                centres=None if columns is None else columns.declared().centre)
        return FeatureTable(np.arange(len(table.ids), dtype=np.int64), table.X), np.asarray(table.ids)
    dataset = load_dataset(data.dataset)
    blocks = vertical_split(dataset, data.parties)
    table = party_tables(dataset, [blocks[data.block]])[0]
    return table, table.ids


def _plan(p: schema.PartyPrivacy) -> PrivacyPlan:
    if p.residuals == "ckks" and p.residual_clip is not None:
        raise ConfigError("residual_clip is the label owner's under ckks (it clips before encrypting: federation.toml "
                          "residual_clip); drop it from party.toml")
    return PrivacyPlan.from_options(residuals=p.residuals, epsilon=p.epsilon, delta=p.delta, accountant=p.accountant,
                                    feature_clip=p.feature_clip, residual_clip=p.residual_clip,
                                    prediction_clip=p.prediction_clip, feedback=p.feedback, noise_seed=p.noise_seed)


def _check_stream(f: schema.PartyFile) -> None:
    """What a party streaming its table cannot honour, refused at start-up."""
    if not f.data.stream:
        return
    if "plain" not in f.policy.residuals:
        raise ConfigError(f"this party (data.stream = true) streams its table, which runs only plain residuals, "
                          f"but its [policy] residuals = {list(f.policy.residuals)} accepts none")
    check_streamable("this party (data.stream = true)", f.learner.name, f.learner.local_loss or "l2",
                     f.privacy.residuals, f.privacy.epsilon is not None)


def _policy(section: schema.PolicySection, learner: str, residuals: str) -> PartyPolicy:
    """The party's policy, refused at start-up when it excludes what the party itself runs (its
    learner, its ``[privacy] residuals``): every session would be refused."""
    policy = PartyPolicy(min_rows=section.min_rows, max_sessions=section.max_sessions, max_psi_ids=section.max_psi_ids,
                         residuals=tuple(section.residuals),
                         learners=None if section.learners is None else tuple(section.learners),
                         predict=section.predict)
    policy.check_learner(learner)
    if residuals not in policy.residuals:
        raise ConfigError(f"[privacy] residuals {residuals!r} is not among the policy's residuals "
                          f"{list(policy.residuals)}: every session would be refused")
    return policy


def _columns(f: schema.PartyFile, plan: PrivacyPlan) -> ColumnSpec | None:
    """The DP party's public column knowledge, if it has any (None without feature-DP)."""
    p = f.privacy
    if plan.feature_dp is None:
        given = [k for k in ("ledger", "session_epsilon", "columns") if getattr(p, k) is not None]
        if given:
            raise ConfigError(f"privacy.{given[0]} set without a DP budget (privacy.epsilon)")
        return None
    if p.columns is not None:
        c = p.columns
        return ColumnSpec(c.lower, c.upper, c.centre, c.scale, c.dp_epsilon)
    if f.data.dataset is not None:
        from ..privacy.dp.documented import documented_columns

        full = documented_columns(f.data.dataset, load_dataset(f.data.dataset).X.shape[1], plan.feature_dp.epsilon)
        return full.select(vertical_split(load_dataset(f.data.dataset), f.data.parties)[f.data.block].columns) \
            if full is not None else None
    return None


def _ledger(f: schema.PartyFile, plan: PrivacyPlan, columns: ColumnSpec | None, table: FeatureTable, base: Path) \
        -> Path | None:
    """The DP party's ledger path, once its columns are declared and match its table (None
    without feature-DP)."""
    if plan.feature_dp is None:
        return None
    if columns is None:
        raise ConfigError("a DP party standardizes with public column knowledge, never its exact training "
                          "statistics: declare [privacy.columns] lower/upper or centre/scale (docs/privacy.md 6)")
    p = f.privacy
    if columns.d != table.X.shape[1]:
        raise ConfigError(f"[privacy.columns] declares {columns.d} columns, the table has {table.X.shape[1]}")
    Budget(plan.feature_dp.epsilon, plan.feature_dp.delta).check_rows(len(table.ids))
    if p.ledger is not None:
        ledger = base / p.ledger
    elif f.data.csv is not None:
        ledger = base / (f.data.csv + ".securegal-ledger.json")
    elif f.transcripts is not None:
        ledger = base / f.transcripts / f"{f.name}.securegal-ledger.json"
    else:
        raise ConfigError("a DP party on a built-in dataset needs privacy.ledger (or transcripts, beside which "
                          "the ledger defaults): the table's lifetime budget is kept there")
    return ledger


@dataclass(frozen=True)
class PartyConfig:
    """One feature party's ``party.toml``, validated and loaded."""

    name: str
    label_owner: str
    listen: str
    table: FeatureTable | ParquetTable
    learner: str
    learner_seed: int
    local_loss: str | None
    learner_options: dict
    plan: PrivacyPlan
    tls: TlsConfig
    limits: FrameLimits
    transcripts: Path | None
    session_timeout: float = SESSION_TIMEOUT
    ids: np.ndarray | None = None  # each row's own ID (strings or integers); default the table's keys
    policy: PartyPolicy = PartyPolicy()
    ledger: Path | None = None  # DP: the table's ledger file
    columns: ColumnSpec | None = None  # DP: public column knowledge for standardization
    session_epsilon: float | None = None
    dataset: str | None = None  # the built-in dataset it serves (demos), checked against the label owner's

    @classmethod
    def load(cls, path: str | Path, insecure: bool = False) -> "PartyConfig":
        path = Path(path)
        f, _ = schema.read(path, schema.PartyFile)
        base = path.resolve().parent
        where = str(path)
        try:
            name, label_owner = check_org_name(f.name), check_org_name(f.label_owner)
            _check_stream(f)
            plan = _plan(f.privacy)
            plan.check_learner(f.learner.name)
            columns = _columns(f, plan)
            table, ids = _table(f.data, base, columns, private=plan.feature_dp is not None)
            make_learner(f.learner.name, local_loss=f.learner.local_loss or "l2", seed=f.learner.seed,
                         patch_shape=table.patch_shape, **f.learner.options)
            policy = _policy(f.policy, f.learner.name, plan.residuals)
            ledger = _ledger(f, plan, columns, table, base)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        return cls(name, label_owner, check_listen(f.listen, where), table, f.learner.name, f.learner.seed,
                   f.learner.local_loss, dict(f.learner.options), plan,
                   TlsConfig.build(f.tls, name, where, base, insecure),
                   FrameLimits(chunk_bytes=f.limits.chunk_bytes, max_message_bytes=f.limits.max_message_bytes),
                   (base / f.transcripts) if f.transcripts else None, f.limits.session_timeout, ids,
                   policy, ledger, columns, f.privacy.session_epsilon, f.data.dataset)


def open_table_privacy(cfg: PartyConfig):
    """A DP party's ledger (opened and locked for the process's life: a second process serving
    the same table refuses to start) and column map; None without feature-DP."""
    if cfg.plan.feature_dp is None:
        return None
    from ..privacy.dp.ledger import table_identity
    from ..privacy.dp.table import open_table

    dp = cfg.plan.feature_dp
    if cfg.transcripts is not None and cfg.ledger.parent == cfg.transcripts:  # the default beside them
        private_dir(cfg.transcripts)
    elif not cfg.ledger.parent.is_dir():  # not made here: a mistyped directory would hold a fresh budget
        raise ConfigError(f"[privacy] ledger {cfg.ledger}: directory {cfg.ledger.parent} does not exist")
    own_ids = cfg.table.ids if cfg.ids is None else cfg.ids
    fingerprint, formerly = table_identity(own_ids, cfg.table.X, keys=cfg.table.ids)
    return open_table(fingerprint, Budget(dp.epsilon, dp.delta), dp.accountant, cfg.columns, ledger_path=cfg.ledger,
                      session_epsilon=cfg.session_epsilon, seed=dp.seed, n_rows=len(cfg.table.ids),
                      formerly=formerly)


def build_party(cfg: PartyConfig) -> PartyEndpoint:
    """The party's state machine behind the codec, with its transcript (if configured) and, for a
    DP party, its table's ledger and the privacy-report middleware."""
    trainers = cfg.plan.trainers()
    # Hidden membership takes every prediction from DP feedback: a party that left feedback to its
    # default turns it on for such a session, as the embedded plan does (PrivacyPlan.trainers).
    dp_default_feedback = cfg.plan.feature_dp is not None and cfg.plan.feature_dp.feedback is None \
        and cfg.plan.residuals == "ckks"
    hidden_trainers = replace(cfg.plan, hidden_membership=True).trainers() if dp_default_feedback else trainers

    def factory(setup):
        local_loss = cfg.local_loss or setup.options.get("local_loss", "l2")
        learner = make_learner(cfg.learner, local_loss=local_loss, seed=cfg.learner_seed,
                               patch_shape=cfg.table.patch_shape, **cfg.learner_options)
        hidden = dict(setup.options or {}).get(MEMBERSHIP_OPTION) == HIDDEN
        return (hidden_trainers if hidden else trainers)(cfg.name, 0, learner)(setup)

    ids = cfg.table.ids if cfg.ids is None else cfg.ids
    party = FeatureParty(cfg.name, cfg.table, factory, label_owner=cfg.label_owner,
                         session_timeout=cfg.session_timeout, ids=ids,
                         aligner=lambda session: FeaturePartyPsi(ids, session),
                         policy=cfg.policy, privacy=open_table_privacy(cfg), max_reply_bytes=cfg.limits.max_message_bytes)
    def report() -> dict:  # nothing before a session's setup (e.g. Finish right after alignment)
        return party.trainer.report() if party.trainer is not None else {}

    middleware = [lambda handle: privacy_reports(handle, report)] if cfg.plan.feature_dp is not None else []
    if cfg.dataset is not None:
        middleware.append(lambda handle: same_builtin_dataset(handle, cfg.dataset))
    writer = TranscriptWriter(cfg.transcripts, cfg.name) if cfg.transcripts is not None else None
    return PartyEndpoint(party, writer, Limits(max_message_bytes=cfg.limits.max_message_bytes), middleware)


def serve_party(cfg: PartyConfig, *, once: bool = False, stop: threading.Event | None = None,
                on_ready: Callable[[int], None] | None = None, client: str | None = None) -> None:
    """Serve until ``stop`` is set (SIGTERM/SIGINT from the CLI) or, with ``once``, the session
    finished or the label owner's first request was refused (e.g. a Setup the budget cannot cover).
    ``client``: the only organization whose certificate may call (default: the label owner)."""
    from ..transport.grpc_server import PartyServer

    stop = stop or threading.Event()
    endpoint: PartyEndpoint | None = None

    def handle(data: bytes) -> bytes:
        reply = endpoint.handle(data)
        if once and (endpoint.party.finished or endpoint.party.session is None):
            stop.set()
        return reply

    # The port is taken before the table's ledger is opened (and created): a busy port leaves
    # nothing behind. Requests are served only once the endpoint exists (start, below).
    server = PartyServer(handle, cfg.listen, identity=cfg.tls.identity, insecure=cfg.tls.insecure,
                         clients=(client or cfg.label_owner,), limits=cfg.limits)
    try:
        endpoint = build_party(cfg)
    except BaseException:
        server.stop(None)
        raise
    server.start()
    try:
        if on_ready is not None:
            on_ready(server.port)
        stop.wait()
    finally:
        server.stop(grace=2.0)
        endpoint.close()


def serve_party_cli(config: str | Path, once: bool = False, insecure: bool = False) -> int:
    cfg = PartyConfig.load(config, insecure=insecure)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    serve_party(cfg, once=once, stop=stop,
                on_ready=lambda port: print(ready_line(f"party {cfg.name}", port,
                                                       "INSECURE" if cfg.tls.insecure else "mutual TLS"), flush=True))
    return 0
