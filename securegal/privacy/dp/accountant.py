"""Privacy accounting: immutable release events, a per-party budget, and noise calibration.

A *release* is one use of a Gaussian mechanism (possibly Poisson-subsampled, possibly repeated
``steps`` times, as in DP-SGD). The mechanism code builds releases; only this module turns them
into epsilon, through one of the accountants registered in :data:`ACCOUNTANTS`: Opacus's RDP
(the default, :data:`DEFAULT_ACCOUNTANT`) and PRV, and Google's ``dp-accounting`` ("pld",
exact for full-batch Gaussian releases). Spending is
check-before-spend: a release that would take the party past its budget raises
:class:`~securegal.errors.BudgetExceeded` and leaves the accountant unchanged, so
``epsilon_spent`` never exceeds the budget.

Opacus's ``get_noise_multiplier`` replaces an accountant's history, so calibration here is a
bisection on the epsilon of (what was already spent + the planned releases).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from ...errors import BudgetExceeded, ConfigError

# Opacus's default RDP orders, extended upwards so that small budgets (eps < 0.2 at delta=1e-5)
# remain reachable; larger orders only ever tighten the RDP -> (eps, delta) conversion.
# ``RDP_ORDERS`` is built on first use (module ``__getattr__``): Opacus imports torch, and the
# command line imports this module for its help text.
EXTRA_RDP_ORDERS = (80, 96, 128, 160, 192, 256)


def rdp_orders() -> tuple[float, ...]:
    """The RDP orders the ``rdp`` accountant minimises over (Opacus's defaults + EXTRA_RDP_ORDERS)."""
    from opacus.accountants import RDPAccountant

    return tuple(RDPAccountant.DEFAULT_ALPHAS) + EXTRA_RDP_ORDERS


def __getattr__(name: str):
    if name == "RDP_ORDERS":
        return rdp_orders()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

# Largest noise multiplier calibration will consider before declaring a budget too small.
MAX_NOISE_MULTIPLIER = 1e4


def _check_number(name: str, value: float, *, low: float, high: float = math.inf,
                  low_open: bool = True, high_open: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    ok_low = value > low if low_open else value >= low
    ok_high = value < high if high_open else value <= high
    if not (math.isfinite(value) and ok_low and ok_high):
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ConfigError(f"{name} must be finite and in {lo}{low}, {high}{hi}, got {value!r}")
    return value


def _check_int(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ConfigError(f"{name} must be >= {low}, got {value}")
    return value


@dataclass(frozen=True)
class Release:
    """One recorded release: a Gaussian mechanism with ``noise_multiplier`` (noise std divided by
    the L2 sensitivity), applied ``steps`` times to a Poisson sample of rate ``sample_rate``.

    ``sensitivity`` (the mechanism's L2 sensitivity, for the record; the accounting needs only
    the multiplier) is optional here and required by the persistent ledger.
    """

    round: int
    what: str
    noise_multiplier: float
    sample_rate: float = 1.0
    steps: int = 1
    sensitivity: float | None = None

    def __post_init__(self) -> None:
        _check_int("round", self.round, 0)
        if not isinstance(self.what, str) or not self.what:
            raise ValueError(f"release kind 'what' must be a non-empty string, got {self.what!r}")
        object.__setattr__(self, "noise_multiplier",
                           _check_number("noise_multiplier", self.noise_multiplier, low=0.0))
        object.__setattr__(self, "sample_rate", _check_number(
            "sample_rate", self.sample_rate, low=0.0, high=1.0, high_open=False))
        _check_int("steps", self.steps, 1)
        if self.sensitivity is not None:
            object.__setattr__(self, "sensitivity",
                               _check_number("sensitivity", self.sensitivity, low=0.0))

    def to_dict(self) -> dict:
        out = {"round": self.round, "what": self.what, "noise_multiplier": self.noise_multiplier,
               "sample_rate": self.sample_rate, "steps": self.steps}
        if self.sensitivity is not None:
            out["sensitivity"] = self.sensitivity
        return out


@dataclass(frozen=True)
class Budget:
    """A party's (epsilon, delta) budget for a whole run; ``check_rows(n)`` adds delta < 1/n."""

    epsilon: float
    delta: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon", _check_number("epsilon", self.epsilon, low=0.0))
        object.__setattr__(self, "delta", _check_number("delta", self.delta, low=0.0, high=1.0))

    def check_rows(self, n_rows: int) -> "Budget":
        """Refuse a delta that is not below 1/n (it would allow releasing a whole row)."""
        _check_int("n_rows", n_rows, 1)
        if not self.delta < 1.0 / n_rows:
            raise ConfigError(f"delta must be < 1/n = {1.0 / n_rows:.3g} for n={n_rows} rows, "
                             f"got delta={self.delta!r}")
        return self


def _rdp_epsilon(history: list[tuple[float, float, int]], delta: float) -> float:
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = history
    return float(acc.get_epsilon(delta=delta, alphas=list(rdp_orders())))


def _prv_epsilon(history: list[tuple[float, float, int]], delta: float) -> float:
    from opacus.accountants import PRVAccountant

    acc = PRVAccountant()
    acc.history = history
    return float(acc.get_epsilon(delta=delta))


def _pld_epsilon(history: list[tuple[float, float, int]], delta: float) -> float:
    """dp-accounting. Full-batch Gaussian releases compose *exactly* into one Gaussian mechanism
    with ``1/z^2 = sum(steps_i / z_i^2)`` (Dong, Roth and Su 2019, Cor. 3.3), whose epsilon is
    dp-accounting's analytic Gaussian (Balle and Wang 2018); Poisson-sampled releases are
    composed with it by dp-accounting's PLD accountant (add/remove adjacency for the sampling,
    as Opacus's accountants use)."""
    import dp_accounting
    from dp_accounting.pld.pld_privacy_accountant import PLDAccountant

    precision = 0.0  # sum of steps / z^2 over full-batch releases
    sampled: dict[tuple[float, float], int] = {}
    for z, q, steps in history:
        if q == 1.0:
            precision += steps / z ** 2
        else:
            sampled[(z, q)] = sampled.get((z, q), 0) + steps
    if not sampled:
        return float(dp_accounting.get_epsilon_gaussian(1.0 / math.sqrt(precision), delta))
    events = [dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), steps)
        for (z, q), steps in sampled.items()]
    if precision > 0:
        events.append(dp_accounting.GaussianDpEvent(1.0 / math.sqrt(precision)))
    acc = PLDAccountant(dp_accounting.privacy_accountant.NeighboringRelation.ADD_OR_REMOVE_ONE)
    acc.compose(dp_accounting.ComposedDpEvent(events))
    return float(acc.get_epsilon(delta))


# The accountant registry: the one list of accountant names (CLI choices, configs, ledgers).
_EPSILON = {"rdp": _rdp_epsilon, "prv": _prv_epsilon, "pld": _pld_epsilon}
ACCOUNTANTS = tuple(_EPSILON)

# The accountant used when none is named. "pld" is exact for full-batch releases (RDP
# overstates epsilon by about 8% at T = 10); switching this one constant moves every default.
DEFAULT_ACCOUNTANT = "pld"


def check_accountant(accountant: str) -> str:
    """Return ``accountant`` if it is registered; ConfigError naming the choices otherwise."""
    if accountant not in _EPSILON:
        raise ConfigError(f"unknown accountant {accountant!r}; choose one of {', '.join(ACCOUNTANTS)}")
    return accountant


def epsilon_of(releases: Iterable[Release], delta: float,
               accountant: str = DEFAULT_ACCOUNTANT) -> float:
    """Epsilon at ``delta`` of composing ``releases`` (adaptively), by a registered accountant."""
    compute = _EPSILON[check_accountant(accountant)]
    history = [(r.noise_multiplier, r.sample_rate, r.steps) for r in releases]
    if not history:
        return 0.0
    import numpy as np

    with warnings.catch_warnings(), np.errstate(divide="ignore"):
        # Opacus warns when the best RDP order is the largest one (very large noise), and its
        # PRV code takes log(1 - q) = log(0) for full-batch releases; both are benign here.
        warnings.filterwarnings("ignore", message="Optimal order is the")
        return compute(history, delta)


class PrivacyAccountant:
    """One party's ledger of releases against its :class:`Budget`.

    ``spend(*releases)`` composes the releases all-or-nothing: if the result would exceed
    ``budget.epsilon`` it raises :class:`BudgetExceeded` and records nothing.
    """

    def __init__(self, budget: Budget, accountant: str = DEFAULT_ACCOUNTANT,
                 n_rows: int | None = None):
        if not isinstance(budget, Budget):
            raise TypeError(f"budget must be a Budget, got {type(budget).__name__}")
        check_accountant(accountant)
        if n_rows is not None:
            budget.check_rows(n_rows)
        self.budget = budget
        self.accountant = accountant
        self.n_rows = n_rows
        self.noise_multipliers: dict[str, float] = {}
        self._releases: tuple[Release, ...] = ()
        self._epsilon = 0.0

    @property
    def releases(self) -> tuple[Release, ...]:
        return self._releases

    @property
    def epsilon_spent(self) -> float:
        return self._epsilon

    def epsilon_after(self, *releases: Release) -> float:
        """Epsilon that spending ``releases`` would give; changes nothing."""
        for r in releases:
            if not isinstance(r, Release):
                raise TypeError(f"expected Release, got {type(r).__name__}")
        return epsilon_of(self._releases + releases, self.budget.delta, self.accountant)

    def spend(self, *releases: Release) -> float:
        """Record ``releases`` if the budget allows; return the new epsilon_spent."""
        if not releases:
            raise ValueError("spend() needs at least one Release")
        eps = self.epsilon_after(*releases)
        if not eps <= self.budget.epsilon:
            kinds = ", ".join(f"{r.what}@round{r.round}" for r in releases)
            raise BudgetExceeded(
                f"release {kinds} refused: epsilon would reach {eps:.4g} > budget "
                f"{self.budget.epsilon:.4g} (spent so far {self._epsilon:.4g}, "
                f"delta={self.budget.delta:.3g}, {self.accountant})")
        self._releases = self._releases + releases
        self._epsilon = eps
        return eps

    STATE_VERSION = 1

    def state_dict(self) -> dict:
        """JSON-serialisable state for checkpoints (``from_state`` restores it)."""
        return {"version": self.STATE_VERSION, "accountant": self.accountant,
                "budget": {"epsilon": self.budget.epsilon, "delta": self.budget.delta},
                "n_rows": self.n_rows, "noise_multipliers": dict(self.noise_multipliers),
                "releases": [r.to_dict() for r in self._releases]}

    @classmethod
    def from_state(cls, state: dict, accountant: str | None = None) -> "PrivacyAccountant":
        """Restore a checkpoint; refuses another version or accountant, or an overspent ledger."""
        if not isinstance(state, dict) or state.get("version") != cls.STATE_VERSION:
            raise ValueError(f"accountant state must be a dict with version {cls.STATE_VERSION}, got "
                             f"{state.get('version') if isinstance(state, dict) else type(state).__name__!r}")
        if accountant is not None and state.get("accountant") != accountant:
            raise ValueError(f"accountant state was made by {state.get('accountant')!r}, expected {accountant!r}")
        try:
            acc = cls(Budget(**state["budget"]), state["accountant"], state["n_rows"])
            releases = tuple(Release(**r) for r in state["releases"])
            acc.noise_multipliers.update({str(k): float(v) for k, v in state["noise_multipliers"].items()})
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed accountant state: {exc}") from exc
        if releases:
            acc.spend(*releases)  # recomputes epsilon; a ledger over budget is refused
        return acc

    def to_dict(self) -> dict:
        """The ``privacy.<party>`` block of metrics.json."""
        return {
            "epsilon_budget": self.budget.epsilon,
            "epsilon_spent": self._epsilon,
            "delta": self.budget.delta,
            "accountant": self.accountant,
            "noise_multiplier": dict(self.noise_multipliers),
            "releases": [r.to_dict() for r in self._releases],
        }


@dataclass(frozen=True)
class PlannedRelease:
    """A release planned before round 1; its noise multiplier will be ``z * scale``."""

    what: str
    steps: int = 1
    sample_rate: float = 1.0
    scale: float = 1.0
    sensitivity: float | None = None

    def __post_init__(self) -> None:
        # validates the shared fields
        Release(0, self.what, 1.0, self.sample_rate, self.steps, self.sensitivity)
        object.__setattr__(self, "scale", _check_number("scale", self.scale, low=0.0))

    def at(self, z: float, round: int = 0) -> Release:
        return Release(round, self.what, z * self.scale, self.sample_rate, self.steps,
                       self.sensitivity)


def scales_for_shares(shares: Mapping[str, float], steps: Mapping[str, int]) -> dict[str, float]:
    """Relative noise scales that split a budget between release kinds.

    For full-batch Gaussian releases the RDP of ``s`` releases at noise multiplier ``z`` is
    ``alpha * s / (2 z^2)``; choosing ``z_k = z * sqrt(s_k / share_k)`` gives kind ``k`` the
    fraction ``share_k`` of the total. Shares must be positive; they are normalised.
    """
    if set(shares) != set(steps) or not shares:
        raise ValueError(f"shares {sorted(shares)} and steps {sorted(steps)} must name the same "
                         "non-empty set of release kinds")
    total = 0.0
    for k, v in shares.items():
        total += _check_number(f"share[{k!r}]", v, low=0.0)
    return {k: math.sqrt(_check_int(f"steps[{k!r}]", steps[k], 1) * total / shares[k])
            for k in shares}


def calibrate_noise(plan: Sequence[PlannedRelease], budget: Budget,
                    accountant: str = DEFAULT_ACCOUNTANT,
                    spent: Sequence[Release] = (), rel_tol: float = 1e-4,
                    max_noise_multiplier: float = MAX_NOISE_MULTIPLIER) -> float:
    """Smallest ``z`` (to ``rel_tol``) such that ``spent`` plus every planned release at noise
    multiplier ``z * scale`` fits in ``budget``; the returned ``z`` never overshoots it.

    Raises ConfigError when even ``max_noise_multiplier`` cannot fit the plan (budget too small).
    """
    if not plan:
        raise ValueError("calibrate_noise needs at least one planned release")
    spent = tuple(spent)

    def eps(z: float) -> float:
        return epsilon_of(spent + tuple(p.at(z) for p in plan), budget.delta, accountant)

    target = budget.epsilon
    eps_max = eps(max_noise_multiplier)
    if not eps_max <= target:
        raise ConfigError(
            f"budget epsilon={target:g}, delta={budget.delta:g} is too small for the planned "
            f"releases ({', '.join(p.what for p in plan)}): even noise multiplier "
            f"{max_noise_multiplier:g} gives epsilon={eps_max:.4g} ({accountant})")
    lo, hi = 1e-3, 1.0
    while hi < max_noise_multiplier and eps(hi) > target:
        lo, hi = hi, min(hi * 4.0, max_noise_multiplier)
    if eps(lo) <= target:  # the budget allows less noise than 1e-3: practically no privacy
        return lo
    while hi / lo > 1.0 + rel_tol:
        mid = math.sqrt(lo * hi)
        if eps(mid) <= target:
            hi = mid
        else:
            lo = mid
    return hi
