"""The feature party's DP trainer: planning, enforcement, and an empirical privacy audit."""
import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import beta

from securegal.errors import BudgetExceeded
from securegal.privacy.dp.mechanisms import InsecureNoiseWarning
from securegal.privacy.dp.trainer import DPConfig, DPTrainer, plan_noise


def setup_msg(rounds, k=1, residuals="plain"):
    return SimpleNamespace(rounds=rounds, n_outputs=k, residuals=residuals)


def make_trainer(config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureNoiseWarning)
        return DPTrainer(config)


def test_trainer_spends_exactly_the_plan_then_refuses_cleanly():
    rng = np.random.default_rng(0)
    X, r = rng.normal(size=(200, 4)), rng.normal(size=(200, 2))
    tr = make_trainer(DPConfig(2.0, 1e-5, seed=1))
    tr.setup(X, setup_msg(3, k=2))
    for t in (1, 2, 3):
        f = tr.fit_round(t, r)
        assert f.shape == (200, 2) and tr.accountant.epsilon_spent <= 2.0
    assert tr.accountant.epsilon_spent == pytest.approx(2.0, rel=1e-3)
    kinds = [(rel.round, rel.what) for rel in tr.accountant.releases]
    assert kinds == [(1, "gram"), (1, "stat"), (1, "pred"), (2, "stat"), (2, "pred"),
                     (3, "stat"), (3, "pred")]
    before = (tr.accountant.releases, len(tr.models))
    with pytest.raises(BudgetExceeded):
        tr.fit_round(4, r)
    assert (tr.accountant.releases, len(tr.models)) == before
    P = tr.predict(X[:5], 4)
    assert P.shape == (4, 5, 2) and np.all(P[3] == 0) and np.any(P[2] != 0)
    rep = tr.report()
    assert rep["epsilon_spent"] <= rep["epsilon_budget"] and len(rep["releases"]) == 7


def test_no_prediction_share_returns_zeros_and_spends_nothing_on_outputs():
    rng = np.random.default_rng(1)
    X, r = rng.normal(size=(100, 3)), rng.normal(size=(100, 1))
    tr = make_trainer(DPConfig(1.0, 1e-5, shares={"gram": 0.3, "stat": 0.7}, seed=2))
    tr.setup(X, setup_msg(2))
    assert np.all(tr.fit_round(1, r) == 0)
    assert {rel.what for rel in tr.accountant.releases} == {"gram", "stat"}


def test_dp_trainer_learns_something_at_moderate_epsilon():
    rng = np.random.default_rng(2)
    n, d = 5000, 4
    X = rng.normal(size=(n, d))
    r = np.tanh(X @ np.array([[1.0], [-1.0], [0.5], [0.0]]))
    tr = make_trainer(DPConfig(3.0, 1e-6, seed=3))
    tr.setup(X, setup_msg(1))
    tr.fit_round(1, r)
    pred = tr.predict(X, 1)[0]
    assert np.corrcoef(pred[:, 0], r[:, 0])[0, 1] > 0.8


