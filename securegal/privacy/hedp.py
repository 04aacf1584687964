"""Feature-DP on CKKS-encrypted residuals: DP ridge whose noise is added homomorphically.

The feature party cannot clip or read ciphertexts, so (docs/privacy.md section 5b):

- the label owner clips each residual row to L2 norm ``C`` before encrypting and declares ``C``
  in the Setup options (:class:`ClippedCkksResiduals`); the party cannot check it, so the
  guarantee assumes a semi-honest label owner;
- ``gram``: the party's noisy Gram matrix ``G~``, plaintext, exactly as in
  :class:`~securegal.privacy.dp.trainer.DPTrainer`; the DP smoother ``A = G~^-1 Phi^T``;
- ``stat``: ``enc(z~) = A enc(r) + G~^-1 e``, ``e ~ N(0, (z_stat 2BC)^2)``, added as a plaintext
  to the encrypted output (``G~^-1`` applied to the noisy ``Phi^T r + e``, post-processed);
- ``pred``: ``enc(Phi A r) + N(0, (z_pred Delta_f)^2)`` with the data-independent bound
  ``Delta_f = 2BC (sqrt(B^2 + c^2) (n + sqrt n) + 2B) / lambda_floor`` (:func:`prediction_bound`),
  ``lambda_floor = lam n + sigma_G sqrt(p) <= lambda_min(G~)`` public and known at setup, so the
  ledger records ``Delta_f`` as the release's sensitivity.

Budget plan, calibration, check-before-spend and the ``privacy`` report are the plain DP
trainer's, plus one ``flood`` release per test-prediction reply (:func:`ckks_release_plan`):
the noise that hides the circuit's error in what the key holder decrypts.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import tenseal.sealapi as sealapi

from ..errors import ConfigError, LayerMismatch, ProtocolError
from ..learners.base import Learner
from ..messages import Payload, Setup
from .dp.accountant import PlannedRelease, PrivacyAccountant, Release, calibrate_noise, scales_for_shares
from .dp.layers import DPTrainers
from .dp.mechanisms import GaussianNoise, clip_rows
from .dp.ridge import DPRidge
from .dp.trainer import UNBOUND_STANDARDIZATION, DPConfig, bind_table, feature_clip_origin, ledger_report, release_plan, \
    reserve_plan, shares_origin
from .he import wire
from .he.keys import PublicContext
from .he.layers import CkksResiduals, ciphertext_reply_bytes
from .he.layout import Layout
from .he.params import DP_CKKS_PARAMS, CkksParams
from .he.smoother import EncryptedSmoother, check_context_fits
from .plan import check_layer_learner

CLIP_OPTION = "residual_clip"
# Circuit privacy (docs/he.md "Circuit privacy"). A decryption is the intended value plus the
# error the circuit left, which depends on the party's data. Before a reply leaves the party,
# *every* slot of every output ciphertext, real and imaginary part (the whole decryption, not
# only the slots that hold data), gets fresh Gaussian noise, and the ciphertext is then
# re-randomised with a fresh public-key encryption of zero. The noise is a DP release that
# covers the circuit's error (bounded by circuit_error(B, n) per slot and part), so the decryption is
# an exact Gaussian mechanism on (value + error), with no statistical-distance term:
# - train predictions (feedback): the ``pred`` release's own noise, with the circuit's error
#   added to its sensitivity;
# - test predictions: a ``flood`` release per reply (PREDICT_REPLIES planned per session, the
#   label owner's test and validation evaluation; FLOOD_SHARE of the session's budget), noise
#   z_flood * circuit_sensitivity(slots, ciphertexts of the reply, E(B, n)), never below FLOOD_STD.
FLOOD_STD = 2.0 ** -8
FLOOD_SHARE = 0.05
PREDICT_REPLIES = 2
# Stated bound on the circuit's error per slot and part, in value units (circuit_error): at most
# CIRCUIT_ERROR at feature clip B <= CIRCUIT_ERROR_CLIP and n <= CIRCUIT_ERROR_ROWS training rows,
# linear in B above the clip, shrinking as 1 / sqrt(n) above those rows down to
# CIRCUIT_ERROR_FLOOR times it (from 6,400 rows). Measured (benchmarks/hedp_circuit_error.py:
# n 20 to 50,000, d 1 to 13, K 1 and 3, fresh keys; docs/he.md): the error is largest at small n
# and large B, and E(B, n) keeps a margin of at least 2**2.4 over every error measured.
# Empirical, not a proof.
CIRCUIT_ERROR = 2.0 ** -19
CIRCUIT_ERROR_CLIP = 0.5
CIRCUIT_ERROR_ROWS = 100
CIRCUIT_ERROR_FLOOR = 2.0 ** -3


def circuit_error(feature_clip: float, n_rows: int) -> float:
    """The stated bound per slot and part, ``E(B, n) = CIRCUIT_ERROR * max(1, B / 0.5) *
    max(2^-3, sqrt(100 / max(n, 100)))`` (the constants above)."""
    B = float(feature_clip)
    if not (math.isfinite(B) and B > 0):
        raise ValueError(f"feature_clip must be finite and > 0, got {feature_clip!r}")
    if isinstance(n_rows, bool) or not isinstance(n_rows, (int, np.integer)) or n_rows < 1:
        raise ValueError(f"n_rows must be an int >= 1, got {n_rows!r}")
    rows = max(CIRCUIT_ERROR_FLOOR, math.sqrt(CIRCUIT_ERROR_ROWS / max(int(n_rows), CIRCUIT_ERROR_ROWS)))
    return CIRCUIT_ERROR * max(1.0, B / CIRCUIT_ERROR_CLIP) * rows


def circuit_sensitivity(slots: int, ciphertexts: int, error: float) -> float:
    """L2 bound on how much the circuit's error can differ between two tables, over every real
    dimension of a reply (``2 * slots`` per ciphertext), each within ``error`` (:func:`circuit_error`):
    ``2 * error * sqrt(2 slots c)``."""
    return 2.0 * error * math.sqrt(2.0 * slots * ciphertexts)


def prediction_bound(feature_clip: float, residual_clip: float, intercept: float, n_rows: int,
                     lambda_min: float) -> float:
    """Replace-one L2 sensitivity of the train predictions ``Phi G~^-1 Phi^T r`` (all n x K).

    Rows ``phi = (x, c)`` with ``||x|| <= B``, residual rows ``||r_i|| <= C``, ``G~`` fixed (an
    earlier release) with smallest eigenvalue ``lambda_min``; proof in docs/privacy.md 5b.
    """
    B, C, c, lam = float(feature_clip), float(residual_clip), float(intercept), float(lambda_min)
    if not (lam > 0 and math.isfinite(lam)):
        raise ValueError(f"lambda_min must be finite and > 0, got {lambda_min!r}")
    if isinstance(n_rows, bool) or not isinstance(n_rows, int) or n_rows < 1:
        raise ValueError(f"n_rows must be an int >= 1, got {n_rows!r}")
    row = math.sqrt(B * B + c * c)
    return 2.0 * B * C * (row * (n_rows + math.sqrt(n_rows)) + 2.0 * B) / lam


def ckks_release_plan(config: DPConfig, rounds: int, slots: int, n_rows: int) -> list[PlannedRelease]:
    """The plaintext trainer's plan (``gram``, ``stat`` and, with feedback, ``pred``) plus
    :data:`PREDICT_REPLIES` ``flood`` releases for the test-prediction replies, which take
    :data:`FLOOD_SHARE` of the budget; ``flood``'s sensitivity is per output ciphertext (a reply of
    c ciphertexts has sensitivity and noise ``sqrt(c)`` times larger: the same multiplier)."""
    plan = release_plan(config, rounds)
    kinds = {p.what: p for p in plan}
    total = sum(config.shares[k] for k in kinds)
    shares = {k: (1.0 - FLOOD_SHARE) * config.shares[k] / total for k in kinds}
    scales = scales_for_shares({**shares, "flood": FLOOD_SHARE},
                               {**{k: p.steps for k, p in kinds.items()}, "flood": PREDICT_REPLIES})
    return [PlannedRelease(p.what, steps=p.steps, scale=scales[p.what], sensitivity=p.sensitivity) for p in plan] + [
        PlannedRelease("flood", steps=PREDICT_REPLIES, scale=scales["flood"],
                       sensitivity=circuit_sensitivity(slots, 1, circuit_error(config.feature_clip, n_rows)))]


def output_vectors(layout: Layout, values: np.ndarray) -> list[list[np.ndarray]]:
    """``values`` (n, K) as the slot vectors of encrypted outputs in ``layout``: per vector, its
    chunks (the inverse of :meth:`Layout.output_array`; slots past the data are zero)."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (layout.n, layout.k):
        raise ValueError(f"expected shape {(layout.n, layout.k)}, got {values.shape}")
    flat = [values.T.ravel()] if layout.packed else [values[:, j] for j in range(layout.k)]
    return [[v[i:i + layout.slots] for i in range(0, layout.chunks * layout.slots, layout.slots)] for v in flat]


