"""Organizations as separate processes: ``securegal party serve`` and ``securegal train --federation``.

A feature party runs :func:`serve_party` from a ``party.toml``; the label owner runs
:func:`train_federation` from a ``federation.toml`` and reaches the parties over gRPC with
mutual TLS. Both reuse the embedded federation's parties, codec and round loop unchanged: only
the transport differs, so a networked run gives the same ``metrics.json`` values as an
in-process run with the same seed. The label owner checkpoints after every round
(``<out>/checkpoint/``) and ``securegal train --resume <out>`` continues the same session.

Relative paths in a config file are relative to that file. See ``examples/network/`` and
``protocol/PROTOCOL.md`` (state machine, versioning, limits).
"""
from __future__ import annotations

import hashlib
import json
import logging
import secrets
import shutil
import signal
import threading
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .certs import Identity, check_org_name
from .core.losses import make_loss
from .data.datasets import Dataset, load_csv, load_dataset
from .data.split import Block, RowSplit, party_tables, vertical_split
from .data.tables import FeatureTable
from . import messages as m
from .errors import ConfigError, PartyRefused, ProtocolError
from .federation import TargetScaler, plain_trainers
from .learners.registry import make_learner
from .parties.endpoint import PartyEndpoint
from .parties.feature_party import RESUME_BITS, FeatureParty
from .parties.label_owner import LabelOwner, RoundResult
from .parties.layers import PlainTrainer
from .parties.messenger import Messenger
from .plots import plot_curves
from .privacy.dp.accountant import ACCOUNTANTS
from .privacy.dp.layers import DP_LEARNERS, DPTrainers
from .privacy.dp.trainer import NO_FEEDBACK_SHARES, DPConfig
from .run import MethodRun, run_method, train, write_json_atomic
from .transcript import TranscriptWriter
from .transport.frames import FrameLimits
from .transport.grpc_client import GrpcTransport, RetryPolicy
from .transport.grpc_server import PartyServer
from .wire.codec import Limits

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "securegal-checkpoint"
RESIDUALS = ("plain", "ckks")
CHECKPOINT_VERSION = 1
# Key of the replies' info map under which a DP party sends its accountant report (one JSON string).
PRIVACY_INFO = "privacy"
PRIVACY_REPORT_KEYS = ("epsilon_budget", "epsilon_spent", "delta", "accountant", "noise_multiplier", "releases")
# [privacy] keys of party.toml besides ``residuals``; all but ``epsilon`` need ``epsilon``.
DP_KEYS = ("epsilon", "delta", "accountant", "feature_clip", "residual_clip", "prediction_clip", "feedback")


# ---------------------------------------------------------------- config files

class _Section:
    """A TOML table read strictly: unknown keys and wrong types are errors naming file and key."""

    def __init__(self, data: dict, where: str, base: Path):
        self.data, self.where, self.base = data, where, base
        self._used: set[str] = set()

    def get(self, key: str, kind: type, default: Any = ...) -> Any:
        self._used.add(key)
        if key not in self.data:
            if default is ...:
                raise ConfigError(f"{self.where}: missing {key!r}")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise ConfigError(f"{self.where}: {key!r} has the wrong type ({type(value).__name__}: {value!r})")
        return value

    def path(self, key: str, default: Any = ...) -> Path | None:
        value = self.get(key, str, default)
        return None if value is None else (self.base / value).resolve()

    def section(self, key: str, required: bool = False) -> "_Section":
        return _Section(self.get(key, dict, ... if required else {}), f"{self.where} [{key}]", self.base)

    def done(self) -> None:
        unknown = set(self.data) - self._used
        if unknown:
            raise ConfigError(f"{self.where}: unknown keys {sorted(unknown)}")


def _read_toml(path: str | Path) -> tuple[_Section, str]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return _Section(data, str(path), path.resolve().parent), text


