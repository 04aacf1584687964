"""Typed protocol messages. The coordinator and the parties build and read these; the codec in
:mod:`securegal.wire.codec` turns them into bytes (protobuf, ``protocol/securegal.proto``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Union

import numpy as np

PROTOCOL_VERSION = 1
# A session's or an organization's name: printable, 1 to this many characters (the wire refuses
# others; a party logs them and keeps them in its ledger).
MAX_NAME_CHARS = 200
LABEL_OWNER = "alice"  # the label owner's organization name unless a run or file names another
RESIDUAL_MODES = ("plain", "ckks")  # how residuals travel (Setup.residuals)
TASKS = ("classification", "regression")  # Setup.task
LOCAL_LOSSES = ("l2", "l1")  # what a local learner fits to the residuals
WEIGHTINGS = ("learned", "uniform")  # how the label owner weighs the parties' predictions
# Which rows a feature party predicts for (its policy): "once": only rows outside every session's
# training set, each disclosed by one session at most over the table's life (kept with a DP
# party's ledger); "non-training": rows outside the training sets, in any number of sessions;
# "none": no predictions at all. A prediction is an exact function of its row, and each session's
# round models add projections of it.
PREDICT_MODES = ("once", "non-training", "none")
PSI_POINT_BYTES = 32  # an X25519 u-coordinate (securegal.align.group)
PSI_ID_KINDS = ("str", "int")


@dataclass(frozen=True)
class EncryptedPayload:
    """Ciphertexts of an array of logical ``shape``; the layout of ``blobs`` belongs to ``scheme``."""

    scheme: str
    shape: tuple[int, ...]
    blobs: tuple[bytes, ...]
    meta: Mapping[str, str] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Bytes of ciphertext carried."""
        return sum(len(b) for b in self.blobs)


Payload = Union[np.ndarray, EncryptedPayload]


@dataclass(frozen=True)
class Setup:
    """Label owner -> feature party: open a session on the rows ``train_ids`` (handles) for ``rounds``
    rounds of ``n_outputs`` outputs; ``residuals`` says how they travel (with ``he_context``, the
    public CKKS context, under "ckks"); ``options`` carry the rest (local loss, hidden membership)."""

    train_ids: np.ndarray
    n_outputs: int
    rounds: int
    task: str
    residuals: str = "plain"
    he_context: bytes = b""
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SetupAck:
    """Feature party -> label owner: setup accepted; ``info`` (e.g. its column count)."""

    info: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FitRequest:
    """Label owner -> feature party: one round's residuals on the training rows (plain or sealed)."""

    residuals: Payload


@dataclass(frozen=True)
class FitReply:
    """Feature party -> label owner: its round model's predictions on the training rows."""

    predictions: Payload
    info: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PredictRequest:
    """Label owner -> feature party: predictions of the first ``rounds`` round models for ``sample_ids``."""

    sample_ids: np.ndarray
    rounds: int


@dataclass(frozen=True)
class PredictReply:
    """Feature party -> label owner: those predictions, one block per round."""

    predictions: Payload


@dataclass(frozen=True)
class Finish:
    """Label owner -> feature party: the session is over."""


@dataclass(frozen=True)
class FinishAck:
    """Feature party -> label owner: session closed; ``info`` (e.g. the rounds it fitted)."""

    info: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ErrorReply:
    """A refusal instead of a reply: ``code`` (errors.reply_code) and a one-line ``message``."""

    code: str
    message: str


@dataclass(frozen=True)
class PsiRequest:
    """Label owner -> feature party: its IDs hashed to the group and raised to its secret ``a``
    (``count`` packed points), with the PSI session and the kind of its IDs ("str" | "int")."""

    session: str
    id_kind: str
    points: bytes

    @property
    def count(self) -> int:
        """How many IDs the label owner asks to match."""
        return len(self.points) // PSI_POINT_BYTES


@dataclass(frozen=True)
class PsiReply:
    """Feature party -> label owner: ``blinded`` = the request's points raised to the party's
    secret ``b``, in request order; ``points`` = the party's own IDs hashed and raised to ``b``,
    one per row, in ascending order of the rows' random per-session ``handles`` (int64)."""

    blinded: bytes
    points: bytes
    handles: np.ndarray


@dataclass(frozen=True)
class PsiSelection:
    """Label owner -> feature party: the handles of the party's rows that the label owner uses."""

    handles: np.ndarray


@dataclass(frozen=True)
class PsiSelectionAck:
    """Feature party -> label owner: how many of its rows were selected."""

    rows: int


Body = Union[Setup, SetupAck, FitRequest, FitReply, PredictRequest, PredictReply, Finish, FinishAck, ErrorReply,
             PsiRequest, PsiReply, PsiSelection, PsiSelectionAck]

KINDS: dict[type, str] = {
    Setup: "setup",
    SetupAck: "setup_ack",
    FitRequest: "fit_request",
    FitReply: "fit_reply",
    PredictRequest: "predict_request",
    PredictReply: "predict_reply",
    Finish: "finish",
    FinishAck: "finish_ack",
    ErrorReply: "error",
    PsiRequest: "psi_request",
    PsiReply: "psi_reply",
    PsiSelection: "psi_selection",
    PsiSelectionAck: "psi_selection_ack",
}

# Which reply answers which request.
REPLY_TO: dict[type, type] = {Setup: SetupAck, FitRequest: FitReply, PredictRequest: PredictReply, Finish: FinishAck,
                              PsiRequest: PsiReply, PsiSelection: PsiSelectionAck}


@dataclass(frozen=True)
class Envelope:
    """One message on the wire: its session, round, sender, receiver, sequence number and body."""

    session: str
    round: int
    sender: str
    receiver: str
    seq: int
    body: Body
    version: int = PROTOCOL_VERSION

    @property
    def kind(self) -> str:
        return KINDS[type(self.body)]
