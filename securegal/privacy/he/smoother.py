"""A linear smoother applied to encrypted residuals: the feature party's side of CKKS GAL.

Given the party's plaintext operator (``A`` (p, n), ``Phi`` (n, p); :class:`SmootherOperator`)
and CKKS-encrypted residual columns, :meth:`EncryptedSmoother.fit` returns ``enc(z)``,
``z = A r`` (the party's encrypted round model) and ``enc(f)``, ``f = Phi z`` (what goes back to
the label owner); :meth:`EncryptedSmoother.predict` returns ``enc(Phi_test z)``.

Cost per output column: ``2 p' ceil(n/slots)`` plaintext multiplications and at most
``2(p'-1) + log2(slots/p')`` rotations (``p'`` = p rounded up to a power of two). The plaintext
encodings of ``A`` and ``Phi`` are made once, here. For precision ``A`` is scaled by ``sqrt(n)``
and ``Phi`` by ``1/sqrt(n)``, so small coefficients stay well above the key-switching noise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ...errors import ProtocolError
from ...learners.base import SmootherOperator
from . import _packing
from .keys import PublicContext

MIN_DEPTH = 2
_SCALE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class EncryptedRound:
    """One fitted round: ``z[k]`` the model ciphertext of column k, ``f[k]`` its train-prediction chunks."""

    z: tuple
    f: tuple[tuple, ...]


class EncryptedSmoother:
    """Fits and predicts a linear smoother on CKKS ciphertexts; never sees a plaintext residual."""

    def __init__(self, context: PublicContext, operator: SmootherOperator):
        if not isinstance(context, PublicContext):
            raise TypeError(f"context must be a PublicContext, got {type(context).__name__}")
        if context.params.depth < MIN_DEPTH:
            raise ValueError(f"the encrypted smoother needs multiplicative depth {MIN_DEPTH}; "
                             f"coeff_mod_bit_sizes {context.params.coeff_mod_bit_sizes} give {context.params.depth}")
        A = np.asarray(operator.A, dtype=np.float64)
        phi = np.asarray(operator.phi_train, dtype=np.float64)
        if A.ndim != 2 or phi.shape != (A.shape[1], A.shape[0]):
            raise ValueError(f"operator shapes do not match: A {A.shape}, phi_train {phi.shape}")
        if not (np.isfinite(A).all() and np.isfinite(phi).all()):
            raise ValueError("operator A and phi_train must be finite")
        self.context = context
        self.p, self.n = A.shape
        if self.p > context.slots:
            raise ValueError(f"model size p={self.p} exceeds the {context.slots} slots")
        self.plan = _packing.make_plan(context.slots, self.p, self.n)
        missing = sorted(set(self.plan.steps) - set(context.steps))
        if missing:
            raise ValueError(f"the public context lacks rotation keys for steps {missing}")
        self._alpha = float(np.sqrt(self.n))
        self._feature_map = operator.feature_map
        self._W = self._encode(_packing.stage1_diagonals(self.plan, A * self._alpha), level=0)
        self._V = self._encode(_packing.stage2_diagonals(self.plan, phi / self._alpha, self.plan.chunks), level=1)
        self.last_rotations = 0

    def _encode(self, nested, level: int):
        return [[[self.context.encode(v, level) for v in per_b] for per_b in per_a] for per_a in nested]

    def _ops(self) -> _packing.Ops:
        return _packing.Ops(self.context.evaluator, self.context.galois_keys)

    def check_residual_column(self, cts: Sequence, what: str = "residuals") -> None:
        """Fresh ciphertexts at the top level and scale, ``ceil(n/slots)`` of them."""
        if len(cts) != self.plan.chunks:
            raise ProtocolError(f"{what}: {len(cts)} ciphertexts for n={self.n} rows, expected {self.plan.chunks}")
        for ct in cts:
            if self.context.level_of(ct) != 0:
                raise ProtocolError(f"{what}: ciphertext is not at the top level")
            if abs(ct.scale / self.context.params.scale - 1.0) > _SCALE_TOLERANCE:
                raise ProtocolError(f"{what}: ciphertext scale {ct.scale} is not 2^{self.context.params.scale_bits}")

    def fit(self, columns: Sequence[Sequence]) -> EncryptedRound:
        """``enc(z)`` and ``enc(f)`` for each encrypted residual column (K columns)."""
        ops = self._ops()
        zs, fs = [], []
        for k, cts in enumerate(columns):
            self.check_residual_column(cts, f"residual column {k}")
            z = _packing.apply_stage1(ops, self.plan, cts, self._W)
            zs.append(z)
            fs.append(tuple(_packing.apply_stage2(ops, self.plan, z, self._V)))
        self.last_rotations = ops.rotations
        return EncryptedRound(tuple(zs), tuple(fs))

    def predict(self, models: Sequence[Sequence], X: np.ndarray) -> list[list[tuple]]:
        """``enc(Phi(X) z)`` chunks for every round's model columns: ``out[round][k]``."""
        phi = np.asarray(self._feature_map(np.asarray(X, dtype=np.float64)), dtype=np.float64)
        if phi.ndim != 2 or phi.shape[1] != self.p:
            raise ValueError(f"feature map gave shape {phi.shape}, expected (rows, {self.p})")
        chunks = -(-phi.shape[0] // self.context.slots)
        V = self._encode(_packing.stage2_diagonals(self.plan, phi / self._alpha, chunks), level=1)
        ops = self._ops()
        out = [[tuple(_packing.apply_stage2(ops, self.plan, z, V)) for z in model] for model in models]
        self.last_rotations = ops.rotations
        return out
