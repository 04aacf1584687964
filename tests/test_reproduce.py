"""The reproduction harness: noisy parties, acceptance checks, and the CLI on a tiny subset."""
import json

import numpy as np
import pytest

from securegal.experiments import reproduce as rp
from securegal.cli import main
from securegal.learners import make_learner
from securegal.messages import Setup


def _setup(n, k=2):
    return Setup(train_ids=np.arange(n, dtype=np.int64), n_outputs=k, rounds=2, task="classification",
                 residuals="plain", he_context=b"", options={})


def test_noisy_trainer_adds_seeded_unit_noise_at_fit_and_predict():
    rng = np.random.default_rng(0)
    X, r = rng.normal(size=(2000, 3)), rng.normal(size=(2000, 2))
    clean = make_learner("linear").fit(X, r).predict(X)
    outs = []
    for _ in range(2):
        t = rp.NoisyTrainer(make_learner("linear"), sigma=1.0, seed=7)
        t.setup(X, _setup(2000))
        outs.append((t.fit_round(1, r), t.predict(X, 2)))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    fit, pred = outs[0]
    assert abs(np.std(fit - clean) - 1.0) < 0.05
    assert abs(np.std(pred[0] - clean) - 1.0) < 0.05
    assert np.abs(pred[1]).max() > 0.5  # an unfitted round is pure noise: the party's output is noisy


def test_noisy_trainers_pick_the_last_half_and_spare_the_label_owner():
    _, noisy = rp.noisy_trainers(8, 1.0, 0)
    assert noisy == [4, 5, 6, 7]
    _, noisy = rp.noisy_trainers(5, 1.0, 0)
    assert noisy == [3, 4]


def _row(ds, metric, **means):
    return rp.Row(rp.Experiment(ds, 8), metric, {m: [v] for m, v in means.items()}, 0.0)


def test_acceptance_uses_the_issue_thresholds():
    rows = [_row("diabetes", "mad", joint=45.0, alone=60.0, gal_uniform=46.0, gal=46.5),   # ratio 1.033: miss
            _row("wine", "accuracy", joint=100.0, alone=70.0, gal_uniform=95.0, gal=95.0),  # gap 5: pass
            _row("mnist", "accuracy", joint=95.0, alone=30.0, gal_uniform=90.0, gal=90.0)]  # 3.0x Alone, 0.947x Joint
    checks = {c.name: c for c in rp.acceptance(rows, [])}
    assert not checks["diabetes: GAL / Joint MAD"].passed
    assert checks["diabetes: GAL / Joint MAD"].value == pytest.approx(46.5 / 45.0)
    assert checks["wine: Joint - GAL (points)"].passed
    assert checks["diabetes: GAL beats Alone (GAL - Alone)"].passed
    assert checks["mnist: GAL / Joint accuracy"].passed and checks["mnist: GAL / Alone accuracy"].passed
    worse = [_row("mnist", "accuracy", joint=95.0, alone=40.0, gal_uniform=90.0, gal=85.0)]
    checks = {c.name: c for c in rp.acceptance(worse, [])}
    assert not checks["mnist: GAL / Joint accuracy"].passed and not checks["mnist: GAL / Alone accuracy"].passed


def test_noisy_acceptance():
    w = np.full((1, 2, 4), 0.3)
    w[:, :, 2:] = 0.01
    ok = rp.NoisyRow(rp.Experiment("wine", 4), "accuracy", [2, 3], [95.0], [80.0], w)
    bad = rp.NoisyRow(rp.Experiment("diabetes", 4), "mad", [2, 3], [50.0], [48.0], np.full((1, 2, 4), 0.25))
    checks = rp.acceptance([], [ok, bad])
    assert [c.passed for c in checks] == [True, True, False, False]


def test_unknown_dataset_is_a_clean_error(capsys):
    assert main(["reproduce", "--datasets", "cifar"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("securegal: error: no reproduction experiment for cifar") and "Traceback" not in err


def test_reproduce_cli_on_iris_one_seed(tmp_path, capsys):
    out = tmp_path / "repro.json"
    assert main(["reproduce", "--datasets", "iris,wine", "--seeds", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "iris" in text and "GAL-uniform" in text and "acceptance" in text
    data = json.loads(out.read_text())
    assert [r["dataset"] for r in data["table"]] == ["wine", "iris"]
    wine = data["table"][0]
    assert set(wine["scores"]) == {"joint", "alone", "gal_uniform", "gal"}
    assert all(len(v) == 1 and 0 <= v[0] <= 100 for v in wine["scores"].values())
    assert [r["dataset"] for r in data["noisy"]["rows"]] == ["wine"]
    assert len(data["noisy"]["rows"][0]["weights_per_party"]) == 8
