"""DP training of a small MLP per round: full-batch DP gradient descent with Opacus per-sample
gradients, plus the same clipped, noised prediction release as the DP ridge trainer.

Why full batch: securegal's adjacency is *replace one row*. Opacus's accountants analyse
Poisson subsampling under add/remove-one; under replace-one its amplification bound does not
apply as is. With every row in every step (``sample_rate = 1``) each step is a plain Gaussian
mechanism on the sum of per-row clipped gradients, whose replace-one sensitivity is ``2 G``,
and the accountant's full-batch formula is exact. At securegal's n (hundreds to tens of
thousands) full-batch steps are cheap on CPU.

Per round t the party releases (to the label owner, via the round model and its reply):

- ``sgd``: ``steps`` Gaussian releases of ``sum_i clip(grad_i, G)`` (noise ``z_sgd * 2G``);
- ``pred``: the model's train predictions, rows clipped to ``C_f``, + noise (``2 C_f``).
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from opacus import GradSampleModule
from torch import nn

from ...errors import ConfigError, LayerMismatch
from ...seam import plain_array
from . import defaults
from .accountant import DEFAULT_ACCOUNTANT, Budget, PlannedRelease, PrivacyAccountant, Release, \
    calibrate_noise, check_accountant
from .mechanisms import GaussianNoise, clip_rows, release_rows
from .trainer import UNBOUND_STANDARDIZATION, bind_table, ledger_report, reserve_plan


@dataclass(frozen=True)
class DPGDConfig:
    """Budget and knobs of the DP-GD MLP trainer."""

    epsilon: float
    delta: float
    accountant: str = DEFAULT_ACCOUNTANT
    hidden: tuple[int, ...] = (32,)
    steps: int = 30               # full-batch DP-GD steps per round
    lr: float = 0.05              # Adam learning rate
    grad_clip: float = 1.0        # G: per-row gradient norm bound
    residual_clip: float = defaults.RESIDUAL_CLIP  # C: residual rows clipped before the loss
    prediction_clip: float = defaults.PREDICTION_CLIP
    shares: dict = field(default_factory=lambda: {"sgd": 0.9, "pred": 0.1})
    seed: int | None = None       # tests and studies only

    def __post_init__(self) -> None:
        Budget(self.epsilon, self.delta)
        check_accountant(self.accountant)
        for name in ("lr", "grad_clip", "residual_clip", "prediction_clip"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"{name} must be finite and > 0, got {v!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"steps must be an int >= 1, got {self.steps!r}")
        if set(self.shares) - {"sgd", "pred"} or not self.shares.get("sgd", 0) > 0:
            raise ConfigError(f"shares must give 'sgd' > 0 (and optionally 'pred'), got {self.shares}")
        if any(not (math.isfinite(v) and v >= 0) for v in self.shares.values()):
            raise ConfigError(f"shares must be finite and >= 0, got {self.shares}")

    @property
    def budget(self) -> Budget:
        return Budget(self.epsilon, self.delta)


def dpgd_plan(config: DPGDConfig, rounds: int) -> list[PlannedRelease]:
    """The releases of ``rounds`` rounds with their relative noise scales and L2 sensitivities
    (``sgd``: sum of gradients clipped to G, 2G; ``pred``: rows clipped to C_f, 2 C_f)."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")
    share_pred = config.shares.get("pred", 0.0)
    total = config.shares["sgd"] + share_pred
    # full-batch Gaussian steps: kind k's RDP is steps_k / (2 z_k^2); split it by shares
    steps = {"sgd": rounds * config.steps, "pred": rounds}
    kinds = ["sgd"] + (["pred"] if share_pred > 0 else [])
    scales = {k: math.sqrt(steps[k] * total / config.shares[k]) for k in kinds}
    sensitivity = {"sgd": 2 * config.grad_clip, "pred": 2 * config.prediction_clip}
    return [PlannedRelease(k, steps=steps[k], scale=scales[k], sensitivity=sensitivity[k]) for k in kinds]


def plan_dpgd_noise(config: DPGDConfig, n_rows: int, rounds: int) -> dict[str, float]:
    """Noise multipliers {"sgd", "pred"} for ``rounds`` rounds; ConfigError if impossible."""
    plan = dpgd_plan(config, rounds)
    z = calibrate_noise(plan, config.budget.check_rows(n_rows), config.accountant)
    return {p.what: z * p.scale for p in plan}


def _mlp(d: int, hidden: tuple[int, ...], k: int, gen: torch.Generator) -> nn.Sequential:
    layers, width = [], d
    for h in hidden:
        layers += [nn.Linear(width, h), nn.Tanh()]
        width = h
    layers.append(nn.Linear(width, k))
    net = nn.Sequential(*layers)
    with torch.no_grad():
        for p in net.parameters():
            bound = 1.0 / math.sqrt(p.shape[-1])
            p.uniform_(-bound, bound, generator=gen)
    return net


