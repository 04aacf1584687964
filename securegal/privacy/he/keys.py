"""The label owner's CKKS keys and the public context a feature party receives.

:class:`SecretContext` stays with the label owner: it encrypts (symmetric, seeded: half the
upload of public-key encryption) and decrypts. :class:`PublicContext` is the only form that
travels: it holds the parameters, the public key (to encrypt zeros for rounds a party did not
fit) and the Galois (rotation) keys for the listed steps, nothing else. It has no field for a secret key, and :meth:`PublicContext.from_bytes` refuses bytes that
carry one (a misconfigured label owner must not leak its key by accident). No relinearization
keys are made: the encrypted smoother multiplies ciphertexts by plaintexts only.
"""
from __future__ import annotations

import os
import struct
from typing import Iterable, Sequence

import numpy as np
import tenseal.sealapi as sealapi

from ...errors import InsecureParameters, ProtocolError
from . import _seal
from .params import CkksParams

MAGIC = b"SGCKKS\x00\x01"
CONTEXT_ID_BYTES = 16
MAX_CONTEXT_BYTES = 256 * 2**20
_SECTIONS = ("id", "params", "steps", "galois", "public_key", "secret_key")


def default_rotation_steps(slots: int) -> tuple[int, ...]:
    """Every power of two below ``slots``: what the encrypted smoother needs for any model size."""
    return tuple(1 << i for i in range(int(slots).bit_length() - 1))


def _pack_sections(sections: dict[str, bytes]) -> bytes:
    out = [MAGIC, struct.pack("<B", len(sections))]
    for name, data in sections.items():
        key = name.encode()
        out += [struct.pack("<B", len(key)), key, struct.pack("<Q", len(data)), data]
    return b"".join(out)


def _unpack_sections(data: bytes, what: str) -> dict[str, bytes]:
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"{what} must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_CONTEXT_BYTES:
        raise ProtocolError(f"{what} is {len(data)} bytes, over the {MAX_CONTEXT_BYTES}-byte limit")
    if not data.startswith(MAGIC):
        raise ProtocolError(f"{what} is not a securegal CKKS context (bad magic)")
    pos, sections = len(MAGIC) + 1, {}
    if len(data) < pos:
        raise ProtocolError(f"{what} is truncated")
    for _ in range(data[len(MAGIC)]):
        if pos + 1 > len(data):
            raise ProtocolError(f"{what} is truncated")
        klen = data[pos]
        key = data[pos + 1:pos + 1 + klen].decode("ascii", "replace")
        pos += 1 + klen
        if pos + 8 > len(data):
            raise ProtocolError(f"{what} is truncated")
        (dlen,) = struct.unpack_from("<Q", data, pos)
        pos += 8
        if pos + dlen > len(data):
            raise ProtocolError(f"{what} is truncated in section {key!r}")
        if key not in _SECTIONS or key in sections:
            raise ProtocolError(f"{what} has an unknown or repeated section {key!r}")
        sections[key] = data[pos:pos + dlen]
        pos += dlen
    if pos != len(data):
        raise ProtocolError(f"{what} has {len(data) - pos} trailing bytes")
    return sections


def _params_bytes(params: CkksParams) -> bytes:
    bits = params.coeff_mod_bit_sizes
    out = struct.pack(f"<IBB{len(bits)}B", params.poly_modulus_degree, params.scale_bits, len(bits), *bits)
    return out if params.output_scale_bits is None else out + struct.pack("<B", params.output_scale_bits)


def _params_from(data: bytes) -> CkksParams:
    if len(data) < 6 or len(data) - 6 - data[5] not in (0, 1):
        raise ProtocolError("context parameters are malformed")
    n, scale_bits, count = struct.unpack_from("<IBB", data)
    output_bits = data[6 + count] if len(data) == 7 + count else None
    try:  # refuses insecure parameters
        return CkksParams(n, tuple(data[6:6 + count]), scale_bits, output_scale_bits=output_bits)
    except InsecureParameters:
        raise
    except ValueError as exc:  # out-of-range fields: the sender's message is wrong, not our settings
        raise ProtocolError(f"context parameters are invalid: {exc}") from None


def _galois_elements(ctx, params: CkksParams, steps: Sequence[int]) -> list[int]:
    """The rotation keys for ``steps``, and conjugation where the parameters pack value pairs."""
    return _seal.galois_elements(ctx, steps) + ([_seal.conjugation_element(ctx)] if params.packs_pairs else [])


def _slot_values(values) -> np.ndarray:
    """``values`` as one flat array of slot values: complex128 if complex (value pairs), else float64."""
    values = np.asarray(values)
    return values.astype(np.complex128 if np.iscomplexobj(values) else np.float64).ravel()


def _looks_like_tenseal_context_with_secret(data: bytes) -> bool:
    import tenseal as ts
    try:
        return ts.context_from(bytes(data)).is_private()
    except Exception:  # noqa: BLE001 - any parse failure just means "not a TenSEAL context"
        return False


