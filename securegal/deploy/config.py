"""The schema of ``party.toml`` and ``federation.toml``: pydantic models, strict and closed.

Unknown keys and wrong types are errors that name the file and the key. Relative paths are
relative to the file. :func:`reference` renders the schema as the reference in
``docs/config.md`` (a test keeps that file in step with this module). Files are written with
``tomli-w`` (:func:`dump`).
"""
from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, model_validator

from ..errors import ConfigError
from ..messages import LABEL_OWNER, LOCAL_LOSSES, RESIDUAL_MODES, WEIGHTINGS
from ..parties.policy import MAX_PSI_IDS, MIN_ROWS, PREDICT_MODES, SESSION_TIMEOUT
from ..transport.frames import DEFAULT_CHUNK_BYTES
from ..transport.retry import RetryPolicy
from ..wire.codec import DEFAULT_MAX_MESSAGE_BYTES

# Bounds of the size-like settings, the same in every deployment and config file (here, not in
# .federation, so that reading a config file does not import the round loop).
MAX_ROUNDS = 1000
MAX_PARTIES = 64
MAX_ETA = 1e6
# The Setup option naming the label owner's built-in dataset: built-in rows are keyed by row
# number, so a party serving another built-in dataset would align with it; it refuses instead.
BUILTIN_DATASET_OPTION = "builtin_dataset"
MAX_CHUNK_BYTES = 1 << 26
MAX_MESSAGE_BYTES = 1 << 34


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TlsSection(_Strict):
    """Mutual TLS: this organization's certificate and key, and the federation's CA."""

    cert: str | None = Field(None, description="this organization's certificate (PEM)")
    key: str | None = Field(None, description="its private key (PEM, keep it 0600)")
    ca: str | None = Field(None, description="the federation CA's certificate (PEM)")
    insecure: bool = Field(False, description="no TLS and no peer authentication: loopback demos only, warns loudly")

    @model_validator(mode="after")
    def _one_or_other(self):
        given = [k for k in ("cert", "key", "ca") if getattr(self, k) is not None]
        if self.insecure and given:
            raise ValueError(f"insecure = true contradicts {', '.join(given)}; choose one")
        if not self.insecure and len(given) != 3:
            missing = [k for k in ("cert", "key", "ca") if getattr(self, k) is None]
            raise ValueError(f"needs cert, key and ca (missing {', '.join(missing)}), or insecure = true")
        return self


class LimitsSection(_Strict):
    """Frame limits of the gRPC transport."""

    chunk_bytes: int = Field(DEFAULT_CHUNK_BYTES, ge=1024, le=MAX_CHUNK_BYTES, description="the most data in one frame")
    max_message_bytes: int = Field(DEFAULT_MAX_MESSAGE_BYTES, ge=1024, le=MAX_MESSAGE_BYTES,
                                   description="the largest whole message accepted (serving one, a party's "
                                               "memory may grow by up to about 8 times this)")


class PartyLimits(LimitsSection):
    """What one party accepts (frames) and how long an idle session may hold it."""

    session_timeout: float = Field(SESSION_TIMEOUT, gt=0, le=7 * 86400,
                                   description="seconds after which an idle, unfinished session expires")


_RETRY = RetryPolicy()  # the transport's defaults


class TransportSection(LimitsSection):
    """The label owner's calls to the parties."""

    timeout: float = Field(_RETRY.timeout, gt=0, le=86400, description="seconds per call attempt")
    attempts: int = Field(_RETRY.attempts, ge=1, le=100, description="tries per call")
    backoff: float = Field(_RETRY.backoff, ge=0, le=3600, description="first wait between tries, doubled each time")
    backoff_max: float = Field(_RETRY.backoff_max, ge=0, le=3600, description="longest wait between tries")