class DPGDTrainer:
    """Feature-party ``RoundTrainer``: a fresh MLP per round trained with full-batch DP-GD."""

    def __init__(self, config: DPGDConfig):
        if not isinstance(config, DPGDConfig):
            raise TypeError(f"config must be a DPGDConfig, got {type(config).__name__}")
        self.config = config
        self.noise = GaussianNoise(config.seed)
        # initial weights need no secrecy, only independence from the data
        seed = config.seed if config.seed is not None else int.from_bytes(os.urandom(8), "little")
        self._gen = torch.Generator().manual_seed(seed)
        self.accountant: PrivacyAccountant | None = None
        self.models: list[nn.Module] = []
        self.ledger = self.session = self.session_epsilon = None
        self.standardization = UNBOUND_STANDARDIZATION

    def bind_table(self, privacy, session: str) -> None:
        """Spend from the party's table ledger under ``session`` (see DPTrainer.bind_table)."""
        bind_table(self, privacy, session)

    def check_setup(self, setup) -> None:
        """What the session asks that DP-GD cannot serve, refused from ``setup`` alone."""
        if getattr(setup, "residuals", "plain") != "plain":
            raise LayerMismatch(f"DP-GD needs plaintext residuals (CKKS cannot run an MLP), the label owner asked "
                                f"for {setup.residuals!r}")

    def setup(self, X_train: np.ndarray, setup) -> None:
        self.check_setup(setup)
        X = np.asarray(X_train, dtype=np.float64)
        if X.ndim != 2 or not np.isfinite(X).all():
            raise ValueError(f"features must be a finite 2-D array, got shape {X.shape}")
        if self.ledger is None:
            noise = plan_dpgd_noise(self.config, X.shape[0], int(setup.rounds))
            budget, accountant = self.config.budget, self.config.accountant
        else:  # the whole plan is reserved in the table's ledger before anything is released
            noise, budget = reserve_plan(self.ledger, dpgd_plan(self.config, int(setup.rounds)), X.shape[0],
                                         self.session, self.session_epsilon)
            accountant = self.ledger.accountant
        self.accountant = PrivacyAccountant(budget, accountant, X.shape[0])
        self.accountant.noise_multipliers.update(noise)
        self._X = torch.from_numpy(X.astype(np.float32))
        self._k = int(setup.n_outputs)
        self.models = []

    def _train(self, r: np.ndarray, z_sgd: float) -> nn.Module:
        c = self.config
        net = _mlp(self._X.shape[1], c.hidden, self._k, self._gen)
        gsm = GradSampleModule(net)
        opt = torch.optim.Adam(gsm.parameters(), lr=c.lr)
        target = torch.from_numpy(r.astype(np.float32))
        n = self._X.shape[0]
        params = [p for p in gsm.parameters() if p.requires_grad]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            for _ in range(c.steps):
                opt.zero_grad(set_to_none=True)
                for p in params:
                    p.grad_sample = None
                loss = 0.5 * ((gsm(self._X) - target) ** 2).sum()
                loss.backward()
                per_row = torch.cat([p.grad_sample.reshape(n, -1) for p in params], dim=1)
                factor = torch.clamp(c.grad_clip / (per_row.norm(dim=1) + 1e-12), max=1.0)
                for p in params:
                    g = torch.einsum("i,i...->...", factor, p.grad_sample)
                    g = g + torch.from_numpy(self.noise.normal(tuple(g.shape), z_sgd * 2 * c.grad_clip)
                                             .astype(np.float32))
                    p.grad = g / n
                opt.step()
        net.eval()
        return net

    def fit_round(self, round: int, residuals) -> np.ndarray:
        if self.accountant is None:
            raise RuntimeError("fit_round called before setup")
        r = plain_array(residuals, (self._X.shape[0], self._k), f"residuals of round {round}")
        z = self.accountant.noise_multipliers
        releases = [Release(round, "sgd", z["sgd"], 1.0, self.config.steps)]
        if "pred" in z:
            releases.append(Release(round, "pred", z["pred"]))
        self.accountant.spend(*releases)  # raises BudgetExceeded with nothing changed
        net = self._train(clip_rows(r, self.config.residual_clip), z["sgd"])
        self.models.append(net)
        if "pred" not in z:
            return np.zeros_like(r)
        with torch.no_grad():
            f = net(self._X).double().numpy()
        return release_rows(f, self.config.prediction_clip, z["pred"], self.noise)

    def predict(self, X: np.ndarray, rounds: int) -> np.ndarray:
        if self.accountant is None:
            raise RuntimeError("predict called before setup")
        X = np.asarray(X, dtype=np.float64)
        out = np.zeros((int(rounds), X.shape[0], self._k))
        inputs = torch.from_numpy(X.astype(np.float32))
        with torch.no_grad():
            for t, net in enumerate(self.models[:rounds]):
                out[t] = net(inputs).double().numpy()
        return out

    def report(self) -> dict:
        if self.accountant is None:
            return {}
        out = self.accountant.to_dict()
        c = self.config
        out["mechanism"] = {"learner": "dp-gd mlp", "hidden": list(c.hidden), "steps_per_round": c.steps,
                            "grad_clip": c.grad_clip, "residual_clip": c.residual_clip,
                            # None: no pred release, so no clip applies
                            "prediction_clip": c.prediction_clip if c.shares.get("pred", 0.0) > 0 else None,
                            "shares": dict(c.shares),
                            "secure_noise": self.noise.secure,
                            "standardization": self.standardization}
        if self.ledger is not None:
            out.update(ledger_report(self.ledger, self.session))
        return out
