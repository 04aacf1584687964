"""One description of what protects a run: the :class:`PrivacyPlan`.

A plan names the residual transport (plain | ckks), feature-DP (a :class:`FeatureDP` budget with
its clips and feedback, or none), label-DP (a :class:`LabelDP` budget, or none) and whether the
feature parties may learn which of their rows are used (``hidden_membership``, docs/alignment.md).
It is the only place that decides:

- which residual channel the label owner runs (:meth:`PrivacyPlan.channel`);
- which trainer each feature party builds for which learner (:meth:`PrivacyPlan.trainers`);
- the DP defaults (:class:`FeatureDP`, :class:`LabelDP`, :data:`DEFAULT_DELTA`);
- the label owner's weights and step under DP (:meth:`PrivacyPlan.owner_policy`);
- which combinations are impossible (:meth:`PrivacyPlan.check`, called before anything is written).

The embedded run, the networked label owner and every networked party (from its own
``party.toml``) build their layers through a plan; the registry in
:mod:`securegal.privacy.registry` lists the named layers everything else enumerates.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Callable

from ..errors import ConfigError
from ..messages import PREDICT_MODES, RESIDUAL_MODES
from .dp import defaults
from .dp.accountant import ACCOUNTANTS, DEFAULT_ACCOUNTANT

if TYPE_CHECKING:  # the seam imports numpy; the command line reads this module for its help
    from ..seam import ResidualChannel, TrainerFactory
    from .he.params import CkksParams

# delta of every DP budget unless the user gives one (it must also be < 1/n).
DEFAULT_DELTA = 1e-5
# Learners with a DP version (linear -> DP ridge, mlp -> full-batch DP-GD) and the linear
# smoothers CKKS can run (their predictions are linear in the residuals, local loss l2).
DP_LEARNERS = ("linear", "mlp")
CKKS_LEARNERS = ("linear", "rff")
CKKS_DP_LEARNERS = ("linear",)
# Losses whose residual rows have a label-independent norm bound (label-DP sensitivity).
LABEL_DP_LOSSES = ("cross_entropy", "binary_cross_entropy")
# Under DP the label owner fixes its step so that each party's model gets total weight
# eta * T / M of about 0.75 (docs/privacy.md section 4).
DP_STEP_WEIGHT = 0.75
# ... and then scales each party's whole contribution by a multiplier fitted on its validation
# rows (never trained on; their predictions are disclosed for evaluation anyway), pulled towards 1
# with this penalty (docs/privacy.md section 4).
DP_CALIBRATION_PENALTY = 1.0

# (party name, party index, learner) -> the factory that builds the party's trainer at setup.
TrainerChoice = Callable[[str, int, object], "TrainerFactory"]


def _positive(owner: str, name: str, value, high: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0 < value < high) \
            or not math.isfinite(value):
        bound = "" if high == math.inf else f" and < {high:g}"
        raise ConfigError(f"{owner} {name} must be a finite number > 0{bound}, got {value!r}")


# How a user gives each option of PrivacyPlan.from_options: its command-line flag, or for the noise seed
# its party.toml key (no flag seeds the noise); elsewhere the party.toml key is the option's name.
_FLAGS = {"feature_clip": "--dp-feature-clip", "prediction_clip": "--dp-prediction-clip", "feedback": "--dp-feedback",
          "residual_clip": "--dp-residual-clip", "delta": "--delta", "accountant": "--accountant",
          "seed": "noise_seed", "session_epsilon": "--label-session-epsilon", "predict": "--dp-predict"}
# The feature parties' per-run cap (FeatureDP.session_epsilon; LabelDP's is --label-session-epsilon).
FEATURE_SESSION_FLAG = "--session-epsilon"


@dataclass(frozen=True, kw_only=True)
class FeatureDP:
    """A feature party's (epsilon, delta)-DP budget per row of its table, and its clips.

    ``feature_clip`` None (the default): B follows the session's training rows
    (:func:`~securegal.privacy.dp.trainer.feature_clip_for`: ``sqrt(n) / 20`` within [0.5, 2],
    on plain and CKKS residuals alike). ``coordinate_clip``, ``lam`` and ``noise_ridge`` are the
    DP ridge's row map and ridge floor
    (:class:`~securegal.privacy.dp.ridge.DPRidge`); their defaults are the tuned design
    (docs/privacy.md section 8), the alternatives are there for the tuning study.

    ``feedback``: release noised per-row train predictions (a 0.1 budget share). ``None`` means
    on with plain residuals and off under CKKS, where their data-independent noise bound is too
    loose to help (docs/privacy.md 5b). ``shares``: the budget split between the ``gram``, ``stat``
    and ``pred`` releases, for the tuning study; the default is 0.3 / 0.6 / 0.1 (0.33 / 0.67
    without feedback) for a party with 8 or more columns, and a party with fewer gives the ``gram``
    release ``sqrt((d + 1) / 9)`` of its fraction of the gram + stat budget
    (:func:`~securegal.privacy.dp.trainer.gram_share_factor`); given shares are used as they are.
    ``seed`` makes the noise predictable: tests and studies only (it warns, and the report says
    ``secure_noise: false``). ``session_epsilon``: with a ledger (``train(ledger=...)``), the most
    one run adds to each party's lifetime epsilon (None: all that is left; a networked party's is
    its party.toml ``session_epsilon``). ``predict``: which rows each party predicts for across the
    runs on its ledger (one of :data:`~securegal.messages.PREDICT_MODES`; a networked party's is its
    party.toml ``[policy] predict``). ``prediction_clip`` (C_f) None: the DP trainer's default 0.01; it
    clips only plaintext ``pred`` releases, so :class:`PrivacyPlan` refuses it where there are none.
    """

    epsilon: float
    delta: float = DEFAULT_DELTA
    accountant: str = DEFAULT_ACCOUNTANT
    feature_clip: float | None = None
    residual_clip: float = defaults.RESIDUAL_CLIP
    prediction_clip: float | None = None
    coordinate_clip: float | None = None
    lam: float = defaults.LAM
    noise_ridge: float = defaults.NOISE_RIDGE
    feedback: bool | None = None
    shares: dict | None = None
    seed: int | None = None
    session_epsilon: float | None = None
    predict: str = "once"

    def __post_init__(self) -> None:
        _positive("feature-DP", "epsilon", self.epsilon)
        if self.predict not in PREDICT_MODES:
            raise ConfigError(f"feature-DP predict must be one of {', '.join(PREDICT_MODES)}, got {self.predict!r}")
        if self.session_epsilon is not None:
            _positive("feature-DP", "session_epsilon", self.session_epsilon)
            if self.session_epsilon > self.epsilon:
                raise ConfigError(f"feature-DP session_epsilon {self.session_epsilon:g} exceeds the lifetime epsilon "
                                  f"{self.epsilon:g}")
        _positive("feature-DP", "delta", self.delta, 1.0)
        for name in ("residual_clip", "lam"):
            _positive("feature-DP", name, getattr(self, name))
        for name in ("feature_clip", "prediction_clip"):
            if getattr(self, name) is not None:
                _positive("feature-DP", name, getattr(self, name))
        if self.coordinate_clip is not None:
            _positive("feature-DP", "coordinate_clip", self.coordinate_clip)
        if isinstance(self.noise_ridge, bool) or not isinstance(self.noise_ridge, (int, float)) \
                or not (math.isfinite(self.noise_ridge) and self.noise_ridge >= 0):
            raise ConfigError(f"feature-DP noise_ridge must be a finite number >= 0, got {self.noise_ridge!r}")
        if self.accountant not in ACCOUNTANTS:
            raise ConfigError(f"feature-DP accountant must be one of {', '.join(ACCOUNTANTS)}, got {self.accountant!r}")
        if self.feedback is not None and not isinstance(self.feedback, bool):  # "off" is truthy: it ran with feedback
            raise ConfigError(f"feature-DP feedback must be True, False or None (the default by residuals), got "
                              f"{self.feedback!r}")
        _noise_seed("feature-DP", self.seed)
        _plain_numbers(self)
        if self.shares is not None:
            self.config("plain")  # the shares' own checks

    def config(self, residuals: str):
        """The mechanism's :class:`~securegal.privacy.dp.trainer.DPConfig` for ``residuals``."""
        from .dp.trainer import NO_FEEDBACK_SHARES, DPConfig

        feedback = self.feedback if self.feedback is not None else residuals == "plain"
        if self.shares is None:  # the default split, re-split by each party's columns
            shares = {"gram_by_columns": True} if feedback else {"shares": dict(NO_FEEDBACK_SHARES),
                                                                  "gram_by_columns": True}
        elif not isinstance(self.shares, dict):
            raise ConfigError(f"feature-DP shares must be a dict of release kind -> share, got {self.shares!r}")
        elif not feedback and self.shares.get("pred", 0.0):
            why = "feedback is off" if self.feedback is False else f"{residuals} residuals return no per-row predictions"
            raise ConfigError(f"feature-DP shares {self.shares!r} give 'pred' a share, but {why}: drop 'pred'")
        else:
            shares = {"shares": dict(self.shares)}
        clip = {} if self.prediction_clip is None else {"prediction_clip": self.prediction_clip}
        return DPConfig(self.epsilon, self.delta, self.accountant, feature_clip=self.feature_clip,
                        residual_clip=self.residual_clip, coordinate_clip=self.coordinate_clip, lam=self.lam,
                        noise_ridge=self.noise_ridge, seed=self.seed, **shares, **clip)


