"""A feature party that crafts its predictions, played against the real label owner, from the CLI.

Truths the verdicts must agree with: plain residuals give binary labels away (the sign of
y - p is the label), CKKS residuals reach the party only as ciphertexts (chance), and
epsilon-label-DP bounds any attacker's label accuracy by the Bayes bound of
:func:`securegal.attacks.stats.bayes_bound` whatever the party sends (the label owner's
weights and step are fixed, the residuals' sensitivity does not depend on F).
"""
import json
import math

import numpy as np
import pytest

from securegal.attacks import audit
from securegal.attacks.active_predictions import AMPLITUDE, FRACTION, crafted_pushes, response_features
from securegal.cli import main

ARGS = ["audit", "--active", "crafted_predictions", "--dataset", "breast_cancer", "--rounds", "4",
        "--net-steps", "20", "--no-report"]


def _run(out, *extra):
    assert main(ARGS + ["--out", str(out), *extra]) == 0
    result = json.loads((out / audit.AUDIT).read_text())
    rows = {a["metric"]: a for a in result["attacks"] if a["attack"] == "active_predictions"}
    verdict = next(v for v in result["verdicts"] if v["attack"] == "active_predictions")
    return result, rows, verdict


def _pushes_reached_the_label_owner(out, result) -> float:
    """Correlation of the predictions the label owner opened from the malicious party with its pushes."""
    spec = result["active"]
    with np.load(out / audit.GROUND_TRUTH) as npz:
        opened = npz[f"opened.{spec['party']}"]
    push = crafted_pushes(opened.shape[1], opened.shape[2], 1, spec["seed"])
    return float(np.corrcoef(opened[0].ravel(), push.ravel())[0, 1])


def test_pushes_are_reproducible_and_shaped():
    a, b = crafted_pushes(1000, 2, 3, seed=5), crafted_pushes(1000, 2, 3, seed=5)
    assert np.array_equal(a, b) and a.shape == (1000, 2) and np.array_equal(a[:, 0], a[:, 1])
    assert set(np.unique(a)) == {-AMPLITUDE, 0.0, AMPLITUDE}
    assert abs(np.mean(a[:, 0] != 0) - FRACTION) < 0.05  # 1000 rows: 0.05 is > 3.5 binomial SEs
    assert not np.array_equal(a, crafted_pushes(1000, 2, 4, seed=5))
    with pytest.raises(ValueError):
        crafted_pushes(10, 1, 1, fraction=0.0)
    assert response_features([np.ones((5, 1))] * 3, [a[:5, :1]] * 3).shape == (5, 7)


def test_plain_the_party_reads_every_label(tmp_path):
    out = tmp_path / "plain"
    result, rows, verdict = _run(out)
    assert verdict["verdict"] == "LEAKS" and rows["accuracy"]["score"] > 0.99 and rows["auc"]["score"] > 0.99
    assert _pushes_reached_the_label_owner(out, result) > 0.9  # the malicious replies were really combined
    assert result["active"]["party"] == "party1" and len(result["active"]["weights"]) == 4
    assert "crafted its predictions" in result["notes"][0]


def test_label_dp_keeps_the_party_within_the_bayes_bound(tmp_path):
    out = tmp_path / "label_dp"
    result, rows, verdict = _run(out, "--label-epsilon", "1")
    assert rows["accuracy"]["within_bayes_bound"] and rows["accuracy"]["score"] <= rows["accuracy"]["bayes_bound"]
    # epsilon-DP bounds every test's ROC by TPR <= e^eps FPR + delta, so AUC <= e^eps / (1 + e^eps) (+ delta)
    auc_bound = math.exp(1.0) / (1 + math.exp(1.0)) + 1e-5
    assert rows["auc"]["score"] - 2.33 * rows["auc"]["score_se"] <= auc_bound
    assert result["layers"]["mode"] == "label-DP" and verdict["family"] == "label inference"
    assert _pushes_reached_the_label_owner(out, result) > 0.5  # uniform weights: the pushes count fully


@pytest.mark.slow
def test_ckks_nothing_reaches_the_party(tmp_path):
    out = tmp_path / "ckks"
    result, rows, verdict = _run(out, "--residuals", "ckks")
    if verdict["verdict"] == "LEAKS" or abs(rows["auc"]["advantage"]) >= 1.5 * rows["auc"]["mda"]:
        # fresh keys every run: a false LEAKS (at most 1% per audit by design) or a chance advantage
        # is checked once more on fresh keys; both by chance is about 1e-4, a real leak shows in both
        out = tmp_path / "ckks-again"
        result, rows, verdict = _run(out, "--residuals", "ckks")
    # Never LEAKS; whether it reads "no leak detected" or "inconclusive" depends on whether the
    # verdict-level MDA at this n (~380 scored rows) lands just under or just over MATERIAL (0.10).
    assert verdict["verdict"] != "LEAKS" and rows["auc"]["view"] == "ckks ciphertext bytes"
    # the MDA is z_(0.99) null standard deviations, so |advantage| < MDA alone fails ~2% of fresh-key
    # runs by chance; 1.5 MDA (~3.5 sd) keeps that under 1e-3 and still far below a leak (AUC 1.0).
    assert abs(rows["auc"]["advantage"]) < 1.5 * rows["auc"]["mda"] and rows["auc"]["mda"] <= 0.1
    assert _pushes_reached_the_label_owner(out, result) > 0.9  # added under encryption, decrypted by the owner


def test_flags_belong_to_their_attack(capsys):
    assert main(ARGS + ["--out", "x", "--epsilon", "1"]) == 2
    assert "--epsilon" in capsys.readouterr().err
    assert main(["audit", "--active", "crafted_residuals", "--dataset", "wine", "--out", "x",
                 "--residuals", "ckks"]) == 2
    assert "crafted_predictions" in capsys.readouterr().err
