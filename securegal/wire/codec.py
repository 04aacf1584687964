"""Envelope <-> bytes, with every incoming message validated before anything uses it.

Arrays travel as raw little-endian bytes of an allow-listed dtype with an explicit shape; no
pickle is ever involved. Decoding checks the protocol version, the size limit, dtype, that the
shape matches the byte count, and that floats are finite; a decoded array is a read-only view of
the message's bytes (no copy). Encoding writes each body into its envelope in place, so an
array's bytes are copied once into the message. PSI messages are checked for their
structure (whole 32-byte points, counts within ``Limits.max_psi_points``, unique non-negative
row handles, one handle per point); that each point is a valid group element is checked where
it is used, in parallel, by :mod:`securegal.align` (libsodium refuses any other point).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from google.protobuf.message import DecodeError

from ..core.finite import all_finite
from ..errors import ProtocolError, printable
from .. import messages as m
from . import securegal_pb2 as pb

ALLOWED_DTYPES = {"float64": np.dtype("<f8"), "float32": np.dtype("<f4"), "int64": np.dtype("<i8")}
MAX_RANK = 4
# Every name on the wire (session, sender, receiver: printable too) and every option or meta key:
# at most MAX_NAME_CHARS characters; option and meta values at most MAX_VALUE_CHARS, MAX_ENTRIES of
# them. A refusal echoes such strings, so they stay small.
MAX_NAME_CHARS = m.MAX_NAME_CHARS
MAX_PSI_SESSION_CHARS = MAX_NAME_CHARS  # a PSI request names its session too
MAX_VALUE_CHARS = 4096
MAX_ENTRIES = 64
# A reply's info map, keys and values together (a DP party's privacy report grows with the rounds).
MAX_INFO_CHARS = 1 << 20
# An ErrorReply's code and message; a longer message of our own is cut to fit before it is sent.
MAX_ERROR_CODE_CHARS = 64
MAX_ERROR_CHARS = 4096


# The largest whole message accepted unless a party or federation file says otherwise.
DEFAULT_MAX_MESSAGE_BYTES = 1 << 30


@dataclass(frozen=True)
class Limits:
    """Bounds on incoming messages (defaults fit 1e6 rows x 16 outputs of float64)."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_elements: int = 1 << 27
    max_blobs: int = 1 << 16
    max_psi_points: int = 1 << 24


DEFAULT_LIMITS = Limits()


def _fill_tensor(t: pb.Tensor, array: np.ndarray) -> None:
    """Write ``array`` into the (empty) tensor field ``t`` in place: its raw bytes are copied
    once, into the message (building a Tensor and copying it into its parent would copy them
    again at every level)."""
    a = np.asarray(array)
    name = a.dtype.name
    if name not in ALLOWED_DTYPES:
        raise TypeError(f"cannot send an array of dtype {a.dtype}; allowed: {sorted(ALLOWED_DTYPES)}")
    a = np.ascontiguousarray(a, dtype=ALLOWED_DTYPES[name])  # a no-op for a native C-contiguous array
    t.dtype = name
    t.shape.extend(a.shape)
    t.data = a.tobytes()


def tensor_to_proto(array: np.ndarray) -> pb.Tensor:
    t = pb.Tensor()
    _fill_tensor(t, array)
    return t


def tensor_from_proto(t: pb.Tensor, limits: Limits = DEFAULT_LIMITS) -> np.ndarray:
    """The tensor as a read-only array over the message's bytes, after every check: allowed
    dtype, rank and sizes (the element count bounded before anything is allocated), byte count
    equal to the shape's, finite floats."""
    dtype = ALLOWED_DTYPES.get(t.dtype)
    if dtype is None:
        raise ProtocolError(f"tensor dtype {t.dtype!r:.40} is not allowed; allowed: {sorted(ALLOWED_DTYPES)}")
    shape = _shape(t.shape, limits, "tensor")
    count = 1
    for s in shape:
        count *= s
        if count > limits.max_elements:
            raise ProtocolError(f"tensor shape {shape} exceeds the limit of {limits.max_elements} elements")
    data = t.data  # each access of a bytes field makes a new copy: read it once
    if len(data) != count * dtype.itemsize:
        raise ProtocolError(f"tensor data has {len(data)} bytes, shape {shape} of {t.dtype} needs {count * dtype.itemsize}")
    a = np.frombuffer(data, dtype=dtype).reshape(shape)  # a read-only view of the bytes, no copy
    if dtype.kind == "f" and not all_finite(a):
        raise ProtocolError("tensor contains NaN or infinite values")
    return a if dtype.isnative else a.astype(dtype.newbyteorder("="))


