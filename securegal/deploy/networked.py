"""The label owner of a networked federation: ``securegal train --federation federation.toml``.

It reaches the parties over gRPC with mutual TLS and runs the same round loop, plan and
transcripts as the embedded deployment, so a networked run gives the same ``metrics.json``
values as an in-process run with the same seed. It checkpoints after every round
(``<out>/checkpoint/``) and ``securegal train --resume <out>`` continues the same session.

Command-line flags override the file's keys; a flag this deployment cannot honour is refused
(:data:`REFUSED_FLAGS`), never ignored.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .. import messages as m
from ..data.datasets import Dataset
from ..data.split import Block, RowSplit, party_tables, vertical_split
from ..data.tables import FeatureTable
from ..errors import ConfigError, SecuregalError
from ..learners.registry import learner_class
from ..files import new_staging_dir, own_staging, private_dir, stale_staging
from ..parties.feature_party import RESUME_BITS, FeatureParty
from ..parties.label_owner import LabelOwner, RoundResult
from ..parties.messenger import Messenger
from ..privacy.plan import LabelDP, PrivacyPlan, layer_name
from ..transcript import TranscriptWriter
from ..transport.address import split_address
from ..transport.certs import check_org_name
from ..transport.frames import FrameLimits
from ..wire.codec import Limits
from . import config as schema
from .checkpoint import Checkpoint
from .federation import GalJob, MethodRun, TargetScaler, party_learner, run_method
from .middleware import ReportCollector
from .tls import TlsConfig

log = logging.getLogger(__name__)

# ``securegal train`` flags a networked label owner cannot honour, and why. Every other flag is
# honoured (it overrides the federation file's key); tests/test_deploy_parity.py keeps this honest.
REFUSED_FLAGS = {
    "dataset": "the federation file's [data] names the label owner's data",
    "csv": "the federation file's [data] names the label owner's data",
    "target": "the federation file's [data] names the label owner's data",
    "task": "the federation file's [data] task says how the label owner's target is trained",
    "missing": "the federation file's [data] and each party.toml [data] say how missing cells are handled",
    "label_owner": "the federation file's [data] names the label owner's table; parties serve their own",
    "party": "the federation file's [[party]] tables name the parties, which serve their own tables",
    "id_column": "the federation file's [data] id_column and each party.toml [data] id_column name the IDs",
    "out": "the federation file's out names the run directory",
    "parties": "the federation file's [[party]] tables name the parties",
    "baselines": "Joint needs every party's columns in one place, which a networked run never has",
    "save_ground_truth": "ground truth is every party's data in one place; audit each party on its own "
                         "transcript instead (securegal audit --as)",
    "epsilon": "each feature party sets its own DP budget in its party.toml [privacy]",
    "dp_feature_clip": "each feature party sets its own clips in its party.toml [privacy]",
    "session_epsilon": "each feature party caps its sessions in its party.toml [privacy] session_epsilon",
    "dp_predict": "each feature party says which rows it predicts for in its party.toml [policy] predict",
    "dp_prediction_clip": "each feature party sets its own clips in its party.toml [privacy]",
    "dp_feedback": "each feature party sets its own feedback in its party.toml [privacy]",
    "ledger": "each feature party owns its table's ledger (party.toml [privacy] ledger); the label column's is "
              "[label_dp] ledger in the federation file",
    "columns": "each feature party declares its columns in its party.toml [privacy.columns]",
    "learner": "each feature party runs the learner its party.toml [learner] names; the label owner's own "
               "is learner in the federation file",
}


@dataclass(frozen=True)
class FederationConfig:
    """The label owner's ``federation.toml``, validated, with command-line overrides applied."""

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
    eta_max: float | None
    min_parties: int
    plan: PrivacyPlan
    out: Path
    tls: TlsConfig
    retry: object
    limits: FrameLimits
    path: Path
    text: str = field(repr=False)
    label_ledger: Path | None = None  # [label_dp] ledger: the label column's lifetime ledger directory
    # the command-line overrides applied to the file: a checkpoint keeps them, so --resume reapplies them
    overrides: dict = field(default_factory=dict)

    @property
    def parties(self) -> int:
        return 1 + len(self.peers)

    @classmethod
    def load(cls, path: str | Path, insecure: bool = False, **overrides) -> "FederationConfig":
        """Read ``path``; ``overrides`` (None values ignored) replace top-level keys: ``rounds``,
        ``seed``, ``learner``, ``local_loss``, ``weights``, ``eta``, ``eta_max``, ``min_parties``,
        ``residuals``, ``hidden_membership`` and the label-DP keys ``label_epsilon``,
        ``label_session_epsilon``, ``delta``,
        ``accountant``; ``dp_residual_clip`` is ``residual_clip`` under ckks or without label-DP,
        else label-DP's ``residual_clip``."""
        from ..transport.grpc_client import RetryPolicy

        path = Path(path)
        f, text = schema.read(path, schema.FederationFile)
        base = path.resolve().parent
        where = str(path)
        given = {k: v for k, v in overrides.items() if v is not None}
        applied = dict(given)
        try:
            name = check_org_name(f.name)
            peers = {}
            for entry in f.party:
                peer = check_org_name(entry.name)
                if peer == name:
                    raise ConfigError(f"[[party]] lists the label owner {name!r} itself; list the feature parties only")
                if peer in peers:
                    raise ConfigError(f"[[party]] needs distinct feature parties, got {peer!r} twice")
                split_address(entry.address, "party address")
                peers[peer] = entry.address
            data = ({"dataset": f.data.dataset} if f.data.dataset is not None
                    else {"csv": str(base / f.data.csv), "target": f.data.target, "id_column": f.data.id_column,
                          "missing": f.data.missing, "task": f.data.task})
            label = f.label_dp
            label_epsilon = given.pop("label_epsilon", label.epsilon if label else None)
            label_session = given.pop("label_session_epsilon", label.session_epsilon if label else None)
            delta = given.pop("delta", label.delta if label else None)
            accountant = given.pop("accountant", label.accountant if label else None)
            label_clip = label.residual_clip if label else None
            residuals = given.pop("residuals", f.residuals)
            residual_clip = f.residual_clip
            if "dp_residual_clip" in given:  # --dp-residual-clip: under ckks the clip DP parties rely on,
                clip = given.pop("dp_residual_clip")  # with label-DP (file or flag) label-DP's C
                if residuals == "ckks" or label_epsilon is None:
                    residual_clip = clip
                else:
                    label_clip = clip
            hidden = given.pop("hidden_membership", f.hidden_membership)
            if label_epsilon is None and (delta is not None or accountant is not None or label_session is not None):
                raise ConfigError("--delta/--accountant/--label-session-epsilon of the label owner go with a label-DP "
                                  "budget (--label-epsilon or [label_dp]); feature parties set theirs in party.toml")
            label_dp = None
            if label_epsilon is not None:
                options = {k: v for k, v in dict(delta=delta, accountant=accountant, residual_clip=label_clip,
                                                 seed=label.noise_seed if label else None,
                                                 session_epsilon=label_session).items() if v is not None}
                label_dp = LabelDP(epsilon=label_epsilon, **options)
            plan = PrivacyPlan(residuals=residuals, label_dp=label_dp,
                               residual_clip=residual_clip if residuals == "ckks" else None, hidden_membership=hidden)
            if residual_clip is not None and residuals != "ckks":
                raise ConfigError(f"residual_clip (the bound DP parties rely on under ckks) needs residuals = 'ckks', "
                                  f"got {residuals!r}")
            rounds = given.pop("rounds", f.rounds)
            if not 1 <= rounds <= schema.MAX_ROUNDS:
                raise ConfigError(f"rounds must be in 1..{schema.MAX_ROUNDS}, got {rounds}")
            min_parties = given.pop("min_parties", f.min_parties)
            if min_parties is None:
                min_parties = 1 + len(peers)
            if not 1 <= min_parties <= 1 + len(peers):
                raise ConfigError(f"min_parties must be in 1..{1 + len(peers)}, got {min_parties}")
            eta = given.pop("eta", f.eta)
            eta_max = given.pop("eta_max", f.eta_max)
            for label_, value in (("eta", eta), ("eta_max", eta_max)):
                if value is not None and not (np.isfinite(value) and 0 < value <= schema.MAX_ETA):
                    raise ConfigError(f"{label_} must be finite, > 0 and <= {schema.MAX_ETA:g}, got {value!r}")
            if eta_max is not None:  # refused where the step is fixed (by eta, or by label-DP's policy)
                plan.owner_policy(parties=1 + len(peers), rounds=rounds, eta=eta, eta_max=eta_max)
            seed = given.pop("seed", f.seed)
            if seed < 0:
                raise ConfigError(f"seed must be >= 0, got {seed}")
            learner = given.pop("learner", f.learner)
            learner_class(learner)
            local_loss, weighting = given.pop("local_loss", f.local_loss), given.pop("weights", f.weights)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        # TlsConfig's refusals name the file themselves
        cfg = cls(name=name, peers=peers, data=data, seed=seed, rounds=rounds, learner=learner,
                  learner_options=dict(f.learner_options), local_loss=local_loss, weighting=weighting,
                  eta=eta, eta_max=eta_max, min_parties=min_parties, plan=plan, out=(base / f.out).resolve(),
                  tls=TlsConfig.build(f.tls, name, where, base, insecure),
                  retry=RetryPolicy(attempts=f.transport.attempts, timeout=f.transport.timeout,
                                    backoff=f.transport.backoff, backoff_max=f.transport.backoff_max),
                  limits=FrameLimits(chunk_bytes=f.transport.chunk_bytes,
                                     max_message_bytes=f.transport.max_message_bytes),
                  path=path.resolve(), text=text, overrides=applied,
                  label_ledger=(base / label.ledger).resolve() if label is not None and label.ledger else None)
        if given:
            raise ConfigError(f"unknown federation overrides {sorted(given)}")
        return cfg

    @classmethod
    def for_resume(cls, out: str | Path, insecure: bool = False, **overrides) -> "FederationConfig":
        """The config a checkpointed run in ``out`` was started with (the file must be unchanged),
        with the command-line overrides it was started with; ``overrides`` (only ``min_parties``
        may change on resume) go on top."""
        state = Checkpoint.read_state(out)
        where = Path(out) / "checkpoint" / "state.json"
        if not isinstance(state.get("config"), str):
            raise ConfigError(f"{where} does not name its federation config")
        if not isinstance(state.get("overrides"), dict):
            raise ConfigError(f"{where} does not record the run's command-line overrides; refusing to resume")
        given = {k: v for k, v in overrides.items() if v is not None}
        cfg = cls.load(state["config"], insecure, **{**state["overrides"], **given})
        if cfg.out != Path(out).resolve():
            raise ConfigError(f"{cfg.path} writes to {cfg.out}, not {Path(out).resolve()}")
        return cfg


