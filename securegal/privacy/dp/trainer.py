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
from dataclasses import dataclass, field, replace

import numpy as np

from ...errors import BudgetExceeded, ConfigError, LayerMismatch
from ...seam import plain_array
from . import defaults
from .accountant import DEFAULT_ACCOUNTANT, Budget, PlannedRelease, PrivacyAccountant, Release, \
    calibrate_noise, check_accountant, epsilon_of, scales_for_shares
from .ledger import Ledger, calibrate_session
from .mechanisms import GaussianNoise, gram_sensitivity, prediction_sensitivity, release_rows, \
    statistic_sensitivity
from .ridge import DPLinearModel, DPRidge

RELEASE_KINDS = ("gram", "stat", "pred")
# A session without its own cap takes what is left of the table's budget, but never less than this
# share of it (less would be a run on noise alone).
MIN_SESSION_SHARE = 0.05
# The default gram:stat split without per-row feedback (no ``pred`` release; zeros are returned).
NO_FEEDBACK_SHARES = {"gram": 0.33, "stat": 0.67}
# A party whose phi has p < GRAM_COLUMNS columns (its d features and the intercept; public) gives
# the gram release sqrt(p / GRAM_COLUMNS) of its configured fraction of the gram + stat budget, and
# the stat releases the rest (DPConfig.gram_by_columns). Measured in docs/privacy.md section 8.
GRAM_COLUMNS = 9
# The feature clip B by the number of training rows n (public under replace-one neighbours):
# sqrt(n) / FEATURE_CLIP_ROWS within [FEATURE_CLIP_MIN, FEATURE_CLIP_MAX]. A small B projects most
# rows onto the sphere (more signal per unit of noise, more distortion); the noise shrinks with n,
# so a larger table affords a larger B. Measured in docs/privacy.md section 8 (plain residuals)
# and docs/he.md (CKKS+DP, where the circuit-error bound grows with B too).
FEATURE_CLIP_MIN, FEATURE_CLIP_MAX, FEATURE_CLIP_ROWS = 0.5, 2.0, 20.0


def feature_clip_for(n_rows: int) -> float:
    """The default feature clip B for a session on ``n_rows`` training rows."""
    if isinstance(n_rows, bool) or not isinstance(n_rows, (int, np.integer)) or n_rows < 1:
        raise ValueError(f"n_rows must be an int >= 1, got {n_rows!r}")
    return float(min(FEATURE_CLIP_MAX, max(FEATURE_CLIP_MIN, math.sqrt(int(n_rows)) / FEATURE_CLIP_ROWS)))


def gram_share_factor(n_columns: int) -> float:
    """The factor on the gram release's fraction of the gram + stat budget for a party with
    ``n_columns`` feature columns: ``sqrt(p / GRAM_COLUMNS)`` below ``GRAM_COLUMNS``, else 1,
    with ``p = n_columns + 1``."""
    if isinstance(n_columns, bool) or not isinstance(n_columns, (int, np.integer)) or n_columns < 1:
        raise ValueError(f"n_columns must be an int >= 1, got {n_columns!r}")
    return min(1.0, math.sqrt((int(n_columns) + 1) / GRAM_COLUMNS))


def feature_clip_origin(config: "DPConfig") -> str:
    """Why a session has its feature clip: what a trainer's report says beside the value."""
    if config.feature_clip is not None:
        return "set"
    return f"training rows: sqrt(n) / {FEATURE_CLIP_ROWS:g} in [{FEATURE_CLIP_MIN:g}, {FEATURE_CLIP_MAX:g}]"


def shares_origin(config: "DPConfig") -> str:
    """Why a session has its budget shares: what a trainer's report says beside them."""
    if not config.gram_by_columns:
        return "set"
    return (f"columns of phi (p): gram:stat {config.shares['gram']:g}:{config.shares['stat']:g} from p = "
            f"{GRAM_COLUMNS}, the gram's fraction times sqrt(p / {GRAM_COLUMNS}) below")