def _shape(dims, limits: Limits, what: str) -> tuple[int, ...]:
    """A shape of rank <= MAX_RANK whose every size is in 0..max_elements (a zero size must not
    let another be anything: numpy cannot even describe such an empty array)."""
    if len(dims) > MAX_RANK:
        raise ProtocolError(f"{what} has rank {len(dims)}, at most {MAX_RANK}")
    shape = tuple(int(s) for s in dims)
    if any(s < 0 or s > limits.max_elements for s in shape):
        raise ProtocolError(f"{what} shape {shape} is invalid (every size in 0..{limits.max_elements})")
    return shape


def _name(value: str, what: str, limit: int = MAX_NAME_CHARS) -> str:
    if len(value) > limit:
        raise ProtocolError(f"{what} has {len(value)} characters, at most {limit}")
    return value


def _printable_name(value: str, what: str) -> str:
    """A session's or an organization's name: it is logged and kept in ledgers, so no control
    characters (a forged log line, a terminal escape)."""
    _name(value, what)
    if not value.isprintable():
        raise ProtocolError(f"{what} {printable(value)!r:.80} holds control characters")
    return value


def _entries(entries, what: str) -> dict[str, str]:
    """A string map (Setup options, encrypted payload meta), each key and value bounded."""
    if len(entries) > MAX_ENTRIES:
        raise ProtocolError(f"{what} has {len(entries)} entries, at most {MAX_ENTRIES}")
    return {_name(k, f"{what} key"): _name(v, f"{what} value", MAX_VALUE_CHARS) for k, v in entries.items()}


def _info(entries, what: str) -> dict[str, str]:
    """A reply's info map: MAX_ENTRIES entries, names bounded, MAX_INFO_CHARS characters in all."""
    if len(entries) > MAX_ENTRIES:
        raise ProtocolError(f"{what} has {len(entries)} entries, at most {MAX_ENTRIES}")
    total = sum(len(k) + len(v) for k, v in entries.items())
    if total > MAX_INFO_CHARS:
        raise ProtocolError(f"{what} has {total} characters, at most {MAX_INFO_CHARS}")
    return {_name(k, f"{what} key"): v for k, v in entries.items()}


def _cut(message: str) -> str:
    if len(message) <= MAX_ERROR_CHARS:
        return message
    note = f" ... (cut: {len(message)} characters in all)"
    return message[:MAX_ERROR_CHARS - len(note)] + note


def _fill_payload(p: pb.Payload, payload: m.Payload) -> None:
    if isinstance(payload, m.EncryptedPayload):
        e = p.encrypted
        e.scheme = payload.scheme
        e.shape.extend(payload.shape)
        e.blobs.extend(payload.blobs)
        e.meta.update(payload.meta)
    elif isinstance(payload, np.ndarray):
        _fill_tensor(p.plain, payload)
    else:
        raise TypeError(f"a payload must be a numpy array or EncryptedPayload, got {type(payload).__name__}")


def payload_from_proto(p: pb.Payload, limits: Limits = DEFAULT_LIMITS) -> m.Payload:
    which = p.WhichOneof("value")
    if which == "plain":
        return tensor_from_proto(p.plain, limits)
    if which == "encrypted":
        e = p.encrypted
        if not e.scheme:
            raise ProtocolError("encrypted payload has no scheme")
        shape = _shape(e.shape, limits, "encrypted payload")
        if len(e.blobs) > limits.max_blobs:
            raise ProtocolError(f"encrypted payload has {len(e.blobs)} blobs, limit {limits.max_blobs}")
        return m.EncryptedPayload(_name(e.scheme, "encryption scheme"), shape, tuple(bytes(b) for b in e.blobs),
                                  _entries(e.meta, "encrypted payload meta"))
    raise ProtocolError("payload is empty")


def _ids(ids) -> np.ndarray:
    return np.asarray(ids, dtype=np.int64)


