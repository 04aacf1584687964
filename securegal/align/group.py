"""The PSI group: the prime-order subgroup of edwards25519, through libsodium (PyNaCl).

Points are 32-byte compressed encodings, packed back to back in one ``bytes`` (``n * 32``).
The kernels below run in worker processes (:mod:`securegal.align.workers`) and import only
PyNaCl and hashlib.

- ``hash_to_group``: ``H(x) = E(SHA-512(prefix || x)[:32])`` with ``E`` =
  ``crypto_core_ed25519_from_uniform`` (Elligator 2, then the cofactor is cleared, so H(x) has
  order L). One map, as the design names it: Elligator 2 is efficiently invertible, so a proof
  can still program H through SHA-512, and the random-oracle variant (two maps and an addition)
  would add about a third to the cost of hashing for no gain in this protocol. The prefix
  carries a protocol label and the session, so hashes never carry over between sessions or
  protocols.
- ``blind``: ``[k] P`` with ``crypto_scalarmult_ed25519_noclamp``; libsodium refuses ``P`` unless
  it is a canonical encoding of a point of prime order L, so every point a peer sends is checked
  by the multiplication itself.
- ``check``: ``crypto_core_ed25519_is_valid_point`` for peer points that are only compared.
"""
from __future__ import annotations

import hashlib

from nacl import bindings as sodium
from nacl.utils import random as csprng_bytes

from ..errors import ProtocolError

POINT_BYTES = sodium.crypto_core_ed25519_BYTES  # 32
SCALAR_BYTES = sodium.crypto_core_ed25519_SCALARBYTES  # 32
HASH_LABEL = b"securegal/psi/v1/edwards25519/sha512-elligator2"


def hash_prefix(session: str) -> bytes:
    """Domain separation: the protocol label and the length-prefixed session id."""
    s = session.encode("utf-8")
    return HASH_LABEL + b"\x00" + len(s).to_bytes(4, "big") + s


def new_scalar() -> bytes:
    """A fresh secret exponent, uniform modulo L, from libsodium's CSPRNG (never zero)."""
    while True:
        k = sodium.crypto_core_ed25519_scalar_reduce(csprng_bytes(64))
        if any(k):
            return k


def hash_to_group(prefix: bytes, ids: list[bytes]) -> bytes:
    """``H(x)`` for each canonical ID in ``ids``, packed."""
    base = hashlib.sha512(prefix)
    from_uniform = sodium.crypto_core_ed25519_from_uniform
    out = []
    for x in ids:
        h = base.copy()
        h.update(x)
        out.append(from_uniform(h.digest()[:32]))
    return b"".join(out)


def hash_and_blind(prefix: bytes, scalar: bytes, ids: list[bytes], start: int) -> bytes:
    """``[k] H(x)`` for each canonical ID, packed (``start``: index of ``ids[0]``)."""
    return blind(scalar, hash_to_group(prefix, ids), start)


def blind(scalar: bytes, points: bytes, start: int) -> bytes:
    """``[k] P`` for each packed point; a point that is not a valid group element is a
    ProtocolError naming its index (``start`` is the index of the first point)."""
    mult = sodium.crypto_scalarmult_ed25519_noclamp
    out = []
    for i in range(0, len(points), POINT_BYTES):
        try:
            out.append(mult(scalar, points[i:i + POINT_BYTES]))
        except RuntimeError:
            raise ProtocolError(f"point {start + i // POINT_BYTES} is not a valid group element") from None
    return b"".join(out)


def check(points: bytes, start: int) -> None:
    """ProtocolError unless every packed point is a valid element of the prime-order group."""
    valid = sodium.crypto_core_ed25519_is_valid_point
    for i in range(0, len(points), POINT_BYTES):
        if not valid(points[i:i + POINT_BYTES]):
            raise ProtocolError(f"point {start + i // POINT_BYTES} is not a valid group element")
