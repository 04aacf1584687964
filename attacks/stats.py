"""How sure the audit is: per-row contributions, a paired sign-flip test, the minimum detectable
advantage, confidence intervals, and the label-DP Bayes bound.

Every metric the attacks report is written as a sum of per-row contributions, ``score = sum_i
u_i`` (exact for accuracy, R^2, MSE and MAD; for AUC the ``u_i`` are DeLong's placement values,
whose sum over either class is the AUC). The advantage over the baseline is then ``sum_i c_i``
with ``c_i`` the attack's minus the baseline's contribution (oriented so that positive means the
transcript helped).

**Test.** Under "the transcript adds nothing beyond the side knowledge", the attack's and the
baseline's guesses for a row are exchangeable, so each ``c_i`` is as likely to carry either
sign. The null distribution of the advantage is that of ``sum_i s_i c_i`` for random signs
``s_i`` (a paired sign-flip permutation test; for accuracy it is McNemar's exact test). The
``c_i`` are centred on their mean first, so the null's spread is the contributions' spread
around the observed advantage (under the null hypothesis the mean is zero and nothing
changes; an attack much better or much worse than its baseline does not widen the null). For
AUC, ``c_i`` is doubled in the null so that its spread is DeLong's variance of an AUC
difference. ``PERMUTATIONS = 2999`` sign vectors resolve p-values down to 1/3000.

**Minimum detectable advantage (MDA).** The (1 - alpha) quantile of that null: the smallest
advantage the test flags at level alpha (one-sided) on these rows. The sign-flip null is a sum
of independent terms with mean 0 and variance exactly ``sum_i c_i^2``, so the quantile is
computed as ``z_(1-alpha) sqrt(sum_i c_i^2)`` (the normal limit of that sum; at thousands of rows
its quantiles agree to a fraction of a percent) rather than read off the 2,999 random draws,
whose 99th percentile rests on 30 draws and scatters by a few percent from run to run. The
p-value still comes from the draws. :func:`detectable` gives the MDA at any level, e.g. the
Bonferroni level a verdict is decided at. An attack that copies its baseline on most rows has a
degenerate null, so for label metrics the MDA is never below
``z_(1-alpha)`` times the standard error of a chance guesser: the binomial error of the
baseline's accuracy, and for AUC the Mann-Whitney spread ``sqrt((n + 1) / (12 n1 n0))``. For
R^2 the floor is that of a weak linear leak: an estimate correlated r with a column gains R^2
of about r^2 with a standard error of about 2 r / sqrt(n), so the smallest gain a level-alpha
test sees is about ``4 z_(1-alpha)^2 / n`` (:func:`r2_floor`; MSE in standardized units uses
the same, times the baseline's MSE).
"""
from __future__ import annotations

import math
from statistics import NormalDist
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

PERMUTATIONS = 2999
ALPHA = 0.01
CHUNK = 512  # sign vectors per batch (bounds memory at CHUNK x n / 8 look-ups)


@dataclass(frozen=True)
class TestResult:
    """One-sided p-value of the advantage, the minimum detectable advantage at ``alpha`` and the
    null's standard deviation ``se`` (at least the floor's)."""

    p_value: float
    mda: float
    se: float


_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.float64)  # (256, 8)