@dataclass(frozen=True)
class TlsConfig:
    identity: Identity | None
    insecure: bool

    @classmethod
    def read(cls, s: _Section, name: str, insecure_flag: bool = False) -> "TlsConfig":
        """``insecure_flag`` is the command line's ``--insecure``: it must not contradict the file."""
        insecure = s.get("insecure", bool, False) or insecure_flag
        if insecure:
            if {"cert", "key", "ca"} & set(s.data):
                raise ConfigError(f"{s.where}: insecure (no TLS) contradicts the cert/key/ca given; choose one")
            s.done()
            return cls(None, True)
        ident = Identity.load(s.path("cert"), s.path("key"), s.path("ca"))
        s.done()
        if ident.name != name:
            raise ConfigError(f"{s.where}: the certificate names organization {ident.name!r}, this config is {name!r}")
        return cls(ident, False)


def _frame_limits(s: _Section) -> FrameLimits:
    return FrameLimits(chunk_bytes=s.get("chunk_bytes", int, FrameLimits.chunk_bytes),
                       max_message_bytes=s.get("max_message_bytes", int, FrameLimits.max_message_bytes))


@dataclass(frozen=True)
class PartyConfig:
    """One feature party's ``party.toml``."""

    name: str
    label_owner: str
    listen: str
    table: FeatureTable
    learner: str
    learner_seed: int
    local_loss: str | None
    learner_options: dict
    residuals: str
    tls: TlsConfig
    limits: FrameLimits
    transcripts: Path | None
    dp: DPConfig | None = None

    @classmethod
    def load(cls, path: str | Path, insecure: bool = False) -> "PartyConfig":
        top, _ = _read_toml(path)
        name = check_org_name(top.get("name", str))
        label_owner = check_org_name(top.get("label_owner", str, "alice"))
        listen = top.get("listen", str)
        transcripts = top.path("transcripts", None)
        table = _party_table(top.section("data", required=True))
        lrn = top.section("learner")
        learner = lrn.get("name", str, "linear")
        seed = lrn.get("seed", int, 0)
        local_loss = lrn.get("local_loss", str, None)
        options = lrn.get("options", dict, {})
        lrn.done()
        priv = top.section("privacy")
        residuals = priv.get("residuals", str, "plain")
        if residuals not in RESIDUALS:
            raise ConfigError(f"{priv.where}: residuals must be one of {RESIDUALS}, got {residuals!r}")
        dp = _party_dp(priv, residuals, learner)
        priv.done()
        tls = TlsConfig.read(top.section("tls", required=not insecure), name, insecure)
        lim = top.section("limits")
        limits = _frame_limits(lim)
        lim.done()
        top.done()
        return cls(name, label_owner, listen, table, learner, seed, local_loss, options, residuals, tls, limits,
                   transcripts, dp)


def _party_dp(s: _Section, residuals: str, learner: str) -> DPConfig | None:
    """The party's own DP budget and clipping from ``[privacy]`` (None without ``epsilon``); the
    same knobs and defaults as ``securegal train --epsilon`` (``--delta``, ``--accountant``,
    ``--dp-*-clip``, ``--dp-feedback``)."""
    if "epsilon" not in s.data:
        stray = [k for k in DP_KEYS if k in s.data]
        if stray:
            raise ConfigError(f"{s.where}: {', '.join(stray)} set without 'epsilon' (this party's DP budget)")
        return None
    values = {k: s.get(k, float, default) for k, default in (
        ("epsilon", ...), ("delta", 1e-5), ("feature_clip", 0.5), ("residual_clip", 1.0), ("prediction_clip", 0.01))}
    for key, value in values.items():
        high = 1.0 if key == "delta" else float("inf")
        if not (np.isfinite(value) and 0 < value < high):
            raise ConfigError(f"{s.where}: {key!r} must be finite and in (0, {high:g}), got {value!r}")
    accountant = s.get("accountant", str, "rdp")
    if accountant not in ACCOUNTANTS:
        raise ConfigError(f"{s.where}: 'accountant' must be one of {ACCOUNTANTS}, got {accountant!r}")
    # Under CKKS per-row feedback is pure noise (docs/privacy.md 5b), so it is off by default.
    feedback = s.get("feedback", str, "off" if residuals == "ckks" else "on")
    if feedback not in ("on", "off"):
        raise ConfigError(f"{s.where}: 'feedback' must be 'on' or 'off', got {feedback!r}")
    if residuals == "ckks":
        if "residual_clip" in s.data:
            raise ConfigError(f"{s.where}: 'residual_clip' is the label owner's under ckks (it clips before "
                              "encrypting: federation.toml residual_clip); drop it here")
        if learner != "linear":
            raise ConfigError(f"{s.where}: DP on CKKS residuals is implemented for the linear learner, not {learner!r}")
    elif learner not in DP_LEARNERS:
        raise ConfigError(f"{s.where}: DP is implemented for the learners {', '.join(DP_LEARNERS)}, not {learner!r}")
    shares = {} if feedback == "on" else {"shares": dict(NO_FEEDBACK_SHARES)}
    return DPConfig(values["epsilon"], values["delta"], accountant, feature_clip=values["feature_clip"],
                    residual_clip=values["residual_clip"], prediction_clip=values["prediction_clip"], **shares)


