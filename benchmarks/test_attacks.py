"""Speed of every attack at n = 5,000 training rows (target, issue 5: each under 60 s on 2 cores).

Synthetic plain-GAL views: a victim with d = 10 standardized features fitting ridge to binary
cross-entropy residuals (K = 2) for T = 10 rounds; 5% known labels / rows. Run with
``PYTHONPATH=. python -m pytest benchmarks/test_attacks.py --benchmark-only``.
"""
import numpy as np
import pytest

from securegal.attacks import (KnownLabels, KnownRows, active_residuals, hat_matrix, inversion_net,
                               label_clustering, label_inversion, model_completion)
from securegal.attacks.labels import class_set
from securegal.learners.linear import LinearLearner

N, D, T, K = 5000, 10, 10, 2


@pytest.fixture(scope="module")
def view():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D))
    y = (X @ rng.standard_normal(D) + rng.standard_normal(N) > 0).astype(np.int64)
    onehot = np.eye(K)[y]
    F = np.zeros((N, K))
    learner = LinearLearner()
    residuals, predictions = [], []
    for _ in range(T):
        e = np.exp(F - F.max(axis=1, keepdims=True))
        r = onehot - e / e.sum(axis=1, keepdims=True)
        f = learner.fit(X, r).predict(X)
        residuals.append(r)
        predictions.append(f)
        F = F + 2.0 * f
    idx = np.sort(rng.choice(N, N // 20, replace=False))
    return dict(X=X, y=y, residuals=residuals, predictions=predictions,
                labels=KnownLabels(idx, y[idx]), rows=KnownRows(idx, X[idx]))


def _once(benchmark, fn):
    results = benchmark.pedantic(fn, rounds=1, iterations=1)
    benchmark.extra_info.update({r.metric: round(r.score, 4) for r in results})
    assert benchmark.stats.stats.max < 60.0
    return results


def test_label_inversion(benchmark, view):
    _once(benchmark, lambda: label_inversion.run(view["residuals"], "classification", view["labels"], view["y"],
                                                 "p1", "p0", class_set(K)))


def test_label_clustering(benchmark, view):
    _once(benchmark, lambda: label_clustering.run(view["residuals"], "classification", view["labels"], view["y"],
                                                  "p1", "p0", class_set(K)))


def test_model_completion(benchmark, view):
    _once(benchmark, lambda: model_completion.run(view["X"], view["residuals"], "classification", view["labels"],
                                                  view["y"], "p1", "p0", class_set(K)))


def test_hat_matrix(benchmark, view):
    _once(benchmark, lambda: hat_matrix.run(view["predictions"], view["rows"], view["X"], "p0", "p1"))


def test_inversion_net(benchmark, view):
    _once(benchmark, lambda: inversion_net.run(view["predictions"], view["rows"], view["X"], "p0", "p1"))


def test_active_residuals(benchmark, view):
    learner = LinearLearner()

    def attack():
        replies = []
        for t in range(1, 4 * D):
            replies.append(learner.fit(view["X"], active_residuals.crafted_residuals(N, K, t)).predict(view["X"]))
            if active_residuals.span_saturated(replies):
                break
        return active_residuals.run(replies, view["rows"], view["X"], "p0", "p1")

    _once(benchmark, attack)


def test_paired_test(benchmark):
    """One metric's sign-flip test with 2,999 permutations at n = 5,000 (runs ~36 times per audit)."""
    from securegal.attacks import stats

    c = np.random.default_rng(1).standard_normal(N) / N
    result = benchmark(stats.paired_test, c, float(c.sum()))
    assert 0 < result.p_value <= 1 and result.mda > 0
