"""RDP, PRV and PLD against the exact (eps, delta) curve of composed full-batch Gaussians.

k full-batch Gaussian releases with multipliers z_i compose exactly into one Gaussian mechanism
with s = (sum 1/z_i^2)^(-1/2) (mu-GDP with mu = 1/s). Its privacy curve (Balle and Wang 2018,
Thm. 8) is delta(eps) = Phi(-eps s + 1/(2s)) - e^eps Phi(-eps s - 1/(2s)); it is solved here
for eps with scipy, in log space, independently of dp-accounting.
"""
import math

import pytest
from scipy.optimize import brentq
from scipy.special import log_ndtr

from securegal.privacy.dp.accountant import (
    ACCOUNTANTS,
    DEFAULT_ACCOUNTANT,
    Budget,
    PlannedRelease,
    PrivacyAccountant,
    Release,
    calibrate_noise,
    epsilon_of,
)


def exact_epsilon(noise_and_steps, delta):
    s = sum(steps / z ** 2 for z, steps in noise_and_steps) ** -0.5

    def log_delta(eps):
        a = log_ndtr(-eps * s + 1 / (2 * s))
        b = eps + log_ndtr(-eps * s - 1 / (2 * s))
        return a + math.log1p(-math.exp(b - a))

    hi = 1.0
    while log_delta(hi) > math.log(delta):
        hi *= 2.0
    return brentq(lambda e: log_delta(e) - math.log(delta), 1e-9, hi, xtol=1e-13)


GRID = [(0.8, 1), (2.0, 1), (2.0, 10), (5.0, 1), (5.0, 10), (5.0, 50), (10.0, 10), (10.0, 50),
        (30.0, 3)]


def test_registry_and_default():
    assert ACCOUNTANTS == ("rdp", "prv", "pld")
    assert DEFAULT_ACCOUNTANT in ACCOUNTANTS


@pytest.mark.parametrize("z,steps", GRID)
def test_three_accountants_against_the_closed_form(z, steps):
    rel = [Release(1, "f", z, 1.0, steps)]
    exact = exact_epsilon([(z, steps)], 1e-5)
    pld, prv, rdp = (epsilon_of(rel, 1e-5, a) for a in ("pld", "prv", "rdp"))
    assert pld == pytest.approx(exact, rel=1e-7)
    # PRV reports an upper estimate within its eps_error (0.01) of the truth
    assert exact <= prv <= exact + 0.02
    # RDP is a valid but loose bound: 5-11% above the truth on this grid
    assert exact * 1.04 < rdp < exact * 1.12


def test_anchor_numbers():
    rel = [Release(1, "pred", 5.0, 1.0, 10)]
    assert epsilon_of(rel, 1e-5, "rdp") == pytest.approx(2.814, abs=5e-4)
    assert epsilon_of(rel, 1e-5, "pld") == pytest.approx(2.594, abs=5e-4)


def test_k_releases_at_z_equal_one_release_at_z_over_sqrt_k():
    split = [Release(t, "stat", 5.0) for t in range(10)]
    one = [Release(0, "stat", 5.0 / math.sqrt(10))]
    assert epsilon_of(split, 1e-5, "pld") == pytest.approx(epsilon_of(one, 1e-5, "pld"), rel=1e-12)


def test_mixed_multipliers_match_the_closed_form_and_dp_accounting_pld():
    import dp_accounting
    from dp_accounting.pld.pld_privacy_accountant import PLDAccountant

    rel = [Release(0, "gram", 7.0), Release(1, "stat", 3.0), Release(1, "pred", 20.0),
           Release(2, "stat", 3.0), Release(2, "pred", 20.0)]
    exact = exact_epsilon([(7.0, 1), (3.0, 2), (20.0, 2)], 1e-6)
    assert epsilon_of(rel, 1e-6, "pld") == pytest.approx(exact, rel=1e-7)
    assert epsilon_of(rel[::-1], 1e-6, "pld") == pytest.approx(exact, rel=1e-7)
    # dp-accounting's own (discretised, pessimistic) PLD on the raw events agrees from above
    acc = PLDAccountant()
    acc.compose(dp_accounting.ComposedDpEvent(
        [dp_accounting.GaussianDpEvent(r.noise_multiplier) for r in rel]))
    numeric = acc.get_epsilon(1e-6)
    assert exact <= numeric <= exact * (1 + 1e-4)
    assert exact <= epsilon_of(rel, 1e-6, "prv") <= exact + 0.02


def test_poisson_sampled_history_goes_through_pld_and_agrees_with_prv():
    rel = [Release(0, "sgd", 1.1, 0.01, 500), Release(1, "pred", 20.0, 1.0, 3)]
    pld, prv, rdp = (epsilon_of(rel, 1e-5, a) for a in ("pld", "prv", "rdp"))
    assert pld == pytest.approx(prv, abs=0.02)
    assert pld < rdp
    # the sampled part alone is cheaper than with the full-batch releases added
    assert epsilon_of(rel[:1], 1e-5, "pld") < pld


@pytest.mark.parametrize("eps,steps", [(1.0, 10), (3.0, 10), (8.0, 10), (1.0, 3)])
def test_pld_calibration_inverts_the_closed_form(eps, steps):
    z = calibrate_noise([PlannedRelease("pred", steps=steps)], Budget(eps, 1e-5), "pld",
                        rel_tol=1e-6)
    assert exact_epsilon([(z, steps)], 1e-5) <= eps
    s = brentq(lambda s: exact_epsilon([(s, 1)], 1e-5) - eps, 0.1, 100.0, xtol=1e-12)
    assert z == pytest.approx(s * math.sqrt(steps), rel=2e-6)


def test_calibration_anchor_and_the_saving_over_rdp():
    plan = [PlannedRelease("pred", steps=10)]
    z_pld = calibrate_noise(plan, Budget(3.0, 1e-5), "pld")
    z_rdp = calibrate_noise(plan, Budget(3.0, 1e-5), "rdp")
    assert z_pld == pytest.approx(4.40, abs=0.01) and z_rdp == pytest.approx(4.73, abs=0.01)
    # releases calibrated with RDP to epsilon = 1 are exactly about 0.92-DP
    z = calibrate_noise([PlannedRelease("gram"), PlannedRelease("stat", steps=3, scale=0.8)],
                        Budget(1.0, 1e-5), "rdp")
    exact = exact_epsilon([(z, 1), (0.8 * z, 3)], 1e-5)
    assert 0.88 < exact < 0.94


@pytest.mark.parametrize("accountant", ACCOUNTANTS)
def test_spending_a_calibrated_plan_fills_but_never_exceeds(accountant):
    budget = Budget(2.0, 1e-5)
    plan = [PlannedRelease("gram"), PlannedRelease("stat", steps=3, scale=0.5)]
    z = calibrate_noise(plan, budget, accountant)
    acc = PrivacyAccountant(budget, accountant)
    acc.spend(Release(0, "gram", z), *(Release(t, "stat", 0.5 * z) for t in (1, 2, 3)))
    assert budget.epsilon * (1 - 1e-3) <= acc.epsilon_spent <= budget.epsilon