def _party_table(s: _Section) -> FeatureTable:
    """``csv = PATH`` with an integer ``id_column`` (other columns are features), or for demos
    ``dataset = NAME``, ``parties = M``, ``block = i``: block i of the built-in vertical split."""
    if "csv" in s.data:
        path, id_column = s.path("csv"), s.get("id_column", str, "id")
        s.done()
        ds = load_csv(path, id_column, task="regression")
        ids = ds.y
        if not np.array_equal(ids, np.round(ids)):
            raise ConfigError(f"{path}: id column {id_column!r} must hold integers")
        return FeatureTable(ids.astype(np.int64), ds.X)
    data = load_dataset(s.get("dataset", str))
    parties, block = s.get("parties", int), s.get("block", int)
    s.done()
    blocks = vertical_split(data, parties)
    if not 1 <= block < parties:
        raise ConfigError(f"{s.where}: block must be in 1..{parties - 1} (block 0 is the label owner's), got {block}")
    return party_tables(data, [blocks[block]])[0]


@dataclass(frozen=True)
class FederationConfig:
    """The label owner's ``federation.toml``."""

    name: str
    peers: dict[str, str]
    data: dict
    seed: int
    rounds: int
    learner: str
    learner_options: dict
    local_loss: str | None
    weighting: str | None
    eta: float | None
    eta_max: float
    min_parties: int
    residuals: str
    residual_clip: float | None
    out: Path
    tls: TlsConfig
    retry: RetryPolicy
    limits: FrameLimits
    path: Path
    text: str = field(repr=False)

    @classmethod
    def load(cls, path: str | Path, insecure: bool = False, **overrides) -> "FederationConfig":
        top, text = _read_toml(path)
        name = check_org_name(top.get("name", str, "alice"))
        peers = {}
        for i, entry in enumerate(top.get("party", list)):
            if not isinstance(entry, dict):
                raise ConfigError(f"{path}: [[party]] {i} must be a table")
            p = _Section(entry, f"{path} [[party]] {i}", top.base)
            peers[check_org_name(p.get("name", str))] = p.get("address", str)
            p.done()
        if not peers or name in peers or len(peers) != len(top.data["party"]):
            raise ConfigError(f"{path}: [[party]] needs distinct feature parties other than {name!r}")
        d = top.section("data", required=True)
        if "csv" in d.data:
            data = {"csv": str(d.path("csv")), "target": d.get("target", str)}
        else:
            data = {"dataset": d.get("dataset", str)}
        d.done()
        tr = top.section("transport")
        retry = RetryPolicy(attempts=tr.get("attempts", int, 4), timeout=tr.get("timeout", float, 300.0),
                            backoff=tr.get("backoff", float, 0.25), backoff_max=tr.get("backoff_max", float, 4.0))
        limits = _frame_limits(tr)
        tr.done()
        cfg = dict(
            name=name, peers=peers, data=data, seed=top.get("seed", int, 0), rounds=top.get("rounds", int, 10),
            learner=top.get("learner", str, "linear"), learner_options=top.get("learner_options", dict, {}),
            local_loss=top.get("local_loss", str, None),
            weighting=top.get("weights", str, None), eta=top.get("eta", float, None),
            eta_max=top.get("eta_max", float, 10.0),
            min_parties=top.get("min_parties", int, 1), residuals=top.get("residuals", str, "plain"),
            residual_clip=top.get("residual_clip", float, None),
            out=top.path("out", "runs/federation"),
            tls=TlsConfig.read(top.section("tls", required=not insecure), name, insecure), retry=retry, limits=limits,
            path=Path(path).resolve(), text=text)
        top.done()
        cfg.update({k: v for k, v in overrides.items() if v is not None})
        if cfg["residuals"] not in RESIDUALS:
            raise ConfigError(f"{path}: residuals must be one of {RESIDUALS}, got {cfg['residuals']!r}")
        if cfg["residual_clip"] is not None and (cfg["residuals"] != "ckks" or not 0 < cfg["residual_clip"] < np.inf):
            raise ConfigError(f"{path}: residual_clip (the bound DP parties rely on under ckks) needs residuals = "
                              f"'ckks' and a finite value > 0, got {cfg['residual_clip']!r} with {cfg['residuals']!r}")
        if not 1 <= cfg["min_parties"] <= 1 + len(peers):
            raise ConfigError(f"min_parties must be in 1..{1 + len(peers)}, got {cfg['min_parties']}")
        return cls(**cfg)

    @property
    def parties(self) -> int:
        return 1 + len(self.peers)

    @classmethod
    def for_resume(cls, out: str | Path, insecure: bool = False, **overrides) -> "FederationConfig":
        """The config a checkpointed run in ``out`` was started with (it must be unchanged)."""
        cfg = cls.load(Checkpoint.read_state(out)["config"], insecure, **overrides)
        if cfg.out != Path(out).resolve():
            raise ConfigError(f"{cfg.path} writes to {cfg.out}, not {Path(out).resolve()}")
        return cfg