def _fill_body(env: pb.Envelope, body: m.Body) -> None:
    """Write ``body`` into its field of ``env`` in place (no intermediate messages to copy)."""
    kind = m.KINDS.get(type(body))
    if kind is None:
        raise TypeError(f"not a protocol message body: {type(body).__name__}")
    b = getattr(env, kind)
    b.SetInParent()  # a body without fields (Finish) is still the one that is set
    if isinstance(body, m.Setup):
        _fill_tensor(b.train_ids, _ids(body.train_ids))
        b.n_outputs, b.rounds, b.task, b.residuals = body.n_outputs, body.rounds, body.task, body.residuals
        b.he_context = body.he_context
        b.options.update(body.options)
    elif isinstance(body, (m.SetupAck, m.FinishAck)):
        b.info.update(body.info)
    elif isinstance(body, m.FitRequest):
        _fill_payload(b.residuals, body.residuals)
    elif isinstance(body, m.FitReply):
        _fill_payload(b.predictions, body.predictions)
        b.info.update(body.info)
    elif isinstance(body, m.PredictRequest):
        _fill_tensor(b.sample_ids, _ids(body.sample_ids))
        b.rounds = body.rounds
    elif isinstance(body, m.PredictReply):
        _fill_payload(b.predictions, body.predictions)
    elif isinstance(body, m.ErrorReply):
        b.code, b.message = body.code, _cut(body.message)
    elif isinstance(body, m.PsiRequest):
        b.session, b.id_kind, b.points = body.session, body.id_kind, bytes(body.points)
    elif isinstance(body, m.PsiReply):
        b.blinded, b.points = bytes(body.blinded), bytes(body.points)
        _fill_tensor(b.handles, _ids(body.handles))
    elif isinstance(body, m.PsiSelection):
        _fill_tensor(b.handles, _ids(body.handles))
    elif isinstance(body, m.PsiSelectionAck):
        b.rows = body.rows


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
        _printable_name(b.session, "PSI session id")
        if b.id_kind not in m.PSI_ID_KINDS:
            raise ProtocolError(f"unknown PSI id kind {b.id_kind!r:.40}; expected one of {m.PSI_ID_KINDS}")
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
        if b.residuals not in m.RESIDUAL_MODES:
            raise ProtocolError(f"unknown residual mode {b.residuals!r:.40}")
        if b.task not in m.TASKS:
            raise ProtocolError(f"unknown task {b.task!r:.40}")
        return m.Setup(_int_ids(b.train_ids, limits, "train_ids"), int(b.n_outputs), int(b.rounds), b.task,
                       b.residuals, bytes(b.he_context), _entries(b.options, "setup options"))
    if which == "setup_ack":
        return m.SetupAck(_info(b.info, "setup ack info"))
    if which == "fit_request":
        return m.FitRequest(payload_from_proto(b.residuals, limits))
    if which == "fit_reply":
        return m.FitReply(payload_from_proto(b.predictions, limits), _info(b.info, "fit reply info"))
    if which == "predict_request":
        return m.PredictRequest(_int_ids(b.sample_ids, limits, "sample_ids"), int(b.rounds))
    if which == "predict_reply":
        return m.PredictReply(payload_from_proto(b.predictions, limits))
    if which == "finish":
        return m.Finish()
    if which == "finish_ack":
        return m.FinishAck(_info(b.info, "finish ack info"))
    if which.startswith("psi_"):
        return _psi_body(which, b, limits)
    return m.ErrorReply(_name(b.code, "error reply code", MAX_ERROR_CODE_CHARS),
                        _name(b.message, "error reply message", MAX_ERROR_CHARS))


def encode(envelope: m.Envelope) -> bytes:
    """Serialize an envelope to its wire bytes."""
    env = pb.Envelope(version=envelope.version, session=envelope.session, round=envelope.round,
                      sender=envelope.sender, receiver=envelope.receiver, seq=envelope.seq)
    _fill_body(env, envelope.body)
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
    for what in ("session", "sender", "receiver"):
        _printable_name(getattr(env, what), f"envelope {what}")
    return m.Envelope(env.session, int(env.round), env.sender, env.receiver, int(env.seq),
                      _body_from_proto(env, limits), int(env.version))