def sign_flip_null(contributions: np.ndarray, permutations: int = PERMUTATIONS, seed: int = 0) -> np.ndarray:
    """``permutations`` draws of ``sum_i s_i c_i`` with independent random signs.

    Vectorised on random bytes: each byte sets the signs of 8 rows, and a (n/8, 256) table of
    partial sums turns a draw into n/8 look-ups, ``sum_i s_i c_i = 2 sum_{s_i=+1} c_i - sum_i c_i``.
    """
    c = np.asarray(contributions, dtype=np.float64).reshape(-1)
    groups = -(-c.size // 8)
    table = np.pad(c, (0, groups * 8 - c.size)).reshape(groups, 8) @ _BITS.T  # (groups, 256)
    rng = np.random.default_rng(seed)
    out = np.empty(permutations)
    rows = np.arange(groups)
    for start in range(0, permutations, CHUNK):
        m = min(CHUNK, permutations - start)
        draws = rng.integers(0, 256, size=(m, groups), dtype=np.uint8)
        out[start:start + m] = 2.0 * table[rows, draws].sum(axis=1) - c.sum()
    return out


def r2_floor(n: int, alpha: float = ALPHA) -> float:
    """Smallest R^2 gain over the mean a level-``alpha`` test detects for a weak linear leak at n rows."""
    return 4.0 * NormalDist().inv_cdf(1 - alpha) ** 2 / max(int(n), 1)


def paired_test(contributions: np.ndarray, advantage: float, *, null_scale: float = 1.0,
                floor_se: float = 0.0, floor_mda: float = 0.0, alpha: float = ALPHA,
                permutations: int = PERMUTATIONS, seed: int = 0) -> TestResult:
    """Sign-flip test of ``advantage`` (= sum of ``contributions``) against zero.

    ``null_scale`` multiplies the contributions in the null (2 for AUC, see the module notes).
    The MDA is at least ``z_(1-alpha) * floor_se`` (the standard error of an uninformative
    attacker) and at least ``floor_mda``, so an attack that copies its baseline does not claim
    to detect arbitrarily small advantages.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    c = np.asarray(contributions, dtype=np.float64).reshape(-1) * null_scale
    c = c - c.mean()  # the spread around the observed mean: an attack far from its baseline does not widen the null
    null = sign_flip_null(c, permutations, seed)
    p = float((1 + np.count_nonzero(null >= advantage - 1e-12)) / (1 + permutations))
    se = max(float(np.sqrt(np.sum(c**2))), float(floor_se))
    return TestResult(p, detectable(se, floor_mda, alpha, alpha), se)


def detectable(se: float, floor_mda: float, level: float, alpha: float = ALPHA) -> float:
    """The MDA of a one-sided test at ``level`` whose null has standard deviation ``se``:
    ``z_(1-level) se``, and at least ``floor_mda`` (given at ``alpha``; it grows like ``z^2``,
    see :func:`r2_floor`)."""
    if not (0 < level < 1 and 0 < alpha < 1):
        raise ValueError(f"levels must be in (0, 1), got {level!r} and {alpha!r}")
    z, z_alpha = NormalDist().inv_cdf(1 - level), NormalDist().inv_cdf(1 - alpha)
    return max(z * float(se), float(floor_mda) * (z / z_alpha) ** 2, 0.0)


def score_se(contributions: np.ndarray) -> float:
    """Standard error of ``sum_i u_i`` treating rows as independent: ``sqrt(n var(u))``
    (for AUC use :func:`auc_se`)."""
    u = np.asarray(contributions, dtype=np.float64).reshape(-1)
    if u.size < 2:
        return math.inf
    return float(math.sqrt(u.size * np.var(u, ddof=1)))


def mann_whitney_se(truth: np.ndarray, classes: np.ndarray) -> float:
    """Spread of the (macro one-vs-rest) AUC of a score that carries no information about ``truth``."""
    truth = np.asarray(truth)
    ses = []
    pos_classes = classes[1:] if len(classes) == 2 else classes
    for c in pos_classes:
        n1 = int(np.sum(truth == c))
        n0 = truth.size - n1
        if n1 and n0:
            ses.append(math.sqrt((truth.size + 1) / (12.0 * n1 * n0)))
    return float(np.mean(ses) / math.sqrt(len(ses))) if ses else math.inf


# ---- per-row contributions of each metric ---------------------------------------------------

def accuracy_contrib(truth: np.ndarray, guess: np.ndarray) -> np.ndarray:
    """``1[guess_i == truth_i] / n``."""
    truth, guess = np.asarray(truth), np.asarray(guess)
    return (truth == guess).astype(np.float64) / truth.size


def _placements(positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """DeLong placement values: for a positive row, the fraction of negatives it outranks (ties
    one half); for a negative row, the fraction of positives that outrank it."""
    n1, n0 = int(positive.sum()), int((~positive).sum())
    out = np.zeros(positive.size)
    if n1 == 0 or n0 == 0:
        return np.full(positive.size, 0.5)
    r_all = rankdata(score)
    out[positive] = (r_all[positive] - rankdata(score[positive])) / n0
    out[~positive] = 1.0 - (r_all[~positive] - rankdata(score[~positive])) / n1
    return out


def _binary_delong_var(positive: np.ndarray, score: np.ndarray) -> float:
    positive = np.asarray(positive, dtype=bool)
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if n1 < 2 or n0 < 2:
        return math.inf
    v = _placements(positive, np.asarray(score, dtype=np.float64))
    return float(np.var(v[positive], ddof=1) / n1 + np.var(v[~positive], ddof=1) / n0)


def auc_se(truth: np.ndarray, class_scores: np.ndarray, classes: np.ndarray) -> float:
    """DeLong's standard error of the (macro one-vs-rest) AUC; classes treated as independent."""
    truth = np.asarray(truth)
    class_scores = np.asarray(class_scores, dtype=np.float64)
    if len(classes) == 2:
        return math.sqrt(_binary_delong_var(truth == classes[1], class_scores[:, 1] - class_scores[:, 0]))
    var = [_binary_delong_var(truth == c, class_scores[:, j]) for j, c in enumerate(classes)
           if np.any(truth == c) and not np.all(truth == c)]
    return math.sqrt(sum(var)) / len(var) if var else math.inf


def binary_auc_contrib(positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Per-row contributions summing to the ROC AUC: placement / (2 * size of the row's class)."""
    positive = np.asarray(positive, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if n1 == 0 or n0 == 0:
        return np.full(positive.size, 0.5 / positive.size)
    v = _placements(positive, score)
    return np.where(positive, v / (2 * n1), v / (2 * n0))


def macro_auc_contrib(truth: np.ndarray, class_scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Contributions summing to :func:`securegal.attacks.metrics.macro_auc` (one-vs-rest mean)."""
    truth = np.asarray(truth)
    class_scores = np.asarray(class_scores, dtype=np.float64)
    if len(classes) == 2:
        return binary_auc_contrib(truth == classes[1], class_scores[:, 1] - class_scores[:, 0])
    parts = [binary_auc_contrib(truth == c, class_scores[:, j]) for j, c in enumerate(classes)
             if np.any(truth == c) and not np.all(truth == c)]
    if not parts:
        return np.full(truth.size, 0.5 / truth.size)
    return np.mean(parts, axis=0)


def _2d(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a[:, None] if a.ndim == 1 else a


def r2_contrib(truth: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Contributions summing to the mean over columns of R^2 (``1/n - e_ic^2 / SS_tot,c``);
    a constant true column counts 1 if matched exactly, else 0, like ``r2_per_column``."""
    t, e = _2d(truth), _2d(estimate)
    n = t.shape[0]
    ss_tot = ((t - t.mean(axis=0)) ** 2).sum(axis=0)
    err = (t - e) ** 2
    safe = np.where(ss_tot > 0, ss_tot, 1.0)
    const_value = np.where(err.sum(axis=0) > 0, 0.0, 1.0)
    per = np.where(ss_tot > 0, 1.0 / n - err / safe, const_value / n)
    return per.mean(axis=1)


def mse_contrib(truth: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Contributions summing to the mean over columns of the MSE."""
    t, e = _2d(truth), _2d(estimate)
    return ((t - e) ** 2).mean(axis=1) / t.shape[0]


def mad_contrib(truth: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Contributions summing to the mean absolute deviation."""
    t, e = np.asarray(truth, float).reshape(-1), np.asarray(estimate, float).reshape(-1)
    return np.abs(t - e) / t.size


# ---- label-DP -------------------------------------------------------------------------------

def bayes_bound(epsilon: float, prior_max: float, delta: float = 0.0) -> float:
    """Upper bound on any attacker's label accuracy from an (epsilon, delta)-label-DP release.

    epsilon-DP bounds the likelihood ratio of any view between two labels by e^eps, so the
    posterior of the most likely class c is at most ``e^eps pi_c / (e^eps pi_c + 1 - pi_c)``.
    With the largest class prior ``pi`` this bounds the Bayes accuracy; for two balanced
    classes it is ``e^eps / (1 + e^eps)`` and for C balanced classes ``e^eps / (e^eps + C - 1)``
    (randomized response attains it). ``delta`` is added as slack for approximate DP.
    """
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
    if not 0 < prior_max <= 1:
        raise ValueError(f"prior_max must be in (0, 1], got {prior_max!r}")
    if math.isinf(epsilon):
        return 1.0
    odds = math.exp(min(epsilon, 700.0)) * prior_max
    return min(1.0, odds / (odds + 1.0 - prior_max) + delta)
