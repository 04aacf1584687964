"""The feature party's DP round trainer: DP ridge + clipped, noised per-row predictions.

Per run (T planned rounds) the party releases, all to the label owner:

- ``gram``  once: upper triangle of ``Phi^T Phi`` + noise (sensitivity ``sqrt(2B^4 + 4c^2B^2)``);
- ``stat``  each round: ``Phi^T clip(r_t, C)`` + noise (sensitivity ``2BC``); it is not sent,
  but the round model, its test-time predictions and the next release are functions of it;
- ``pred``  each round: the DP model's train predictions, each row clipped to ``C_f``, + noise
  (sensitivity ``2 C_f``; the model itself is already DP, so only row i's output moves).

The budget is split between the three kinds by ``shares`` (fractions of the RDP, see
:func:`~securegal.privacy.dp.accountant.scales_for_shares`) and one scale is calibrated before
round 1. Every round's releases are spent atomically before any noise is drawn; a round past
the budget raises :class:`~securegal.errors.BudgetExceeded` and leaves the party's state as it
was. A ``prediction`` share of 0 returns zeros instead of predictions (no feedback channel,
no cost).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...seam import plain_array
from .accountant import Budget, PlannedRelease, PrivacyAccountant, Release, calibrate_noise, \
    scales_for_shares
from .mechanisms import GaussianNoise, release_rows
from .ridge import DPLinearModel, DPRidge

RELEASE_KINDS = ("gram", "stat", "pred")
# The default gram:stat split without per-row feedback (no ``pred`` release; zeros are returned).
NO_FEEDBACK_SHARES = {"gram": 0.33, "stat": 0.67}


@dataclass(frozen=True)
class DPConfig:
    """A feature party's DP settings: its budget and the mechanism's clipping/penalty knobs."""

    epsilon: float
    delta: float
    accountant: str = "rdp"
    feature_clip: float = 0.5
    residual_clip: float = 1.0
    prediction_clip: float = 0.01
    intercept: float = 0.1
    lam: float = 1e-3
    shares: dict = field(default_factory=lambda: {"gram": 0.3, "stat": 0.6, "pred": 0.1})
    seed: int | None = None  # tests and studies only: predictable noise (warns)

    def __post_init__(self) -> None:
        Budget(self.epsilon, self.delta)
        unknown = set(self.shares) - set(RELEASE_KINDS)
        if unknown or not {"gram", "stat"} <= set(self.shares):
            raise ValueError(f"shares must give 'gram' and 'stat' (and optionally 'pred'), got "
                             f"{sorted(self.shares)}")
        for k, v in self.shares.items():
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"share[{k!r}] must be finite and >= 0, got {v!r}")
        if not (self.shares["gram"] > 0 and self.shares["stat"] > 0):
            raise ValueError("the 'gram' and 'stat' shares must be > 0")
        DPRidge(self.feature_clip, self.residual_clip, self.intercept, self.lam)
        if not (math.isfinite(self.prediction_clip) and self.prediction_clip > 0):
            raise ValueError(f"prediction_clip must be finite and > 0, got {self.prediction_clip!r}")

    @property
    def budget(self) -> Budget:
        return Budget(self.epsilon, self.delta)

    @property
    def releases_predictions(self) -> bool:
        return self.shares.get("pred", 0.0) > 0


def plan_noise(config: DPConfig, n_rows: int, rounds: int) -> dict[str, float]:
    """Noise multiplier per release kind for ``rounds`` rounds on ``n_rows`` rows.

    Raises ValueError (before any data moves) for delta >= 1/n or a budget too small for the plan.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")
    budget = config.budget.check_rows(n_rows)
    kinds = [k for k in RELEASE_KINDS if config.shares.get(k, 0.0) > 0]
    steps = {"gram": 1, "stat": rounds, "pred": rounds}
    scales = scales_for_shares({k: config.shares[k] for k in kinds}, {k: steps[k] for k in kinds})
    plan = [PlannedRelease(k, steps=steps[k], scale=scales[k]) for k in kinds]
    z = calibrate_noise(plan, budget, config.accountant)
    return {k: z * scales[k] for k in kinds}