class PartyData(_Strict):
    """A party's table: ``csv`` + ``id_column``, or for demos block ``block`` of a built-in dataset.
    ``stream = true`` serves a Parquet table out of core (never chosen automatically): the IDs are
    read and checked at start-up, the features are read in row batches at setup and every round,
    so memory is one batch plus the per-row vectors whatever the table's width. It needs numeric
    columns without missing cells, learner ``linear`` with local loss l2 and plain residuals (or
    the label owner's label-DP); feature-DP and CKKS are refused at start-up."""

    csv: str | None = Field(None, description="the party's table: CSV or Parquet, an ID column of strings or "
                                               "integers; text columns are one-hot encoded (refused under "
                                               "feature-DP)")
    id_column: str = Field("id", description="name of the ID column of csv")
    missing: Literal["impute", "refuse"] = Field("impute", description="missing cells: impute (median + "
                                                                        "indicator column; under feature-DP the "
                                                                        "declared centre and no indicator) or refuse")
    stream: bool = Field(False, description="serve csv (a Parquet file) out of core, in row batches")
    dataset: str | None = Field(None, description="built-in dataset (demos)")
    parties: int | None = Field(None, ge=2, le=MAX_PARTIES, description="M of the built-in vertical split")
    block: int | None = Field(None, ge=1, description="this party's block 1..M-1 of that split")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.csv is None) == (self.dataset is None):
            raise ValueError("give either csv (+ id_column) or dataset (+ parties, block)")
        if self.dataset is not None:
            if self.parties is None or self.block is None:
                raise ValueError("dataset needs parties and block")
            if self.block >= self.parties:
                raise ValueError(f"block must be in 1..{self.parties - 1} (block 0 is the label owner's), got {self.block}")
        elif self.parties is not None or self.block is not None:
            raise ValueError("parties and block go with dataset, not csv")
        if self.stream and self.csv is None:
            raise ValueError("stream = true serves a Parquet csv file, not a built-in dataset")
        return self


class LearnerSection(_Strict):
    """The party's local learner."""

    name: str = Field("linear", description="linear, rff, mlp, cnn or gb")
    seed: int = Field(0, ge=0, description="seed of the learner's randomness")
    local_loss: Literal[LOCAL_LOSSES] | None = Field(None, description="local loss (default: what the label owner asks)")
    options: dict[str, Any] = Field(default_factory=dict, description="learner options (e.g. hidden sizes)")


class ColumnsSection(_Strict):
    """Public knowledge of the table's columns (one value per column, in the table's order).
    Under DP the party standardizes with these, never with its exact training statistics:
    ``centre`` + ``scale``, or ``lower`` + ``upper`` (mid-range/half-width; values clipped to
    them), or bounds + ``dp_epsilon`` (DP estimates of centre and scale, paid once from the
    ledger). Built-in demo datasets default to their documented ranges."""

    lower: list[float] | None = Field(None, description="per-column lower bounds (e.g. age 0)")
    upper: list[float] | None = Field(None, description="per-column upper bounds (e.g. age 120)")
    centre: list[float] | None = Field(None, description="per-column public centres")
    scale: list[float] | None = Field(None, description="per-column public scales (> 0)")
    dp_epsilon: float | None = Field(None, gt=0, description="estimate centre and scale with DP from the bounds, "
                                                             "spending at most this from the ledger (once)")


class OrganizationColumns(RootModel[dict[str, ColumnsSection]]):
    """``securegal train --label-owner ... --party NAME=FILE --columns FILE`` with feature-DP: one
    ``[NAME]`` table per DP party, each a :class:`ColumnsSection` for that party's own table."""


class PartyPrivacy(_Strict):
    """What this party accepts and its own DP budget (the same knobs as ``securegal train --epsilon``).
    Under DP the budget is the table's lifetime budget, kept in the ledger."""

    residuals: Literal[RESIDUAL_MODES] = Field("plain", description="the residual mode this party runs")
    epsilon: float | None = Field(None, description="this party's (epsilon, delta)-DP budget; absent: no DP")
    delta: float | None = Field(None, description="delta of the budget (default 1e-5)")
    accountant: str | None = Field(None, description="pld (exact, the default), rdp or prv")
    feature_clip: float | None = Field(None, description="B (default: by the training rows, sqrt(n)/20 within [0.5, 2])")
    residual_clip: float | None = Field(None, description="C (default 1; under ckks the label owner's declared clip)")
    prediction_clip: float | None = Field(None, description="C_f (default 0.01)")
    feedback: Literal["on", "off"] | None = Field(None, description="per-row feedback (default on; off under ckks)")
    noise_seed: int | None = Field(None, description="predictable noise: tests and studies only (warns)")
    ledger: str | None = Field(None, description="the table's privacy ledger (default: <csv>.securegal-ledger.json "
                                                 "beside a csv; <transcripts>/<name>.securegal-ledger.json for a "
                                                 "built-in dataset, else required); its directory must exist, "
                                                 "and a table has one ledger on the machine")
    session_epsilon: float | None = Field(None, gt=0, description="each session may raise the table's lifetime "
                                                                  "epsilon by at most this (default: all that is left); "
                                                                  "not a cap on the session's own epsilon")
    columns: ColumnsSection | None = None

    @model_validator(mode="after")
    def _session_within_lifetime(self):
        if self.epsilon is not None and not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ValueError(f"epsilon must be a finite number > 0, got {self.epsilon!r}")
        if self.session_epsilon is not None and self.epsilon is not None and self.session_epsilon > self.epsilon:
            raise ValueError(f"session_epsilon {self.session_epsilon:g} exceeds the table's lifetime epsilon "
                             f"{self.epsilon:g}: no session could ever be served")
        return self


