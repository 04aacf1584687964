"""CKKS on the privacy seam: :class:`CkksResiduals` (label owner) and :class:`CkksTrainer`
(feature party).

The label owner encrypts each round's residuals under its own key and sends every feature party
the public context at setup; a feature party fits its linear smoother on the ciphertexts, keeps
``enc(z)`` per round as its model and returns ``enc(f)``. Only the label owner decrypts, and a
decryption never leaves it: decrypted predictions feed the weights, the step size and the next
residuals, which travel encrypted again (no decryption oracle; see docs/he.md, IND-CPA^D).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from typing import Mapping

import numpy as np

from ...errors import ConfigError, LayerMismatch, ProtocolError
from ...learners.base import Learner, LinearSmoother
from ...messages import EncryptedPayload, Payload, Setup
from . import wire
from .keys import PublicContext, SecretContext
from .layout import Layout
from .params import CkksParams
from .smoother import EncryptedRound, EncryptedSmoother


def check_learner(learner: Learner) -> None:
    """Refuse, before any data moves, a learner whose predictions are not linear in the residuals."""
    name = getattr(learner, "name", type(learner).__name__)
    if not isinstance(learner, LinearSmoother):
        raise ConfigError(f"learner {name!r} cannot run on CKKS-encrypted residuals (its predictions are not "
                          "linear in the residuals); use --learner linear or rff, or --residuals plain")
    if getattr(learner, "local_loss", "l2") != "l2":
        raise ConfigError(f"learner {name!r} with local loss {learner.local_loss!r} is not a linear smoother, so it "
                          "cannot run on CKKS-encrypted residuals; use local loss l2 (--local-loss l2)")


# A residual row "sums to zero" (cross-entropy: one-hot minus softmax) within this relative tolerance.
ZERO_SUM_TOLERANCE = 1e-9


class CkksResiduals:
    """Label-owner side: encrypt residuals, publish the public context, decrypt replies.

    When every residual row sums to zero (cross-entropy) and the columns travel one vector
    each, the last column is not encrypted: it is minus the sum of the others, and the party
    derives its model and predictions from theirs (``omit_dependent``; half the work at K=2).
    Each column travels centred, followed by one ciphertext of its mean (``separate_mean``): a
    party sums a constant row of its operator (the intercept of a ridge on centred columns)
    with one product instead of a fold over every slot (``log2(slots)`` rotations).
    """

    name = "ckks"
    omit_dependent = True
    separate_mean = True

    def __init__(self, params: CkksParams | None = None):
        self.secret = SecretContext(params)
        self._public: bytes | None = None
        # the round's (key, blobs, blob hashes, last column omitted, means separate), shared by every party
        self._round_blobs: tuple[tuple, tuple[bytes, ...], tuple[bytes, ...], bool, bool] | None = None
        self._layouts: dict[str, Layout] = {}  # per party: its rows can differ (hidden membership)
        self.bytes_sent = 0
        self.bytes_received = 0
        self.seconds = 0.0

    def setup_fields(self, party: str) -> Mapping[str, object]:
        if self._public is None:
            started = time.perf_counter()
            self._public = self.secret.public_bytes()
            self.seconds += time.perf_counter() - started
        self.bytes_sent += len(self._public)
        return {"residuals": "ckks", "he_context": self._public}

    def seal(self, residuals: np.ndarray, round: int, party: str) -> Payload:
        """Encrypt and serialise once per round and residual (seeded, symmetric); every party gets
        the same ciphertexts, each under a digest bound to its name and the round (the blobs'
        hashes are computed once)."""
        r = np.asarray(residuals, dtype=np.float64)
        if r.ndim != 2:
            raise ValueError(f"residuals must be (n, K), got shape {r.shape}")
        started = time.perf_counter()
        layout = self._layouts[party] = Layout.for_training(r.shape[0], r.shape[1], self.secret.slots,
                                                            pairs=self.secret.params.packs_pairs)
        key = (round, hashlib.sha256(np.ascontiguousarray(r).tobytes()).digest(), r.shape)
        if self._round_blobs is None or self._round_blobs[0] != key:
            omitted = self.omit_dependent and wire.can_omit_last(layout) and bool(
                np.abs(r.sum(axis=1)).max() <= ZERO_SUM_TOLERANCE * max(1.0, float(np.abs(r).max())))
            mean = self.separate_mean and wire.can_separate_mean(layout)
            means = r.mean(axis=0) if mean else np.zeros(r.shape[1])
            vectors = layout.input_vectors(r - means)
            blobs = []
            for k in range(r.shape[1] - (1 if omitted else 0)):
                for v in vectors[k * layout.chunks:(k + 1) * layout.chunks]:
                    blobs += self.secret.encrypt(v)
                if mean:
                    blobs += self.secret.encrypt(np.full(self.secret.slots, means[k]))
            blobs = tuple(blobs)
            self._round_blobs = (key, blobs, wire.blob_hashes(blobs), omitted, mean)
        _, blobs, hashes, omitted, mean = self._round_blobs
        payload = wire.pack(self.secret, "residuals", party, round, r.shape, blobs, layout, hashes, omitted, mean)
        self.seconds += time.perf_counter() - started
        self.bytes_sent += payload.nbytes
        return payload

    def open(self, payload: Payload, round: int, party: str, shape: tuple[int, ...]) -> np.ndarray:
        """Decrypt ``party``'s reply for the coordinator only; nothing decrypted is ever sent back."""
        kind = "predictions" if len(shape) == 2 else "test_predictions"
        layout = self._layouts.get(party)
        if layout is None:
            raise ProtocolError(f"{kind} of party {party!r} before any residuals were sent")
        if isinstance(payload, EncryptedPayload):
            self.bytes_received += payload.nbytes
        started = time.perf_counter()
        # a round's train predictions may leave out the column its residuals left out (nothing else may)
        omitted_sent = (kind == "predictions" and self._round_blobs is not None and self._round_blobs[0][0] == round
                        and self._round_blobs[3])
        vectors = wire.unpack(payload, self.secret, kind, party, round, shape, len(self.secret.levels) - 1,
                              layout, allow_omitted=omitted_sent)
        values = wire.decrypt(self.secret, vectors, shape, layout, omitted=wire.omits_last(payload))
        self.seconds += time.perf_counter() - started
        if not np.isfinite(values).all():
            raise ProtocolError(f"{kind} of party {party!r} in round {round} decrypt to non-finite values")
        if values.size and np.abs(values).max() >= self.secret.params.output_range / 2:
            raise ProtocolError(f"{kind} of party {party!r} in round {round} reach {np.abs(values).max():.4g}, past half "
                                f"the decryption range {self.secret.params.output_range:.4g} of these CKKS parameters "
                                "(a wrapped-around decryption, or predictions too large for them)")
        return values

    def reply_bytes(self, party: str, shape: tuple[int, ...]) -> int:
        """Full-level ciphertexts for ``shape`` ((n, K) in a round, (rounds, n, K) at prediction) in
        the layout ``party``'s residuals were sent in, one value per slot (a CKKS+DP party does not
        pack pairs); 0 before any were sent (its reply is refused)."""
        layout = self._layouts.get(party)
        if layout is None:
            return 0
        rounds, rows = (1, shape[0]) if len(shape) == 2 else (shape[0], shape[1])
        return ciphertext_reply_bytes(self.secret.params, replace(layout, pairs=False), rows, rounds)

    def report(self) -> dict:
        return {"he": {**self.secret.params.as_dict(), "bytes_sent": self.bytes_sent,
                       "bytes_received": self.bytes_received, "seconds": round(self.seconds, 3)}}


