"""CKKS ciphertexts on the wire: ``EncryptedPayload(scheme="ckks", shape, blobs, meta)``.

Layout: for a logical array of shape ``(..., n, K)``, one run of ``ceil(n/slots)`` ciphertexts
per output column, leading dimensions outermost. ``meta`` binds the ciphertexts to the context
(a random id per key pair, hence per session), the kind of message, the party and the round,
with a SHA-256 digest over those and every blob. Opening checks all of it before any ciphertext
is used, so truncated, altered, misrouted or replayed ciphertexts give a clear
:class:`ProtocolError` and nothing is computed on them. The digest is not a MAC: it catches
corruption and mix-ups; an active network attacker is stopped by mutual TLS.
"""
from __future__ import annotations

import hashlib
import hmac
import math
from typing import Sequence

import numpy as np

from ...errors import ProtocolError
from ...messages import EncryptedPayload, Payload
from . import _seal
from .keys import _Keyless

SCHEME = "ckks"
KINDS = ("residuals", "predictions", "test_predictions")
_HEADER_SLACK = 4096


def _digest(context_id: bytes, kind: str, party: str, round: int, shape: tuple, blobs: Sequence[bytes]) -> str:
    h = hashlib.sha256(b"securegal-ckks-v1\x00")
    for part in (context_id.hex(), kind, party, str(int(round)), ",".join(map(str, shape))):
        encoded = part.encode()
        h.update(len(encoded).to_bytes(4, "little") + encoded)
    for blob in blobs:
        h.update(len(blob).to_bytes(8, "little") + hashlib.sha256(blob).digest())
    return h.hexdigest()


def blob_count(shape: tuple[int, ...], slots: int) -> int:
    *lead, n, k = shape
    return math.prod(lead) * k * -(-n // slots)


def pack(context: _Keyless, kind: str, party: str, round: int, shape: tuple[int, ...],
         blobs: Sequence[bytes]) -> EncryptedPayload:
    """Wrap serialized ciphertexts of a logical ``shape`` array, bound to context/kind/party/round."""
    if kind not in KINDS:
        raise ValueError(f"unknown ciphertext kind {kind!r}; choose one of {KINDS}")
    shape = tuple(int(s) for s in shape)
    blobs = tuple(bytes(b) for b in blobs)
    if len(shape) < 2 or len(blobs) != blob_count(shape, context.slots):
        raise ValueError(f"{len(blobs)} ciphertexts do not match shape {shape} at {context.slots} slots")
    meta = {"context": context.context_id.hex(), "kind": kind, "party": party, "round": str(int(round)),
            "slots": str(context.slots), "digest": _digest(context.context_id, kind, party, round, shape, blobs)}
    return EncryptedPayload(scheme=SCHEME, shape=shape, blobs=blobs, meta=meta)


def serialize(cts: Sequence) -> tuple[bytes, ...]:
    return tuple(_seal.dump(ct) for ct in cts)


def unpack(payload: Payload, context: _Keyless, kind: str, party: str, round: int,
           shape: tuple[int, ...], level: int) -> list:
    """Validate ``payload`` against what is expected and load its ciphertexts.

    Returns a list of per-column chunk lists (``[...][k] -> [ct, ...]`` flattened over the
    leading dimensions in row-major order). Every ciphertext must sit at data level ``level``.
    """
    what = f"{kind} of party {party!r} in round {round}"
    if not isinstance(payload, EncryptedPayload):
        raise ProtocolError(f"{what}: expected CKKS ciphertexts, got {type(payload).__name__}")
    if payload.scheme != SCHEME:
        raise ProtocolError(f"{what}: expected scheme {SCHEME!r}, got {payload.scheme!r}")
    meta, shape = dict(payload.meta), tuple(int(s) for s in shape)
    if tuple(payload.shape) != shape:
        raise ProtocolError(f"{what}: shape {tuple(payload.shape)}, expected {shape}")
    if meta.get("slots") != str(context.slots):
        raise ProtocolError(f"{what}: ciphertexts with {meta.get('slots')} slots, this context has {context.slots}")
    if meta.get("context") != context.context_id.hex():
        raise ProtocolError(f"{what}: ciphertexts from another CKKS context (another session or key)")
    for key, expected in (("kind", kind), ("party", party), ("round", str(int(round)))):
        if meta.get(key) != expected:
            raise ProtocolError(f"{what}: ciphertexts are for {key} {meta.get(key)!r}, expected {expected!r}")
    expected_count = blob_count(shape, context.slots)
    if len(payload.blobs) != expected_count:
        raise ProtocolError(f"{what}: {len(payload.blobs)} ciphertexts, expected {expected_count}")
    params = context.params
    max_bytes = 2 * params.poly_modulus_degree * len(params.coeff_mod_bit_sizes) * 8 + _HEADER_SLACK
    if any(len(b) > max_bytes for b in payload.blobs):
        raise ProtocolError(f"{what}: a ciphertext is larger than the {max_bytes}-byte limit")
    digest = _digest(context.context_id, kind, party, round, shape, payload.blobs)
    if not hmac.compare_digest(str(meta.get("digest", "")), digest):
        raise ProtocolError(f"{what}: digest mismatch (truncated or altered ciphertexts)")
    cts = [context.load_ciphertext(b, what) for b in payload.blobs]
    for ct in cts:
        if context.level_of(ct) != level:
            raise ProtocolError(f"{what}: ciphertext at level {context.level_of(ct)}, expected {level}")
    chunks = -(-shape[-2] // context.slots)
    return [cts[i:i + chunks] for i in range(0, len(cts), chunks)]


def decrypt_columns(context, columns: list, shape: tuple[int, ...]) -> np.ndarray:
    """The plaintext array of ``shape`` from :func:`unpack`'s columns (label owner only)."""
    *lead, n, k = shape
    values = np.stack([context.decrypt(col, n) for col in columns]).reshape(*lead, k, n)
    return np.swapaxes(values, -1, -2)