class _ContextBase:
    """Shared by both contexts: SEAL objects for parameters, encoding and evaluation."""

    __slots__ = ()
    params: CkksParams
    context_id: bytes

    def _init_seal(self, params: CkksParams) -> None:
        self.params = params
        self.seal = _seal.seal_context(params)
        self.encoder = sealapi.CKKSEncoder(self.seal)
        self.evaluator = sealapi.Evaluator(self.seal)
        self.levels = _seal.parms_ids(self.seal)

    @property
    def slots(self) -> int:
        return self.params.slots

    def encode(self, values: np.ndarray, level: int, scale: float | None = None) -> "sealapi.Plaintext":
        """A plaintext of ``values`` (real or complex, at most ``slots``, zero-padded) at data
        level ``level``."""
        values = _slot_values(values)
        if values.size > self.slots:
            raise ValueError(f"{values.size} values do not fit in {self.slots} slots")
        pt = sealapi.Plaintext()
        self.encoder.encode(values.tolist(), self.levels[level], self.params.scale if scale is None else scale, pt)
        return pt

    def dropped_prime(self, level: int) -> int:
        """The prime that rescaling a ciphertext at data level ``level`` divides by."""
        return self.seal.get_context_data(self.levels[level]).parms().coeff_modulus()[-1].value()

    def load_ciphertext(self, blob: bytes, what: str = "ciphertext") -> "sealapi.Ciphertext":
        """A validated ciphertext of this context (SEAL checks its parameters and coefficients)."""
        ct = sealapi.Ciphertext()
        _seal.load(blob, lambda path: ct.load(self.seal, path), what)
        if ct.poly_modulus_degree() != self.params.poly_modulus_degree or ct.size() != 2:
            raise ProtocolError(f"{what} has degree {ct.poly_modulus_degree()} and size {ct.size()}, "
                                f"expected {self.params.poly_modulus_degree} and 2")
        return ct

    def level_of(self, ct: "sealapi.Ciphertext") -> int:
        pid = ct.parms_id()
        for i, level in enumerate(self.levels):
            if list(level) == list(pid):
                return i
        raise ProtocolError("ciphertext is not at any level of this context")


class PublicContext(_ContextBase):
    """What a feature party holds: parameters and rotation keys. It cannot hold a secret key."""

    __slots__ = ("params", "context_id", "steps", "galois_keys", "seal", "encoder", "evaluator",
                 "levels", "nbytes", "_encryptor")

    def __init__(self, *_args, **_kwargs):
        raise TypeError("build a PublicContext with PublicContext.from_bytes or SecretContext.public_context")

    @classmethod
    def from_bytes(cls, data: bytes) -> "PublicContext":
        """Parse and validate the wire form; refuses contexts carrying a secret key."""
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"a CKKS public context must be bytes, got {type(data).__name__}")
        if len(data) > MAX_CONTEXT_BYTES:
            raise ProtocolError(f"CKKS public context is {len(data)} bytes, over the {MAX_CONTEXT_BYTES}-byte limit")
        if not bytes(data).startswith(MAGIC) and _looks_like_tenseal_context_with_secret(data):
            raise InsecureParameters("refusing a CKKS context that carries a secret key: a feature "
                                     "party must only ever receive the public context")
        sections = _unpack_sections(data, "CKKS public context")
        if "secret_key" in sections:
            raise InsecureParameters("refusing a CKKS context that carries a secret key: a feature "
                                     "party must only ever receive the public context")
        missing = {"id", "params", "steps", "galois", "public_key"} - set(sections)
        if missing:
            raise ProtocolError(f"CKKS public context lacks sections {sorted(missing)}")
        if len(sections["id"]) != CONTEXT_ID_BYTES or len(sections["steps"]) % 4:
            raise ProtocolError("CKKS public context has a malformed id or step list")
        self = object.__new__(cls)
        try:
            self._init_seal(_params_from(sections["params"]))
        except InsecureParameters:
            raise
        except (ValueError, RuntimeError) as exc:  # SEAL refused the peer's parameters (e.g. no qualifying primes)
            raise ProtocolError(f"CKKS public context: {exc}") from None
        self.context_id = sections["id"]
        steps = struct.unpack(f"<{len(sections['steps']) // 4}i", sections["steps"])
        if any(not 0 < s < self.slots for s in steps) or len(set(steps)) != len(steps):
            raise ProtocolError(f"CKKS public context lists invalid rotation steps {steps}")
        self.steps = tuple(sorted(steps))
        gk = sealapi.GaloisKeys()
        _seal.load(sections["galois"], lambda path: gk.load(self.seal, path), "Galois keys")
        elts = _galois_elements(self.seal, self.params, self.steps)
        if gk.size() != len(elts) or not all(gk.has_key(e) for e in elts):
            raise ProtocolError("the Galois keys do not match the listed rotation steps")
        self.galois_keys = gk
        pk = sealapi.PublicKey()
        _seal.load(sections["public_key"], lambda path: pk.load(self.seal, path), "public key")
        self._encryptor = sealapi.Encryptor(self.seal, pk)
        self.nbytes = len(data)
        return self

    def encrypt_zeros(self, level: int, scale: float | None = None) -> "sealapi.Ciphertext":
        """A fresh public-key encryption of the zero vector at data level ``level`` (and
        ``scale``, default the parameters' scale: to re-randomise a ciphertext by adding it)."""
        ct = sealapi.Ciphertext()
        self._encryptor.encrypt(self.encode(np.zeros(1), level, scale), ct)
        return ct