@dataclass(frozen=True)
class DPConfig:
    """A feature party's DP settings: its budget and the mechanism's clipping/penalty knobs.

    ``feature_clip`` None: chosen from the session's training rows (:func:`feature_clip_for`,
    by :meth:`for_rows`, before anything is calibrated or released). ``gram_by_columns``: ``shares``
    is the split at ``GRAM_COLUMNS`` columns of phi or more; :meth:`for_rows` re-splits gram + stat
    for the session's columns (:func:`gram_share_factor`)."""

    epsilon: float
    delta: float
    accountant: str = DEFAULT_ACCOUNTANT
    feature_clip: float | None = None
    residual_clip: float = defaults.RESIDUAL_CLIP
    prediction_clip: float = defaults.PREDICTION_CLIP
    intercept: float = defaults.INTERCEPT
    lam: float = defaults.LAM
    noise_ridge: float = defaults.NOISE_RIDGE
    coordinate_clip: float | None = None
    shares: dict = field(default_factory=lambda: {"gram": 0.3, "stat": 0.6, "pred": 0.1})
    gram_by_columns: bool = False
    seed: int | None = None  # tests and studies only: predictable noise (warns)

    def __post_init__(self) -> None:
        Budget(self.epsilon, self.delta)
        check_accountant(self.accountant)
        unknown = set(self.shares) - set(RELEASE_KINDS)
        if unknown or not {"gram", "stat"} <= set(self.shares):
            raise ConfigError(f"shares must give 'gram' and 'stat' (and optionally 'pred'), got "
                              f"{sorted(self.shares)}")
        for k, v in self.shares.items():
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"share[{k!r}] must be finite and >= 0, got {v!r}")
        if not (self.shares["gram"] > 0 and self.shares["stat"] > 0):
            raise ConfigError("the 'gram' and 'stat' shares must be > 0")
        if self.feature_clip is None:
            self.for_rows(1)  # checks every other knob with a concrete clip
        else:
            self.ridge()
        if not (math.isfinite(self.prediction_clip) and self.prediction_clip > 0):
            raise ConfigError(f"prediction_clip must be finite and > 0, got {self.prediction_clip!r}")

    @property
    def budget(self) -> Budget:
        return Budget(self.epsilon, self.delta)

    def for_rows(self, n_rows: int, n_columns: int | None = None) -> "DPConfig":
        """These settings for a session on ``n_rows`` training rows of ``n_columns`` features: the
        feature clip chosen by :func:`feature_clip_for` where none was set, and with
        ``gram_by_columns`` and ``n_columns`` given, the gram + stat budget re-split by
        :func:`gram_share_factor`. (The epsilon of a plan does not depend on its shares, only its
        noise multipliers do, so a check without ``n_columns`` refuses exactly what one with it would.)"""
        config = self if self.feature_clip is not None else replace(self, feature_clip=feature_clip_for(n_rows))
        if not (config.gram_by_columns and n_columns is not None):
            return config
        factor = gram_share_factor(n_columns)
        if factor == 1.0:
            return replace(config, gram_by_columns=False)
        total = config.shares["gram"] + config.shares["stat"]
        gram = config.shares["gram"] * factor
        return replace(config, shares={**config.shares, "gram": gram, "stat": total - gram}, gram_by_columns=False)

    def ridge(self, residual_clip: float | None = None) -> DPRidge:
        """The DP ridge these settings describe (``residual_clip``: a declared clip instead of
        this config's, the CKKS trainer's); the one place a trainer gets its feature map."""
        if self.feature_clip is None:
            raise ConfigError("feature_clip is chosen by the training rows: use for_rows(n) first")
        return DPRidge(self.feature_clip, self.residual_clip if residual_clip is None else residual_clip,
                       self.intercept, self.lam, self.noise_ridge, self.coordinate_clip)

    @property
    def releases_predictions(self) -> bool:
        return self.shares.get("pred", 0.0) > 0


