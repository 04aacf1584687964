"""Standardization inside the guarantee: declared maps, DP estimates of centre and scale, and
neighbouring tables with an outlier row (released statistics move by at most their stated
sensitivity; exact z-scoring does not)."""
import math
import warnings

import numpy as np
import pytest

from securegal.errors import BudgetExceeded, ConfigError
from securegal.privacy.dp.accountant import Budget, epsilon_of
from securegal.privacy.dp.ledger import Ledger
from securegal.privacy.dp.mechanisms import GaussianNoise, InsecureNoiseWarning, gram_sensitivity, \
    noisy_symmetric
from securegal.privacy.dp.ridge import DPRidge
from securegal.privacy.dp.standardize import (
    LEDGER_OUTPUT,
    ColumnBounds,
    Standardizer,
    declared_standardizer,
    dp_standardizer,
    mean_sensitivity,
    private_moments,
    second_moment_sensitivity,
    standardization_plan,
    standardizer_from_moments,
)

# A table like a hospital's: age, weight, visits, a rate, a blood pressure; bounds are public
# domain knowledge, declared generously.
MEANS = np.array([45.0, 80.0, 5.0, 0.3, 70.0])
STDS = np.array([12.0, 15.0, 2.0, 0.1, 10.0])
BOUNDS = ColumnBounds((0.0, 30.0, 0.0, 0.0, 30.0), (120.0, 200.0, 40.0, 1.0, 130.0))


def seeded(seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureNoiseWarning)
        return GaussianNoise(seed)


def table(n=200, seed=0):
    return MEANS + STDS * np.random.default_rng(seed).normal(size=(n, 5))


def neighbour(X, k):
    """Row 0 replaced by an outlier at k standard deviations."""
    X2 = X.copy()
    X2[0] = MEANS + k * STDS
    return X2


def gram_release(Phi, z, seed):
    p = Phi.shape[1]
    std = z * gram_sensitivity(0.5, 0.1)
    return np.triu(noisy_symmetric(Phi.T @ Phi, std, seeded(seed), skip=(p - 1,)))


def test_declared_bounds_map_to_unit_range_and_clip():
    std = declared_standardizer(lower=[0.0, -1.0], upper=[120.0, 1.0])
    Z = std(np.array([[0.0, -1.0], [60.0, 0.0], [120.0, 1.0], [500.0, -9.0]]))
    assert np.allclose(Z, [[-1, -1], [0, 0], [1, 1], [1, -1]])
    assert std.source == "declared" and Standardizer.from_dict(std.to_dict()) == std


def test_declared_centres_and_scales_with_and_without_bounds():
    free = declared_standardizer(centre=[45.0], scale=[12.0])
    assert np.allclose(free(np.array([[57.0], [1245.0]])), [[1.0], [100.0]])
    both = declared_standardizer(lower=[0.0], upper=[120.0], centre=[45.0], scale=[12.0])
    assert np.allclose(both(np.array([[57.0], [1245.0]])), [[1.0], [75 / 12]])


