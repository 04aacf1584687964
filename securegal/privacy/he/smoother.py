"""A linear smoother applied to encrypted residuals: the feature party's side of CKKS GAL.

Given the party's plaintext operator (``A`` (p, n), ``Phi`` (n, p); :class:`SmootherOperator`)
and CKKS-encrypted residuals (K output columns, in the :class:`Layout` both sides derive from
n, K and the slot count), :meth:`EncryptedSmoother.fit` returns ``enc(z)``, ``z = A r`` (the
party's encrypted round model) and ``enc(f)``, ``f = Phi z`` (what goes back to the label
owner); :meth:`EncryptedSmoother.predict` returns ``enc(Phi_test z)``.

Cost per encrypted vector (one per output column, or one for all K when they fit one
ciphertext), per model block: ``2 p' ceil(n/slots)`` plaintext multiplications and at most
``2(p'-1) + log2(slots/p')`` rotations (``p'`` = the block's size rounded up to a power of
two). The model's rows are cut into power-of-two blocks where that is cheaper than padding
(p = 9 runs as 8 + 1: 18 instead of 32 products per chunk; :func:`_packing.split_width`). The
plaintext encodings of ``A`` and ``Phi`` are made once per session, here. For precision each
block's ``A`` rows are scaled by ``alpha`` and its ``Phi`` columns by ``1/alpha`` (``_alpha``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ...errors import ProtocolError
from ...learners.base import SmootherOperator
from . import _packing
from .keys import PublicContext
from .layout import Layout

MIN_DEPTH = 1
_SCALE_TOLERANCE = 1e-9
# A row of A whose entries agree to this relative tolerance is constant: on centred residuals its
# product is zero (error at most this times the row's size times sum |r|), so it is skipped.
CONSTANT_ROW_TOLERANCE = 1e-9


@dataclass(frozen=True)
class EncryptedRound:
    """One fitted round: ``z[v]`` the model ciphertexts of vector v (one per model block),
    ``f[v]`` its train-prediction chunks. ``derived_last``: the last vector is minus the sum of
    the others (the residuals left that column out), and so are its predictions."""

    z: tuple[tuple, ...]
    f: tuple[tuple, ...]
    derived_last: bool = False


@dataclass(frozen=True)
class Schedule:
    """Where the two plaintext products rescale, from the context's prime chain.

    Two or more rescaling primes (60, 40, 40, 60): the operator is encoded at the scale
    ``Delta``, each stage rescales, the model ``z`` sits one level down and the predictions two.
    One rescaling prime ``q`` (60, 60, 60): both operators are encoded at
    ``sqrt(q * output_scale / Delta)``, stage 1 does not rescale (its rotations run on the
    residuals' two primes, at a scale where key-switching noise is negligible), stage 2 rescales
    once by ``q`` and the predictions come out at ``params.output_scale`` on the last level."""

    rescale_stage1: bool
    model_level: int
    operator_scale: float
    model_scale: float

    @classmethod
    def of(cls, context: PublicContext) -> "Schedule":
        delta = context.params.scale
        if context.params.depth >= 2:
            return cls(True, 1, delta, delta)
        root = float(np.sqrt(context.dropped_prime(0) * context.params.output_scale / delta))
        return cls(False, 0, root, delta * root)

    @property
    def output_level(self) -> int:
        return self.model_level + 1


@dataclass
class _Block:
    """Rows ``[lo, hi)`` of the (block-diagonal) operator, run with their own plan.

    ``row_sums``: ``A[lo:hi] 1`` repeated with period ``P`` (encoded; None when zero), what the
    block's model gets from a residual mean ``m``: ``z = A (r - m) + m A 1``. ``constant``: every
    row is constant, so ``A (r - m)`` is zero and centred residuals need no stage 1 at all (its
    ``W`` is then only encoded if uncentred residuals arrive)."""

    lo: int
    hi: int
    plan: _packing.Plan
    W: list | None
    V: list
    row_sums: object
    constant: bool
    alpha: float


def check_context_fits(context: PublicContext, p: int, n: int, outputs: int) -> None:
    """Refuse (ProtocolError) a label owner's context the smoother of a ``p``-column model on
    ``n`` rows and ``outputs`` outputs cannot run on: too few rescaling primes, too few slots, or
    rotation keys missing. Shapes only: a party calls it before anything is reserved or spent."""
    if context.params.depth < MIN_DEPTH:  # the context is the label owner's: a peer's mistake
        raise ProtocolError(f"the encrypted smoother needs at least {MIN_DEPTH} rescaling prime; "
                            f"coeff_mod_bit_sizes {context.params.coeff_mod_bit_sizes} give {context.params.depth}")
    layout = Layout.for_training(n, outputs, context.slots, pairs=context.params.packs_pairs)
    blocks = outputs if layout.packed else 1
    width = p * blocks
    if width > context.slots:
        raise ProtocolError(f"model size p={p} (x{blocks} outputs) exceeds the {context.slots} slots of the label "
                            "owner's context")
    period = layout.period if layout.chunks == 1 else None
    length = -(-layout.length // 2) if layout.pairs else layout.length
    for lo, hi in _packing.split_width(context.slots, width, length, period):
        missing = sorted(set(_packing.make_plan(context.slots, hi - lo, length, period).steps) - set(context.steps))
        if missing:
            raise ProtocolError(f"the public context lacks rotation keys for steps {missing}")


class EncryptedSmoother:
    """Fits and predicts a linear smoother on CKKS ciphertexts; never sees a plaintext residual."""

    def __init__(self, context: PublicContext, operator: SmootherOperator, outputs: int = 1):
        if not isinstance(context, PublicContext):
            raise TypeError(f"context must be a PublicContext, got {type(context).__name__}")
        A = np.asarray(operator.A, dtype=np.float64)
        phi = np.asarray(operator.phi_train, dtype=np.float64)
        if A.ndim != 2 or phi.shape != (A.shape[1], A.shape[0]):
            raise ValueError(f"operator shapes do not match: A {A.shape}, phi_train {phi.shape}")
        if not (np.isfinite(A).all() and np.isfinite(phi).all()):
            raise ValueError("operator A and phi_train must be finite")
        check_context_fits(context, A.shape[0], A.shape[1], outputs)
        self._schedule = Schedule.of(context)
        self.context = context
        self.p, self.n = A.shape
        self.layout = Layout.for_training(self.n, outputs, context.slots, pairs=context.params.packs_pairs)
        self._blocks = np.eye(outputs) if self.layout.packed else np.eye(1)
        width = self.p * self._blocks.shape[0]
        period = self.layout.period if self.layout.chunks == 1 else None
        self._feature_map = operator.feature_map
        A_big, phi_big = np.kron(self._blocks, A), np.kron(self._blocks, phi)
        self.parts: list[_Block] = []
        self._pair_scale = 2.0 if self.layout.pairs else 1.0  # the model's scale after taking real parts
        # a plan counts ciphertexts of ``slots`` values: value pairs halve the length it sees
        length = -(-self.layout.length // 2) if self.layout.pairs else self.layout.length
        for lo, hi in _packing.split_width(context.slots, width, length, period):
            plan = _packing.make_plan(context.slots, hi - lo, length, period)
            rows = A_big[lo:hi]
            constant = bool(np.all(np.ptp(rows, axis=1) <= CONSTANT_ROW_TOLERANCE * np.abs(rows).max(axis=1)))
            alpha = self._alpha(constant)
            rows = rows * alpha
            sums = np.zeros(plan.P)
            sums[:hi - lo] = rows.sum(axis=1)
            row_sums = self.context.encode(np.tile(sums, context.slots // plan.P), 0,
                                           self._schedule.operator_scale * self._pair_scale)
            self.parts.append(_Block(lo, hi, plan, None if constant else self._stage1_diagonals(plan, rows),
                                     self._encode_stage2(plan, phi_big[:, lo:hi] / alpha, plan.chunks),
                                     None if row_sums.is_zero() else row_sums, constant, alpha))
        self._A_big = A_big
        self.chunks = self.parts[0].plan.chunks
        self.last_rotations = 0
        self._babies: dict[int, tuple] = {}  # id(z) -> (z, its baby-step rotations)

    def _alpha(self, constant: bool) -> float:
        """The block's A rows are scaled by ``alpha`` and its Phi columns by ``1/alpha`` (the
        same predictions), so small coefficients stay above the noise: ``sqrt(n)`` for feature
        rows (sums of terms of either sign: ``z`` stays O(1)). On the one-prime chain, whose
        operators are encoded at about 2^33, constant rows take ``n^(1/4)``: their ``z`` is the
        residuals' mean times ``alpha`` (a coherent sum), and a partly padded chunk's Phi
        column is not constant, so its encoding error times that ``z`` would reach 1e-6 at
        20k rows. (The two-prime chain keeps ``sqrt(n)``: CKKS+DP's circuit error was measured so.)"""
        small = constant and not self._schedule.rescale_stage1
        return float(self.n ** (0.25 if small else 0.5))

    def rotations_per_column(self, centred: bool = False) -> int:
        """Rotations of one training pass over one encrypted vector (every model block);
        ``centred``: residuals with separate means (blocks of constant rows need none)."""
        conjugation = 1 if self.layout.pairs else 0  # a key switch like a rotation
        return sum(b.plan.rotations_per_column() + conjugation for b in self.parts if not (centred and b.constant))

    def _stage1_diagonals(self, plan: _packing.Plan, rows: np.ndarray):
        if self.layout.pairs:
            diagonals = _packing.pair_up(_packing.stage1_diagonals(plan, rows, 2 * plan.chunks), -1.0)
        else:
            diagonals = _packing.stage1_diagonals(plan, rows)
        return self._encode(diagonals, 0, self._schedule.operator_scale)

    def _stage1(self, ops: _packing.Ops, block: _Block, cts: Sequence, mean):
        """The block's model ``z`` (replicated with period P) from residual chunks and, when the
        residuals are centred, the ciphertext of their mean."""
        sched = self._schedule
        z = None
        if mean is None or not block.constant:
            if block.W is None:  # uncentred residuals for a constant block: encode its diagonals now
                block.W = self._stage1_diagonals(block.plan, self._A_big[block.lo:block.hi] * block.alpha)
            z = _packing.apply_stage1(ops, block.plan, cts, block.W, sched.rescale_stage1)
            if self.layout.pairs and z is not None:
                # Y + conj(Y) = 2 Re(Y): both halves of every slot; read at twice the scale, it is
                # Re(Y) itself (the scale is the ciphertext's metadata: no product, no precision lost)
                z = ops.conjugate(z)
                z.scale = 2.0 * z.scale
        if mean is not None and block.row_sums is not None:
            term = ops.mul_plain(mean, block.row_sums)
            z = ops.add_into(z, ops.rescale(term) if sched.rescale_stage1 else term)
        return self._or_zero(z, sched.model_level, sched.model_scale * self._pair_scale)

    def _encode(self, nested, level: int, scale: float):
        """Plaintext diagonals; ``None`` for all-zero ones (SEAL refuses products that are zero)."""
        def one(v):
            pt = self.context.encode(v, level, scale)
            return None if pt.is_zero() else pt
        return [[[one(v) for v in per_b] for per_b in per_a] for per_a in nested]

    def _encode_stage2(self, plan: _packing.Plan, phi: np.ndarray, chunks: int):
        sched = self._schedule
        if self.layout.pairs:
            diagonals = _packing.pair_up(_packing.stage2_diagonals(plan, phi, 2 * chunks), 1.0)
        else:
            diagonals = _packing.stage2_diagonals(plan, phi, chunks)
        return self._encode(diagonals, sched.model_level, sched.operator_scale)

    def _babies_of(self, z, plan: _packing.Plan, ops: _packing.Ops) -> list:
        """Stage-2 baby steps of a model ciphertext, made once (kept with ``z`` so its id stays valid)."""
        if id(z) not in self._babies:
            self._babies[id(z)] = (z, _packing.stage2_babies(ops, plan, z))
        return self._babies[id(z)][1]

    def _or_zero(self, ct, level: int, scale: float | None = None):
        """``ct``, or a fresh encryption of zeros where every product was structurally zero."""
        return self.context.encrypt_zeros(level, scale) if ct is None else ct

    def _ops(self) -> _packing.Ops:
        return _packing.Ops(self.context.evaluator, self.context.galois_keys)

    def _stage2(self, ops: _packing.Ops, z: Sequence, diagonals: Sequence) -> tuple:
        """``Phi z`` chunks summed over the model blocks (``diagonals[b]``: block b's encoded V),
        then rescaled once per chunk."""
        total = None
        for block, zb, V in zip(self.parts, z, diagonals):
            part = _packing.apply_stage2(ops, block.plan, self._babies_of(zb, block.plan, ops), V)
            total = part if total is None else [a if b is None else ops.add_into(a, b) for a, b in zip(total, part)]
        return tuple(self._or_zero(None if f is None else ops.rescale(f), self._schedule.output_level) for f in total)

    def check_residual_vector(self, cts: Sequence, what: str = "residuals") -> None:
        """Fresh ciphertexts at the top level and scale, as many as the layout needs."""
        if len(cts) != self.chunks:
            raise ProtocolError(f"{what}: {len(cts)} ciphertexts for n={self.n} rows, expected {self.chunks}")
        for ct in cts:
            self._check_fresh(ct, what)

    def _check_fresh(self, ct, what: str) -> None:
        if self.context.level_of(ct) != 0:
            raise ProtocolError(f"{what}: ciphertext is not at the top level")
        if abs(ct.scale / self.context.params.scale - 1.0) > _SCALE_TOLERANCE:
            raise ProtocolError(f"{what}: ciphertext scale {ct.scale} is not 2^{self.context.params.scale_bits}")

    def fit(self, vectors: Sequence[Sequence], omitted_last: bool = False,
            means: Sequence | None = None) -> EncryptedRound:
        """``enc(z)`` and ``enc(f)`` for each encrypted residual vector (``layout.vectors`` of them).

        ``omitted_last``: the label owner left out the last column because every residual row
        sums to zero (cross-entropy); its model and predictions are minus the sum of the
        others' (the smoother is linear), made here by ciphertext additions instead of a pass.
        ``means``: the residual vectors are centred and ``means[k]`` encrypts vector k's mean in
        every slot; ``z = A (r - m) + m A 1``, the same model and predictions.
        """
        need = self.layout.vectors - (1 if omitted_last else 0)
        if omitted_last and self.layout.packed:
            raise ProtocolError("residuals: a packed layout cannot leave a column out")
        if len(vectors) != need:
            raise ProtocolError(f"residuals: {len(vectors)} encrypted vectors, the layout needs {need}")
        if means is not None and (self.layout.packed or len(means) != need):
            raise ProtocolError(f"residuals: {len(means)} mean ciphertexts for {need} vectors"
                                + (" in a packed layout" if self.layout.packed else ""))
        ops = self._ops()
        zs, fs = [], []
        for k, cts in enumerate(vectors):
            self.check_residual_vector(cts, f"residual vector {k}")
            mean = None
            if means is not None:
                mean = means[k]
                self._check_fresh(mean, f"mean of residual vector {k}")
            z = tuple(self._stage1(ops, b, cts, mean) for b in self.parts)
            zs.append(z)
            fs.append(self._stage2(ops, z, [b.V for b in self.parts]))
        if omitted_last:
            zs.append(tuple(ops.negated_sum(parts) for parts in zip(*zs)))
            fs.append(tuple(ops.negated_sum(parts) for parts in zip(*fs)))
        self.last_rotations = ops.rotations
        return EncryptedRound(tuple(zs), tuple(fs), omitted_last)

    def predict(self, models: Sequence[Sequence], X: np.ndarray,
                derived_last: Sequence[bool] | None = None) -> list[list[tuple]]:
        """``enc(Phi(X) z)`` chunks for every round's model vectors: ``out[round][v]``, laid out
        as ``layout.with_rows(len(X))``. ``derived_last[t]``: round t's last vector is minus the
        sum of the others (:attr:`EncryptedRound.derived_last`), so are its predictions: made by
        ciphertext additions, not a pass (no rotations)."""
        phi = np.asarray(self._feature_map(np.asarray(X, dtype=np.float64)), dtype=np.float64)
        if phi.ndim != 2 or phi.shape[1] != self.p:
            raise ValueError(f"feature map gave shape {phi.shape}, expected (rows, {self.p})")
        chunks = self.layout.with_rows(phi.shape[0]).chunks
        phi_big = np.kron(self._blocks, phi)
        V = [self._encode_stage2(b.plan, phi_big[:, b.lo:b.hi] / b.alpha, chunks) for b in self.parts]
        derived_last = [False] * len(models) if derived_last is None else list(derived_last)
        if len(derived_last) != len(models):
            raise ValueError(f"derived_last has {len(derived_last)} flags for {len(models)} models")
        ops = self._ops()
        out = []
        for model, derived in zip(models, derived_last):
            passes = [self._stage2(ops, z, V) for z in model[:len(model) - derived]]
            if derived:
                passes.append(tuple(ops.negated_sum(parts) for parts in zip(*passes)))
            out.append(passes)
        self.last_rotations = ops.rotations
        return out