@pytest.mark.parametrize("kwargs,msg", [
    (dict(epsilon=0.0, delta=1e-5), "epsilon"),
    (dict(epsilon=1.0, delta=1.0), "delta"),
    (dict(epsilon=1.0, delta=1e-5, shares={"gram": 1.0}), "shares"),
    (dict(epsilon=1.0, delta=1e-5, shares={"gram": 0.0, "stat": 1.0}), "'gram' and 'stat'"),
    (dict(epsilon=1.0, delta=1e-5, prediction_clip=-1.0), "prediction_clip"),
    (dict(epsilon=1.0, delta=1e-5, feature_clip=0.0), "feature_clip"),
])
def test_bad_config(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        DPConfig(**kwargs)


def test_bad_budget_for_the_data_is_refused_before_any_release():
    with pytest.raises(ValueError, match="1/n"):
        plan_noise(DPConfig(1.0, 1e-2), 500, 10)
    with pytest.raises(ValueError, match="too small"):
        plan_noise(DPConfig(1e-6, 1e-6), 500, 10)
    with pytest.raises(ValueError, match="rounds"):
        plan_noise(DPConfig(1.0, 1e-6), 500, 0)
    tr = make_trainer(DPConfig(1e-6, 1e-6, seed=0))
    with pytest.raises(ValueError, match="too small"):
        tr.setup(np.zeros((500, 2)), setup_msg(10))
    assert tr.accountant is None
    with pytest.raises(ValueError, match="plaintext residuals"):
        make_trainer(DPConfig(1.0, 1e-6, seed=0)).setup(np.zeros((50, 2)), setup_msg(1, residuals="ckks"))


# --- Empirical audit on two neighbouring tables -------------------------------------------

class _ShrunkNoise:
    """A deliberately broken noise source (std scaled down) for the audit's power check."""

    def __init__(self, inner, factor):
        self.inner, self.factor = inner, factor

    def normal(self, shape, std):
        return self.inner.normal(shape, std * self.factor)


def _views(X, residuals, config, trials, first_seed, monkeypatch, shrink_noise=1.0):
    """What the label owner sees per trial: each round's returned prediction on the changed row
    and the round models' coefficients (recoverable from test-time predictions)."""
    planned = plan_noise(DPConfig(**config), X.shape[0], len(residuals))
    monkeypatch.setattr("securegal.privacy.dp.trainer.plan_noise", lambda *a: dict(planned))
    out = []
    for i in range(trials):
        tr = make_trainer(DPConfig(**{**config, "seed": first_seed + i}))
        if shrink_noise != 1.0:
            tr.noise = _ShrunkNoise(tr.noise, shrink_noise)
        tr.setup(X, setup_msg(len(residuals)))
        view = []
        for t, r in enumerate(residuals, start=1):
            f = tr.fit_round(t, r)
            view.extend([f[0, 0], *tr.models[-1].coef[:, 0]])
        out.append(view)
    return np.asarray(out)


def _cp_upper(k, n, alpha=0.025):
    return 1.0 if k == n else float(beta.ppf(1 - alpha, k + 1, n - k))


def empirical_epsilon_lower_bound(view_a, view_b, delta):
    """Train a linear threshold test on half the trials, measure it on the other half and turn
    Clopper-Pearson upper bounds on its error rates into a lower bound on epsilon."""
    h = len(view_a) // 2
    mu_a, mu_b = view_a[:h].mean(0), view_b[:h].mean(0)
    var = 0.5 * (view_a[:h].var(0) + view_b[:h].var(0)) + 1e-30
    w = (mu_a - mu_b) / var
    sa, sb = view_a[:h] @ w, view_b[:h] @ w
    cands = np.quantile(np.concatenate([sa, sb]), np.linspace(0.01, 0.99, 99))
    best = max(cands, key=lambda c: np.mean(sa > c) - np.mean(sb > c))
    ta, tb = view_a[h:] @ w, view_b[h:] @ w
    m = len(ta)
    fnr = _cp_upper(int(np.sum(ta <= best)), m)  # says "b" on a
    fpr = _cp_upper(int(np.sum(tb > best)), m)   # says "a" on b
    bounds = [math.log(max(1 - delta - fpr, 1e-300) / fnr), math.log(max(1 - delta - fnr, 1e-300) / fpr)]
    return max(bounds + [0.0])


@pytest.fixture(scope="module")
def neighbours():
    rng = np.random.default_rng(11)
    n, d = 40, 2
    X = rng.normal(size=(n, d))
    X2 = X.copy()
    X[0], X2[0] = [5.0, 5.0], [-5.0, -5.0]  # both clipped to B, opposite directions
    residuals = [np.where(np.arange(n) == 0, 1.0, rng.choice([-1.0, 1.0], n))[:, None]
                 for _ in range(2)]
    config = dict(epsilon=1.0, delta=1e-5, prediction_clip=0.5,
                  shares={"gram": 0.2, "stat": 0.4, "pred": 0.4})
    return X, X2, residuals, config


@pytest.mark.slow
def test_empirical_distinguisher_does_not_beat_claimed_epsilon(neighbours, monkeypatch):
    X, X2, residuals, config = neighbours
    trials = 2000
    a = _views(X, residuals, config, trials, 0, monkeypatch)
    b = _views(X2, residuals, config, trials, 10**6, monkeypatch)
    eps_lb = empirical_epsilon_lower_bound(a, b, config["delta"])
    assert eps_lb <= config["epsilon"]


@pytest.mark.slow
def test_the_audit_catches_an_under_noised_mechanism(neighbours, monkeypatch):
    """Same audit, same trial count, noise 20x too small: the lower bound exceeds the claim,
    so the passing test above is not vacuous."""
    X, X2, residuals, config = neighbours
    trials = 2000
    a = _views(X, residuals, config, trials, 0, monkeypatch, shrink_noise=0.05)
    b = _views(X2, residuals, config, trials, 10**6, monkeypatch, shrink_noise=0.05)
    assert empirical_epsilon_lower_bound(a, b, config["delta"]) > config["epsilon"]