@pytest.mark.parametrize("kwargs,message", [
    ({}, "declare per-column bounds"),
    ({"lower": [0.0]}, "both lower and upper"),
    ({"centre": [0.0]}, "both centres and scales"),
    ({"lower": [1.0], "upper": [1.0]}, "must be < upper"),
    ({"lower": [0.0, math.nan], "upper": [1.0, 2.0]}, "finite"),
    ({"lower": [0.0, 0.0], "upper": [1.0]}, "one per column"),
    ({"centre": [0.0], "scale": [0.0]}, "scales must be > 0"),
    ({"centre": [0.0], "scale": [math.inf]}, "finite"),
])
def test_bad_declarations(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        declared_standardizer(**kwargs)


def test_stated_sensitivities():
    assert mean_sensitivity(BOUNDS) == pytest.approx(2 * math.sqrt(5))
    assert second_moment_sensitivity(BOUNDS) == pytest.approx(math.sqrt(5))
    plan = standardization_plan(BOUNDS, mean_share=0.25)
    assert [(p.what, p.sensitivity) for p in plan] == [
        ("std_mean", mean_sensitivity(BOUNDS)), ("std_scale", second_moment_sensitivity(BOUNDS))]
    # the two releases share the budget 1:3 in the Gaussian sense (1/z^2 adds)
    inv = [1 / p.scale ** 2 for p in plan]
    assert inv[0] / inv[1] == pytest.approx(1 / 3)


@pytest.mark.parametrize("k", [10.0, 100.0, -100.0])
def test_released_moments_move_by_at_most_their_sensitivity(k):
    X = table()
    X2 = neighbour(X, k)
    z = {"std_mean": 2.0, "std_scale": 2.0}
    # the same noise draw on both tables: the releases differ by exactly the statistic's change
    a1, a2 = private_moments(X, BOUNDS, z, seeded(1))
    b1, b2 = private_moments(X2, BOUNDS, z, seeded(1))
    assert np.linalg.norm(a1 - b1) <= mean_sensitivity(BOUNDS) * (1 + 1e-12)
    assert np.linalg.norm(a2 - b2) <= second_moment_sensitivity(BOUNDS) * (1 + 1e-12)
    if abs(k) == 100.0:  # the outlier sits on the bounds: a sizeable part of the worst case
        assert np.linalg.norm(a1 - b1) > 0.25 * mean_sensitivity(BOUNDS)
        assert np.linalg.norm(a2 - b2) > 0.25 * second_moment_sensitivity(BOUNDS)


@pytest.mark.parametrize("k", [10.0, 100.0])
@pytest.mark.parametrize("how", ["declared", "dp"])
def test_gram_on_standardized_features_moves_by_at_most_its_sensitivity(k, how):
    X = table()
    X2 = neighbour(X, k)
    if how == "declared":
        std = declared_standardizer(lower=BOUNDS.lower, upper=BOUNDS.upper)
    else:  # a DP map is post-processing of earlier releases: the same map for both tables
        s1, s2 = private_moments(X, BOUNDS, {"std_mean": 3.0, "std_scale": 3.0}, seeded(2))
        std = standardizer_from_moments(s1, s2, X.shape[0], BOUNDS)
    fmap = DPRidge(feature_clip=0.5, intercept=0.1).feature_map(5)
    moved = np.linalg.norm(gram_release(fmap(std(X)), 4.0, 3) - gram_release(fmap(std(X2)), 4.0, 3))
    assert moved <= gram_sensitivity(0.5, 0.1) * (1 + 1e-12)


def test_exact_z_scoring_breaks_the_gram_bound():
    """The defect the DP map fixes: with each table's own exact mean and std the outlier moves
    every row, and the Gram release moves by several times its claimed sensitivity."""
    X = table()
    fmap = DPRidge(feature_clip=0.5, intercept=0.1).feature_map(5)

    def zscore(A):
        return (A - A.mean(axis=0)) / A.std(axis=0)

    ratios = []
    for k in (10.0, 100.0):
        X2 = neighbour(X, k)
        moved = np.linalg.norm(gram_release(fmap(zscore(X)), 4.0, 3)
                               - gram_release(fmap(zscore(X2)), 4.0, 3))
        ratios.append(moved / gram_sensitivity(0.5, 0.1))
    print("exact z-scoring: Gram moved by", ratios, "x its sensitivity")
    assert ratios[0] > 1.5 and ratios[1] > 5


def test_dp_estimates_are_accurate_at_large_n():
    X = table(n=20_000, seed=4)
    z = {"std_mean": 5.0, "std_scale": 5.0}
    std = standardizer_from_moments(*private_moments(X, BOUNDS, z, seeded(5)), X.shape[0], BOUNDS)
    # noise on the centre: std z * 2 sqrt(d) w / n per column; allow 5 of them
    tol_mean = 5 * 5.0 * mean_sensitivity(BOUNDS) * BOUNDS.half_width / X.shape[0]
    assert np.all(np.abs(np.asarray(std.centre) - X.mean(axis=0)) < tol_mean)
    # scale = w sqrt(v), v = S2/n - (S1/n)^2 on the [-1, 1] scale; delta method for its noise
    w, n = BOUNDS.half_width, X.shape[0]
    shift = (X.mean(axis=0) - BOUNDS.middle) / w
    v = (X.std(axis=0) / w) ** 2
    sd_v = np.hypot(5.0 * second_moment_sensitivity(BOUNDS) / n,
                    2 * np.abs(shift) * 5.0 * mean_sensitivity(BOUNDS) / n)
    tol_scale = 5 * w * sd_v / (2 * np.sqrt(v))
    assert np.all(np.abs(np.asarray(std.scale) - X.std(axis=0)) < tol_scale)
    assert np.all(tol_scale < 0.5 * X.std(axis=0))  # a useful estimate even 5 sd away
    assert std.source == "dp" and np.all(np.asarray(std.scale) <= BOUNDS.half_width)


def test_dp_standardizer_is_paid_once_from_the_ledger():
    X = table()
    led = Ledger("id:t", Budget(1.0, 1e-5), "pld")
    std = dp_standardizer(led, X, BOUNDS, "s1", 0.1, seeded(6))
    assert [e.release.what for e in led.entries] == ["std_mean", "std_scale"]
    assert [e.release.sensitivity for e in led.entries] == [
        mean_sensitivity(BOUNDS), second_moment_sensitivity(BOUNDS)]
    assert 0.1 * (1 - 1e-3) <= led.epsilon_spent <= 0.1
    assert led.output(LEDGER_OUTPUT) == std.to_dict()
    again = dp_standardizer(led, X, BOUNDS, "s2", 0.1, seeded(7))
    assert again == std and len(led.entries) == 2  # reused: post-processing, free
    assert led.epsilon_spent == pytest.approx(epsilon_of(led.releases, 1e-5, "pld"))


class Counting:
    draws = 0

    def normal(self, shape, std):
        self.draws += 1
        return np.zeros(shape)


def test_dp_standardizer_refusals_release_nothing():
    X = table()
    led = Ledger("id:t", Budget(0.05, 1e-5), "pld")
    noise = Counting()
    with pytest.raises(BudgetExceeded, match="asked 0.1"):
        dp_standardizer(led, X, BOUNDS, "s1", 0.1, noise)
    bad = X.copy()
    bad[3, 1] = math.nan
    with pytest.raises(ValueError, match="finite"):
        dp_standardizer(led, bad, BOUNDS, "s1", 0.01, noise)
    with pytest.raises(ValueError, match="1/n"):
        dp_standardizer(Ledger("id:t", Budget(1.0, 0.01), "pld"), X, BOUNDS, "s1", 0.1, noise)
    assert noise.draws == 0 and led.entries == () and led.output(LEDGER_OUTPUT) is None
