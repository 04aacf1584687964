"""The PSI group: Curve25519's prime-order subgroup as X25519 u-coordinates, through libsodium (PyNaCl).

Points are 32-byte little-endian u-coordinates, packed back to back in one ``bytes`` (``n * 32``).
The kernels below run in worker processes (:mod:`securegal.align.workers`) and import only
PyNaCl and hashlib; they call libsodium through PyNaCl's own cffi module (``nacl._sodium``)
into preallocated buffers, one C call per point and no Python objects per point.

- ``hash_to_group``: ``H(x) = u(E(SHA-512(prefix || x)[:32]))`` with ``E`` =
  ``crypto_core_ed25519_from_uniform`` (Elligator 2 onto edwards25519, cofactor cleared, so H(x)
  has prime order L) and ``u = (1 + y) / (1 - y)`` the birational map to Curve25519's Montgomery
  form (the same group; the inversions are batched, one modular inversion per chunk). The
  prefix carries a protocol label and the session, so hashes never carry over between sessions.
- ``blind``: ``[k] P`` with ``crypto_scalarmult`` (X25519). Its scalars are clamped (a multiple
  of 8 with bit 254 set), so a peer's point of mixed order gives the result of its prime-order
  part, and a point off the curve lands on the quadratic twist, whose large prime-order subgroup
  keeps the scalar as hidden as on the curve (Curve25519 is twist-secure); a small-order point
  gives zero, which libsodium refuses. Exponents commute: [a][b] H(x) = [b][a] H(x).
- ``check``: peer points that are only compared must be canonical (u < p); anything else could
  only fail to match.

Why X25519 and not ``crypto_scalarmult_ed25519_noclamp``: the same group at 32 us rather than
78 us per exponentiation here, since the Edwards call also multiplies every input by L to check
its subgroup (docs/alignment.md, "Cost").
"""
from __future__ import annotations

import hashlib

import numpy as np
from nacl import bindings as sodium
from nacl._sodium import ffi, lib
from nacl.utils import random as csprng_bytes

from ..errors import ProtocolError

POINT_BYTES = sodium.crypto_scalarmult_BYTES  # 32
SCALAR_BYTES = sodium.crypto_scalarmult_SCALARBYTES  # 32
UNIFORM_BYTES = 32  # crypto_core_ed25519_from_uniform reads 32 bytes
HASH_LABEL = b"securegal/psi/v2/curve25519/sha512-elligator2"
FIELD_PRIME = 2 ** 255 - 19
_Y_MASK = (1 << 255) - 1


def hash_prefix(session: str) -> bytes:
    """Domain separation: the protocol label and the length-prefixed session id."""
    s = session.encode("utf-8")
    return HASH_LABEL + b"\x00" + len(s).to_bytes(4, "big") + s


def new_scalar() -> bytes:
    """A fresh secret exponent: 32 bytes from libsodium's CSPRNG (X25519 clamps it)."""
    return csprng_bytes(SCALAR_BYTES)


def _to_montgomery(edwards: bytes, n: int) -> bytes:
    """The u-coordinates of ``n`` packed edwards25519 points, ``u = (1 + y) / (1 - y)``, with one
    modular inversion for all of them (Montgomery's trick)."""
    p = FIELD_PRIME
    ys = [int.from_bytes(edwards[i:i + 32], "little") & _Y_MASK for i in range(0, 32 * n, 32)]
    dens = [(1 - y) % p for y in ys]
    prefix, acc = [], 1
    for d in dens:
        if d == 0:  # the identity: a hash that maps to it is a 2^-250 event, but never a silent one
            raise ProtocolError("an ID hashed to the identity point")
        prefix.append(acc)
        acc = acc * d % p
    inv = pow(acc, -1, p)
    out = [b""] * n
    for i in range(n - 1, -1, -1):
        out[i] = ((1 + ys[i]) * inv * prefix[i] % p).to_bytes(32, "little")
        inv = inv * dens[i] % p
    return b"".join(out)


def hash_to_group(prefix: bytes, ids: list[bytes]) -> bytes:
    """``H(x)`` for each canonical ID in ``ids``, packed."""
    base = hashlib.sha512(prefix)
    n = len(ids)
    uniform = bytearray(UNIFORM_BYTES * n)
    for i, x in enumerate(ids):
        h = base.copy()
        h.update(x)
        uniform[UNIFORM_BYTES * i:UNIFORM_BYTES * (i + 1)] = h.digest()[:UNIFORM_BYTES]
    src = ffi.from_buffer(uniform)
    out = ffi.new("unsigned char[]", POINT_BYTES * n)
    from_uniform = lib.crypto_core_ed25519_from_uniform
    for i in range(n):
        from_uniform(out + POINT_BYTES * i, src + UNIFORM_BYTES * i)
    return _to_montgomery(ffi.buffer(out)[:], n)


def hash_and_blind(prefix: bytes, scalar: bytes, ids: list[bytes], start: int) -> bytes:
    """``[k] H(x)`` for each canonical ID, packed (``start``: index of ``ids[0]``)."""
    return blind(scalar, hash_to_group(prefix, ids), start)


def blind(scalar: bytes, points: bytes, start: int) -> bytes:
    """``[k] P`` for each packed point; a point of small order (zero result) or a non-canonical
    encoding is a ProtocolError naming its index (``start`` is the index of the first point)."""
    if len(scalar) != SCALAR_BYTES:
        raise ValueError(f"a scalar has {SCALAR_BYTES} bytes, got {len(scalar)}")
    check(points, start)
    n = len(points) // POINT_BYTES
    src, k = ffi.from_buffer(points), ffi.from_buffer(scalar)
    out = ffi.new("unsigned char[]", POINT_BYTES * n)
    mult = lib.crypto_scalarmult
    for i in range(n):
        if mult(out + POINT_BYTES * i, k, src + POINT_BYTES * i) != 0:
            raise ProtocolError(f"point {start + i} is not a valid group element")
    return ffi.buffer(out)[:]


def check(points: bytes, start: int) -> None:
    """ProtocolError unless every packed point is a canonical u-coordinate (``u < p``), the only
    form this protocol produces."""
    if len(points) % POINT_BYTES:
        raise ProtocolError(f"{len(points)} bytes are not whole {POINT_BYTES}-byte points")
    u = np.frombuffer(points, dtype=np.uint8).reshape(-1, POINT_BYTES)
    # u >= 2^255 - 19: the top bit is set, or the top byte is 0x7f, the middle ones 0xff and the first >= 0xed
    high = u[:, 31] >= 0x80
    near = np.flatnonzero(u[:, 31] == 0x7f)  # rare: only these rows are looked at further
    if len(near):
        rows = u[near]
        high[near[(rows[:, 1:31] == 0xff).all(axis=1) & (rows[:, 0] >= 0xed)]] = True
    if high.any():
        raise ProtocolError(f"point {start + int(np.flatnonzero(high)[0])} is not a valid group element")