def federation_from_args(args) -> FederationConfig:
    """The federation of ``securegal train --federation/--resume`` with every flag honoured or
    refused: the flags in :data:`REFUSED_FLAGS` are refused when given; the rest override the file."""
    given = [flag for flag in REFUSED_FLAGS if getattr(args, flag, None) not in (None, False)]
    if given:
        flag = given[0]
        option = "--id" if flag == "id_column" else f"--{flag.replace('_', '-')}"
        raise ConfigError(f"{option} cannot be used with --federation/--resume: {REFUSED_FLAGS[flag]}")
    overrides = dict(rounds=args.rounds, seed=args.seed, local_loss=args.local_loss,
                     weights=args.weights, eta=args.eta, eta_max=args.eta_max, min_parties=args.min_parties,
                     residuals=args.residuals, label_epsilon=args.label_epsilon,
                     label_session_epsilon=args.label_session_epsilon, delta=args.delta,
                     accountant=args.accountant, hidden_membership=args.hidden_membership or None,
                     dp_residual_clip=args.dp_residual_clip)
    if args.resume:
        if any(v is not None for k, v in overrides.items() if k != "min_parties"):
            raise ConfigError("--resume continues the run exactly as configured; only --min-parties, --insecure and "
                              "--no-progress may be given with it")
        return FederationConfig.for_resume(args.resume, args.insecure, min_parties=args.min_parties)
    return FederationConfig.load(args.federation, args.insecure, **overrides)


