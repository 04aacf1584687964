"""DP layers plugged into the GAL seam.

- :class:`DPTrainers`: the ``trainers`` choice that gives every feature party a
  :class:`~securegal.privacy.dp.trainer.DPTrainer` with its own budget and accountant.
- :class:`LabelDPResiduals`: the label owner's residual channel that clips and noises the
  residuals (label-DP), accounted in the label owner's own accountant.

Both have ``preflight(n_train, rounds)``, which ``securegal.run.train`` calls before any data
moves, so a bad budget is a clear error and not a half-run federation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

import numpy as np

from ...errors import BudgetExceeded, ConfigError
from ...learners.base import Learner
from ...messages import LABEL_OWNER, PREDICT_MODES, Payload, Setup
from ...seam import plain_array, plain_bytes
from .accountant import DEFAULT_ACCOUNTANT, Budget, PlannedRelease, PrivacyAccountant, Release, \
    calibrate_noise, check_accountant
from ..plan import RIDGE_ONLY, check_layer_learner
from . import defaults
from .mechanisms import GaussianNoise, clip_rows
from .trainer import NO_FEEDBACK_SHARES, DPConfig, DPTrainer, ledger_report, plan_noise, reserve_plan

if TYPE_CHECKING:  # DP-GD imports torch and Opacus: loaded only when an mlp party runs under DP
    from .dpgd import DPGDConfig


class DPTrainers:
    """Trainer choice for ``securegal.run.train``: a DP trainer per feature party.

    ``configs`` maps party name to :class:`DPConfig`; ``default`` serves parties not named.
    The linear learner becomes DP ridge (local loss l2, also where the non-private learner would
    use l1/IRLS, which has no sufficient statistics); the MLP becomes a DP-GD MLP with the
    learner's hidden sizes and the config's budget and clipping norms. CNN and GB have no DP
    version yet.
    """

    def __init__(self, default: DPConfig | None = None, configs: Mapping[str, DPConfig] | None = None,
                 session_epsilon: float | None = None, predict: str = "once"):
        self.default = default
        self.configs = dict(configs or {})
        self.session_epsilon = session_epsilon  # each party's per-run cap in its table's ledger (None: all left)
        self.predict = predict  # each party's [policy] predict (messages.PREDICT_MODES)
        if default is None and not self.configs:
            raise ConfigError("DPTrainers needs a default DPConfig or per-party configs")
        if predict not in PREDICT_MODES:
            raise ConfigError(f"predict must be one of {', '.join(PREDICT_MODES)}, got {predict!r}")
        self.trainers: dict[str, DPTrainer] = {}

    def config_for(self, name: str) -> DPConfig:
        config = self.configs.get(name, self.default)
        if config is None:
            raise ConfigError(f"no DP budget configured for party {name!r}")
        return config

    def _dpgd_config(self, name: str, hidden: tuple[int, ...] | None = None) -> DPGDConfig:
        """Party ``name``'s DP-GD settings; ``hidden``, the learner's layer sizes (they do not
        change the noise: the preflight leaves them out)."""
        from .dpgd import DPGDConfig

        c = self.config_for(name)
        # Refused, not ignored: DP-GD has neither the ridge's row map, its intercept nor its ridge
        # floor; of its shares it reads only whether predictions are released.
        fields = DPConfig.__dataclass_fields__
        ridge_only = [k for k in (*RIDGE_ONLY, "intercept") if k != "shares" and getattr(c, k) != fields[k].default]
        if dict(c.shares) not in (fields["shares"].default_factory(), dict(NO_FEEDBACK_SHARES)):
            ridge_only.append("shares")
        if ridge_only:
            raise ConfigError(f"DPConfig {', '.join(ridge_only)} set, but only the DP ridge (linear learner) uses "
                              "them, not the mlp's DP-GD")
        shares = {} if c.releases_predictions else {"shares": {"sgd": 1.0}}  # feedback off: no pred release
        sizes = {} if hidden is None else {"hidden": tuple(hidden)}
        return DPGDConfig(c.epsilon, c.delta, c.accountant, residual_clip=c.residual_clip,
                          prediction_clip=c.prediction_clip, seed=c.seed, **shares, **sizes)

    def preflight(self, n_train: int, rounds: int, party_names, learner: str = "linear") -> None:
        """Refuse, before any data moves, a learner without a DP version or a budget that
        cannot cover ``rounds`` rounds."""
        check_layer_learner(learner, "plain", feature_dp=True)
        for name in party_names:
            try:
                if learner == "mlp":
                    from .dpgd import plan_dpgd_noise

                    plan_dpgd_noise(self._dpgd_config(name), n_train, rounds)
                else:
                    plan_noise(self.config_for(name), n_train, rounds)
            except ConfigError as exc:
                raise ConfigError(f"party {name!r}: {exc}") from exc

    def __call__(self, name: str, index: int, learner: Learner):
        kind = getattr(learner, "name", type(learner).__name__)
        check_layer_learner(kind, "plain", feature_dp=True)

        def factory(setup: Setup):
            if kind == "mlp":
                from .dpgd import DPGDTrainer

                trainer = DPGDTrainer(self._dpgd_config(name, learner.hidden))
            else:
                trainer = DPTrainer(self.config_for(name))
            self.trainers[name] = trainer
            return trainer

        return factory

    def report(self) -> dict:
        return {name: t.report() for name, t in self.trainers.items()}

    def open_table(self, name: str, table_id: str, columns, ledger_path=None, formerly=(), n_rows: int | None = None):
        """Party ``name``'s :class:`~securegal.privacy.dp.table.TablePrivacy` with its budget as
        the table's lifetime budget (in memory, or the ledger file at ``ledger_path``); ``n_rows``,
        the table's rows, adds the check delta < 1/n, as a networked party's does."""
        from .table import open_table

        c = self.config_for(name)
        return open_table(table_id, Budget(c.epsilon, c.delta), c.accountant, columns, ledger_path=ledger_path,
                          session_epsilon=self.session_epsilon, seed=c.seed, formerly=formerly, n_rows=n_rows)


@dataclass(frozen=True)
class LabelDPConfig:
    """The label owner's label-DP budget and residual clipping norm ``C``."""

    epsilon: float
    delta: float
    accountant: str = DEFAULT_ACCOUNTANT
    residual_clip: float = defaults.RESIDUAL_CLIP
    seed: int | None = None  # tests and studies only
    session_epsilon: float | None = None  # with a ledger: the most one run adds to the lifetime epsilon

    def __post_init__(self) -> None:
        Budget(self.epsilon, self.delta)
        check_accountant(self.accountant)
        if not (math.isfinite(self.residual_clip) and self.residual_clip > 0):
            raise ConfigError(f"residual_clip must be finite and > 0, got {self.residual_clip!r}")


