"""The accountant against an independent closed form, check-before-spend, calibration, bad input."""
import math

import numpy as np
import pytest

from securegal.errors import BudgetExceeded, SecuregalError
from securegal.privacy.dp.accountant import (
    RDP_ORDERS,
    Budget,
    PlannedRelease,
    PrivacyAccountant,
    Release,
    calibrate_noise,
    epsilon_of,
    scales_for_shares,
)


def closed_form_gaussian_eps(noise_and_steps, delta):
    """Full-batch Gaussian RDP: alpha * steps / (2 sigma^2), summed; converted to (eps, delta) by
    eps = rdp + log((a-1)/a) - (log delta + log a)/(a-1) (Balle et al. 2020), min over orders."""
    a = np.asarray(RDP_ORDERS, dtype=float)
    rdp = sum(a * steps / (2.0 * z ** 2) for z, steps in noise_and_steps)
    return float(np.min(rdp + np.log((a - 1) / a) - (math.log(delta) + np.log(a)) / (a - 1)))


@pytest.mark.parametrize("z,steps", [(0.8, 1), (2.0, 10), (5.0, 10), (10.0, 50), (30.0, 3)])
def test_rdp_epsilon_matches_closed_form(z, steps):
    got = epsilon_of([Release(1, "f", z, 1.0, steps)], 1e-5, "rdp")
    assert got == pytest.approx(closed_form_gaussian_eps([(z, steps)], 1e-5), rel=1e-10)


def test_mixed_releases_match_closed_form_and_order_does_not_matter():
    rel = [Release(0, "gram", 7.0), Release(1, "stat", 3.0), Release(1, "pred", 20.0),
           Release(2, "stat", 3.0), Release(2, "pred", 20.0)]
    expected = closed_form_gaussian_eps([(7.0, 1), (3.0, 2), (20.0, 2)], 1e-6)
    assert epsilon_of(rel, 1e-6, "rdp") == pytest.approx(expected, rel=1e-10)
    assert epsilon_of(rel[::-1], 1e-6, "rdp") == pytest.approx(expected, rel=1e-10)


def test_prv_is_close_to_rdp_and_tighter():
    rel = [Release(1, "f", 5.0, 1.0, 10)]
    rdp, prv = epsilon_of(rel, 1e-5, "rdp"), epsilon_of(rel, 1e-5, "prv")
    assert prv < rdp
    assert prv == pytest.approx(2.59, abs=0.03)  # ANCHORS 5: exact 2.59 for z=5, T=10


def test_spend_records_and_refusal_leaves_state_untouched():
    acc = PrivacyAccountant(Budget(1.0, 1e-5))
    eps1 = acc.spend(Release(1, "pred", 10.0))
    assert acc.epsilon_spent == eps1 > 0
    before = (acc.releases, acc.epsilon_spent)
    with pytest.raises(BudgetExceeded, match="refused") as info:
        acc.spend(Release(2, "pred", 10.0), Release(2, "stat", 0.5))
    assert isinstance(info.value, SecuregalError)
    assert (acc.releases, acc.epsilon_spent) == before
    assert acc.epsilon_spent <= acc.budget.epsilon


def test_spending_a_calibrated_plan_never_exceeds_the_budget():
    for accountant in ("rdp", "prv"):
        budget = Budget(3.0, 1e-5)
        plan = [PlannedRelease("gram"), PlannedRelease("stat", steps=3, scale=0.5)]
        z = calibrate_noise(plan, budget, accountant)
        acc = PrivacyAccountant(budget, accountant)
        acc.spend(Release(0, "gram", z))
        for t in (1, 2, 3):
            acc.spend(Release(t, "stat", 0.5 * z))
        assert acc.epsilon_spent <= budget.epsilon
        assert acc.epsilon_spent == pytest.approx(budget.epsilon, rel=1e-3)
        with pytest.raises(BudgetExceeded):
            acc.spend(Release(4, "stat", 0.5 * z))


def test_calibration_matches_anchor_table_and_is_tight():
    z = calibrate_noise([PlannedRelease("pred", steps=10)], Budget(3.0, 1e-5), "rdp")
    assert z == pytest.approx(4.73, abs=0.01)
    eps_at = epsilon_of([Release(0, "pred", z, 1.0, 10)], 1e-5, "rdp")
    eps_below = epsilon_of([Release(0, "pred", z * (1 - 1e-3), 1.0, 10)], 1e-5, "rdp")
    assert eps_at <= 3.0 < eps_below