class NetworkedDeployment:
    """Feature parties in their own processes, reached over gRPC with mutual TLS."""

    name = "grpc"
    local_parties = False
    supports = frozenset()

    def __init__(self, cfg: FederationConfig, checkpoint: Checkpoint, state: dict | None,
                 on_round: Callable[[RoundResult], None] | None = None):
        self.cfg, self.checkpoint, self.state, self.on_round = cfg, checkpoint, state, on_round
        self.reports = ReportCollector()
        self.started = state is not None  # True once a checkpoint of this session exists

    def names(self, parties: int) -> list[str]:
        return [self.cfg.name, *self.cfg.peers]

    def blocks(self, dataset: Dataset, parties: int) -> list[Block]:
        """``dataset = NAME``: label owner = block 0 of the built-in M-way split (the parties serve
        blocks 1..M-1). ``csv``: all of the label owner's columns; the parties' are remote."""
        if "dataset" in self.cfg.data:
            return vertical_split(dataset, parties)
        return [Block(np.arange(dataset.X.shape[1]))] + [Block(np.arange(0))] * (parties - 1)

    def build(self, job: GalJob, dataset: Dataset, split: RowSplit, blocks: list[Block], *,
              run_dir: Path | None = None) -> LabelOwner:
        cfg = self.cfg
        own = FeatureParty(cfg.name, party_tables(dataset, blocks[:1])[0] if "dataset" in cfg.data else
                           FeatureTable(np.arange(len(dataset.y), dtype=np.int64), dataset.X),
                           job.own_trainers(cfg.name, 0, party_learner(dataset, blocks[0], 0, job)))
        transport = self.transport()
        session = self.state["session"] if self.state else secrets.token_hex(8)
        messenger = Messenger(cfg.name, session, transport, TranscriptWriter(cfg.out / "transcripts" / cfg.name, cfg.name),
                              Limits(max_message_bytes=cfg.limits.max_message_bytes),
                              first_seq=self.checkpoint.epoch << RESUME_BITS, middleware=[self.reports])
        job = replace(job, min_parties=cfg.min_parties)
        owner = job.label_owner(own, dataset, split, list(cfg.peers), messenger)
        if "dataset" in cfg.data:
            owner.setup_options = {**owner.setup_options, schema.BUILTIN_DATASET_OPTION: cfg.data["dataset"]}
        return owner

    def transport(self):
        """How the label owner's bytes reach the parties: gRPC with mutual TLS (the Flower
        deployment replaces only this)."""
        from ..transport.grpc_client import GrpcTransport

        cfg = self.cfg
        return GrpcTransport(cfg.peers, identity=cfg.tls.identity, insecure=cfg.tls.insecure, retry=cfg.retry,
                             limits=cfg.limits)

    def _start(self, owner: LabelOwner) -> None:
        if self.state is not None:
            owner.resume(self.state["rounds"], self.state["F"], self.state["peers"], self.state["alignment"])
            owner.weighting, owner.eta = self.state["weighting"], self.state["eta"]
            owner.calibration = self.state.get("calibration")
            owner.party_columns = dict(self.state.get("party_columns", {}))  # their SetupAcks were not sent again
            log.warning("resumed session %s after round %d", owner.session, len(self.state["rounds"]))
            self.checkpoint.save(owner)
            self.started = True
            return
        try:
            owner.setup()
            if self.reports.privacy:  # DP parties: the plan's policy under DP, unless the file fixed it
                # eta_max is refused here as it is before the run where the step is fixed: the DP parties
                # fix it, which is known only now; the sessions closed below give their budgets back
                policy = self.cfg.plan.owner_policy(parties=self.cfg.parties, rounds=self.cfg.rounds,
                                                    weighting=self.cfg.weighting, eta=self.cfg.eta,
                                                    eta_max=self.cfg.eta_max, dp_parties=True)
                owner.weighting, owner.eta, owner.calibration = policy.weighting, policy.eta, policy.calibration
                log.info("DP parties %s: weights %s, eta %s, calibration %s", sorted(self.reports.privacy),
                         owner.weighting, owner.eta, owner.calibration)
            self.checkpoint.save(owner)
        except SecuregalError:  # a refusal, too few parties: close the sessions that did open
            joined = [p for p, r in self.reports.last.items() if not isinstance(r, Exception)]
            _tell_the_session_is_over(owner, joined)  # so that they serve the next one and settle their reservations
            raise
        except BaseException:  # Ctrl-C or SIGTERM while the sessions open: without a checkpoint the run
            _tell_the_session_is_over(owner, owner.peers)  # cannot be resumed, and the parties would wait an hour
            raise
        self.started = True

    def run(self, owner: LabelOwner, dataset: Dataset, split: RowSplit, scaler: TargetScaler,
            on_round=None) -> MethodRun:
        def each_round(result: RoundResult) -> None:
            self.checkpoint.save(owner)
            for hook in (on_round, self.on_round):
                if hook is not None:
                    hook(result)
        return run_method(owner, dataset, split, scaler, each_round, start=self._start,
                          before_finish=self.checkpoint.mark_finishing)


