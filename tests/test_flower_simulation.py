"""securegal on Flower's simulation engine (issue 14): the same results as the embedded run for
every registered layer but plain (which runs on the real deployment, test_flower_deployment.py),
and the same releases under hidden membership."""
import numpy as np
import pytest

pytest.importorskip("flwr")

from securegal.run import train  # noqa: E402

from .test_deploy_parity import _comparable, _layer_settings  # noqa: E402
from .test_flower import PARTIES, simulate, write_federation  # noqa: E402


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
# every registered layer but plain, which runs on the real deployment (test_flower_deployment.py)
@pytest.mark.parametrize("name", ["ckks", "ckks+dp", "dp", "label-dp"])
def test_simulation_and_embedded_runs_agree_for_every_layer(name, tmp_path):
    pytest.importorskip("ray")
    plan, party_privacy, extra = _layer_settings(name)
    embedded = train("breast_cancer", parties=3, rounds=2, seed=0, plan=plan)
    fed, configs = write_federation(tmp_path, residuals=plan.residuals, privacy=party_privacy or None, extra=extra)
    flower = simulate(fed, configs)
    assert flower["deployment"] == "flower" and embedded["deployment"] == "embedded"
    if plan.feature_dp is not None:  # the parties report the same releases and epsilon as embedded
        for party in PARTIES:
            for key in ("releases", "epsilon_spent", "noise_multiplier"):
                assert flower["privacy"][party][key] == embedded["privacy"][party][key], (party, key)
    if plan.label_dp is not None:
        assert flower["privacy"]["alice"] == embedded["privacy"]["alice"]
    a, b = _comparable(flower), _comparable(embedded)
    for d in (a, b):
        d.pop("plan"), d.pop("privacy", None)
    if plan.residuals == "ckks":  # encryption noise: the same scores, weights and steps within 1e-6
        for key in ("weights", "eta"):
            np.testing.assert_allclose(a.pop(key), b.pop(key), atol=1e-6)
    assert a == b
    # the parties' transcripts were written by the ClientApps, message by message
    for party in PARTIES:
        assert any((tmp_path / "run" / "transcripts" / party).iterdir())


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_flower_honours_hidden_membership_as_embedded_does(tmp_path):
    """federation.toml ``hidden_membership`` on Flower: the parties (DP budgets, feedback on) make
    the releases an embedded run makes, and the run records the mode."""
    pytest.importorskip("ray")
    from securegal.privacy.plan import FeatureDP, PrivacyPlan

    seed, epsilon = 7, 8.0
    plan = PrivacyPlan(residuals="ckks", feature_dp=FeatureDP(epsilon=epsilon, seed=seed), hidden_membership=True)
    embedded = train("breast_cancer", parties=3, rounds=2, seed=0, plan=plan)
    fed, configs = write_federation(tmp_path, residuals="ckks",
                                    privacy={"epsilon": epsilon, "noise_seed": seed, "feedback": "on"},
                                    extra={"hidden_membership": True, "residual_clip": 1.0})
    flower = simulate(fed, configs)
    assert flower["deployment"] == "flower" and flower["plan"]["membership"] == "hidden"
    for party in PARTIES:
        for key in ("releases", "epsilon_spent"):
            assert flower["privacy"][party][key] == embedded["privacy"][party][key], (party, key)
    assert flower["n_test"] == embedded["n_test"] and len(flower["gal"]["per_round"]) == 2
