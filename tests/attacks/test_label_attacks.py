import numpy as np
import pytest

from securegal.attacks import KnownLabels, label_clustering, label_inversion, label_rounds, model_completion
from securegal.attacks.labels import class_set


def _known(y, fraction=0.05, seed=1):
    rng = np.random.default_rng(seed)
    idx = rng.choice(y.size, max(2, int(fraction * y.size)), replace=False)
    return KnownLabels(idx, y[idx])


def _by_metric(results):
    return {r.metric: r for r in results}


def test_inversion_is_exact_on_cross_entropy(ce_run):
    known = _known(ce_run.y)
    res = _by_metric(label_inversion.run(ce_run.residuals, "classification", known, ce_run.y,
                                         "p1", "p0", class_set(ce_run.n_outputs)))
    assert res["accuracy"].score == 1.0 and res["auc"].score == 1.0
    assert res["accuracy"].p_value < 0.01 and res["auc"].p_value < 0.01
    assert res["auc"].baseline == 0.5
    assert res["accuracy"].advantage == pytest.approx(1.0 - res["accuracy"].baseline)


def test_inversion_binary_single_output():
    y = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    r = (y - 0.5)[:, None]
    known = KnownLabels([0, 1], y[:2])
    guess = label_inversion.infer(r, "classification", known, class_set(1))
    np.testing.assert_array_equal(guess.values, y)


def test_inversion_recovers_l2_targets(l2_run):
    known = _known(l2_run.y)
    res = _by_metric(label_inversion.run(l2_run.residuals, "regression", known, l2_run.y, "p1", "p0"))
    assert res["r2"].score == pytest.approx(1.0, abs=1e-9)
    assert res["mad"].score == pytest.approx(0.0, abs=1e-6)
    assert res["mad"].advantage > 0


def test_inversion_l1_signs_give_group_means():
    rng = np.random.default_rng(0)
    y = rng.standard_normal(500) * 5
    r = np.sign(y - np.median(y))[:, None]
    known = _known(y, 0.1)
    res = _by_metric(label_inversion.run([r], "regression", known, y, "p1", "p0"))
    # Knowing only the sign of y - median leaves the within-half spread: R^2 = 2/pi for a normal.
    assert 0.5 < res["r2"].score < 0.75
    assert res["r2"].advantage > 0.5


def test_clustering_names_clusters_with_known_labels(ce_run):
    known = _known(ce_run.y)
    res = _by_metric(label_clustering.run(ce_run.residuals, "classification", known, ce_run.y,
                                          "p1", "p0", class_set(ce_run.n_outputs)))
    assert res["accuracy"].score > 0.95
    assert res["auc"].advantage > 0.4


def test_model_completion_beats_own_features(ce_run):
    known = _known(ce_run.y, 0.05)
    res = _by_metric(model_completion.run(ce_run.X_victim, ce_run.residuals, "classification", known,
                                          ce_run.y, "p1", "p0", class_set(ce_run.n_outputs)))
    assert res["accuracy"].score > 0.95
    assert res["accuracy"].advantage > 0.1


def test_noise_residuals_give_no_advantage():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 2000)
    noise = [rng.standard_normal((2000, 2)) for _ in range(3)]
    known = _known(y, 0.05)
    classes = class_set(2)
    for results in (label_inversion.run(noise, "classification", known, y, "p1", "p0", classes),
                    label_rounds.run(noise, "classification", known, y, "p1", "p0", classes),
                    label_clustering.run(noise, "classification", known, y, "p1", "p0", classes)):
        for r in results:
            assert abs(r.advantage) < 0.06, r
        assert max(r.p_value for r in results) > 0.05


def test_summed_rounds_read_labels_the_first_round_hides_under_noise():
    """Label-DP-like rounds: the same residual sign every round under fresh noise (std 3 against
    a signal of 2/3). The first round alone reads little; the sum of 20 reads most labels."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 3000)
    signal = np.eye(3)[y] - 1 / 3
    rounds = [signal + 3.0 * rng.standard_normal(signal.shape) for _ in range(20)]
    known, classes = _known(y, 0.05), class_set(3)
    first = _by_metric(label_inversion.run(rounds, "classification", known, y, "p1", "p0", classes))["accuracy"]
    summed = _by_metric(label_rounds.run(rounds, "classification", known, y, "p1", "p0", classes))["accuracy"]
    assert first.score < 0.5 < 0.7 < summed.score  # 0.44 and 0.77 (1 / 3 by chance)
    assert summed.advantage > first.advantage + 0.25


def test_bad_side_knowledge_is_refused(ce_run):
    with pytest.raises(ValueError, match="distinct"):
        KnownLabels([1, 1], [0, 0])
    with pytest.raises(ValueError, match="rows"):
        label_inversion.infer(ce_run.residuals[0], "classification",
                              KnownLabels([10_000], [0]), class_set(3))
    with pytest.raises(ValueError, match="task"):
        label_inversion.infer(ce_run.residuals[0], "ranking", KnownLabels([0], [0]), class_set(3))