class PolicySection(_Strict):
    """What this organization is willing to do, checked before any work (refusals: code ``policy``)."""

    min_rows: int = Field(MIN_ROWS, ge=2, description="fewest training rows a session may have")
    max_sessions: int | None = Field(None, ge=1, description="most sessions over the table's life, each counted from "
                                                             "its private set intersection (DP parties count them in "
                                                             "the ledger; others per process); default no cap: set "
                                                             "it where the label owner could probe IDs")
    max_psi_ids: int = Field(MAX_PSI_IDS, ge=1, description="most IDs the label owner may match against this table in "
                                                           "one session (each intersection tells it which of them "
                                                           "the table holds)")
    residuals: list[Literal[RESIDUAL_MODES]] = Field(list(RESIDUAL_MODES), min_length=1,
                                                      description="residual modes accepted")
    learners: list[str] | None = Field(None, description="learners this party may run (default: any)")
    predict: Literal[PREDICT_MODES] = Field(
        "once", description="rows it predicts for: \"once\", rows no session trained on, each in one session at "
                            "most (a DP party's ledger keeps which); \"non-training\", such rows in every session; "
                            "\"none\", no rows")


class PartyFile(_Strict):
    """``party.toml``: one feature party."""

    name: str = Field(description="this organization's name (its certificate names it)")
    label_owner: str = Field(LABEL_OWNER, description="the only organization this party answers")
    listen: str = Field(description="host:port to listen on (port 0: any free port)")
    transcripts: str | None = Field(None, description="directory of this party's transcript")
    data: PartyData
    learner: LearnerSection = Field(default_factory=LearnerSection)
    privacy: PartyPrivacy = Field(default_factory=PartyPrivacy)
    policy: PolicySection = Field(default_factory=PolicySection)
    tls: TlsSection | None = None
    limits: PartyLimits = Field(default_factory=PartyLimits)


class FederationData(_Strict):
    """The label owner's data: a built-in ``dataset``, or its own ``csv`` with the ``target`` column."""

    dataset: str | None = Field(None, description="built-in dataset (the parties serve its other blocks)")
    csv: str | None = Field(None, description="the label owner's table (CSV or Parquet) with its labels")
    target: str | None = Field(None, description="label column of csv")
    task: Literal["classification", "regression"] | None = Field(
        None, description="how to train target (default: text or at most 20 distinct integers is classification)")
    id_column: str | None = Field(None, description="ID column of csv, aligned with the parties' IDs by private "
                                                    "set intersection (absent: rows are numbered 0..n-1)")
    missing: Literal["impute", "refuse"] = Field("impute", description="missing cells: impute or refuse")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.csv is None) == (self.dataset is None):
            raise ValueError("give either dataset or csv + target")
        if (self.csv is None) != (self.target is None):
            raise ValueError("csv and target go together")
        if self.task is not None and self.csv is None:
            raise ValueError("task says how to train csv's target; a built-in dataset has its own")
        if self.id_column is not None and self.csv is None:
            raise ValueError("id_column goes with csv")
        return self


class LabelDPSection(_Strict):
    """The label owner's label-DP budget for the residuals it sends (plain residuals only)."""

    epsilon: float = Field(description="label-DP epsilon")
    delta: float | None = Field(None, description="delta (default 1e-5)")
    accountant: str | None = Field(None, description="pld (exact, the default), rdp or prv")
    residual_clip: float | None = Field(None, description="C (default 1)")
    noise_seed: int | None = Field(None, description="predictable noise: tests and studies only (warns)")
    session_epsilon: float | None = Field(None, gt=0, description="with ledger: the most one run may add to the label "
                                                                 "column's lifetime epsilon (default: all that is left)")
    ledger: str | None = Field(None, description="existing directory (relative to this file) of the label column's "
                                                 "lifetime ledger, NAME.labels.securegal-ledger.json; default: "
                                                 "the budget is this run's only")


class PeerEntry(_Strict):
    """One feature party the label owner reaches: an array of tables, one [[party]] each."""

    name: str = Field(description="the feature party's organization name")
    address: str = Field(description="host:port where it serves")