def check_layer_learner(learner: str, residuals: str, feature_dp: bool) -> None:
    """Refuse a learner that ``residuals`` (with or without ``feature_dp``) cannot run: CKKS runs
    linear smoothers, feature-DP a learner with a DP version (DP ridge or DP-GD)."""
    if residuals == "ckks":
        allowed = CKKS_DP_LEARNERS if feature_dp else CKKS_LEARNERS
        if learner not in allowed:
            why = ("CKKS + feature-DP runs the DP ridge on ciphertexts" if feature_dp else
                   "its predictions must be linear in the residuals")
            raise ConfigError(f"learner {learner!r} cannot run on ckks residuals{' with feature-DP' if feature_dp else ''} "
                              f"({why}); use {' or '.join(allowed)}")
    if feature_dp and learner not in DP_LEARNERS:
        raise ConfigError(f"feature-DP (--epsilon) is implemented for the learners {', '.join(DP_LEARNERS)} "
                          f"(DP ridge, DP-GD MLP), not {learner!r}")


# FeatureDP options of the DP ridge alone (the linear learner's row map, ridge floor and releases).
RIDGE_ONLY = ("feature_clip", "coordinate_clip", "lam", "noise_ridge", "shares")


def layer_name(ckks: bool, feature_dp: bool, label_dp: bool) -> str:
    """The name of what is in force: a registered layer's (``plain``, ``ckks``, ``dp``,
    ``ckks+dp``, ``label-dp``), or ``dp+label-dp`` for feature-DP and label-DP together (a plan,
    not a registered layer); a plan's own, or a networked run's, whose parties set their
    feature-DP themselves."""
    return "+".join((["ckks"] if ckks else []) + (["dp"] if feature_dp else []) + (["label-dp"] if label_dp else [])) \
        or "plain"


