"""Full-batch DP-GD MLP trainer: accounting, enforcement, learning, routing from DPTrainers."""
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from securegal.errors import BudgetExceeded, ConfigError
from securegal.privacy.dp.accountant import epsilon_of
from securegal.privacy.dp.dpgd import DPGDConfig, DPGDTrainer, plan_dpgd_noise
from securegal.privacy.dp.layers import DPTrainers
from securegal.privacy.dp.mechanisms import InsecureNoiseWarning
from securegal.privacy.dp.trainer import DPConfig

SETUP = SimpleNamespace(rounds=2, n_outputs=1, residuals="plain")


def quiet(factory, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureNoiseWarning)
        return factory(*args)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 3))
    r = np.tanh(2 * X[:, :1] - X[:, 1:2])
    return X, r


def test_dpgd_spends_its_plan_and_learns(data):
    X, r = data
    tr = quiet(DPGDTrainer, DPGDConfig(4.0, 1e-5, steps=20, seed=0))
    tr.setup(X, SETUP)
    f1 = tr.fit_round(1, r)
    tr.fit_round(2, r)
    assert f1.shape == r.shape
    rel = tr.accountant.releases
    assert [(x.round, x.what, x.steps, x.sample_rate) for x in rel] == [
        (1, "sgd", 20, 1.0), (1, "pred", 1, 1.0), (2, "sgd", 20, 1.0), (2, "pred", 1, 1.0)]
    assert tr.accountant.epsilon_spent <= 4.0
    assert tr.accountant.epsilon_spent == pytest.approx(4.0, rel=1e-3)
    assert tr.accountant.epsilon_spent == pytest.approx(epsilon_of(rel, 1e-5), rel=1e-12)
    pred = tr.predict(X, 2)
    assert pred.shape == (2, 600, 1)
    assert np.corrcoef(pred[0, :, 0], r[:, 0])[0, 1] > 0.7
    with pytest.raises(BudgetExceeded):
        tr.fit_round(3, r)
    assert len(tr.models) == 2


def test_gradient_noise_has_the_planned_scale(data, monkeypatch):
    """The noise added to the summed clipped gradients is N(0, (z * 2G)^2) per coordinate."""
    X, r = data
    tr = quiet(DPGDTrainer, DPGDConfig(2.0, 1e-5, steps=3, grad_clip=0.5, seed=1))
    tr.setup(X, SETUP)
    stds = []
    real = tr.noise.normal
    monkeypatch.setattr(tr.noise, "normal", lambda shape, std: (stds.append(std), real(shape, std))[1])
    tr.fit_round(1, r)
    z = tr.accountant.noise_multipliers
    sgd_stds = stds[:-1]  # the last draw is the prediction release
    assert sgd_stds and all(s == pytest.approx(z["sgd"] * 2 * 0.5) for s in sgd_stds)
    assert stds[-1] == pytest.approx(z["pred"] * 2 * 0.01)


def test_bad_dpgd_inputs():
    with pytest.raises(ValueError, match="steps"):
        DPGDConfig(1.0, 1e-5, steps=0)
    with pytest.raises(ValueError, match="grad_clip"):
        DPGDConfig(1.0, 1e-5, grad_clip=0.0)
    with pytest.raises(ValueError, match="sgd"):
        DPGDConfig(1.0, 1e-5, shares={"pred": 1.0})
    with pytest.raises(ValueError, match="1/n"):
        plan_dpgd_noise(DPGDConfig(1.0, 1e-2), 200, 2)
    with pytest.raises(ValueError, match="too small"):
        plan_dpgd_noise(DPGDConfig(1e-6, 1e-6), 200, 5)


def test_dp_trainers_route_mlp_to_dpgd_and_refuse_others(data):
    X, r = data
    trainers = DPTrainers(DPConfig(3.0, 1e-5, seed=2))
    trainers.preflight(600, 2, ["party1"], learner="mlp")
    factory = trainers("party1", 1, SimpleNamespace(name="mlp", hidden=(8,)))
    tr = quiet(factory, SETUP)
    assert isinstance(tr, DPGDTrainer) and tr.config.hidden == (8,)
    with pytest.raises(ConfigError, match="not 'gb'"):
        trainers("party1", 1, SimpleNamespace(name="gb"))
    with pytest.raises(ConfigError, match="not 'cnn'"):
        trainers.preflight(600, 2, ["party1"], learner="cnn")