class FederationFile(_Strict):
    """``federation.toml``: the label owner of a networked federation."""

    name: str = Field(LABEL_OWNER, description="the label owner's organization name")
    seed: int = Field(0, ge=0, description="seed of the split and the label owner's learner "
                                           "(each party seeds its own: party.toml [learner] seed)")
    rounds: int = Field(10, ge=1, le=MAX_ROUNDS, description="GAL rounds T")
    learner: str = Field("linear", description="the label owner's own learner")
    learner_options: dict[str, Any] = Field(default_factory=dict, description="its options")
    local_loss: Literal[LOCAL_LOSSES] | None = Field(None, description="local loss sent to the parties")
    weights: Literal[WEIGHTINGS] | None = Field(None, description="assistance weights (default by plan)")
    eta: float | None = Field(None, gt=0, le=MAX_ETA, description="fixed step (default: line search; 0.75 M/T under DP)")
    eta_max: float | None = Field(None, gt=0, le=MAX_ETA, description="upper bound of the line-searched step "
                                                                       "(default 10); refused where the step is fixed")
    min_parties: int | None = Field(None, ge=1, description="fewest answering parties, label owner included "
                                                            "(default: every configured party)")
    residuals: Literal[RESIDUAL_MODES] = Field("plain", description="residual transport")
    residual_clip: float | None = Field(None, gt=0, description="ckks: clip residual rows before encrypting "
                                                                "(needed by DP parties)")
    hidden_membership: bool = Field(False, description="ckks: parties fit on all their rows and never learn which "
                                                       "are used (each party needs feature-DP with feedback)")
    out: str = Field("runs/federation", description="run directory")
    data: FederationData
    label_dp: LabelDPSection | None = None
    tls: TlsSection | None = None
    transport: TransportSection = Field(default_factory=TransportSection)
    party: list[PeerEntry] = Field(min_length=1, max_length=MAX_PARTIES - 1,
                                   description="one [[party]] table per feature party")


def read(path: str | Path, model: type[BaseModel]) -> tuple[BaseModel, str]:
    """``path`` parsed and validated as ``model``; ConfigError naming the file and the key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if (key := _nul_key(data)) is not None:  # no path, name or address can hold one
        raise ConfigError(f"{path}: {key}: a NUL character (\\u0000) is not allowed in a value")
    try:
        return model.model_validate(data), text
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_error(exc)}") from None


def _nul_key(value: Any, where: str = "") -> str | None:
    """The dotted key of the first string in ``value`` holding a NUL character, if any."""
    if isinstance(value, str):
        return (where or "(top level)") if "\0" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        if (found := _nul_key(v, f"{where}.{k}" if where else str(k))) is not None:
            return found
    return None


def describe_error(exc: ValidationError) -> str:
    """The first validation error in one line: key path, message and the bad value."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    shown = f" (got {first['input']!r})" if first["type"] not in ("missing",) and not isinstance(first["input"], dict) else ""
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {message}{shown}{more}"


def dump(data: dict) -> str:
    """A TOML document for ``data`` (None values left out)."""
    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return str(value) if isinstance(value, Path) else value
    return tomli_w.dumps(clean(data))


def _type_name(annotation) -> str:
    """``str or None``, ``"plain" or "ckks"``: a key's type as the reference shows it."""
    args = get_args(annotation)
    if get_origin(annotation) is Literal:
        return " or ".join(f'"{a}"' for a in args)
    if args and get_origin(annotation) not in (dict, list):
        return " or ".join(_type_name(a) for a in args)
    if annotation is type(None):
        return "absent"
    return getattr(annotation, "__name__", str(annotation))


def reference() -> str:
    """The configuration reference (``docs/config.md``), generated from the models."""
    lines = ["# Configuration reference", "",
             "Generated from `securegal/deploy/config.py` (`.venv/bin/python -m securegal.deploy.config > docs/config.md`);",
             "a test fails when it drifts. Unknown keys and wrong types are refused with an error naming the",
             "file and the key. Relative paths are relative to the file.", ""]

    def table(title: str, model: type[BaseModel]) -> None:
        lines.extend([f"## {title}", "", (model.__doc__ or "").strip(), "", "| key | type | default | meaning |",
                      "|---|---|---|---|"])
        nested = []
        for name, f in model.model_fields.items():
            kind = _type_name(f.annotation)
            if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel):
                nested.append((name, f.annotation))
                continue
            sub = [a for a in getattr(f.annotation, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
            if sub:
                nested.append((f"[{name}]" if get_origin(f.annotation) is list else name, sub[0]))
                continue
            default = "required" if f.is_required() else ("(empty)" if f.default_factory else repr(f.default))
            bounds = ", ".join(f"{op} {getattr(m, attr)}" for m in f.metadata
                               for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"),
                                                ("min_length", "at least"), ("max_length", "at most"))
                               if getattr(m, attr, None) is not None)
            desc = (f.description or "") + (f" [{bounds}]" if bounds else "")
            lines.append(f"| `{name}` | {kind} | {default} | {desc} |")
        lines.append("")
        for name, sub in nested:
            table(f"{title} [{name}]", sub)

    table("party.toml", PartyFile)
    table("federation.toml", FederationFile)
    return "\n".join(lines)


if __name__ == "__main__":
    print(reference())
