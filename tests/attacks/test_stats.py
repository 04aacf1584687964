"""The audit's statistics: contributions add up to the metrics, the test and MDA behave, the Bayes bound."""
import math

import numpy as np
import pytest

from securegal.attacks import stats
from securegal.attacks.metrics import accuracy, mad, macro_auc, mse_per_column, r2_per_column
from securegal.attacks.result import measured


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_contributions_sum_to_the_metrics(rng):
    y = rng.integers(0, 3, 500)
    scores = rng.random((500, 3)) + np.eye(3)[y] * 0.3
    classes = np.arange(3)
    guess = scores.argmax(axis=1)
    assert stats.accuracy_contrib(y, guess).sum() == pytest.approx(accuracy(y, guess))
    assert stats.macro_auc_contrib(y, scores, classes).sum() == pytest.approx(macro_auc(y, scores, classes))
    yb = y % 2
    assert stats.macro_auc_contrib(yb, scores[:, :2], np.arange(2)).sum() == pytest.approx(
        macro_auc(yb, scores[:, :2], np.arange(2)))
    X, E = rng.standard_normal((300, 4)), rng.standard_normal((300, 4))
    assert stats.r2_contrib(X, E).sum() == pytest.approx(r2_per_column(X, E).mean())
    assert stats.mse_contrib(X, E).sum() == pytest.approx(mse_per_column(X, E).mean())
    assert stats.mad_contrib(X[:, 0], E[:, 0]).sum() == pytest.approx(mad(X[:, 0], E[:, 0]))


def _label_result(rng, n, signal):
    y = rng.integers(0, 2, n)
    s = rng.standard_normal(n) + signal * (2 * y - 1)
    scores = np.column_stack([-s, s])
    base = np.full((n, 2), 0.5)
    classes = np.arange(2)
    return measured("a", "p", "v", "auc", macro_auc(y, scores, classes), 0.5,
                    stats.macro_auc_contrib(y, scores, classes), stats.macro_auc_contrib(y, base, classes),
                    floor_se=stats.mann_whitney_se(y, classes))


def test_informative_attack_is_detected_and_noise_is_not(rng):
    leak = _label_result(rng, 2000, 0.5)
    assert leak.p_value == pytest.approx(1 / (stats.PERMUTATIONS + 1)) and leak.advantage > leak.mda
    pvals = [_label_result(rng, 500, 0.0).p_value for _ in range(40)]
    assert np.mean(np.array(pvals) <= 0.05) < 0.2  # about 5% false alarms, not systematic ones
    assert 0.3 < np.median(pvals) < 0.7


def test_mda_shrinks_like_one_over_sqrt_n(rng):
    small = _label_result(rng, 1000, 0.0).mda
    large = _label_result(rng, 4000, 0.0).mda
    assert large == pytest.approx(small / 2, rel=0.25)
    # At 5,000 rows an AUC advantage of 0.02 would be detected (the CKKS acceptance bar).
    assert _label_result(rng, 5000, 0.0).mda <= 0.02


def test_permutations_resolve_one_in_a_thousand():
    assert 1 / (stats.PERMUTATIONS + 1) < 0.001
    null = stats.sign_flip_null(np.ones(100) / 100, seed=1)
    assert null.shape == (stats.PERMUTATIONS,) and abs(null.mean()) < 0.02 and null.std() == pytest.approx(0.1, rel=0.1)


def test_bayes_bound_matches_the_textbook_forms_and_randomized_response():
    eps = 1.0
    assert stats.bayes_bound(eps, 0.5) == pytest.approx(math.exp(eps) / (1 + math.exp(eps)))
    assert stats.bayes_bound(eps, 1 / 4) == pytest.approx(math.exp(eps) / (math.exp(eps) + 3))
    assert stats.bayes_bound(math.inf, 0.3) == 1.0
    # Randomized response with eps attains the binary bound: believing the report is optimal.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200_000)
    keep = rng.random(y.size) < math.exp(eps) / (1 + math.exp(eps))
    report = np.where(keep, y, 1 - y)
    assert accuracy(y, report) == pytest.approx(stats.bayes_bound(eps, 0.5), abs=0.005)
    with pytest.raises(ValueError):
        stats.bayes_bound(0.0, 0.5)


def _weak_leak_p(rng, n, r2):
    r = math.sqrt(r2)
    t = rng.standard_normal((n, 1))
    estimate = r * (r * t + math.sqrt(1 - r * r) * rng.standard_normal((n, 1)))
    base = np.zeros((n, 1))
    return measured("a", "p", "v", "r2", r2_per_column(t, estimate).mean(), r2_per_column(t, base).mean(),
                    stats.r2_contrib(t, estimate), stats.r2_contrib(t, base), floor_mda=stats.r2_floor(n))


def test_r2_floor_is_what_a_weak_linear_leak_needs(rng):
    n = 2000
    floor = stats.r2_floor(n)
    strong = [_weak_leak_p(rng, n, 3 * floor).p_value <= stats.ALPHA for _ in range(20)]
    faint = [_weak_leak_p(rng, n, floor / 4).p_value <= stats.ALPHA for _ in range(20)]
    assert np.mean(strong) >= 0.7 and np.mean(faint) <= 0.3
    assert _weak_leak_p(rng, n, 0.0).mda >= floor