# Replace-one-label sensitivity of an unclipped residual row when F does not depend on the label:
# cross-entropy onehot(y) - p moves by e_a - e_b (norm sqrt 2); binary y - p moves by 1.
_LOSS_SENSITIVITY = {"cross_entropy": math.sqrt(2.0), "binary_cross_entropy": 1.0}


class LabelDPResiduals:
    """Residual channel: each round, ``clip(r_t, C) + N(0, (z * Delta)^2)``, one draw shared by
    every party (and the label owner's own learner), recorded in the label owner's accountant.

    ``Delta = min(2C, loss bound)``: clipping onto a ball is non-expansive, so the bound of the
    unclipped residual (sqrt 2 for cross-entropy, 1 for binary) still holds after clipping.
    The guarantee needs every other label use to be fixed: F0 = 0, uniform weights and a fixed
    eta (enforced by :class:`~securegal.parties.label_owner.LabelOwner` via ``private_labels``).
    """

    name = "label-dp"
    private_labels = True

    def __init__(self, config: LabelDPConfig, party: str = LABEL_OWNER):
        self.config = config
        self.party = party
        self.noise = GaussianNoise(config.seed)
        self.accountant: PrivacyAccountant | None = None
        self.sensitivity: float | None = None
        self._rounds = 0
        self._n_train = 0
        self._sealed: dict[int, np.ndarray] = {}
        self.ledger = None  # the label column's lifetime ledger (bind_ledger), None: this run's budget only
        self.session: str | None = None

    def preflight(self, n_train: int, rounds: int, loss_name: str) -> None:
        if loss_name not in _LOSS_SENSITIVITY:
            raise ConfigError(
                f"label-DP is implemented for classification (cross-entropy), not loss {loss_name!r}: "
                "regression targets are standardized with label statistics, which are not accounted")
        budget = Budget(self.config.epsilon, self.config.delta).check_rows(n_train)
        self.sensitivity = min(2.0 * self.config.residual_clip, _LOSS_SENSITIVITY[loss_name])
        try:
            z = calibrate_noise([PlannedRelease("residuals", steps=rounds)], budget, self.config.accountant)
        except ConfigError as exc:
            raise ConfigError(f"label owner: {exc}") from exc
        self.accountant = PrivacyAccountant(budget, self.config.accountant, n_train)
        self.accountant.noise_multipliers["residuals"] = z
        self._rounds, self._n_train = rounds, n_train

    def bind_ledger(self, ledger, session: str) -> None:
        """Make the budget the label column's lifetime budget: reserve this run's releases in
        ``ledger`` (calibrated to what is left; BudgetExceeded, naming it, before anything is
        sent) under ``session``. After :meth:`preflight`."""
        if self.accountant is None:
            raise RuntimeError("LabelDPResiduals.bind_ledger before preflight")
        if self.accountant.releases:
            raise RuntimeError("LabelDPResiduals.bind_ledger after residuals were released")
        plan = [PlannedRelease("residuals", steps=self._rounds, sensitivity=self.sensitivity)]
        try:
            noise, budget = reserve_plan(ledger, plan, self._n_train, session,
                                         session_epsilon=self.config.session_epsilon)
        except BudgetExceeded as exc:
            where = getattr(ledger, "path", "in memory")
            raise BudgetExceeded(f"the label column's lifetime budget (ledger {where}) cannot cover this run: "
                                 f"{exc}") from None
        self.accountant = PrivacyAccountant(budget, self.config.accountant, self._n_train)
        self.accountant.noise_multipliers["residuals"] = noise["residuals"]
        self.ledger, self.session = ledger, session

    def settle_ledger(self, reason: str) -> None:
        """Give the ledger back the rounds this run reserved and did not release (it stopped early)."""
        if self.ledger is not None and self.accountant is not None:
            self.ledger.settle(self.session, self.accountant.releases, reason)

    def setup_fields(self, party: str) -> Mapping[str, object]:
        return {"residuals": "plain"}

    def seal(self, residuals: np.ndarray, round: int, party: str) -> Payload:
        if self.accountant is None:
            raise RuntimeError("LabelDPResiduals.seal before preflight")
        if round not in self._sealed:
            z = self.accountant.noise_multipliers["residuals"]
            self.accountant.spend(Release(round, "residuals", z))  # BudgetExceeded: nothing sent
            r = clip_rows(residuals, self.config.residual_clip)
            self._sealed = {round: r + self.noise.normal(r.shape, z * self.sensitivity)}
        return self._sealed[round].reshape(np.shape(residuals)).copy()

    def open(self, payload: Payload, round: int, party: str, shape: tuple[int, ...]) -> np.ndarray:
        return plain_array(payload, shape, f"predictions of {party!r} in round {round}")

    def reply_bytes(self, party: str, shape: tuple[int, ...]) -> int:
        return plain_bytes(shape)

    def report(self) -> dict:
        if self.accountant is None:
            return {}
        out = self.accountant.to_dict()
        out["mechanism"] = {"kind": "label-dp residuals", "residual_clip": self.config.residual_clip,
                            "sensitivity": self.sensitivity, "secure_noise": self.noise.secure}
        if self.ledger is not None:
            out.update(ledger_report(self.ledger, self.session))
        return {"privacy": {self.party: out}}