def _plain_numbers(spec) -> None:
    """numpy scalars given to a frozen spec (``np.float32(3)``) as Python numbers: metrics.json
    and the wire take those."""
    for f in fields(spec):
        value = getattr(spec, f.name)
        if type(value).__module__ == "numpy" and hasattr(value, "item"):  # numpy is not imported for --help
            object.__setattr__(spec, f.name, value.item())


def _noise_seed(what: str, seed) -> None:
    """A noise seed (tests and studies only) is None or a whole number >= 0."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
        raise ConfigError(f"{what} seed must be None or a whole number >= 0, got {seed!r}")


@dataclass(frozen=True, kw_only=True)
class LabelDP:
    """The label owner's label-DP budget for the residuals it releases, and their clip ``C``."""

    epsilon: float
    delta: float = DEFAULT_DELTA
    accountant: str = DEFAULT_ACCOUNTANT
    residual_clip: float = defaults.RESIDUAL_CLIP
    seed: int | None = None
    # With a ledger: the most one run may add to the label column's lifetime epsilon (None: all that is left).
    session_epsilon: float | None = None

    def __post_init__(self) -> None:
        _positive("label-DP", "epsilon", self.epsilon)
        _positive("label-DP", "delta", self.delta, 1.0)
        _positive("label-DP", "residual_clip", self.residual_clip)
        if self.session_epsilon is not None:
            _positive("label-DP", "session_epsilon", self.session_epsilon)
            if self.session_epsilon > self.epsilon:
                raise ConfigError(f"label-DP session_epsilon {self.session_epsilon:g} exceeds the lifetime epsilon "
                                  f"{self.epsilon:g}: no run could ever be served")
        if self.accountant not in ACCOUNTANTS:
            raise ConfigError(f"label-DP accountant must be one of {', '.join(ACCOUNTANTS)}, got {self.accountant!r}")
        _noise_seed("label-DP", self.seed)
        _plain_numbers(self)

    def config(self):
        from .dp.layers import LabelDPConfig

        return LabelDPConfig(self.epsilon, self.delta, self.accountant, residual_clip=self.residual_clip,
                             seed=self.seed, session_epsilon=self.session_epsilon)


