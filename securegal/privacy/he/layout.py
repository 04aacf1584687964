"""How an (n, K) array maps to CKKS slot vectors; shared by the label owner and the parties.

Two layouts, chosen from (n, K, slots) alone so both sides agree without negotiating:

- ``packed`` (K > 1 and n*K <= slots): the K columns one after another in a single vector
  (column-major ``vec``); the party applies the block-diagonal operator ``I_K (x) A``. One
  smoother pass serves all K outputs.
- ``columns``: one vector per output column, ``ceil(n/slots)`` ciphertexts each.

A training input that fits in one ciphertext is repeated with period ``period`` (the next power
of two of its length), which lets the party sum it with ``log2(period/p')`` rotations instead of
``log2(slots/p')``.

``pairs`` (chains with one rescaling prime, ``CkksParams.packs_pairs``, and a per-column input
longer than one ciphertext's slots): each slot holds two values, chunk ``c`` the values
``[2cS, 2cS + S)`` in its real parts and ``[2cS + S, 2cS + 2S)`` in its imaginary parts, so a
vector needs half the ciphertexts (and the party half the plaintext products).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def next_pow2(x: int) -> int:
    return 1 << max(int(x) - 1, 0).bit_length()


@dataclass(frozen=True)
class Layout:
    n: int
    k: int
    slots: int
    packed: bool
    pairs: bool = False

    @classmethod
    def for_training(cls, n: int, k: int, slots: int, pairs: bool = False) -> "Layout":
        """``pairs``: the parameters allow two values per slot (used when a column needs more
        than one ciphertext)."""
        if n < 1 or k < 1:
            raise ValueError(f"need n >= 1 and K >= 1, got n={n}, K={k}")
        packed = k > 1 and n * k <= slots
        return cls(int(n), int(k), int(slots), packed, bool(pairs) and not packed and n > slots)

    def with_rows(self, n: int) -> "Layout":
        """The same packing for another number of rows (test-time predictions)."""
        return Layout(int(n), self.k, self.slots, self.packed, self.pairs)

    @property
    def capacity(self) -> int:
        """Values per ciphertext."""
        return self.slots * (2 if self.pairs else 1)

    @property
    def length(self) -> int:
        """Values per vector."""
        return self.n * self.k if self.packed else self.n

    @property
    def vectors(self) -> int:
        return 1 if self.packed else self.k

    @property
    def chunks(self) -> int:
        """Ciphertexts per vector."""
        return -(-self.length // self.capacity)

    @property
    def blobs(self) -> int:
        return self.vectors * self.chunks

    @property
    def period(self) -> int:
        return min(self.slots, next_pow2(self.length))

    def input_vectors(self, r: np.ndarray) -> list[np.ndarray]:
        """Plaintext slot vectors (``vectors * chunks``, each at most ``slots`` long, complex
        with ``pairs``) for ``r`` (n, K)."""
        r = np.asarray(r, dtype=np.float64)
        if r.shape != (self.n, self.k):
            raise ValueError(f"expected an array of shape {(self.n, self.k)}, got {r.shape}")
        flat = [r.T.ravel()] if self.packed else [r[:, j] for j in range(self.k)]
        out = []
        for v in flat:
            if self.chunks == 1 and not self.pairs:
                one = np.zeros(self.period)
                one[:v.size] = v
                out.append(np.tile(one, self.slots // self.period))
            elif self.pairs:  # a real-valued period is not needed: pairs only travel over > slots values
                padded = np.zeros(self.chunks * self.capacity)
                padded[:v.size] = v
                halves = padded.reshape(self.chunks, 2, self.slots)
                out += list(halves[:, 0] + 1j * halves[:, 1])
            else:
                out += [v[i:i + self.slots] for i in range(0, v.size, self.slots)]
        return out

    def output_array(self, vectors: list[np.ndarray]) -> np.ndarray:
        """(n, K) from the decrypted output vectors (each at least ``length`` values)."""
        if len(vectors) != self.vectors:
            raise ValueError(f"expected {self.vectors} output vectors, got {len(vectors)}")
        if self.packed:
            return vectors[0][:self.length].reshape(self.k, self.n).T.copy()
        return np.stack([v[:self.n] for v in vectors], axis=1)
