"""HAZMAT: slot packing and rotations for the encrypted linear smoother (raw SEAL).

Use :class:`securegal.privacy.he.smoother.EncryptedSmoother`. Nothing here validates inputs.

Notation: ``S`` slots, residual chunk ``c`` holds ``r[c*S:(c+1)*S]`` (zero padded), ``P`` is the
model size ``p`` padded to a power of two (so ``P`` divides ``S``), ``rot_k`` rotates the slots
left by ``k`` (slot ``s`` receives slot ``s+k``). An input that fits one ciphertext may repeat
with a period ``L`` (a power of two, ``P <= L <= S``); then every index below wraps at ``L``
instead of ``S`` and the fold needs ``log2(L/P)`` rotations.

Stage 1, ``z = A r``: with ``P_{c,k}[s] = A[s mod P, cS + (s+k) mod S]``,
``sum_k rot_k(sum_c ct_c * rot_{-k}(P_{c,k}))`` holds, in slot ``s``, the part of ``z_{s mod P}``
from samples ``s..s+P-1``; summing slots of equal residue mod ``P`` (``log2(S/P)`` rotations by
``P, 2P, ..., S/2``) leaves ``z_{s mod P}`` in every slot ``s``: ``z`` arrives replicated.

Stage 2, ``f = Phi z``: with ``R_{c,k}[s] = Phi[cS + s, (s+k) mod P]``,
``f_c = sum_k rot_k(Z) * R_{c,k}``.

Both sums over ``k = a*g + b`` use baby-step giant-step: baby rotations by 1 (``g-1`` of them),
giant steps by ``g`` in a Horner scheme (``P/g - 1``); ``g`` is chosen per stage from the number
of chunks. Rotations per output column are at most ``2(P-1) + log2(S/P)``, whatever ``n``;
plaintext multiplications are ``2 * P * ceil(n/S)``. Rotation keys used: 1, g and ``P * 2^i``,
all powers of two.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import tenseal.sealapi as sealapi


def padded_width(p: int) -> int:
    return 1 << max(int(p) - 1, 0).bit_length()


def stage1_cost(g: int, P: int, chunks: int) -> int:
    return (g - 1) * chunks + (P // g - 1)


def stage2_cost(g: int, P: int, chunks: int) -> int:
    return (g - 1) + chunks * (P // g - 1)


def best_giant(cost: Callable[[int, int, int], int], P: int, chunks: int) -> int:
    options = [1 << i for i in range(P.bit_length()) if (1 << i) <= P]
    return min(options, key=lambda g: (cost(g, P, chunks), g))


@dataclass(frozen=True)
class Plan:
    slots: int
    P: int
    chunks: int
    g1: int
    g2: int
    period: int  # the input repeats with this period (a power of two, a multiple of P)

    @property
    def fold_steps(self) -> tuple[int, ...]:
        steps, step = [], self.P
        while step < self.period:
            steps.append(step)
            step *= 2
        return tuple(steps)

    @property
    def steps(self) -> tuple[int, ...]:
        return tuple(sorted({1, self.g1, self.g2, *self.fold_steps} - {self.slots}))

    def rotations_per_column(self) -> int:
        """Rotations of one training pass over one encrypted vector."""
        return (stage1_cost(self.g1, self.P, self.chunks) + len(self.fold_steps)
                + stage2_cost(self.g2, self.P, self.chunks))


def make_plan(slots: int, p: int, n: int, input_period: int | None = None) -> Plan:
    """``input_period``: the period the label owner repeated a one-ciphertext input with."""
    P = padded_width(p)
    chunks = -(-n // slots)
    period = slots if chunks > 1 or input_period is None else max(int(input_period), P)
    return Plan(slots, P, chunks, best_giant(stage1_cost, P, chunks), best_giant(stage2_cost, P, chunks), period)


# Relative cost of one rotation (key switching) against one plaintext multiplication, measured
# with SEAL at N = 8192 (about 1 ms against 0.12 ms): only used to choose how to split a model.
ROTATION_COST = 8


def plan_cost(plan: Plan) -> int:
    """Estimated cost of one training pass of one vector, in plaintext multiplications."""
    return 2 * plan.P * plan.chunks + ROTATION_COST * plan.rotations_per_column()


def split_width(slots: int, width: int, n: int, input_period: int | None = None) -> list[tuple[int, int]]:
    """Row ranges ``[lo, hi)`` of a ``width``-row operator, each run as its own plan.

    A model of ``p`` rows is padded to the next power of two, so p = 9 costs as much as 16 in
    plaintext products; cutting it into power-of-two blocks (8 + 1) costs exactly ``p`` per chunk
    but adds each block's fold rotations. The cut with the lowest :func:`plan_cost` is taken
    (the whole padded width when that is cheapest, e.g. for a one-ciphertext input)."""
    def cost(w: int) -> int:
        return plan_cost(make_plan(slots, w, n, input_period))

    def best(w: int) -> tuple[int, list[int]]:
        whole = (cost(w), [w])
        top = 1 << (w.bit_length() - 1)
        if top == w:
            return whole
        rest_cost, rest = best(w - top)
        split = (cost(top) + rest_cost, [top, *rest])
        return split if split[0] < whole[0] else whole

    ranges, lo = [], 0
    for size in best(int(width))[1]:
        ranges.append((lo, lo + size))
        lo += size
    return ranges


def _pad(M: np.ndarray, rows: int, cols: int) -> np.ndarray:
    out = np.zeros((rows, cols))
    out[:M.shape[0], :M.shape[1]] = M
    return out


def stage1_diagonals(plan: Plan, A: np.ndarray, chunks: int | None = None) -> list[list[list[np.ndarray]]]:
    """``W[c][a][b] = rot_{-a g}(P_{c, a g + b})`` for ``A`` (p, n); indices wrap at the period.
    ``chunks``: how many (default the plan's; twice that for value pairs, see :func:`pair_up`)."""
    S, P, g, L = plan.slots, plan.P, plan.g1, plan.period
    chunks = plan.chunks if chunks is None else chunks
    Ap = _pad(A, P, chunks * L)
    s = np.arange(L)
    W = []
    for c in range(chunks):
        per_a = []
        for a in range(P // g):
            per_b = []
            for b in range(g):
                diag = Ap[s % P, c * L + (s + a * g + b) % L]
                per_b.append(np.tile(np.roll(diag, a * g), S // L))
            per_a.append(per_b)
        W.append(per_a)
    return W


def stage2_diagonals(plan: Plan, Phi: np.ndarray, chunks: int) -> list[list[list[np.ndarray]]]:
    """``V[c][a][b] = rot_{-a g}(R_{c, a g + b})`` for ``Phi`` (rows, p) over ``chunks`` chunks."""
    S, P, g = plan.slots, plan.P, plan.g2
    Phip = _pad(Phi, chunks * S, P)
    s = np.arange(S)
    V = []
    for c in range(chunks):
        per_a = []
        for a in range(P // g):
            per_b = []
            for b in range(g):
                k = a * g + b
                per_b.append(np.roll(Phip[c * S + s, (s + k) % P], a * g))
            per_a.append(per_b)
        V.append(per_a)
    return V


def pair_up(diagonals: list, sign: float) -> list:
    """Chunk diagonals of twice the chunks as complex ones for value pairs (``Layout.pairs``):
    chunk c's real parts use chunk 2c's, its imaginary parts chunk 2c+1's. Stage 1 takes
    ``sign = -1``: ``Re(W r)`` sums both halves' products, and ``Y + conj(Y)`` is twice that
    real part; stage 2 takes ``sign = +1``: a real ``z`` times ``V_2c + i V_2c+1``."""
    return [[[re + sign * 1j * im for re, im in zip(per_re, per_im)]
             for per_re, per_im in zip(first, second)]
            for first, second in zip(diagonals[0::2], diagonals[1::2])]


class Ops:
    """The few SEAL operations the smoother uses, with a rotation counter."""

    def __init__(self, evaluator: "sealapi.Evaluator", galois_keys: "sealapi.GaloisKeys"):
        self.ev, self.gk = evaluator, galois_keys
        self.rotations = 0

    def rotate(self, ct, step: int):
        out = sealapi.Ciphertext()
        self.ev.rotate_vector(ct, step, self.gk, out)
        self.rotations += 1
        return out

    def mul_plain(self, ct, pt):
        out = sealapi.Ciphertext()
        self.ev.multiply_plain(ct, pt, out)
        return out

    def add_into(self, acc, ct):
        if acc is None:
            return ct
        self.ev.add_inplace(acc, ct)
        return acc

    def negated_sum(self, cts: Sequence):
        """``-(sum of cts)`` as a new ciphertext (same level and scale as the inputs)."""
        out = sealapi.Ciphertext()
        self.ev.negate(cts[0], out)
        for ct in cts[1:]:
            self.ev.sub_inplace(out, ct)
        return out

    def conjugate(self, ct):
        """``ct + conj(ct)``: twice the real part of every slot (one key switch)."""
        out = sealapi.Ciphertext()
        self.ev.complex_conjugate(ct, self.gk, out)
        self.rotations += 1
        self.ev.add_inplace(out, ct)
        return out

    def rescale(self, ct):
        self.ev.rescale_to_next_inplace(ct)
        return ct


def _baby(ops: Ops, ct, g: int) -> list:
    out = [ct]
    for _ in range(1, g):
        out.append(ops.rotate(out[-1], 1))
    return out


def _horner(ops: Ops, parts: Sequence, g: int):
    """``sum_a rot_{a g}(parts[a])``; ``None`` parts are zero."""
    acc = None
    for part in reversed(parts):
        if acc is not None:
            acc = ops.rotate(acc, g)
        if part is not None:
            acc = ops.add_into(acc, part)
    return acc


def apply_stage1(ops: Ops, plan: Plan, cts: Sequence, W, rescale: bool = True) -> "sealapi.Ciphertext":
    """Replicated ``z`` from residual chunks ``cts`` and encoded ``W`` (``None`` entries are zero
    diagonals); ``None`` if every diagonal is zero. ``rescale``: one level down (a chain with two
    rescaling primes); otherwise ``z`` stays on the residuals' level at the products' scale."""
    g = plan.g1
    giants = [None] * (plan.P // g)
    for c, ct in enumerate(cts):
        babies = _baby(ops, ct, g)
        for a in range(plan.P // g):
            for b in range(g):
                if W[c][a][b] is not None:
                    giants[a] = ops.add_into(giants[a], ops.mul_plain(babies[b], W[c][a][b]))
    # With two rescaling primes, rescale each giant step first: its rotations then run one level
    # down, where key switching costs about half as much as on the fresh residuals.
    if rescale:
        giants = [None if part is None else ops.rescale(part) for part in giants]
    z = _horner(ops, giants, g)
    if z is None:
        return None
    for step in plan.fold_steps:
        z = ops.add_into(ops.rotate(z, step), z)
    return z


def stage2_babies(ops: Ops, plan: Plan, z) -> list:
    """``rot_b(z)`` for ``b < g2``: computed once per model, reused for every prediction."""
    return _baby(ops, z, plan.g2)


def apply_stage2(ops: Ops, plan: Plan, babies: Sequence, V) -> list:
    """``Phi z`` chunks (not yet rescaled, so the model blocks' parts are summed first and
    rescaled once; ``None`` where every diagonal is zero) from the baby steps of the replicated
    ``z``."""
    g = plan.g2
    out = []
    for per_a in V:
        giants = []
        for per_b in per_a:
            acc = None
            for b, pt in enumerate(per_b):
                if pt is not None:
                    acc = ops.add_into(acc, ops.mul_plain(babies[b], pt))
            giants.append(acc)
        out.append(_horner(ops, giants, g))
    return out