def add_plain(context: PublicContext, vectors, layout: Layout, values: np.ndarray,
              noise: GaussianNoise | None = None, std: float = 0.0) -> list[list]:
    """Ciphertexts ``vectors`` (per vector, chunks) plus the plaintext ``values`` (n, K); with
    ``noise``, plus fresh complex Gaussian noise of std ``std`` per part in *every* slot."""
    out = []
    for cts, plains in zip(vectors, output_vectors(layout, values), strict=True):
        row = []
        for ct, v in zip(cts, plains, strict=True):
            slots = np.zeros(context.slots, dtype=np.complex128)
            slots[:v.size] = v
            if noise is not None and std > 0:
                slots += noise.normal((context.slots,), std) + 1j * noise.normal((context.slots,), std)
            pt = sealapi.Plaintext()
            context.encoder.encode(slots.tolist(), context.levels[context.level_of(ct)], ct.scale, pt)
            res = sealapi.Ciphertext()
            context.evaluator.add_plain(ct, pt, res)
            row.append(res)
        out.append(row)
    return out


class ClippedCkksResiduals(CkksResiduals):
    """CKKS residual channel that clips each residual row to norm ``C`` before encrypting and
    declares ``C`` to the feature parties (their DP bounds rest on it)."""

    omit_dependent = False  # the DP party's noise and accounting are per column: send every column
    separate_mean = False  # its bounds rest on the clipped rows as sent

    def __init__(self, residual_clip: float = 1.0, params: CkksParams | None = None):
        if isinstance(residual_clip, bool) or not isinstance(residual_clip, (int, float)) \
                or not (math.isfinite(residual_clip) and residual_clip > 0):
            raise ConfigError(f"residual_clip must be finite and > 0, got {residual_clip!r}")
        super().__init__(params)
        self.residual_clip = float(residual_clip)

    def setup_fields(self, party: str) -> Mapping[str, object]:
        return {**super().setup_fields(party), "options": {CLIP_OPTION: repr(self.residual_clip)}}

    def seal(self, residuals: np.ndarray, round: int, party: str) -> Payload:
        r = np.asarray(residuals, dtype=np.float64)
        return super().seal(clip_rows(r, self.residual_clip).reshape(r.shape), round, party)

    def report(self) -> dict:
        out = super().report()
        out["he"]["residual_clip"] = self.residual_clip
        out["he"]["residual_clipping"] = (
            "the label owner clips every residual row to this L2 norm before encrypting; feature "
            "parties' DP bounds assume it (they cannot check ciphertexts: semi-honest label owner)")
        return out