def _tell_the_session_is_over(owner: LabelOwner, peers) -> None:
    """Before the run started (a refusal, an interrupt): a Finish to ``peers``, so that those
    whose session opened close it (and a DP party settles its reservation) instead of refusing
    the next run until their session times out. Best effort: failures are logged, not raised
    over what stopped the run."""
    if not peers:
        return
    try:
        owner.messenger.exchange(0, {p: m.Finish() for p in peers})
    except Exception as exc:  # the interrupt is what the user is waiting for
        log.warning("could not tell every party that the session is over (%s); a party still in it refuses a "
                    "new one until its session_timeout", exc)


ASIDE = ".overwritten-"  # an --overwrite run's earlier result, until the new run has started


def _own_results(cfg: FederationConfig) -> list[Path]:
    return [cfg.out / "metrics.json", cfg.out / "curve.png", cfg.out / "checkpoint", cfg.out / "transcripts" / cfg.name]


def earlier_results(cfg: FederationConfig, overwrite: bool, remedy: str) -> list[Path]:
    """The label owner's earlier results in ``cfg.out``, refused unless ``overwrite`` (``remedy``
    says how this deployment asks for it)."""
    present = [p for p in _own_results(cfg) if p.exists()]
    if present and not overwrite:
        raise ConfigError(f"{cfg.out} already holds {', '.join(p.name for p in present)}; {remedy}")
    return present