class DPTrainer:
    """Feature-party ``RoundTrainer`` whose every release is (epsilon, delta)-DP per table row."""

    def __init__(self, config: DPConfig):
        if not isinstance(config, DPConfig):
            raise TypeError(f"config must be a DPConfig, got {type(config).__name__}")
        self.config = config
        self.ridge = DPRidge(config.feature_clip, config.residual_clip, config.intercept, config.lam)
        self.noise = GaussianNoise(config.seed) if config.seed is not None else GaussianNoise()
        self.accountant: PrivacyAccountant | None = None
        self.models: list[DPLinearModel] = []
        self._phi: np.ndarray | None = None
        self._gram: np.ndarray | None = None

    def setup(self, X_train: np.ndarray, setup) -> None:
        """Validate the budget for ``setup.rounds`` rounds and calibrate noise; releases nothing."""
        if getattr(setup, "residuals", "plain") != "plain":
            raise ValueError(
                f"DPTrainer needs plaintext residuals, the label owner asked for "
                f"{setup.residuals!r}; with CKKS use CkksDPTrainer (securegal.privacy.hedp, "
                "docs/privacy.md section 5b)")
        X = np.asarray(X_train, dtype=np.float64)
        if X.ndim != 2 or not np.isfinite(X).all():
            raise ValueError(f"features must be a finite 2-D array, got shape {X.shape}")
        noise = plan_noise(self.config, X.shape[0], int(setup.rounds))
        self.accountant = PrivacyAccountant(self.config.budget, self.config.accountant, X.shape[0])
        self.accountant.noise_multipliers.update(noise)
        self._k = int(setup.n_outputs)
        self._fmap = self.ridge.feature_map(X.shape[1])
        self._phi = self._fmap(X)
        self._gram = None
        self.models = []

    def fit_round(self, round: int, residuals) -> np.ndarray:
        """Spend this round's releases, fit the DP round model, return noisy clipped predictions."""
        if self.accountant is None:
            raise RuntimeError("fit_round called before setup")
        r = plain_array(residuals, (self._phi.shape[0], self._k), f"residuals of round {round}")
        z = self.accountant.noise_multipliers
        releases = [Release(round, "gram", z["gram"])] if self._gram is None else []
        releases.append(Release(round, "stat", z["stat"]))
        if self.config.releases_predictions:
            releases.append(Release(round, "pred", z["pred"]))
        self.accountant.spend(*releases)  # raises BudgetExceeded with nothing changed
        if self._gram is None:
            self._gram = self.ridge.private_gram(self._phi, z["gram"], self.noise)
        stat = self.ridge.private_statistic(self._phi, r, z["stat"], self.noise)
        model = self.ridge.solve(self._gram, stat, self._fmap)
        self.models.append(model)
        if not self.config.releases_predictions:
            return np.zeros((r.shape[0], r.shape[1]))
        return release_rows(self._phi @ model.coef, self.config.prediction_clip, z["pred"], self.noise)

    def predict(self, X: np.ndarray, rounds: int) -> np.ndarray:
        """Per-round predictions (rounds, n, K) of the DP round models (post-processing); zeros
        for rounds not fitted (e.g. after a refused release)."""
        if self.accountant is None:
            raise RuntimeError("predict called before setup")
        X = np.asarray(X, dtype=np.float64)
        out = np.zeros((int(rounds), X.shape[0], self._k))
        for t, model in enumerate(self.models[:rounds]):
            out[t] = model.predict(X)
        return out

    def report(self) -> dict:
        """The party's ``privacy`` block for metrics.json."""
        if self.accountant is None:
            return {}
        out = self.accountant.to_dict()
        c = self.config
        out["mechanism"] = {"learner": "dp-ridge", "feature_clip": c.feature_clip,
                            "residual_clip": c.residual_clip, "prediction_clip": c.prediction_clip,
                            "intercept": c.intercept, "shares": dict(c.shares),
                            "secure_noise": self.noise.secure,
                            # see docs/privacy.md section 6: not covered by the guarantee
                            "standardization": "party's training mean/std, not DP"}
        return out