# ---------------------------------------------------------------- feature party process

def build_party(cfg: PartyConfig) -> PartyEndpoint:
    """The party's state machine behind the codec, with its transcript (if configured)."""

    def trainer(setup):
        local_loss = cfg.local_loss or setup.options.get("local_loss", "l2")
        learner = make_learner(cfg.learner, local_loss=local_loss, seed=cfg.learner_seed,
                               patch_shape=cfg.table.patch_shape, **cfg.learner_options)
        if cfg.residuals == "ckks":  # the trainer refuses plaintext residuals, and vice versa
            if cfg.dp is not None:
                from .privacy.hedp import CkksDPTrainers

                return CkksDPTrainers(cfg.dp)(cfg.name, 0, learner)(setup)
            from .privacy.he.layers import ckks_trainers

            return ckks_trainers(cfg.name, 0, learner)(setup)
        if cfg.dp is not None:  # the in-process --epsilon trainer: DP ridge (linear) or DP-GD (mlp)
            return DPTrainers(cfg.dp)(cfg.name, 0, learner)(setup)
        return PlainTrainer(learner)

    party = (ReportingParty if cfg.dp is not None else FeatureParty)(cfg.name, cfg.table, trainer,
                                                                      label_owner=cfg.label_owner)
    writer = TranscriptWriter(cfg.transcripts, cfg.name) if cfg.transcripts is not None else None
    return PartyEndpoint(party, writer, Limits(max_message_bytes=cfg.limits.max_message_bytes))


class ReportingParty(FeatureParty):
    """A DP feature party: every SetupAck, FitReply and FinishAck carries its accountant's report
    (``info["privacy"]``, one JSON string), so the label owner's metrics.json holds what the party
    spent. The budget is the party's own: its Setup is refused (ErrorReply, nothing released)
    when the budget cannot cover the rounds the label owner asks for."""

    def handle(self, env: m.Envelope) -> m.Body:
        reply = super().handle(env)
        if isinstance(reply, (m.SetupAck, m.FitReply, m.FinishAck)):
            report = json.dumps(self.trainer.report(), sort_keys=True, allow_nan=False)
            reply = replace(reply, info={**reply.info, PRIVACY_INFO: report})
        return reply