class SecretContext(_ContextBase):
    """The label owner's keys. ``public_context`` / ``public_bytes`` is what may travel."""

    def __init__(self, params: CkksParams | None = None, _restore: tuple[bytes, bytes] | None = None):
        self._init_seal(params or CkksParams())
        if _restore is None:
            self.context_id = os.urandom(CONTEXT_ID_BYTES)
            self._keygen = sealapi.KeyGenerator(self.seal)
        else:
            self.context_id, key_bytes = _restore
            sk = sealapi.SecretKey()
            _seal.load(key_bytes, lambda path: sk.load(self.seal, path), "secret key")
            self._keygen = sealapi.KeyGenerator(self.seal, sk)
        self._secret_key = self._keygen.secret_key()
        self._encryptor = sealapi.Encryptor(self.seal, self._secret_key)
        self._decryptor = sealapi.Decryptor(self.seal, self._secret_key)

    def public_bytes(self, steps: Iterable[int] | None = None) -> bytes:
        """The wire form of the public context: parameters, the public key and seeded Galois keys
        for ``steps`` (default: every power of two below the slot count). Never a secret or relin key."""
        steps = tuple(sorted(set(default_rotation_steps(self.slots) if steps is None else steps)))
        if not steps or any(not 0 < int(s) < self.slots for s in steps):
            raise ValueError(f"rotation steps must be in (0, {self.slots}), got {steps}")
        galois = _seal.dump(self._keygen.create_galois_keys(_galois_elements(self.seal, self.params, steps)))
        public_key = sealapi.PublicKey()
        self._keygen.create_public_key(public_key)
        return _pack_sections({"id": self.context_id, "params": _params_bytes(self.params),
                               "steps": struct.pack(f"<{len(steps)}i", *steps), "galois": galois,
                               "public_key": _seal.dump(public_key)})

    def public_context(self, steps: Iterable[int] | None = None) -> PublicContext:
        return PublicContext.from_bytes(self.public_bytes(steps))

    def encrypt(self, values: np.ndarray) -> tuple[bytes, ...]:
        """Seeded symmetric encryptions of ``values`` (1-D, real or complex), one ciphertext per
        ``slots`` values."""
        values = _slot_values(values)
        if not np.isfinite(values).all():
            raise ValueError("cannot encrypt non-finite values")
        chunks = range(0, max(values.size, 1), self.slots)
        return tuple(_seal.dump(self._encryptor.encrypt_symmetric(self.encode(values[i:i + self.slots], 0)))
                     for i in chunks)

    def decrypt(self, cts: Sequence["sealapi.Ciphertext"], n: int, pairs: bool = False) -> np.ndarray:
        """The first ``n`` values held by the concatenated slots of ``cts``; ``pairs``: each
        ciphertext holds its real parts, then its imaginary parts (``Layout.pairs``)."""
        out = []
        for ct in cts:
            pt = sealapi.Plaintext()
            self._decryptor.decrypt(ct, pt)
            if pairs:
                values = np.asarray(self.encoder.decode_complex(pt))
                out += [values.real, values.imag]
            else:
                out.append(np.asarray(self.encoder.decode_double(pt)))
        values = np.concatenate(out) if out else np.zeros(0)
        if values.size < n:
            raise ProtocolError(f"ciphertexts hold {values.size} slots, need {n}")
        return values[:n]

    def to_bytes(self) -> bytes:
        """The full context INCLUDING THE SECRET KEY, for the label owner's own storage only."""
        return _pack_sections({"id": self.context_id, "params": _params_bytes(self.params),
                               "steps": b"", "galois": b"", "secret_key": _seal.dump(self._secret_key)})

    @classmethod
    def from_bytes(cls, data: bytes) -> "SecretContext":
        """Restore what :meth:`to_bytes` stored (same keys, same context id)."""
        sections = _unpack_sections(data, "CKKS secret context")
        if "secret_key" not in sections or len(sections.get("id", b"")) != CONTEXT_ID_BYTES:
            raise ProtocolError("CKKS secret context lacks its secret key or id")
        return cls(_params_from(sections["params"]), _restore=(sections["id"], sections["secret_key"]))