def release_plan(config: DPConfig, rounds: int) -> list[PlannedRelease]:
    """The releases of ``rounds`` rounds (``gram`` x 1, ``stat`` x T, ``pred`` x T if shared),
    with the relative noise scales that split the budget by ``config.shares`` and each kind's
    L2 sensitivity; ``calibrate_noise`` (or a ledger's ``calibrate_session``) picks the scale.
    ``config`` must have its feature clip (:meth:`DPConfig.for_rows`)."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")
    if config.feature_clip is None:
        raise ConfigError("release_plan needs the session's feature clip: use config.for_rows(n) first")
    kinds = [k for k in RELEASE_KINDS if config.shares.get(k, 0.0) > 0]
    steps = {"gram": 1, "stat": rounds, "pred": rounds}
    sensitivity = {"gram": gram_sensitivity(config.feature_clip, config.intercept),
                   "stat": statistic_sensitivity(config.feature_clip, config.residual_clip),
                   "pred": prediction_sensitivity(config.prediction_clip)}
    scales = scales_for_shares({k: config.shares[k] for k in kinds}, {k: steps[k] for k in kinds})
    return [PlannedRelease(k, steps=steps[k], scale=scales[k], sensitivity=sensitivity[k])
            for k in kinds]


def plan_noise(config: DPConfig, n_rows: int, rounds: int) -> dict[str, float]:
    """Noise multiplier per release kind for ``rounds`` rounds on ``n_rows`` rows.

    Raises ConfigError (before any data moves) for delta >= 1/n or a budget too small for the plan.
    """
    plan = release_plan(config.for_rows(n_rows), rounds)
    budget = config.budget.check_rows(n_rows)
    z = calibrate_noise(plan, budget, config.accountant)
    return {p.what: z * p.scale for p in plan}


def reserve_session(ledger: Ledger, config: DPConfig, n_rows: int, rounds: int, session: str,
                    session_epsilon: float | None = None, sensitivity_of=None) -> tuple[dict[str, float], Budget]:
    """Calibrate a session's plan against the table's whole history and record all of it in the
    ledger before anything is released (:meth:`Ledger.settle` returns what a session that stops
    early did not release).

    Returns the noise multiplier per kind and the session's own budget: the epsilon of exactly
    the reserved releases, so an in-session accountant refuses anything beyond the plan. Raises
    BudgetExceeded (nothing recorded) when the plan does not fit what is left.
    ``sensitivity_of``: see :func:`reserve_plan`.
    """
    return reserve_plan(ledger, release_plan(config.for_rows(n_rows), rounds), n_rows, session, session_epsilon,
                        sensitivity_of)


def reserve_plan(ledger: Ledger, plan: list[PlannedRelease], n_rows: int, session: str,
                 session_epsilon: float | None = None, sensitivity_of=None) -> tuple[dict[str, float], Budget]:
    """:func:`reserve_session` for any planned releases (the DP-GD and CKKS trainers' too).

    Without ``session_epsilon`` a session takes all that is left, but at least
    :data:`MIN_SESSION_SHARE` of the lifetime budget: a session squeezed into a remainder would
    run on noise alone, so it is refused instead. ``sensitivity_of`` (noise multiplier per kind ->
    {kind: L2 sensitivity}) replaces planned sensitivities that depend on the calibrated noise
    (the CKKS ``pred`` bound depends on the ``gram`` noise), so the ledger records what the
    mechanism uses."""
    smallest = MIN_SESSION_SHARE * ledger.budget.epsilon
    if session_epsilon is None and ledger.remaining() < smallest:
        raise BudgetExceeded(
            f"table {ledger.table[:23]}: session refused: left {ledger.remaining():.4g} of epsilon "
            f"{ledger.budget.epsilon:.4g}, asked at least {smallest:.4g} (the smallest session, "
            f"{MIN_SESSION_SHARE:.0%} of the lifetime budget; delta={ledger.budget.delta:.3g}, {ledger.accountant})")
    z = calibrate_session(ledger, plan, session_epsilon=session_epsilon, n_rows=n_rows)
    if sensitivity_of is not None:
        exact = sensitivity_of({p.what: z * p.scale for p in plan})
        plan = [replace(p, sensitivity=exact.get(p.what, p.sensitivity)) for p in plan]
    reserved = [p.at(z) for p in plan]
    ledger.reserve(reserved, session)
    alone = epsilon_of(reserved, ledger.budget.delta, ledger.accountant)
    return {r.what: r.noise_multiplier for r in reserved}, Budget(alone * (1 + 1e-6), ledger.budget.delta)


# What a DP trainer's report says when no party bound it to a table (a trainer used on its own
# gets its features as given; FeatureParty without a TablePrivacy z-scores them exactly).
UNBOUND_STANDARDIZATION = "features as given by the caller (a party without a table ledger z-scores them " \
    "with the exact training mean/std: not covered by the guarantee, docs/privacy.md section 6)"


def bind_table(trainer, privacy, session: str) -> None:
    """Point a DP trainer at its party's table: ledger, session name, per-session cap, column map."""
    if not isinstance(privacy.ledger, Ledger):
        raise TypeError(f"ledger must be a Ledger, got {type(privacy.ledger).__name__}")
    trainer.ledger, trainer.session = privacy.ledger, session
    trainer.session_epsilon = privacy.session_epsilon
    trainer.standardization = privacy.columns.describe()


def ledger_report(ledger: Ledger, session: str | None) -> dict:
    """What a DP party's report takes from its table's ledger: ``epsilon_budget`` is the table's
    lifetime budget (``epsilon_spent`` stays this session's releases so far) and ``ledger`` the
    lifetime spend, everything reserved included."""
    return {"epsilon_budget": ledger.budget.epsilon,
            "ledger": {"table": ledger.table, "session": session,
                       "lifetime_epsilon_budget": ledger.budget.epsilon,
                       "lifetime_epsilon_spent": ledger.epsilon_spent,
                       "lifetime_epsilon_remaining": ledger.remaining(),
                       "accountant": ledger.accountant}}


class DPTrainer:
    """Feature-party ``RoundTrainer`` whose every release is (epsilon, delta)-DP per table row.

    With a ``ledger`` (the table's, :mod:`securegal.privacy.dp.ledger`) the budget is the
    table's lifetime budget: ``setup`` reserves the session's plan in the ledger under
    ``session`` (at most ``session_epsilon`` more, if given) instead of calibrating against
    ``config.epsilon`` alone.
    """

    def __init__(self, config: DPConfig, ledger: Ledger | None = None, session: str | None = None,
                 session_epsilon: float | None = None):
        if not isinstance(config, DPConfig):
            raise TypeError(f"config must be a DPConfig, got {type(config).__name__}")
        if ledger is not None and not isinstance(ledger, Ledger):
            raise TypeError(f"ledger must be a Ledger, got {type(ledger).__name__}")
        if ledger is not None and session is None:
            raise ValueError("a DPTrainer with a ledger needs the session's name")
        self.ledger, self.session, self.session_epsilon = ledger, session, session_epsilon
        self.standardization = UNBOUND_STANDARDIZATION
        self.config = config
        self.ridge: DPRidge | None = None  # built at setup, with the session's feature clip
        self.session_config: DPConfig | None = None  # config for the session's rows and columns, at setup
        self.noise = GaussianNoise(config.seed)
        self.accountant: PrivacyAccountant | None = None
        self.models: list[DPLinearModel] = []
        self._phi: np.ndarray | None = None
        self._gram: np.ndarray | None = None

    def bind_table(self, privacy, session: str) -> None:
        """Spend from the party's table ledger (``privacy``: a
        :class:`~securegal.privacy.dp.table.TablePrivacy`) under ``session``."""
        bind_table(self, privacy, session)

    def check_setup(self, setup) -> None:
        """What the session asks that this trainer cannot serve, refused from ``setup`` alone
        (the party checks it before it pays for anything)."""
        if getattr(setup, "residuals", "plain") != "plain":
            raise LayerMismatch(
                f"DPTrainer needs plaintext residuals, the label owner asked for "
                f"{setup.residuals!r}; with CKKS use CkksDPTrainer (securegal.privacy.hedp, "
                "docs/privacy.md section 5b)")

    def setup(self, X_train: np.ndarray, setup) -> None:
        """Validate the budget for ``setup.rounds`` rounds and calibrate noise; releases nothing."""
        self.check_setup(setup)
        X = np.asarray(X_train, dtype=np.float64)
        if X.ndim != 2 or not np.isfinite(X).all():
            raise ValueError(f"features must be a finite 2-D array, got shape {X.shape}")
        config = self.config.for_rows(X.shape[0], X.shape[1])
        self.session_config = config
        if self.ledger is None:
            noise = plan_noise(config, X.shape[0], int(setup.rounds))
            budget, accountant = config.budget, config.accountant
        else:
            noise, budget = reserve_session(self.ledger, config, X.shape[0], int(setup.rounds),
                                            self.session, self.session_epsilon)
            accountant = self.ledger.accountant
        self.accountant = PrivacyAccountant(budget, accountant, X.shape[0])
        self.accountant.noise_multipliers.update(noise)
        self.ridge = config.ridge()
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
        if self.ledger is not None:
            out.update(ledger_report(self.ledger, self.session))
        c = self.config
        out["mechanism"] = {"learner": "dp-ridge", "feature_clip": self.ridge.feature_clip,
                            "feature_clip_by": feature_clip_origin(c),
                            "coordinate_clip": c.coordinate_clip, "ridge": {"lam": c.lam, "noise_ridge": c.noise_ridge},
                            "residual_clip": c.residual_clip,
                            # None: no pred release, so no clip applies
                            "prediction_clip": c.prediction_clip if c.releases_predictions else None,
                            "intercept": c.intercept, "shares": dict(self.session_config.shares),
                            "shares_by": shares_origin(c),
                            "secure_noise": self.noise.secure,
                            "standardization": self.standardization}
        return out