def read_privacy_report(raw: str, party: str) -> dict:
    """A party's ``info["privacy"]`` as its metrics.json block; ProtocolError if malformed."""
    try:
        report = json.loads(raw)
    except ValueError:
        raise ProtocolError(f"privacy report of {party!r} is not JSON") from None
    if not isinstance(report, dict) or not set(PRIVACY_REPORT_KEYS) <= set(report):
        raise ProtocolError(f"privacy report of {party!r} lacks {sorted(set(PRIVACY_REPORT_KEYS) - set(report or {}))}")
    numbers = [report[k] for k in ("epsilon_budget", "epsilon_spent", "delta")]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in numbers) \
            or not isinstance(report["releases"], list):
        raise ProtocolError(f"privacy report of {party!r} has non-numeric epsilon/delta or no release list")
    return report


def serve_party(cfg: PartyConfig, *, once: bool = False, stop: threading.Event | None = None,
                on_ready: Callable[[int], None] | None = None) -> None:
    """Serve until ``stop`` is set (SIGTERM/SIGINT from the CLI) or, with ``once``, the session
    finished or the label owner's first request was refused (e.g. a Setup the budget cannot cover)."""
    endpoint = build_party(cfg)
    stop = stop or threading.Event()

    def handle(data: bytes) -> bytes:
        reply = endpoint.handle(data)
        if once and (endpoint.party.finished or endpoint.party.session is None):
            stop.set()
        return reply

    server = PartyServer(handle, cfg.listen, identity=cfg.tls.identity, insecure=cfg.tls.insecure,
                         clients=(cfg.label_owner,), limits=cfg.limits).start()
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
                on_ready=lambda port: print(f"party {cfg.name} serving on port {port} "
                                            f"({'INSECURE' if cfg.tls.insecure else 'mutual TLS'})", flush=True))
    return 0


# ---------------------------------------------------------------- label owner: checkpoints

class Checkpoint:
    """``<out>/checkpoint/``: ``state.json`` (session, seq epoch, rounds) and ``F_<t>.npy`` (F after round t).

    Written after setup and after every round; ``state.json`` is replaced atomically and names
    only F files that are already on disk, so a crash at any point leaves a usable checkpoint.
    """

    def __init__(self, out: Path, cfg: "FederationConfig"):
        self.dir = Path(out) / "checkpoint"
        self.config_path = str(cfg.path)
        self.digest = hashlib.sha256(cfg.text.encode()).hexdigest()
        self.epoch = 0

    def save(self, owner: LabelOwner) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        t = len(owner.model.rounds)
        np.save(self.dir / f"F_{t:04d}.npy", owner.F, allow_pickle=False)
        state = {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": self.config_path,
            "config_sha256": self.digest,
            "session": owner.session, "epoch": self.epoch, "peers": owner.peers,
            "weighting": owner.weighting, "eta": owner.eta,
            "rounds": [{"round": r.round, "weights": r.weights, "eta": r.eta, "train_loss": r.train_loss,
                        "absent": list(r.absent)} for r in owner.model.rounds],
        }
        write_json_atomic(self.dir / "state.json", state)

    @staticmethod
    def read_state(out: str | Path) -> dict:
        path = Path(out) / "checkpoint" / "state.json"
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"no usable checkpoint at {path}: {exc}") from None
        if state.get("format") != CHECKPOINT_FORMAT or state.get("version") != CHECKPOINT_VERSION:
            raise ConfigError(f"{path} is not a version-{CHECKPOINT_VERSION} securegal checkpoint")
        return state

    def load(self) -> dict:
        state = self.read_state(self.dir.parent)
        if state["config_sha256"] != self.digest:
            raise ConfigError(f"{self.dir} was made with a different federation config; refusing to resume")
        state["rounds"] = [RoundResult(r["round"], r["weights"], r["eta"], r["train_loss"], tuple(r["absent"]))
                           for r in state["rounds"]]
        state["F"] = [np.load(self.dir / f"F_{t:04d}.npy", allow_pickle=False) for t in range(len(state["rounds"]) + 1)]
        return state


