"""CKKS ciphertexts on the wire: ``EncryptedPayload(scheme="ckks", shape, blobs, meta)``.

Layout: for a logical array of shape ``(..., n, K)``, the ciphertexts of each (n, K) slice in
the :class:`~securegal.privacy.he.layout.Layout` order (per vector, its chunks), leading
dimensions outermost. ``meta`` binds the ciphertexts to the context
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
from .keys import _ContextBase
from .layout import Layout

SCHEME = "ckks"
KINDS = ("residuals", "predictions", "test_predictions")
_HEADER_SLACK = 4096


def blob_hashes(blobs: Sequence[bytes]) -> tuple[bytes, ...]:
    """What the digest needs of each ciphertext (its length and SHA-256): computed once when the
    same ciphertexts go to several parties, each under its own digest."""
    return tuple(len(blob).to_bytes(8, "little") + hashlib.sha256(blob).digest() for blob in blobs)


def _digest(context_id: bytes, kind: str, party: str, round: int, shape: tuple, hashes: Sequence[bytes],
            omitted: bool = False, mean: bool = False) -> str:
    h = hashlib.sha256(b"securegal-ckks-v1\x00")
    parts = (context_id.hex(), kind, party, str(int(round)), ",".join(map(str, shape)))
    for part in parts + (("omitted-last",) if omitted else ()) + (("mean-separate",) if mean else ()):
        encoded = part.encode()
        h.update(len(encoded).to_bytes(4, "little") + encoded)
    for one in hashes:
        h.update(one)
    return h.hexdigest()


def _slice_layout(shape: tuple[int, ...], layout: Layout) -> Layout:
    if len(shape) < 2 or tuple(shape[-1:]) != (layout.k,):
        raise ValueError(f"shape {shape} does not end in K={layout.k} columns")
    return layout.with_rows(shape[-2])


def blob_count(shape: tuple[int, ...], layout: Layout, omitted: bool = False, mean: bool = False) -> int:
    """Ciphertexts of a ``shape`` array; ``omitted``: its last output column is left out (it is
    minus the sum of the others), one vector fewer per (n, K) slice; ``mean``: each vector is
    followed by one ciphertext of its mean (:func:`can_separate_mean`)."""
    sl = _slice_layout(shape, layout)
    return math.prod(shape[:-2]) * (sl.vectors - (1 if omitted else 0)) * (sl.chunks + (1 if mean else 0))


def can_omit_last(layout: Layout) -> bool:
    """Only one-vector-per-column layouts with K >= 2 can leave a column out."""
    return not layout.packed and layout.k >= 2


def can_separate_mean(layout: Layout) -> bool:
    """Residuals in a one-vector-per-column layout may travel centred, each column followed by
    a ciphertext holding its mean in every slot (a party then needs no rotations to sum a
    constant row of its operator, e.g. the intercept of a ridge on centred columns)."""
    return not layout.packed


def _layout_name(layout: Layout) -> str:
    return "packed" if layout.packed else "columns"


def pack(context: _ContextBase, kind: str, party: str, round: int, shape: tuple[int, ...],
         blobs: Sequence[bytes], layout: Layout, hashes: Sequence[bytes] | None = None,
         omitted: bool = False, mean: bool = False) -> EncryptedPayload:
    """Wrap serialized ciphertexts of a logical ``shape`` array, bound to context/kind/party/round.
    ``hashes``: :func:`blob_hashes` of ``blobs`` when the caller already has them. ``omitted``
    (residuals and a round's train predictions): the last column is not sent, it is minus the sum
    of the others (bound in the digest). ``mean`` (residuals only): each vector is centred and
    followed by a ciphertext of its mean (bound in the digest)."""
    if kind not in KINDS:
        raise ValueError(f"unknown ciphertext kind {kind!r}; choose one of {KINDS}")
    shape = tuple(int(s) for s in shape)
    blobs = tuple(bytes(b) for b in blobs)
    if omitted and (kind == "test_predictions" or len(shape) != 2 or not can_omit_last(_slice_layout(shape, layout))):
        raise ValueError(f"only residuals and train predictions in a per-column layout with K >= 2 can omit a "
                         f"column ({kind}, {layout})")
    if mean and (kind != "residuals" or len(shape) != 2 or not can_separate_mean(_slice_layout(shape, layout))):
        raise ValueError(f"only residuals in a per-column layout can travel with separate means ({kind}, {layout})")
    if len(blobs) != blob_count(shape, layout, omitted, mean):
        raise ValueError(f"{len(blobs)} ciphertexts do not match shape {shape} at {context.slots} slots")
    meta = {"context": context.context_id.hex(), "kind": kind, "party": party, "round": str(int(round)),
            "slots": str(context.slots), "layout": _layout_name(layout),
            "digest": _digest(context.context_id, kind, party, round, shape,
                              blob_hashes(blobs) if hashes is None else hashes, omitted, mean)}
    if omitted:
        meta["omitted"] = "last"
    if mean:
        meta["mean"] = "separate"
    return EncryptedPayload(scheme=SCHEME, shape=shape, blobs=blobs, meta=meta)


def serialize(cts: Sequence) -> tuple[bytes, ...]:
    return tuple(_seal.dump(ct) for ct in cts)


def unpack(payload: Payload, context: _ContextBase, kind: str, party: str, round: int,
           shape: tuple[int, ...], level: int, layout: Layout, allow_omitted: bool = False,
           allow_mean: bool = False) -> list:
    """Validate ``payload`` against what is expected and load its ciphertexts.

    Returns the encrypted vectors, each a list of chunks, over the leading dimensions in
    row-major order. Every ciphertext must sit at data level ``level``. With ``allow_omitted``
    the payload may leave its last column out (:func:`omits_last` tells; one vector fewer);
    with ``allow_mean`` each vector may end with its mean's ciphertext (:func:`has_means` tells).
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
    for key, expected in (("kind", kind), ("party", party), ("round", str(int(round))),
                          ("layout", _layout_name(layout))):
        if meta.get(key) != expected:
            raise ProtocolError(f"{what}: ciphertexts are for {key} {meta.get(key)!r}, expected {expected!r}")
    omitted = meta.get("omitted") == "last"
    if "omitted" in meta and (not omitted or not allow_omitted or not can_omit_last(_slice_layout(shape, layout))):
        raise ProtocolError(f"{what}: leaves out column {meta['omitted']!r}, which is not accepted here")
    mean = meta.get("mean") == "separate"
    if "mean" in meta and (not mean or not allow_mean or not can_separate_mean(_slice_layout(shape, layout))):
        raise ProtocolError(f"{what}: sends means {meta['mean']!r}, which is not accepted here")
    expected_count = blob_count(shape, layout, omitted, mean)
    if len(payload.blobs) != expected_count:
        raise ProtocolError(f"{what}: {len(payload.blobs)} ciphertexts, expected {expected_count}")
    params = context.params
    max_bytes = 2 * params.poly_modulus_degree * len(params.coeff_mod_bit_sizes) * 8 + _HEADER_SLACK
    if any(len(b) > max_bytes for b in payload.blobs):
        raise ProtocolError(f"{what}: a ciphertext is larger than the {max_bytes}-byte limit")
    digest = _digest(context.context_id, kind, party, round, shape, blob_hashes(payload.blobs), omitted, mean)
    if not hmac.compare_digest(str(meta.get("digest", "")), digest):
        raise ProtocolError(f"{what}: digest mismatch (truncated or altered ciphertexts)")
    cts = [context.load_ciphertext(b, what) for b in payload.blobs]
    for ct in cts:
        if context.level_of(ct) != level:
            raise ProtocolError(f"{what}: ciphertext at level {context.level_of(ct)}, expected {level}")
    chunks = _slice_layout(shape, layout).chunks + (1 if mean else 0)
    return [cts[i:i + chunks] for i in range(0, len(cts), chunks)]


def has_means(payload: EncryptedPayload) -> bool:
    """Whether a payload :func:`unpack` accepted ends each vector with its mean's ciphertext."""
    return payload.meta.get("mean") == "separate"


def omits_last(payload: EncryptedPayload) -> bool:
    """Whether a payload :func:`unpack` accepted leaves its last column out."""
    return payload.meta.get("omitted") == "last"


def decrypt(context, vectors: list, shape: tuple[int, ...], layout: Layout, omitted: bool = False) -> np.ndarray:
    """The plaintext array of ``shape`` from :func:`unpack`'s vectors (label owner only);
    ``omitted``: the last column was left out, it is minus the sum of the others."""
    sl = _slice_layout(shape, layout)
    if omitted:
        cols = np.stack([context.decrypt(v, sl.length, sl.pairs)[:sl.n] for v in vectors], axis=1)
        return np.hstack([cols, -cols.sum(axis=1, keepdims=True)]).reshape(shape)
    values = [context.decrypt(v, sl.length, sl.pairs) for v in vectors]
    slices = [sl.output_array(values[i:i + sl.vectors]) for i in range(0, len(values), sl.vectors)]
    return np.stack(slices).reshape(shape)