@dataclass(frozen=True)
class OwnerPolicy:
    """How the label owner combines the parties' predictions: weights, step, and whether it
    calibrates per-party multipliers on its validation rows after the last round (the penalty
    of :func:`~securegal.core.calibration.fit_party_multipliers`, or None)."""

    weighting: str  # "learned" | "uniform"
    eta: float | None  # None: line search
    calibration: float | None = None
    # Under label-DP the calibration also weighs the label owner's own block boosted alone on the
    # exact labels (it never enters a broadcast; LabelOwner.calibrate).
    exact_alone: bool = False


@dataclass(frozen=True, kw_only=True)
class PrivacyPlan:
    """What protects a run. Immutable; build it from CLI flags, a config file or Python.

    ``residual_clip``: under CKKS with DP parties the label owner clips every residual row to this
    norm before encrypting and declares it (the parties' bounds rest on it). ``None`` means: the
    feature-DP clip when this plan has feature-DP and CKKS, else no clip.

    ``hidden_membership``: the feature parties never learn which of their rows the label owner
    holds or trains on: every party fits on all its rows, on encrypted residuals that are zero
    where the label owner has none, and returns (DP-noised) predictions for all of them. Needs
    ckks residuals and feature-DP with feedback at every party (docs/alignment.md).
    """

    residuals: str = "plain"
    feature_dp: FeatureDP | None = None
    label_dp: LabelDP | None = None
    residual_clip: float | None = None
    hidden_membership: bool = False

    def __post_init__(self) -> None:
        if self.residuals not in RESIDUAL_MODES:
            raise ConfigError(f"residuals must be one of {', '.join(RESIDUAL_MODES)}, got {self.residuals!r}")
        if self.feature_dp is not None and not isinstance(self.feature_dp, FeatureDP):
            raise ConfigError(f"feature_dp must be a FeatureDP, got {type(self.feature_dp).__name__}")
        if self.label_dp is not None and not isinstance(self.label_dp, LabelDP):
            raise ConfigError(f"label_dp must be a LabelDP, got {type(self.label_dp).__name__}")
        if self.residuals == "ckks" and self.label_dp is not None:
            raise ConfigError("label-DP protects labels from parties that see plaintext residuals; with ckks residuals "
                              "they only ever see ciphertexts, so use one or the other")
        if self.residual_clip is not None:
            _positive("plan", "residual_clip", self.residual_clip)
            if self.residuals != "ckks":
                raise ConfigError(f"residual_clip is the label owner's clip before encrypting; it needs ckks "
                                  f"residuals, not {self.residuals!r}")
        if not isinstance(self.hidden_membership, bool):
            raise ConfigError(f"hidden_membership must be true or false, got {self.hidden_membership!r}")
        if self.hidden_membership:
            if self.residuals != "ckks":
                raise ConfigError(f"hidden membership needs ckks residuals (--residuals ckks), not "
                                  f"{self.residuals!r}: in the clear, the zero residuals of the rows the label "
                                  "owner lacks would tell each party which of its rows are members")
            if self.feature_dp is not None and self.feature_dp.feedback is False:
                raise ConfigError("hidden membership takes every prediction from the parties' DP feedback "
                                  "releases (predictions on training rows are outside DP otherwise); drop "
                                  "--dp-feedback off")
        if self.feature_dp is not None and self.feature_dp.prediction_clip is not None:
            if self.residuals == "ckks":
                raise ConfigError("prediction_clip (--dp-prediction-clip) has no effect on ckks residuals: the "
                                  "encrypted predictions are noised by a data-independent bound (docs/privacy.md "
                                  "5b); drop it")
            if not self.feature_dp.config(self.residuals).releases_predictions:
                raise ConfigError("prediction_clip (--dp-prediction-clip) clips the released train predictions, "
                                  "but this feature-DP releases none (feedback off, or no 'pred' share); drop it")

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_options(cls, *, residuals: str = "plain", epsilon: float | None = None,
                     label_epsilon: float | None = None, delta: float | None = None, accountant: str | None = None,
                     feature_clip: float | None = None, residual_clip: float | None = None,
                     prediction_clip: float | None = None, feedback: str | bool | None = None,
                     noise_seed: int | None = None, hidden_membership: bool = False,
                     label_session_epsilon: float | None = None,
                     session_epsilon: float | None = None, predict: str | None = None) -> "PrivacyPlan":
        """A plan from flag-like options (``securegal train``, the audit sweep, benchmarks).

        Options left ``None`` take the defaults of :class:`FeatureDP`/:class:`LabelDP`; a DP option
        given without a budget that uses it is refused, never ignored.
        """
        if isinstance(feedback, str):
            if feedback not in ("on", "off"):
                raise ConfigError(f"feedback must be 'on' or 'off', got {feedback!r}")
            feedback = feedback == "on"
        given = {k: v for k, v in dict(delta=delta, accountant=accountant, seed=noise_seed).items() if v is not None}
        feature_only = {k: v for k, v in dict(feature_clip=feature_clip, prediction_clip=prediction_clip,
                                              feedback=feedback, predict=predict).items() if v is not None}
        if epsilon is None and feature_only:
            names = ", ".join(f"{k} ({_FLAGS[k]})" for k in sorted(feature_only))
            raise ConfigError(f"{names} only {'applies' if len(feature_only) == 1 else 'apply'} to feature-DP "
                              "(--epsilon, or epsilon in party.toml [privacy]), which is not set")
        if epsilon is None and label_epsilon is None and (given or residual_clip is not None):
            stray = sorted({**given, **({"residual_clip": 1} if residual_clip is not None else {})})
            raise ConfigError(f"{', '.join(f'{k} ({_FLAGS[k]})' for k in stray)} set without a DP budget "
                              "(--epsilon or --label-epsilon)")
        if epsilon is None and session_epsilon is not None:
            raise ConfigError(f"session_epsilon ({FEATURE_SESSION_FLAG}) caps the feature parties' budget (--epsilon), "
                              "which is not set")
        if label_epsilon is None and label_session_epsilon is not None:
            raise ConfigError("session_epsilon (--label-session-epsilon) caps a label-DP budget (--label-epsilon), "
                              "which is not set")
        feature = label = None
        if epsilon is not None:
            clip = {} if residual_clip is None else {"residual_clip": residual_clip}
            session = {} if session_epsilon is None else {"session_epsilon": session_epsilon}
            feature = FeatureDP(epsilon=epsilon, **given, **feature_only, **clip, **session)
        if label_epsilon is not None:
            clip = {} if residual_clip is None else {"residual_clip": residual_clip}
            label = LabelDP(epsilon=label_epsilon, session_epsilon=label_session_epsilon, **given, **clip)
        return cls(residuals=residuals, feature_dp=feature, label_dp=label, hidden_membership=hidden_membership)

    # ------------------------------------------------------------------ what it is

    @property
    def layer(self) -> str:
        """The name of this plan's layer (:func:`layer_name`: a registered layer's, or
        ``dp+label-dp``, which combines two)."""
        return layer_name(self.residuals == "ckks", self.feature_dp is not None, self.label_dp is not None)

    @property
    def private(self) -> bool:
        return self.feature_dp is not None or self.label_dp is not None

    @property
    def declared_clip(self) -> float | None:
        """The residual clip the label owner applies before encrypting (ckks), or None."""
        if self.residuals != "ckks":
            return None
        if self.residual_clip is not None:
            return self.residual_clip
        return self.feature_dp.residual_clip if self.feature_dp is not None else None

    @property
    def ckks_params(self) -> "CkksParams | None":
        """The CKKS chain of this plan (docs/he.md): two rescaling primes where feature parties
        may run DP on the ciphertexts (feature-DP here, or a declared residual clip, which is what
        DP parties of a networked run require; the flood's circuit-error bound was measured on
        that chain), one otherwise (cheaper key switching)."""
        if self.residuals != "ckks":
            return None
        from .he.params import DP_CKKS_PARAMS, RESIDUAL_CKKS_PARAMS

        return DP_CKKS_PARAMS if self.feature_dp is not None or self.declared_clip is not None else RESIDUAL_CKKS_PARAMS

    # ------------------------------------------------------------------ checks

    def check_learner(self, learner: str) -> None:
        """Refuse a learner this plan's layers cannot run (a party checks this at start-up)."""
        check_layer_learner(learner, self.residuals, self.feature_dp is not None)
        if self.feature_dp is not None and learner == "mlp":  # DP-GD has neither the ridge's row map nor its releases
            ridge_only = [name for name in RIDGE_ONLY
                          if getattr(self.feature_dp, name) != FeatureDP.__dataclass_fields__[name].default]
            if ridge_only:
                named = ", ".join(f"{k} ({_FLAGS[k]})" if k in _FLAGS else k for k in ridge_only)
                it = "it" if len(ridge_only) == 1 else "them"
                raise ConfigError(f"feature-DP {named}: only the DP ridge (linear learner) uses {it}, not the mlp's "
                                  f"DP-GD; drop {it}")

    def check(self, *, learner: str, loss: str, n_train: int, rounds: int, parties=(),
              weighting: str | None = None, local_parties: bool = True) -> None:
        """Refuse every impossible combination with a one-line :class:`ConfigError`, before
        anything is written or sent: the learner a layer cannot run, a budget that cannot cover
        ``rounds`` rounds on ``n_train`` rows, label-DP on a regression, label-DP with learned
        weights (its fixed step comes from :meth:`owner_policy`; the label owner refuses a
        line-searched one when built), hidden membership without feature-DP at parties this
        plan builds (``local_parties``; remote parties refuse it themselves at setup)."""
        self.check_learner(learner)
        if self.hidden_membership and local_parties and self.feature_dp is None:
            raise ConfigError("hidden membership needs feature-DP at every party (--epsilon): the label owner "
                              "receives predictions on all of each party's rows, also on people it does not "
                              "hold, and only DP releases may carry them")
        if self.feature_dp is not None:
            self.trainers().preflight(n_train, rounds, list(parties) or ["party"], learner=learner)
        if self.label_dp is not None:
            if loss not in LABEL_DP_LOSSES:
                raise ConfigError(f"label-DP is implemented for classification (cross-entropy), not loss {loss!r}: "
                                  "regression targets are standardized with label statistics, which are not accounted")
            if weighting == "learned":
                raise ConfigError("label-DP residuals need uniform weights: learned weights would use the labels "
                                  "outside the privacy budget")
            self.channel().preflight(n_train, rounds, loss)

    # ------------------------------------------------------------------ what it builds

    def channel(self, owner: str | None = None) -> "ResidualChannel":
        """A fresh label-owner residual channel for one run (``owner``: the label owner's name, under
        which a label-DP channel reports its budget)."""
        if self.residuals == "ckks":
            if self.declared_clip is not None:
                from .hedp import ClippedCkksResiduals

                return ClippedCkksResiduals(self.declared_clip, self.ckks_params)
            from .he.layers import CkksResiduals

            return CkksResiduals(self.ckks_params)
        if self.label_dp is not None:
            from .dp.layers import LabelDPResiduals

            return LabelDPResiduals(self.label_dp.config(), **({} if owner is None else {"party": owner}))
        from .plain import PlainResiduals

        return PlainResiduals()

    def trainers(self):
        """The feature parties' trainer choice: ``(name, index, learner) -> factory(setup)``.

        It refuses a learner its layer cannot run when called, before any data moves; DP
        choices also have ``preflight`` and ``report`` (what each party spent).
        """
        if self.feature_dp is not None:
            spec = replace(self.feature_dp, feedback=True) if self.hidden_membership else self.feature_dp
            config = spec.config(self.residuals)
            if self.residuals == "ckks":
                from .hedp import CkksDPTrainers

                return CkksDPTrainers(config, session_epsilon=spec.session_epsilon, predict=spec.predict)
            from .dp.layers import DPTrainers

            return DPTrainers(config, session_epsilon=spec.session_epsilon, predict=spec.predict)
        if self.residuals == "ckks":
            from .he.layers import ckks_trainers

            return ckks_trainers
        from .plain import plain_trainers

        return plain_trainers

    def owner_policy(self, *, parties: int, rounds: int, weighting: str | None = None, eta: float | None = None,
                     eta_max: float | None = None, dp_parties: bool = False,
                     calibrate: bool | None = None) -> OwnerPolicy:
        """The label owner's weights and step. Under any DP (this plan's, or parties that report
        a DP budget) they default to uniform weights and the fixed step ``0.75 * M / T``: weights
        fitted on the training rows would rest on noisy (or no) predictions of the DP parties.
        Label-DP refuses learned weights (see :meth:`check`).

        Under any DP with uniform weights, ``calibrate`` (default on) adds per-party multipliers
        fitted after the last round on the validation rows, with penalty
        :data:`DP_CALIBRATION_PENALTY`. Under feature-DP those rows were never trained on and their
        predictions are disclosed for evaluation anyway; under label-DP the fit comes after the
        last residual broadcast and never leaves the label owner. Either way it costs no budget
        (docs/privacy.md section 4; under CKKS evaluation reuses the calibration's replies, so a
        session still asks for two). Under label-DP the calibration also weighs an Alone model
        (``exact_alone``): the label owner's own block boosted on the exact labels, which never
        enters a residual, with its multiplier pulled towards 0 instead of 1.

        ``eta_max`` (a given cap of the line-searched step) is refused when the step is fixed."""
        private = self.private or dp_parties
        if weighting is None:
            weighting = "uniform" if private else "learned"
        if eta_max is not None and (eta is not None or private):
            why = f"eta = {eta:g}" if eta is not None else f"under DP at {DP_STEP_WEIGHT:g} * M / T"
            raise ConfigError(f"eta_max (--eta-max) caps the line-searched step, but the step is fixed ({why}): "
                              "drop it")
        if eta is None and private:
            eta = DP_STEP_WEIGHT * parties / rounds
        if calibrate and not (private and weighting == "uniform"):
            raise ConfigError(f"calibrated multipliers are for DP runs with uniform weights "
                              f"(weights {weighting!r}, DP {'on' if private else 'off'})")
        if calibrate is None:
            calibrate = private and weighting == "uniform"
        return OwnerPolicy(weighting, eta, DP_CALIBRATION_PENALTY if calibrate else None,
                           exact_alone=bool(calibrate) and self.label_dp is not None)

    def describe(self) -> dict:
        """The plan as plain data (metrics.json ``plan``)."""
        out: dict = {"layer": self.layer, "residuals": self.residuals}
        for key in ("feature_dp", "label_dp"):
            spec = getattr(self, key)
            if spec is not None:
                out[key] = {f.name: getattr(spec, f.name) for f in fields(spec)}
        if self.declared_clip is not None:
            out["residual_clip"] = self.declared_clip
        if self.hidden_membership:
            out["membership"] = "hidden"
        return out