# ---------------------------------------------------------------- label owner: the networked run

def _own_block(cfg: FederationConfig) -> Callable[[Dataset, int], list[Block]]:
    """How the label owner's own block is cut from its data.

    ``dataset = NAME``: the built-in data, label owner = block 0 of the M-way split (the parties
    serve blocks 1..M-1), exactly as in-process. ``csv``: the label owner's own columns and
    labels, rows = sample IDs 0..n-1; the other parties' blocks are remote and unknown here.
    """
    if "dataset" in cfg.data:
        return vertical_split
    return lambda d, m: [Block(np.arange(d.X.shape[1]))] + [Block(np.arange(0))] * (m - 1)


class ReportingMessenger(Messenger):
    """A messenger that keeps each party's latest privacy report (``info["privacy"]`` of its
    replies, see :class:`ReportingParty`) in ``privacy`` and the last exchange's outcomes in ``last``.
    A malformed report makes that reply a ProtocolError."""

    def __init__(self, *args, privacy: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.privacy = privacy
        self.last: dict = {}

    def exchange(self, round: int, requests):
        out = super().exchange(round, requests)
        for party, reply in out.items():
            raw = None if isinstance(reply, Exception) else getattr(reply, "info", {}).get(PRIVACY_INFO)
            if raw is not None:
                try:
                    self.privacy[party] = read_privacy_report(raw, party)
                except ProtocolError as exc:
                    out[party] = exc
        self.last = out
        return out


class PartyReports:
    """The networked label owner's trainer choice: parties build their own (possibly DP) trainers
    in their processes; what it reports for metrics.json's ``privacy`` block is what they sent."""

    def __init__(self):
        self.privacy: dict[str, dict] = {}

    def __call__(self, name: str, index: int, learner):
        return plain_trainers(name, index, learner)  # the label owner's stand-in, never sent anywhere

    def report(self) -> dict:
        return dict(self.privacy)


def _prepare_out(cfg: FederationConfig, overwrite: bool) -> None:
    """Only the label owner's own results are replaced: parties on this machine may be writing
    their transcripts under the same directory."""
    mine = [cfg.out / "metrics.json", cfg.out / "curve.png", cfg.out / "checkpoint", cfg.out / "transcripts" / cfg.name]
    present = [p for p in mine if p.exists()]
    if present and not overwrite:
        raise ConfigError(f"{cfg.out} already holds {', '.join(p.name for p in present)}; pass --overwrite "
                          f"or --resume {cfg.out}")
    for p in present:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    cfg.out.mkdir(parents=True, exist_ok=True)


def _fix_label_uses(owner: LabelOwner, cfg: FederationConfig) -> None:
    """With a DP party the step choices default to the in-process ``--epsilon`` ones (docs/privacy.md
    section 4): uniform weights and eta = 0.75 M / T, unless federation.toml sets weights/eta."""
    if cfg.weighting is None:
        owner.weighting = "uniform"
    if cfg.eta is None:
        owner.eta = 0.75 * cfg.parties / cfg.rounds
    log.info("DP parties %s: weights %s, eta %s", sorted(owner.messenger.privacy), owner.weighting, owner.eta)


def train_federation(cfg: FederationConfig, *, resume: bool = False, overwrite: bool = False,
                     progress: bool = False, on_round: Callable[[RoundResult], None] | None = None) -> dict:
    """Run the label owner against the parties in ``cfg`` and write ``cfg.out`` (metrics.json,
    curve.png, transcripts/<label owner>/, checkpoint/). With ``resume``, continue the
    checkpointed session in ``cfg.out``. ``on_round`` is called after each round's checkpoint."""
    if resume and cfg.residuals == "ckks":
        raise ConfigError("cannot resume a ckks run: the label owner's CKKS secret key is not checkpointed, so the "
                          "parties' encrypted round models could not be opened; start the run again")
    ckpt = Checkpoint(cfg.out, cfg)
    state = ckpt.load() if resume else None
    if not resume:
        _prepare_out(cfg, overwrite)
    else:
        ckpt.epoch = state["epoch"] + 1

    def build(dataset: Dataset, split: RowSplit, blocks: list[Block], *, learner: str, seed: int, rounds: int,
              scaler: TargetScaler, channel=None, trainers=None, run_dir=None, weighting: str = "learned",
              eta: float | None = None, eta_max: float = 10.0, learner_options: dict | None = None,
              local_loss: str | None = None) -> LabelOwner:
        loss = make_loss(dataset.loss, dataset.n_outputs)
        local_loss = local_loss or loss.local_loss
        own_block = blocks[0]
        table = FeatureTable(np.arange(len(dataset.y), dtype=np.int64), dataset.X[:, own_block.columns],
                             own_block.patch_shape)
        own_learner = make_learner(learner, local_loss=local_loss, seed=seed * 1000,
                                   patch_shape=own_block.patch_shape, **(learner_options or {}))
        own = FeatureParty(cfg.name, table, lambda setup: PlainTrainer(own_learner))
        transport = GrpcTransport(cfg.peers, identity=cfg.tls.identity, insecure=cfg.tls.insecure,
                                  retry=cfg.retry, limits=cfg.limits)
        session = state["session"] if state else secrets.token_hex(8)
        messenger = ReportingMessenger(cfg.name, session, transport,
                                       TranscriptWriter(cfg.out / "transcripts" / cfg.name, cfg.name),
                                       Limits(max_message_bytes=cfg.limits.max_message_bytes),
                                       first_seq=ckpt.epoch << RESUME_BITS, privacy=reports.privacy)
        return LabelOwner(own=own, train_ids=split.train, y_train=scaler.forward(dataset.y[split.train]), loss=loss,
                          peers=list(cfg.peers), messenger=messenger, channel=channel, rounds=rounds,
                          weighting=weighting, eta=eta, eta_max=eta_max, min_parties=cfg.min_parties,
                          task=dataset.task, setup_options={"local_loss": local_loss})

    def start(owner: LabelOwner) -> None:
        if state is None:
            try:
                owner.setup()
            except (PartyRefused, ProtocolError):  # e.g. a party's budget cannot cover the rounds
                joined = [p for p, r in owner.messenger.last.items() if isinstance(r, m.SetupAck)]
                if joined:  # close their sessions so they can serve the next one
                    owner.messenger.exchange(0, {p: m.Finish() for p in joined})
                raise
            if reports.privacy:
                _fix_label_uses(owner, cfg)
        else:
            owner.resume(state["rounds"], state["F"], state["peers"])
            owner.weighting, owner.eta = state.get("weighting", owner.weighting), state.get("eta", owner.eta)
            log.warning("resumed session %s after round %d", owner.session, len(state["rounds"]))
        ckpt.save(owner)

    def run(owner, dataset, split, scaler, progress_bar=None) -> MethodRun:
        def each_round(result: RoundResult) -> None:
            ckpt.save(owner)
            for hook in (progress_bar, on_round):
                if hook is not None:
                    hook(result)
        return run_method(owner, dataset, split, scaler, each_round, start=start)

    channel, reports = None, PartyReports()
    if cfg.residual_clip is not None:  # declared to the parties: DP on CKKS residuals relies on it
        from .privacy.hedp import ClippedCkksResiduals

        channel = ClippedCkksResiduals(cfg.residual_clip)
    elif cfg.residuals == "ckks":
        from .privacy.he.layers import CkksResiduals

        channel = CkksResiduals()
    metrics = train(cfg.data.get("dataset"), csv=cfg.data.get("csv"), channel=channel, trainers=reports,
                    target=cfg.data.get("target"), parties=cfg.parties, learner=cfg.learner, rounds=cfg.rounds,
                    seed=cfg.seed, weighting=cfg.weighting or "learned", eta=cfg.eta, eta_max=cfg.eta_max,
                    learner_options=cfg.learner_options, local_loss=cfg.local_loss,
                    progress=progress, split_blocks=_own_block(cfg), build_gal=build, run_gal=run)
    write_json_atomic(cfg.out / "metrics.json", metrics)
    plot_curves(metrics, cfg.out / "curve.png")
    return metrics