def ciphertext_reply_bytes(p: CkksParams, layout: Layout, rows: int, rounds: int) -> int:
    """rounds x ciphertexts per round for ``rows`` rows x a full-level ciphertext (2 polynomials
    of N coefficients per prime, 8 bytes each): an upper bound of a predict reply's size."""
    return rounds * layout.with_rows(rows).blobs * 2 * p.poly_modulus_degree * len(p.coeff_mod_bit_sizes) * 8


class CkksTrainer:
    """Feature-party side: fits the learner's smoother on ciphertexts; never sees a residual."""

    def __init__(self, name: str, learner: Learner):
        check_learner(learner)
        self.name, self.learner = name, learner
        self.context: PublicContext | None = None
        self.smoother: EncryptedSmoother | None = None
        self.models: dict[int, EncryptedRound] = {}
        self._n = self._k = 0
        self.seconds = 0.0
        self.bytes_received = self.bytes_sent = 0

    def setup(self, X_train: np.ndarray, setup: Setup) -> None:
        if setup.residuals != "ckks":
            raise LayerMismatch(f"this party runs CKKS residuals, the label owner asked for {setup.residuals!r}")
        self.bytes_received += len(setup.he_context)
        self.context = PublicContext.from_bytes(setup.he_context)
        started = time.perf_counter()
        self.smoother = EncryptedSmoother(self.context, self.learner.operator(X_train), setup.n_outputs)
        self.seconds += time.perf_counter() - started
        self._n, self._k = X_train.shape[0], setup.n_outputs
        self.models.clear()

    def fit_round(self, round: int, residuals: Payload) -> Payload:
        if isinstance(residuals, EncryptedPayload):
            self.bytes_received += residuals.nbytes
        layout = self.smoother.layout
        vectors = wire.unpack(residuals, self.context, "residuals", self.name, round, (self._n, self._k), 0, layout,
                              allow_omitted=True, allow_mean=True)
        started = time.perf_counter()
        omitted = wire.omits_last(residuals)
        means = [v.pop() for v in vectors] if wire.has_means(residuals) else None
        fitted = self.smoother.fit(vectors, omitted_last=omitted, means=means)
        self.models[round] = fitted
        # the reply leaves out the same column: the label owner derives it as the residuals' was
        blobs = wire.serialize([ct for chunks in fitted.f[:len(fitted.f) - omitted] for ct in chunks])
        self.seconds += time.perf_counter() - started
        payload = wire.pack(self.context, "predictions", self.name, round, (self._n, self._k), blobs, layout,
                            omitted=omitted)
        self.bytes_sent += payload.nbytes
        return payload

    def reply_bytes(self, rows: int, rounds: int) -> int:
        """Upper bound of a predict reply's size, from the request alone (checked before work)."""
        return ciphertext_reply_bytes(self.context.params, self.smoother.layout, rows, rounds)

    def predict(self, X: np.ndarray, rounds: int) -> Payload:
        """Per-round encrypted predictions (rounds, n, K); fresh encryptions of zero for rounds not fitted."""
        started = time.perf_counter()
        fitted = [t for t in range(1, rounds + 1) if t in self.models]
        preds = dict(zip(fitted, self.smoother.predict([self.models[t].z for t in fitted], X,
                                                       [self.models[t].derived_last for t in fitted])))
        test_layout = self.smoother.layout.with_rows(X.shape[0])
        last = len(self.context.levels) - 1
        cts = []
        for t in range(1, rounds + 1):
            if t in preds:
                cts += [ct for chunks in preds[t] for ct in chunks]
            else:
                cts += [self.context.encrypt_zeros(last) for _ in range(test_layout.blobs)]
        payload = wire.pack(self.context, "test_predictions", self.name, 0, (rounds, X.shape[0], self._k),
                            wire.serialize(cts), self.smoother.layout)
        self.seconds += time.perf_counter() - started
        self.bytes_sent += payload.nbytes
        return payload

    def report(self) -> dict:
        return {"he": {"seconds": round(self.seconds, 3), "bytes_sent": self.bytes_sent,
                       "bytes_received": self.bytes_received}}


def ckks_trainers(name: str, index: int, learner: Learner):
    """A :data:`securegal.privacy.plan.TrainerChoice` for CKKS: checks the learner now, builds at setup."""
    check_learner(learner)
    return lambda setup: CkksTrainer(name, learner)
