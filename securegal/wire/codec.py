"""Envelope <-> bytes, with every incoming message validated before anything uses it.

Arrays travel as raw little-endian bytes of an allow-listed dtype with an explicit shape; no
pickle is ever involved. Decoding checks the protocol version, the size limit, dtype, that the
shape matches the byte count, and that floats are finite. PSI messages are checked for their
structure (whole 32-byte points, counts within ``Limits.max_psi_points``, unique non-negative
row handles, one handle per point); that each point is a valid group element is checked where
it is used, in parallel, by :mod:`securegal.align` (libsodium refuses any other point).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from google.protobuf.message import DecodeError

from ..errors import ProtocolError
from .. import messages as m
from . import securegal_pb2 as pb

ALLOWED_DTYPES = {"float64": np.dtype("<f8"), "float32": np.dtype("<f4"), "int64": np.dtype("<i8")}
MAX_RANK = 4
MAX_PSI_SESSION_CHARS = 256


@dataclass(frozen=True)
class Limits:
    """Bounds on incoming messages (defaults fit 1e6 rows x 16 outputs of float64)."""

    max_message_bytes: int = 1 << 30
    max_elements: int = 1 << 27
    max_blobs: int = 1 << 16
    max_psi_points: int = 1 << 24


DEFAULT_LIMITS = Limits()


def tensor_to_proto(array: np.ndarray) -> pb.Tensor:
    a = np.asarray(array)
    name = a.dtype.name
    if name not in ALLOWED_DTYPES:
        raise TypeError(f"cannot send an array of dtype {a.dtype}; allowed: {sorted(ALLOWED_DTYPES)}")
    a = np.ascontiguousarray(a, dtype=ALLOWED_DTYPES[name])
    return pb.Tensor(dtype=name, shape=list(a.shape), data=a.tobytes())


def tensor_from_proto(t: pb.Tensor, limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    dtype = ALLOWED_DTYPES.get(t.dtype)
    if dtype is None:
        raise ProtocolError(f"tensor dtype {t.dtype!r} is not allowed; allowed: {sorted(ALLOWED_DTYPES)}")
    shape = tuple(int(s) for s in t.shape)
    if len(shape) > MAX_RANK or any(s < 0 for s in shape):
        raise ProtocolError(f"tensor shape {shape} is invalid (rank <= {MAX_RANK}, sizes >= 0)")
    count = 1
    for s in shape:
        count *= s
        if count > limits.max_elements:
            raise ProtocolError(f"tensor shape {shape} exceeds the limit of {limits.max_elements} elements")
    if len(t.data) != count * dtype.itemsize:
        raise ProtocolError(f"tensor data has {len(t.data)} bytes, shape {shape} of {t.dtype} needs {count * dtype.itemsize}")
    a = np.frombuffer(t.data, dtype=dtype).reshape(shape)
    if dtype.kind == "f" and not np.isfinite(a).all():
        raise ProtocolError("tensor contains NaN or infinite values")
    return a.astype(dtype.newbyteorder("="), copy=True)


def payload_to_proto(payload: m.Payload) -> pb.Payload:
    if isinstance(payload, m.EncryptedPayload):
        return pb.Payload(encrypted=pb.Encrypted(
            scheme=payload.scheme, shape=list(payload.shape), blobs=list(payload.blobs), meta=dict(payload.meta)))
    if isinstance(payload, np.ndarray):
        return pb.Payload(plain=tensor_to_proto(payload))
    raise TypeError(f"a payload must be a numpy array or EncryptedPayload, got {type(payload).__name__}")


def payload_from_proto(p: pb.Payload, limits: Limits = DEFAULT_LIMITS) -> m.Payload:
    which = p.WhichOneof("value")
    if which == "plain":
        return tensor_from_proto(p.plain, limits)
    if which == "encrypted":
        e = p.encrypted
        if not e.scheme:
            raise ProtocolError("encrypted payload has no scheme")
        shape = tuple(int(s) for s in e.shape)
        if len(shape) > MAX_RANK or any(s < 0 for s in shape):
            raise ProtocolError(f"encrypted payload shape {shape} is invalid")
        if len(e.blobs) > limits.max_blobs:
            raise ProtocolError(f"encrypted payload has {len(e.blobs)} blobs, limit {limits.max_blobs}")
        return m.EncryptedPayload(e.scheme, shape, tuple(bytes(b) for b in e.blobs), dict(e.meta))
    raise ProtocolError("payload is empty")


def _body_to_proto(body: m.Body) -> tuple[str, object]:
    if isinstance(body, m.Setup):
        return "setup", pb.Setup(
            train_ids=tensor_to_proto(np.asarray(body.train_ids, dtype=np.int64)), n_outputs=body.n_outputs,
            rounds=body.rounds, task=body.task, residuals=body.residuals, he_context=body.he_context,
            options=dict(body.options))
    if isinstance(body, m.SetupAck):
        return "setup_ack", pb.SetupAck(info=dict(body.info))
    if isinstance(body, m.FitRequest):
        return "fit_request", pb.FitRequest(residuals=payload_to_proto(body.residuals))
    if isinstance(body, m.FitReply):
        return "fit_reply", pb.FitReply(predictions=payload_to_proto(body.predictions), info=dict(body.info))
    if isinstance(body, m.PredictRequest):
        return "predict_request", pb.PredictRequest(
            sample_ids=tensor_to_proto(np.asarray(body.sample_ids, dtype=np.int64)), rounds=body.rounds)
    if isinstance(body, m.PredictReply):
        return "predict_reply", pb.PredictReply(predictions=payload_to_proto(body.predictions))
    if isinstance(body, m.Finish):
        return "finish", pb.Finish()
    if isinstance(body, m.FinishAck):
        return "finish_ack", pb.FinishAck(info=dict(body.info))
    if isinstance(body, m.ErrorReply):
        return "error", pb.ErrorReply(code=body.code, message=body.message)
    if isinstance(body, m.PsiRequest):
        return "psi_request", pb.PsiRequest(session=body.session, id_kind=body.id_kind, points=bytes(body.points))
    if isinstance(body, m.PsiReply):
        return "psi_reply", pb.PsiReply(blinded=bytes(body.blinded), points=bytes(body.points),
                                        handles=tensor_to_proto(np.asarray(body.handles, dtype=np.int64)))
    if isinstance(body, m.PsiSelection):
        return "psi_selection", pb.PsiSelection(handles=tensor_to_proto(np.asarray(body.handles, dtype=np.int64)))
    if isinstance(body, m.PsiSelectionAck):
        return "psi_selection_ack", pb.PsiSelectionAck(rows=body.rows)
    raise TypeError(f"not a protocol message body: {type(body).__name__}")


def _int_ids(t: pb.Tensor, limits: Limits, what: str) -> np.ndarray:
    ids = tensor_from_proto(t, limits)
    if ids.dtype != np.int64 or ids.ndim != 1:
        raise ProtocolError(f"{what} must be a 1-D int64 tensor, got {ids.dtype} {ids.shape}")
    return ids


def _psi_points(data: bytes, limits: Limits, what: str) -> bytes:
    if len(data) % m.PSI_POINT_BYTES:
        raise ProtocolError(f"{what} holds {len(data)} bytes, not a whole number of {m.PSI_POINT_BYTES}-byte points")
    count = len(data) // m.PSI_POINT_BYTES
    if count > limits.max_psi_points:
        raise ProtocolError(f"{what} holds {count} points, limit {limits.max_psi_points}")
    return bytes(data)


def _psi_handles(t: pb.Tensor, limits: Limits) -> np.ndarray:
    handles = _int_ids(t, limits, "PSI row handles")
    if len(handles) > limits.max_psi_points:
        raise ProtocolError(f"{len(handles)} PSI row handles, limit {limits.max_psi_points}")
    if (handles < 0).any():
        raise ProtocolError("PSI row handles must be non-negative")
    if len(np.unique(handles)) != len(handles):
        raise ProtocolError("PSI row handles must be unique")
    return handles


def _psi_body(which: str, b, limits: Limits) -> m.Body:
    if which == "psi_request":
        if not b.session or len(b.session) > MAX_PSI_SESSION_CHARS:
            raise ProtocolError(f"PSI session id must have 1..{MAX_PSI_SESSION_CHARS} characters, got {len(b.session)}")
        if b.id_kind not in m.PSI_ID_KINDS:
            raise ProtocolError(f"unknown PSI id kind {b.id_kind!r}; expected one of {m.PSI_ID_KINDS}")
        points = _psi_points(b.points, limits, "PSI request")
        if not points:
            raise ProtocolError("PSI request holds no points")
        return m.PsiRequest(b.session, b.id_kind, points)
    if which == "psi_reply":
        blinded = _psi_points(b.blinded, limits, "PSI reply (blinded)")
        points = _psi_points(b.points, limits, "PSI reply (points)")
        handles = _psi_handles(b.handles, limits)
        if len(handles) != len(points) // m.PSI_POINT_BYTES:
            raise ProtocolError(f"PSI reply has {len(points) // m.PSI_POINT_BYTES} points but {len(handles)} handles")
        return m.PsiReply(blinded, points, handles)
    if which == "psi_selection":
        return m.PsiSelection(_psi_handles(b.handles, limits))
    if b.rows > limits.max_psi_points:
        raise ProtocolError(f"PSI selection ack claims {b.rows} rows, limit {limits.max_psi_points}")
    return m.PsiSelectionAck(int(b.rows))


def _body_from_proto(env: pb.Envelope, limits: Limits) -> m.Body:
    which = env.WhichOneof("body")
    if which is None:
        raise ProtocolError("envelope has no body")
    b = getattr(env, which)
    if which == "setup":
        if b.residuals not in ("plain", "ckks"):
            raise ProtocolError(f"unknown residual mode {b.residuals!r}")
        if b.task not in ("classification", "regression"):
            raise ProtocolError(f"unknown task {b.task!r}")
        return m.Setup(_int_ids(b.train_ids, limits, "train_ids"), int(b.n_outputs), int(b.rounds), b.task,
                       b.residuals, bytes(b.he_context), dict(b.options))
    if which == "setup_ack":
        return m.SetupAck(dict(b.info))
    if which == "fit_request":
        return m.FitRequest(payload_from_proto(b.residuals, limits))
    if which == "fit_reply":
        return m.FitReply(payload_from_proto(b.predictions, limits), dict(b.info))
    if which == "predict_request":
        return m.PredictRequest(_int_ids(b.sample_ids, limits, "sample_ids"), int(b.rounds))
    if which == "predict_reply":
        return m.PredictReply(payload_from_proto(b.predictions, limits))
    if which == "finish":
        return m.Finish()
    if which == "finish_ack":
        return m.FinishAck(dict(b.info))
    if which.startswith("psi_"):
        return _psi_body(which, b, limits)
    return m.ErrorReply(b.code, b.message)


def encode(envelope: m.Envelope) -> bytes:
    """Serialize an envelope to its wire bytes."""
    name, body = _body_to_proto(envelope.body)
    env = pb.Envelope(version=envelope.version, session=envelope.session, round=envelope.round,
                      sender=envelope.sender, receiver=envelope.receiver, seq=envelope.seq)
    getattr(env, name).CopyFrom(body)
    return env.SerializeToString()


def decode(data: bytes, limits: Limits = DEFAULT_LIMITS) -> m.Envelope:
    """Parse and validate wire bytes; raises :class:`ProtocolError` on anything malformed."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"wire data must be bytes, got {type(data).__name__}")
    if len(data) > limits.max_message_bytes:
        raise ProtocolError(f"message of {len(data)} bytes exceeds the limit of {limits.max_message_bytes}")
    env = pb.Envelope()
    try:
        env.ParseFromString(bytes(data))
    except DecodeError as exc:
        raise ProtocolError(f"message is not a valid securegal envelope: {exc}") from None
    if env.version != m.PROTOCOL_VERSION:
        raise ProtocolError(f"protocol version {env.version} is not supported (this is version {m.PROTOCOL_VERSION})")
    if not env.session or not env.sender or not env.receiver:
        raise ProtocolError("envelope lacks session, sender or receiver")
    return m.Envelope(env.session, int(env.round), env.sender, env.receiver, int(env.seq),
                      _body_from_proto(env, limits), int(env.version))
