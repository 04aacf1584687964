"""Turning what a party received into arrays, as a real attacker without keys can.

A plaintext payload is an array already. An encrypted payload (anything with ``blobs``) cannot
be decrypted without the key holder's secret key, so the attacker does the only thing open to
it: it reads the ciphertext bytes as if they were the array it wanted (little-endian int32
words scaled to [-1, 1), cycled if the bytes run short). The attacks then run unchanged on
that view, and their measured score is what an attacker gets from ciphertexts.
"""
from __future__ import annotations

import numpy as np


def is_encrypted(payload: object) -> bool:
    """True for an encrypted payload (it carries opaque ``blobs`` rather than numbers)."""
    return hasattr(payload, "blobs")


def as_array(payload: object, shape: tuple[int, ...]) -> np.ndarray:
    """The attacker's numeric view of ``payload`` with the given ``shape`` (float64)."""
    size = int(np.prod(shape))
    if is_encrypted(payload):
        raw = b"".join(bytes(b) for b in payload.blobs)
        if len(raw) < 4:
            raise ValueError("encrypted payload has fewer than 4 bytes: nothing to read")
        words = np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<i4").astype(np.float64) / 2.0**31
        return np.resize(words, size).reshape(shape)
    arr = np.asarray(payload, dtype=np.float64)
    if arr.size != size:
        raise ValueError(f"payload has {arr.size} values, expected shape {shape}")
    return arr.reshape(shape)


def stack_rounds(arrays: list[np.ndarray]) -> np.ndarray:
    """Stack per-round (n, K) arrays side by side into (n, T*K)."""
    if not arrays:
        raise ValueError("no rounds to stack: the transcript holds no payloads of this kind")
    arrays = [a[:, None] if a.ndim == 1 else a for a in (np.asarray(x, np.float64) for x in arrays)]
    n = arrays[0].shape[0]
    if any(a.shape[0] != n for a in arrays):
        raise ValueError(f"rounds disagree on the number of rows: {[a.shape for a in arrays]}")
    return np.hstack(arrays)


def standardize(Z: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit variance (constant columns left at zero)."""
    Z = np.asarray(Z, dtype=np.float64)
    sd = Z.std(axis=0)
    return (Z - Z.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
