"""CKKS parameters, checked against the HomomorphicEncryption.org security standard.

The bounds are the standard's tables for ternary secrets under classical attacks (the same
tables SEAL enforces): the largest total coefficient modulus, in bits, that still gives the
security level for each ring degree N.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Mapping

from ...errors import ConfigError, InsecureParameters

# log2 of the largest coefficient modulus q for each N, per classical security level.
MAX_LOG_Q: Mapping[int, Mapping[int, int]] = {
    128: {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881},
    192: {1024: 19, 2048: 37, 4096: 75, 8192: 152, 16384: 305, 32768: 611},
    256: {1024: 14, 2048: 29, 4096: 58, 8192: 118, 16384: 237, 32768: 476},
}
MIN_SECURITY_BITS = 128
MAX_PRIME_BITS = 60  # SEAL's limit on one RNS prime
MIN_OUTPUT_HEADROOM_BITS = 8  # |predictions| up to 2^8 at least must decrypt without wrapping around


def security_bits(poly_modulus_degree: int, total_modulus_bits: int) -> int:
    """The highest standard level (128, 192, 256) these parameters meet, or 0 when below 128."""
    levels = [lvl for lvl, table in MAX_LOG_Q.items()
              if poly_modulus_degree in table and total_modulus_bits <= table[poly_modulus_degree]]
    return max(levels, default=0)


def _whole(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class CkksParams:
    """Ring degree N, the RNS prime sizes (first = decryption prime, last = special prime), the
    encoding scale 2**scale_bits and, for a chain with one rescaling prime, the predictions'
    scale 2**output_scale_bits (the smoother's two operators share the rest of the rescaled
    prime; with two rescaling primes the predictions come out at the encoding scale).
    Construction refuses anything below 128-bit security."""

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 40, 40, 60)
    scale_bits: int = 40
    output_scale_bits: int | None = None

    def __post_init__(self) -> None:
        for name in ("poly_modulus_degree", "scale_bits", "output_scale_bits"):
            value = getattr(self, name)
            if not (value is None and name == "output_scale_bits") and not _whole(value):
                raise ConfigError(f"CKKS {name} must be a whole number, got {value!r}")
        if isinstance(self.coeff_mod_bit_sizes, (str, bytes)) or not all(
                _whole(b) for b in self.coeff_mod_bit_sizes):
            raise ConfigError(f"CKKS coeff_mod_bit_sizes must be whole numbers, got {self.coeff_mod_bit_sizes!r}")
        object.__setattr__(self, "coeff_mod_bit_sizes", tuple(int(b) for b in self.coeff_mod_bit_sizes))
        n, bits = int(self.poly_modulus_degree), self.coeff_mod_bit_sizes
        if n not in MAX_LOG_Q[MIN_SECURITY_BITS]:
            raise InsecureParameters(
                f"poly_modulus_degree {n} is not one of {sorted(MAX_LOG_Q[MIN_SECURITY_BITS])}")
        if len(bits) < 2:
            raise ConfigError(f"coeff_mod_bit_sizes needs at least 2 primes, got {bits}")
        if any(not 20 <= b <= MAX_PRIME_BITS for b in bits):
            raise ConfigError(f"every coeff_mod bit size must be in [20, {MAX_PRIME_BITS}], got {bits}")
        if not 20 <= self.scale_bits < bits[0]:
            raise ConfigError(
                f"scale_bits {self.scale_bits} must be in [20, {bits[0]}) (below the first prime)")
        out = self.output_scale_bits
        if out is not None and (len(bits) != 3 or not self.scale_bits <= out <= bits[0] - MIN_OUTPUT_HEADROOM_BITS):
            raise ConfigError(f"output_scale_bits {out} needs one rescaling prime (3 primes, got {bits}) and must be "
                             f"in [scale_bits, first prime - {MIN_OUTPUT_HEADROOM_BITS}]")
        if self.security_bits < MIN_SECURITY_BITS:
            raise InsecureParameters(
                f"N={n} with a {self.total_modulus_bits}-bit coefficient modulus {bits} is below "
                f"{MIN_SECURITY_BITS}-bit security (the HE standard allows at most "
                f"{MAX_LOG_Q[MIN_SECURITY_BITS][n]} bits at this N)")

    @property
    def total_modulus_bits(self) -> int:
        return sum(self.coeff_mod_bit_sizes)

    @property
    def security_bits(self) -> int:
        return security_bits(self.poly_modulus_degree, self.total_modulus_bits)

    @property
    def slots(self) -> int:
        return self.poly_modulus_degree // 2

    @property
    def scale(self) -> float:
        return 2.0 ** self.scale_bits

    @property
    def output_scale(self) -> float:
        """The scale of the smoother's predictions (on the last level, the first prime alone)."""
        return 2.0 ** (self.scale_bits if self.output_scale_bits is None else self.output_scale_bits)

    @property
    def output_range(self) -> float:
        """Predictions must stay below this in absolute value to decrypt (half the first prime
        over the output scale); beyond it the decryption wraps around."""
        return 2.0 ** (self.coeff_mod_bit_sizes[0] - 1) / self.output_scale

    @property
    def packs_pairs(self) -> bool:
        """Whether long residual columns travel two values per slot (real and imaginary part;
        ``Layout.pairs``): on the one-rescaling-prime chain, whose public context then also
        carries the conjugation key the party needs to take the real part."""
        return self.depth == 1

    @property
    def depth(self) -> int:
        """How many rescalings a fresh ciphertext allows (primes between the first and the special one)."""
        return len(self.coeff_mod_bit_sizes) - 2

    def as_dict(self) -> dict:
        """The ``he`` facts for ``metrics.json``."""
        return {"poly_modulus_degree": self.poly_modulus_degree,
                "coeff_mod_bit_sizes": list(self.coeff_mod_bit_sizes),
                "scale_bits": self.scale_bits,
                "output_scale_bits": self.scale_bits if self.output_scale_bits is None else self.output_scale_bits,
                "security_bits": self.security_bits}


# The two chains securegal uses, chosen by the privacy plan (``PrivacyPlan.ckks_params``); both
# at N = 8192, 4096 slots, 128-bit security. See docs/he.md, "Parameters and their security".
#
# CKKS residuals without feature-DP: one rescaling prime. The smoother's stage-1 products
# (A r) are not rescaled, so its rotations run on the residuals' two primes; stage 2 (Phi z)
# rescales once. Every key switch, product, encryption and ciphertext is over two primes
# instead of three (or two, then one), and the predictions decrypt at 2^46 from the 60-bit
# prime: |f| < 2^13. Max error against plaintext ~4e-8 at 40k rows (the contract is 1e-6).
RESIDUAL_CKKS_PARAMS = CkksParams(8192, (60, 60, 60), 40, output_scale_bits=46)
# CKKS + feature-DP: two rescaling primes (60 + 40 + 40 + 60 = 200 bits), the chain the
# circuit-error bound (privacy/hedp.py, CIRCUIT_ERROR) was measured on, with 2^19 of headroom
# at the last level for the flood.
DP_CKKS_PARAMS = CkksParams(8192, (60, 40, 40, 60), 40)