def _set_aside(cfg: FederationConfig, aside: Path, result: Path) -> Path:
    """Where :func:`_prepare_out` keeps ``result`` (one of :func:`_own_results`) in ``aside``."""
    return aside / result.relative_to(cfg.out).as_posix().replace("/", "-")


def _prepare_out(cfg: FederationConfig, overwrite: bool) -> Path | None:
    """Set the label owner's earlier results aside (``--overwrite``) in a hidden directory of
    ``cfg.out``, returned; :func:`_restore_out` puts them back if the new run fails before it
    starts, and :func:`train_federation` deletes them once it has. Only the label owner's own
    results are touched: parties on this machine may be writing their transcripts under the same
    directory."""
    present = earlier_results(cfg, overwrite, f"pass --overwrite or --resume {cfg.out}")
    private_dir(cfg.out)
    if not present:
        return None
    aside = None
    try:
        aside = new_staging_dir(cfg.out, ASIDE)
        for p in present:
            os.replace(p, _set_aside(cfg, aside, p))
    except BaseException:  # a signal or failure half-way: put back what was moved, leave no aside behind
        for made in [aside] if aside is not None else own_staging(cfg.out, ASIDE):
            _restore_out(cfg, made)
        raise
    return aside


def _killed_asides(cfg: FederationConfig, resume: bool, overwrite: bool) -> list[Path]:
    """What a label owner killed outright (SIGKILL) during an ``--overwrite`` run left set aside
    in ``cfg.out`` (its process gone). If it never started its session, the earlier result is put
    back now, as a failed start does; if it did, the set-aside result is returned, to be removed
    once this run (its ``--resume``, or a new ``--overwrite``) has started: it was being replaced."""
    killed = stale_staging(cfg.out, ASIDE) if cfg.out.is_dir() else []
    if not killed:
        return []
    if not (cfg.out / "checkpoint" / "state.json").exists():  # the killed run never started
        for path in (cfg.out / "transcripts" / cfg.name, cfg.out / "checkpoint"):
            shutil.rmtree(path, ignore_errors=True)
        for aside in killed:
            _restore_out(cfg, aside)
            log.warning("put back the earlier result in %s, which a run killed before it started had set aside",
                        cfg.out)
        return []
    if resume or overwrite:
        return killed
    raise ConfigError(f"{cfg.out} holds a run that was killed after it started, and the earlier result it was "
                      f"replacing, set aside in {killed[0].name}: --resume {cfg.out} continues the killed run, "
                      "--overwrite starts a new one (either removes the earlier result once it starts)")


