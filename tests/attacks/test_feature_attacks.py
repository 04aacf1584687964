import numpy as np
import pytest

from securegal.attacks import KnownRows, active_residuals, hat_matrix, inversion_net
from securegal.learners.linear import LinearLearner



def _known(X, k, seed=2):
    idx = np.random.default_rng(seed).choice(X.shape[0], k, replace=False)
    return KnownRows(idx, X[idx])


def _r2(results):
    return next(r for r in results if r.metric == "r2")


def test_hat_matrix_exact_with_d_plus_one_rows(ce_run):
    d = ce_run.X_victim.shape[1]
    res = _r2(hat_matrix.run(ce_run.predictions, _known(ce_run.X_victim, d + 2), ce_run.X_victim, "p0", "p1"))
    assert res.score > 0.999
    assert res.baseline < 0.05
    assert res.advantage > 0.95


def test_hat_matrix_grows_with_known_rows(ce_run):
    X = ce_run.X_victim
    scores = [_r2(hat_matrix.run(ce_run.predictions, _known(X, k), X, "p0", "p1")).score for k in (2, 4, 8)]
    assert scores[0] < scores[2]
    assert scores[2] > 0.999


def test_hat_matrix_does_not_interpolate_a_noisy_stack_of_k_minus_1_columns():
    """Pure noise in exactly k - 1 columns: any k rows are fitted exactly, which says nothing. The
    attack must not take that fit (it scored R^2 far below the baseline on such transcripts, which
    hid a real leak found by an independent re-measurement); it falls back to its leave-one-out
    choice, the known rows' mean here."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5))
    noise = [rng.normal(size=(400, 8)) for _ in range(3)]  # 24 columns, no signal
    res = _r2(hat_matrix.run(noise, _known(X, 25), X, "p0", "p1"))
    assert res.score >= res.baseline - 0.05


def test_hat_matrix_degrades_with_noise(ce_run):
    X = ce_run.X_victim
    rng = np.random.default_rng(5)
    scale = np.std(np.hstack(ce_run.predictions))
    noisy = [p + 20 * scale * rng.standard_normal(p.shape) for p in ce_run.predictions]
    clean = _r2(hat_matrix.run(ce_run.predictions, _known(X, 20), X, "p0", "p1")).score
    dirty = _r2(hat_matrix.run(noisy, _known(X, 20), X, "p0", "p1")).score
    assert dirty < clean - 0.3


def test_inversion_net_learns_the_map(ce_run):
    X = ce_run.X_victim
    res = _r2(inversion_net.run(ce_run.predictions, _known(X, 80), X, "p0", "p1", seed=0, steps=400))
    assert res.advantage > 0.5


def test_inversion_net_is_reproducible(ce_run):
    known = _known(ce_run.X_victim, 20)
    a = inversion_net.reconstruct(ce_run.predictions, known, seed=3, steps=50)
    b = inversion_net.reconstruct(ce_run.predictions, known, seed=3, steps=50)
    np.testing.assert_array_equal(a, b)


def test_active_attack_needs_about_d_plus_one_rounds():
    rng = np.random.default_rng(0)
    n, d = 300, 7
    X = rng.standard_normal((n, d))
    learner = LinearLearner(lam=1e-2)
    replies = []
    for t in range(20):
        r = active_residuals.crafted_residuals(n, 1, t, seed=9)
        replies.append(learner.fit(X, r).predict(X))
        if active_residuals.span_saturated(replies):
            break
    # The centred replies span d directions: d informative rounds, one more shows the rank stopped.
    assert len(replies) == d + 1
    res = _r2(active_residuals.run(replies, _known(X, d + 2), X, "p0", "p1"))
    assert res.score > 0.999


def test_regression_transcript_also_leaks_features(l2_run):
    X = l2_run.X_victim
    res = _r2(hat_matrix.run(l2_run.predictions, _known(X, 12), X, "p0", "p1"))
    assert res.score > 0.99


def test_bad_known_rows_are_refused(ce_run):
    with pytest.raises(ValueError, match="indices"):
        KnownRows([0, 1, 2], np.zeros((2, 3)))
    with pytest.raises(ValueError, match="finite"):
        KnownRows([0], [[np.nan]])
    with pytest.raises(ValueError, match="rows"):
        hat_matrix.reconstruct(ce_run.predictions, KnownRows([99_999], [[0.0] * 6]))


def test_a_constant_column_does_not_inflate_the_scores():
    """New-user review L2: a constant column scored R^2 1 for the attack and the baseline alike,
    so a party's baseline showed 0.189 where the mean guess is about 0."""
    from securegal.attacks.features import KnownRows, score_features

    rng = np.random.default_rng(0)
    truth = np.column_stack([rng.normal(size=200), rng.normal(size=200), np.full(200, 3.0)])
    known = KnownRows(np.arange(20), truth[:20])
    guess = truth + rng.normal(scale=0.5, size=truth.shape) * [1, 1, 0]
    r2 = {r.metric: r for r in score_features("a", "x", "y", guess, truth, known)}["r2"]
    alone = {r.metric: r for r in score_features("a", "x", "y", guess[:, :2], truth[:, :2],
                                                  KnownRows(np.arange(20), truth[:20, :2]))}["r2"]
    assert r2.score == pytest.approx(alone.score) and r2.baseline == pytest.approx(alone.baseline)
    assert r2.baseline < 0.05