def test_calibration_on_top_of_history_mixing_dp_sgd_steps():
    budget = Budget(4.0, 1e-5)
    spent = [Release(0, "sgd", 1.1, 0.01, 500)]
    z = calibrate_noise([PlannedRelease("pred", steps=5)], budget, spent=spent)
    total = epsilon_of(spent + [Release(1, "pred", z, 1.0, 5)], 1e-5)
    assert epsilon_of(spent, 1e-5) < total <= 4.0
    assert total == pytest.approx(4.0, rel=1e-3)


def test_scales_for_shares_split_rdp_as_asked():
    scales = scales_for_shares({"stat": 0.9, "pred": 0.1}, {"stat": 3, "pred": 3})
    # rho_k = steps_k / (2 (z scale_k)^2) must be in ratio 9:1
    rho = {k: 3 / scales[k] ** 2 for k in scales}
    assert rho["stat"] / rho["pred"] == pytest.approx(9.0)


def test_to_dict_block():
    acc = PrivacyAccountant(Budget(2.0, 1e-6), "rdp", n_rows=1000)
    acc.noise_multipliers["pred"] = 8.0
    acc.spend(Release(1, "pred", 8.0))
    d = acc.to_dict()
    assert set(d) == {"epsilon_budget", "epsilon_spent", "delta", "accountant",
                      "noise_multiplier", "releases"}
    assert d["releases"] == [{"round": 1, "what": "pred", "noise_multiplier": 8.0,
                              "sample_rate": 1.0, "steps": 1}]
    assert d["noise_multiplier"] == {"pred": 8.0} and d["epsilon_spent"] <= d["epsilon_budget"]


@pytest.mark.parametrize("eps,delta,msg", [
    (0.0, 1e-5, "epsilon"), (-1.0, 1e-5, "epsilon"), (math.inf, 1e-5, "epsilon"),
    (1.0, 0.0, "delta"), (1.0, 1.0, "delta"), (1.0, -1e-5, "delta"), (math.nan, 1e-5, "epsilon"),
])
def test_bad_budget(eps, delta, msg):
    with pytest.raises(ValueError, match=msg):
        Budget(eps, delta)


def test_bad_inputs():
    with pytest.raises(ValueError, match="1/n"):
        PrivacyAccountant(Budget(1.0, 1e-3), n_rows=1000)
    with pytest.raises(ValueError, match="accountant"):
        PrivacyAccountant(Budget(1.0, 1e-5), "gdpx")
    with pytest.raises(TypeError):
        Budget("1", 1e-5)
    with pytest.raises(TypeError):
        PrivacyAccountant((1.0, 1e-5))
    with pytest.raises(ValueError, match="noise_multiplier"):
        Release(1, "pred", 0.0)
    with pytest.raises(ValueError, match="sample_rate"):
        Release(1, "pred", 1.0, 1.5)
    with pytest.raises(ValueError, match="steps"):
        Release(1, "pred", 1.0, 1.0, 0)
    with pytest.raises(ValueError, match="too small"):
        calibrate_noise([PlannedRelease("pred", steps=10)], Budget(1e-6, 1e-5))
    with pytest.raises(ValueError, match="at least one"):
        calibrate_noise([], Budget(1.0, 1e-5))


def test_state_roundtrip_and_refusals():
    import json

    acc = PrivacyAccountant(Budget(2.0, 1e-6), "rdp", n_rows=500)
    acc.noise_multipliers["pred"] = 9.0
    acc.spend(Release(1, "pred", 9.0), Release(1, "stat", 12.0, 1.0, 2))
    state = json.loads(json.dumps(acc.state_dict()))
    back = PrivacyAccountant.from_state(state, "rdp")
    assert back.releases == acc.releases and back.epsilon_spent == acc.epsilon_spent
    assert back.noise_multipliers == {"pred": 9.0} and back.n_rows == 500
    with pytest.raises(ValueError, match="made by 'rdp'"):
        PrivacyAccountant.from_state(state, "prv")
    with pytest.raises(ValueError, match="version"):
        PrivacyAccountant.from_state({**state, "version": 99})
    with pytest.raises(ValueError, match="malformed"):
        PrivacyAccountant.from_state({k: v for k, v in state.items() if k != "releases"})
    with pytest.raises(BudgetExceeded):
        PrivacyAccountant.from_state({**state, "budget": {"epsilon": 0.1, "delta": 1e-6}})