def _restore_out(cfg: FederationConfig, aside: Path) -> None:
    """Put back what :func:`_prepare_out` set aside (the new run left nothing in its place)."""
    for p in _own_results(cfg):
        kept = _set_aside(cfg, aside, p)
        if kept.exists():
            private_dir(p.parent)  # the failed run's empty transcripts/ was removed (0700, as it was made)
            os.replace(kept, p)
    shutil.rmtree(aside, ignore_errors=True)


def _ended(metrics: Path) -> str:
    """How a run that wrote ``metrics`` ended: finished, or stopped early (and why)."""
    try:
        stopped = json.loads(metrics.read_text(encoding="utf-8")).get("gal", {}).get("stopped")
    except (OSError, ValueError, AttributeError):
        stopped = None
    return f"stopped early ({stopped}; its parties were told the session is over)" if stopped else "finished"


def train_federation(cfg: FederationConfig, *, resume: bool = False, overwrite: bool = False,
                     progress: bool = False, on_round: Callable[[RoundResult], None] | None = None,
                     deployment: Callable[..., NetworkedDeployment] = NetworkedDeployment) -> dict:
    """Run the label owner against the parties in ``cfg`` and write ``cfg.out`` (metrics.json,
    curve.png, transcripts/<label owner>/, checkpoint/). With ``resume``, continue the
    checkpointed session in ``cfg.out``. ``on_round`` is called after each round's checkpoint.
    ``deployment(cfg, checkpoint, state, on_round)`` builds the deployment (default gRPC; the
    Flower one is :class:`securegal.deploy.flower.deployment.FlowerDeployment`)."""
    from ..plots import plot_curves
    from ..files import write_json_atomic

    if resume and overwrite:
        raise ConfigError("--overwrite cannot be used with --resume: a resumed run continues its checkpoint; "
                          "start a new run with --overwrite instead")
    if resume and (cfg.out / "metrics.json").exists():
        raise ConfigError(f"the run in {cfg.out} {_ended(cfg.out / 'metrics.json')} and wrote metrics.json; it is "
                          "kept as it is. Start a new run with --overwrite, or in another directory")
    if resume and cfg.plan.residuals == "ckks":
        raise ConfigError("cannot resume a ckks run: the label owner's CKKS secret key is not checkpointed, so the "
                          "parties' encrypted round models could not be opened; start the run again")
    if resume and cfg.plan.label_dp is not None:
        raise ConfigError("cannot resume a label-DP run: its accountant is not checkpointed, so the releases made "
                          "before the stop would go uncounted and the interrupted round would be sent again with "
                          "fresh noise (PLD 8.02 against a budget of 8 in an independent review); start a new run: "
                          + ("the label ledger keeps the stopped run's whole reservation counted (it cannot tell "
                             "which rounds were sent), and the new run gets what is left" if cfg.label_ledger
                             else "without a label ledger it spends a new label budget"))
    checkpoint = Checkpoint(cfg.out, cfg.path, cfg.text, cfg.overrides)
    state = checkpoint.load() if resume else None
    if state is not None and state["finishing"]:
        raise ConfigError(f"the run in {cfg.out} had told its parties that the session is finished when it stopped, "
                          "before its result was written; they no longer answer for that session, so it cannot be "
                          "resumed. Start a new run with --overwrite, or in another directory")
    if state is not None:
        checkpoint.epoch = state["epoch"] + 1
    deployment = deployment(cfg, checkpoint, state, on_round)
    made = []  # the run directory and its parents this run creates, deepest first
    for p in (cfg.out, *cfg.out.parents):
        if p.exists():
            break
        made.append(p)
    killed = _killed_asides(cfg, resume, overwrite)
    aside = None if resume else _prepare_out(cfg, overwrite)
    try:
        metrics = _train(cfg, deployment, progress)
    except BaseException:
        if not deployment.started:  # nothing to resume: leave nothing that looks like a result
            for path in (cfg.out / "transcripts" / cfg.name, checkpoint.dir):
                shutil.rmtree(path, ignore_errors=True)
            for path in (cfg.out / "transcripts", *made):
                with contextlib.suppress(OSError):  # directories, if nothing else is in them
                    path.rmdir()
            if aside is not None:  # and the earlier result as it was; never lost, even if that fails
                kept, aside = aside, None  # first: a second Ctrl-C or SIGTERM while it is put back must not
                try:                       # let the finally below take it for a replaced result
                    _restore_out(cfg, kept)
                except OSError as exc:
                    log.error("could not put the earlier result back (%s): it is kept in %s", exc, kept)
                except BaseException:
                    log.error("interrupted while putting the earlier result back: what is not back is kept in %s, "
                              "and the next run into %s puts it back", kept, cfg.out)
                    raise
        raise
    finally:
        if aside is not None:  # the new run started: the earlier result is replaced
            shutil.rmtree(aside, ignore_errors=True)
        if deployment.started:  # and so is what a killed run was replacing
            for path in killed:
                shutil.rmtree(path, ignore_errors=True)
    privacy = {**metrics.get("privacy", {}), **deployment.reports.report()}
    if privacy:
        metrics["privacy"] = privacy
    if deployment.reports.privacy:
        metrics["plan"] = _in_force(metrics["plan"], sorted(deployment.reports.privacy))
    from ..run import privacy_notes

    metrics["notes"] = privacy_notes(metrics)  # again: the parties' reports are in now
    write_json_atomic(cfg.out / "metrics.json", metrics)
    plot_curves(metrics, cfg.out / "curve.png")
    return metrics