def test_a_dpgd_session_stopped_after_one_round_settles_to_what_it_released(data):
    """The table's ledger reserved two rounds (sgd x40, pred x2); the session stops after one:
    settling leaves exactly the in-session accountant's releases counted."""
    from securegal.privacy.dp.accountant import Budget
    from securegal.privacy.dp.ledger import Ledger

    X, r = data
    tr = quiet(DPGDTrainer, DPGDConfig(4.0, 1e-5, steps=20, seed=0))
    tr.ledger, tr.session = Ledger("t", Budget(4.0, 1e-5)), "s1"
    tr.setup(X, SETUP)
    tr.fit_round(1, r)
    reserved = tr.ledger.epsilon_spent
    assert tr.ledger.settle("s1", tr.accountant.releases, "finished") > 0
    assert tr.ledger.epsilon_spent == pytest.approx(tr.accountant.epsilon_spent, rel=1e-9)
    assert tr.ledger.epsilon_spent < reserved
    kept = [e.release for i, e in enumerate(tr.ledger.entries) if not tr.ledger.returned(i)]
    assert [(x.what, x.steps) for x in kept] == [("sgd", 20), ("pred", 1)]


def test_the_mlp_honours_feedback_off_and_refuses_the_ridges_options():
    """Independent code review H1: under feature-DP the mlp dropped --dp-feedback off (its DP-GD
    still released noised train predictions) and took the ridge's feature clip, lam, noise ridge,
    coordinate clip and shares without using them."""
    from securegal.privacy.plan import FeatureDP, PrivacyPlan

    def kinds(feedback):
        trainers = PrivacyPlan(feature_dp=FeatureDP(epsilon=3, feedback=feedback)).trainers()
        return set(trainers._dpgd_config("party1").shares)

    assert kinds(False) == {"sgd"} and kinds(True) == {"sgd", "pred"}
    for options, named in ((dict(lam=0.01), "lam: only"), (dict(feature_clip=1.0, noise_ridge=2.0), "feature_clip \\(--dp-feature-clip\\), noise_ridge: only"),
                           (dict(shares={"gram": 0.2, "stat": 0.8}), "shares: only"), (dict(coordinate_clip=1.0), "coordinate_clip")):
        with pytest.raises(ConfigError, match=f"feature-DP {named}.*not the mlp's DP-GD"):
            PrivacyPlan(feature_dp=FeatureDP(epsilon=1, **options)).check_learner("mlp")
        PrivacyPlan(feature_dp=FeatureDP(epsilon=1, **options)).check_learner("linear")


def test_hand_built_dp_trainers_refuse_the_ridges_options_for_the_mlp():
    """DPTrainers built by hand (not from a plan) must refuse, not ignore, the DP ridge's options
    when the party's learner is the mlp."""
    from securegal.privacy.dp.layers import DPTrainers
    from securegal.privacy.dp.trainer import DPConfig

    plain = DPTrainers(DPConfig(epsilon=3, delta=1e-5))
    plain.preflight(200, 2, ["party1"], learner="mlp")  # the defaults pass
    for options in (dict(lam=0.01), dict(feature_clip=1.0), dict(noise_ridge=2.0), dict(coordinate_clip=1.0),
                    dict(intercept=3.0), dict(shares={"gram": 0.1, "stat": 0.8, "pred": 0.1})):
        trainers = DPTrainers(DPConfig(epsilon=3, delta=1e-5, **options))
        with pytest.raises(ConfigError, match=f"^party 'party1': DPConfig {next(iter(options))} set.*not the mlp"):
            trainers.preflight(200, 2, ["party1"], learner="mlp")
        trainers.preflight(200, 2, ["party1"], learner="linear")