def declared_clip(setup: Setup) -> float:
    """The label owner's declared residual clip ``C`` from the Setup options."""
    raw = dict(setup.options or {}).get(CLIP_OPTION)
    if raw is None:
        raise LayerMismatch("CKKS residuals with DP need the label owner's residual clip in the setup "
                            f"options ({CLIP_OPTION!r}); this label owner declared none (set residual_clip = 1 in "
                            "its federation.toml: what an embedded run with feature-DP uses)")
    try:
        value = float(raw)
    except ValueError:
        raise ProtocolError(f"setup option {CLIP_OPTION!r} is not a number: {raw!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ProtocolError(f"setup option {CLIP_OPTION!r} must be finite and > 0, got {raw!r}")
    return value


class CkksDPTrainer:
    """Feature-party ``RoundTrainer``: DP ridge on CKKS-encrypted residuals, noise added
    homomorphically, every release recorded in the party's accountant (and, bound to a table,
    reserved in its ledger at setup); every output ciphertext flooded and re-randomised."""

    def __init__(self, name: str, config: DPConfig):
        if not isinstance(config, DPConfig):
            raise TypeError(f"config must be a DPConfig, got {type(config).__name__}")
        self.name, self.config = name, config
        self.noise = GaussianNoise(config.seed)
        self.accountant: PrivacyAccountant | None = None
        self.context: PublicContext | None = None
        self.smoother: EncryptedSmoother | None = None
        self.ridge: DPRidge | None = None
        self.session_config: DPConfig | None = None  # config for the session's rows and columns, at setup
        self.models: dict[int, tuple] = {}  # round -> (enc(A r) model vectors, plaintext offset G~^-1 e)
        self.noise_std: dict[str, float] = {}
        self.circuit_error: float | None = None  # E(B, n) of the session (set at setup)
        self.pred_sensitivity: float | None = None
        self._X: np.ndarray | None = None
        self._gram: np.ndarray | None = None
        self._n = self._k = 0
        self.ledger = self.session = self.session_epsilon = None
        self._checked: tuple[Setup, PublicContext] | None = None  # the setup check_setup last passed
        self.standardization = UNBOUND_STANDARDIZATION

    def bind_table(self, privacy, session: str) -> None:
        """Spend from the party's table ledger under ``session`` (see DPTrainer.bind_table)."""
        bind_table(self, privacy, session)

    def check_setup(self, setup: Setup) -> PublicContext:
        """What the session asks that this trainer cannot serve, refused from ``setup`` alone (the
        party checks it before it pays for anything): the residual mode, the declared residual
        clip, the CKKS parameters. Returns the label owner's public context (parsed once)."""
        if self._checked is not None and self._checked[0] is setup:
            return self._checked[1]
        if setup.residuals != "ckks":
            raise LayerMismatch(f"this party runs DP on CKKS residuals, the label owner asked for {setup.residuals!r}")
        declared_clip(setup)
        context = PublicContext.from_bytes(setup.he_context)  # refuse a bad context before spending
        if context.params != DP_CKKS_PARAMS:  # another chain or scale: the circuit's error is not what E(B, n) bounds
            sent = context.params
            raise ProtocolError(f"CKKS+DP runs on the parameters its circuit-error bound was measured on (N "
                                f"{DP_CKKS_PARAMS.poly_modulus_degree}, primes {DP_CKKS_PARAMS.coeff_mod_bit_sizes}, "
                                f"scale 2^{DP_CKKS_PARAMS.scale_bits}); the label owner sent N "
                                f"{sent.poly_modulus_degree}, primes {sent.coeff_mod_bit_sizes}, scale 2^{sent.scale_bits}")
        self._checked = (setup, context)
        return context

    def setup(self, X_train: np.ndarray, setup: Setup) -> None:
        """Check the session, calibrate the noise for ``setup.rounds`` rounds (reserving the whole
        plan in the table's ledger when bound to one); releases nothing."""
        context = self.check_setup(setup)
        X = np.asarray(X_train, dtype=np.float64)
        if X.ndim != 2 or not np.isfinite(X).all():
            raise ValueError(f"features must be a finite 2-D array, got shape {X.shape}")
        c = self.session_config = self.config.for_rows(X.shape[0], X.shape[1])
        self.ridge = c.ridge(declared_clip(setup))
        n, p = X.shape[0], X.shape[1] + 1  # rows, and columns of phi = (x, c)
        check_context_fits(context, p, n, int(setup.n_outputs))  # before anything is reserved
        error = circuit_error(c.feature_clip, n)

        def pred_sensitivity(z: Mapping[str, float]) -> dict[str, float]:
            # data-independent: the Gram ridge floor lam n + sigma_G sqrt(p) <= lambda_min(G~)
            floor = self.ridge.ridge_floor(n, p, z["gram"])
            # plus the circuit's error, folded into the release (every slot of the reply is noised)
            circuit = circuit_sensitivity(context.slots, Layout.for_training(n, int(setup.n_outputs),
                                                                             context.slots).blobs, error)
            return {"pred": prediction_bound(c.feature_clip, self.ridge.residual_clip, c.intercept, n, floor)
                    + circuit}

        plan = ckks_release_plan(c, int(setup.rounds), context.slots, n)
        if self.ledger is None:
            z = calibrate_noise(plan, c.budget.check_rows(n), c.accountant)
            noise = {p.what: z * p.scale for p in plan}
            budget, accountant = c.budget, c.accountant
        else:
            noise, budget = reserve_plan(self.ledger, plan, n, self.session, self.session_epsilon, pred_sensitivity)
            accountant = self.ledger.accountant
        self.context = context
        self.accountant = PrivacyAccountant(budget, accountant, X.shape[0])
        self.accountant.noise_multipliers.update(noise)
        self._X, self._n, self._k = X, X.shape[0], int(setup.n_outputs)
        self.circuit_error = error
        self._gram, self.smoother = None, None
        self.models.clear()
        self.noise_std = {"stat": noise["stat"] * self.ridge.statistic_sensitivity,
                          "flood_per_ciphertext": noise["flood"] * circuit_sensitivity(context.slots, 1, error)}
        if c.releases_predictions:  # the sensitivity the ledger records for every pred release
            self.pred_sensitivity = pred_sensitivity(noise)["pred"]
            self.noise_std["pred"] = noise["pred"] * self.pred_sensitivity

    @property
    def hides_membership(self) -> bool:
        """Can serve hidden membership: its round replies (predictions on every training row, so
        on all the party's rows) are DP releases (feedback on)."""
        return self.config.releases_predictions

    def reply_bytes(self, rows: int, rounds: int) -> int:
        """Upper bound of a predict reply's size, from the request alone (checked before work)."""
        return ciphertext_reply_bytes(self.context.params, self._layout(), rows, rounds)

    def _hide(self, vectors, layout: Layout, values: np.ndarray, std: float) -> list:
        """``vectors`` + ``values`` + fresh Gaussian noise of std ``std`` in every slot (real and
        imaginary part), each ciphertext then re-randomised (docs/he.md "Circuit privacy")."""
        out = []
        for chunks in add_plain(self.context, vectors, layout, np.asarray(values), self.noise, std):
            for ct in chunks:
                self.context.evaluator.add_inplace(ct, self.context.encrypt_zeros(self.context.level_of(ct),
                                                                                  ct.scale))
                out.append(ct)
        return out

    def _layout(self) -> Layout:
        return Layout.for_training(self._n, self._k, self.context.slots)

    def fit_round(self, round: int, residuals: Payload) -> Payload:
        """Validate the ciphertexts, spend this round's releases, return ``enc(f)`` + noise."""
        if self.accountant is None:
            raise RuntimeError("fit_round called before setup")
        layout = self._layout()
        vectors = wire.unpack(residuals, self.context, "residuals", self.name, round, (self._n, self._k), 0, layout)
        z = self.accountant.noise_multipliers
        releases = [Release(round, "gram", z["gram"])] if self._gram is None else []
        releases.append(Release(round, "stat", z["stat"]))
        if self.config.releases_predictions:
            releases.append(Release(round, "pred", z["pred"]))
        self.accountant.spend(*releases)  # BudgetExceeded: nothing recorded, nothing drawn or sent
        if self._gram is None:
            operator, self._gram = self.ridge.smoother_operator(self._X, z["gram"], self.noise)
            self.smoother = EncryptedSmoother(self.context, operator, self._k)
        fitted = self.smoother.fit(vectors)
        offset = self.ridge.encrypted_statistic_offset(self._gram, self._k, z["stat"], self.noise)
        self.models[round] = (fitted.z, offset)
        last = len(self.context.levels) - 1
        if self.config.releases_predictions:
            cts = self._hide(fitted.f, layout, np.zeros((self._n, self._k)), self.noise_std["pred"])
        else:  # no feedback channel: encryptions of zero, nothing released
            cts = [self.context.encrypt_zeros(last) for _ in range(layout.blobs)]
        return wire.pack(self.context, "predictions", self.name, round, (self._n, self._k), wire.serialize(cts), layout)

    def predict(self, X: np.ndarray, rounds: int) -> Payload:
        """Encrypted per-round test predictions ``Phi(X) z~_t`` (rounds, n, K) of the DP round
        models (post-processing); encryptions of zero for rounds not fitted."""
        if self.accountant is None:
            raise RuntimeError("predict called before setup")
        X = np.asarray(X, dtype=np.float64)
        test_layout = self._layout().with_rows(X.shape[0])
        last = len(self.context.levels) - 1
        fitted = [t for t in range(1, rounds + 1) if t in self.models]
        enc = dict(zip(fitted, self.smoother.predict([self.models[t][0] for t in fitted], X))) if fitted else {}
        phi = self.ridge.feature_map(X.shape[1])(X) if fitted else None
        std = 0.0
        if fitted:  # one flood release covers the whole reply: BudgetExceeded past the planned replies
            z = self.accountant.noise_multipliers["flood"]
            self.accountant.spend(Release(0, "flood", z))
            ciphertexts = len(fitted) * test_layout.blobs
            std = max(FLOOD_STD, z * circuit_sensitivity(self.context.slots, ciphertexts, self.circuit_error))
            self.noise_std["flood"] = std
        cts = []
        for t in range(1, rounds + 1):
            if t in enc:
                cts += self._hide(enc[t], test_layout, phi @ self.models[t][1], std)
            else:
                cts += [self.context.encrypt_zeros(last) for _ in range(test_layout.blobs)]
        return wire.pack(self.context, "test_predictions", self.name, 0, (rounds, X.shape[0], self._k),
                         wire.serialize(cts), self._layout())

    def report(self) -> dict:
        """The party's ``privacy`` block for metrics.json (same shape as the plain DP trainer's)."""
        if self.accountant is None:
            return {}
        out = self.accountant.to_dict()
        c, ridge = self.config, self.ridge
        out["mechanism"] = {"learner": "dp-ridge on CKKS residuals", "feature_clip": ridge.feature_clip,
                            "feature_clip_by": feature_clip_origin(c),
                            "coordinate_clip": c.coordinate_clip, "ridge": {"lam": c.lam, "noise_ridge": c.noise_ridge},
                            "residual_clip": ridge.residual_clip, "residual_clip_by": "label owner (declared, unchecked)",
                            "prediction_sensitivity": self.pred_sensitivity,
                            "prediction_sensitivity_by": "data-independent bound (docs/privacy.md 5b)",
                            "noise_std": dict(self.noise_std), "intercept": c.intercept,
                            "shares": dict(self.session_config.shares), "shares_by": shares_origin(c),
                            "secure_noise": self.noise.secure,
                            "circuit_privacy": f"every slot of every output noised and re-randomised, the "
                                               f"circuit's error (<= {self.circuit_error:g} per slot) inside the "
                                               "DP releases: pred (train predictions), flood (test "
                                               "predictions, docs/he.md)",
                            "standardization": self.standardization}
        if self.ledger is not None:
            out.update(ledger_report(self.ledger, self.session))
        return out


class CkksDPTrainers(DPTrainers):
    """Trainer choice: a :class:`CkksDPTrainer` per feature party (linear learner only)."""

    def preflight(self, n_train: int, rounds: int, party_names, learner: str = "linear") -> None:
        check_layer_learner(learner, "ckks", feature_dp=True)
        super().preflight(n_train, rounds, party_names, learner)

    def __call__(self, name: str, index: int, learner: Learner):
        check_layer_learner(getattr(learner, "name", type(learner).__name__), "ckks", feature_dp=True)
        config = self.config_for(name)

        def factory(setup: Setup):
            trainer = CkksDPTrainer(name, config)
            self.trainers[name] = trainer
            return trainer

        return factory