def _in_force(plan: dict, dp_parties: list[str]) -> dict:
    """metrics.json's ``plan`` of a run whose parties ran feature-DP: each sets it in its own
    party.toml, so the label owner's plan names only its own layer (``owner_layer``); ``layer`` is
    what was in force, as an embedded run of the same federation says (``dp``, ``ckks+dp``, ...)."""
    layer = layer_name(plan.get("residuals") == "ckks", True, "label_dp" in plan)
    return {**plan, "layer": layer, "owner_layer": plan.get("layer"), "feature_dp_parties": dp_parties}


def _train(cfg: FederationConfig, deployment: NetworkedDeployment, progress: bool) -> dict:
    from ..run import train

    return train(cfg.data.get("dataset"), csv=cfg.data.get("csv"), target=cfg.data.get("target"), task=cfg.data.get("task"),
                 id_column=cfg.data.get("id_column"), missing=cfg.data.get("missing", "impute"),
                 parties=cfg.parties, learner=cfg.learner, rounds=cfg.rounds, seed=cfg.seed, plan=cfg.plan,
                 weighting=cfg.weighting, eta=cfg.eta, eta_max=cfg.eta_max, learner_options=cfg.learner_options,
                 local_loss=cfg.local_loss, progress=progress, deployment=deployment,
                 ledger=cfg.label_ledger if cfg.plan.label_dp is not None else None)
