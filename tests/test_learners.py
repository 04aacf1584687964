"""Local learners: output shapes, seeded determinism, fitting known functions, bad input."""
import numpy as np
import pytest
import torch

from securegal.learners import LEARNERS, make_learner
from securegal.learners.base import LinearSmoother

FAST = {  # small settings so the whole file runs in seconds
    "linear": {},
    "mlp": {"epochs": 60},
    "cnn": {"epochs": 3, "channels": (4,), "hidden": 8},
    "gb": {"n_estimators": 20},
    "rff": {"n_components": 50},
}
PATCH = (4, 2)


def build(name, **kw):
    opts = dict(FAST[name], **kw)
    if name == "cnn":
        opts.setdefault("patch_shape", PATCH)
    return make_learner(name, **opts)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 8))
    r = rng.normal(size=(120, 3))
    return X, r


@pytest.mark.parametrize("name", list(LEARNERS))
def test_predict_shape_and_dtype(name, data):
    X, r = data
    model = build(name).fit(X, r)
    out = model.predict(X[:7])
    assert out.shape == (7, 3)
    assert out.dtype == np.float64 and np.isfinite(out).all()


@pytest.mark.parametrize("name", list(LEARNERS))
def test_one_dimensional_residuals_become_one_column(name, data):
    X, r = data
    assert build(name).fit(X, r[:, 0]).predict(X).shape == (120, 1)


@pytest.mark.parametrize("name", ["mlp", "cnn", "gb", "rff"])
def test_same_seed_same_model_other_seed_differs(name, data):
    X, r = data
    a = build(name, seed=5).fit(X, r).predict(X)
    b = build(name, seed=5).fit(X, r).predict(X)
    np.testing.assert_array_equal(a, b)
    if name != "gb":  # without subsampling, boosted trees do not use their seed
        c = build(name, seed=6).fit(X, r).predict(X)
        assert np.abs(a - c).max() > 1e-6


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_torch_learners_leave_the_global_rng_alone(name, data):
    X, r = data
    state = torch.get_rng_state()
    build(name).fit(X, r).predict(X)
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("name,opts,tol", [
    ("mlp", {"epochs": 300}, 0.05),
    ("gb", {"n_estimators": 200}, 0.05),
    ("rff", {"n_components": 300, "gamma": 0.5}, 0.05),
])
def test_fits_a_smooth_nonlinear_function(name, opts, tol):
    rng = np.random.default_rng(1)
    X = rng.uniform(-2, 2, size=(400, 2))
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2
    model = make_learner(name, **opts).fit(X[:300], y[:300])
    pred = model.predict(X[300:])[:, 0]
    rel_mse = np.mean((pred - y[300:]) ** 2) / y[300:].var()
    assert rel_mse < tol, rel_mse
    # a linear model cannot do this: the non-linear learners are doing real work
    lin = make_learner("linear").fit(X[:300], y[:300]).predict(X[300:])[:, 0]
    assert np.mean((lin - y[300:]) ** 2) / y[300:].var() > 0.3


def test_cnn_learns_a_spatial_pattern_on_a_tiny_patch():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(600, 8))
    img = X.reshape(-1, 4, 2)
    y = img[:, :2, :].sum(axis=(1, 2)) - img[:, 2:, :].sum(axis=(1, 2))  # top half minus bottom half
    model = make_learner("cnn", patch_shape=(4, 2), epochs=40, batch_size=64).fit(X[:500], y[:500])
    pred = model.predict(X[500:])[:, 0]
    assert np.mean((pred - y[500:]) ** 2) / y[500:].var() < 0.1


@pytest.mark.parametrize("shape", [(4, 2), (14, 7), (1, 1), (3, 5)])
def test_cnn_handles_patch_shapes(shape):
    rng = np.random.default_rng(3)
    h, w = shape
    X = rng.normal(size=(40, h * w))
    model = make_learner("cnn", patch_shape=shape, epochs=1, channels=(4, 4), hidden=8).fit(X, rng.normal(size=(40, 2)))
    assert model.predict(X).shape == (40, 2)


@pytest.mark.parametrize("name", ["mlp", "gb", "rff"])
def test_l1_local_loss_resists_outliers(name):
    rng = np.random.default_rng(4)
    X = rng.uniform(-1, 1, size=(300, 1))
    y = 2 * X[:, 0]
    y_bad = y.copy()
    y_bad[::10] += 50.0  # 10% gross outliers
    opts = {"mlp": {"epochs": 300}, "gb": {"n_estimators": 100}, "rff": {"gamma": 0.5}}[name]
    err = {}
    for loss in ("l1", "l2"):
        pred = make_learner(name, local_loss=loss, **opts).fit(X, y_bad).predict(X)[:, 0]
        err[loss] = np.median(np.abs(pred - y))
    assert err["l1"] < 0.3 and err["l1"] < err["l2"] / 3, err


@pytest.mark.parametrize("lam", [1e-3, 1e-1])
def test_rff_operator_matches_fit_on_train_and_test(lam, data):
    X, r = data
    learner = make_learner("rff", n_components=40, lam=lam, seed=3)
    assert isinstance(learner, LinearSmoother)
    op = learner.operator(X)
    model = learner.fit(X, r)
    assert op.A.shape == (41, 120) and op.phi_train.shape == (120, 41)
    np.testing.assert_allclose(op.phi_train @ (op.A @ r), model.predict(X), rtol=1e-9, atol=1e-9)
    X_new = np.random.default_rng(9).normal(size=(10, 8))
    np.testing.assert_allclose(op.feature_map(X_new) @ (op.A @ r), model.predict(X_new), rtol=1e-9, atol=1e-9)


def test_rff_map_is_label_free_and_seeded(data):
    X, r = data
    a, b = make_learner("rff", seed=1), make_learner("rff", seed=1)
    np.testing.assert_array_equal(a.operator(X).phi_train, b.operator(X).phi_train)
    assert not np.allclose(a.operator(X).phi_train, make_learner("rff", seed=2).operator(X).phi_train)
    # the operator is built from features alone: refitting to other residuals reuses it
    np.testing.assert_allclose(a.operator(X).phi_train @ a.operator(X).A @ (2 * r),
                               a.fit(X, 2 * r).predict(X), atol=1e-9)


def test_rff_approximates_the_rbf_kernel():
    X = np.random.default_rng(5).normal(size=(30, 4))
    fmap = make_learner("rff", n_components=20000, gamma=0.3).feature_map(4)
    Z = fmap(X)
    exact = np.exp(-0.3 * ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    assert np.abs(Z @ Z.T - exact).max() < 0.05


def test_rff_l1_has_no_operator(data):
    with pytest.raises(ValueError, match="l1"):
        make_learner("rff", local_loss="l1").operator(data[0])


# ---- bad input -------------------------------------------------------------------------------

def test_unknown_learner_names_choices():
    with pytest.raises(ValueError, match=r"unknown learner 'svm'.*linear, mlp, cnn, gb, rff"):
        make_learner("svm")


def test_unknown_option_names_it():
    with pytest.raises(ValueError, match=r"learner 'mlp' has no option depth.*epochs"):
        make_learner("mlp", depth=3)


def test_cnn_needs_patch_shape_and_others_ignore_it(data):
    with pytest.raises(ValueError, match="patch_shape"):
        make_learner("cnn")
    X, r = data
    np.testing.assert_array_equal(make_learner("linear", patch_shape=(4, 2)).fit(X, r).predict(X),
                                  make_learner("linear").fit(X, r).predict(X))


@pytest.mark.parametrize("shape", [(0, 2), (2,), "ab", (2.5, 2), None])
def test_cnn_bad_patch_shape(shape):
    with pytest.raises(ValueError, match="patch"):
        make_learner("cnn", patch_shape=shape) if shape is not None else make_learner("cnn", patch_shape=(-1, 1))


def test_cnn_patch_size_must_match_features(data):
    X, r = data
    with pytest.raises(ValueError, match=r"patch_shape \(3, 3\) needs 9 features per row, got 8"):
        make_learner("cnn", patch_shape=(3, 3)).fit(X, r)


@pytest.mark.parametrize("name", list(LEARNERS))
def test_bad_local_loss(name):
    with pytest.raises(ValueError, match="unknown local loss 'huber'"):
        make_learner(name, local_loss="huber", **({"patch_shape": PATCH} if name == "cnn" else {}))


@pytest.mark.parametrize("name", list(LEARNERS))
def test_fit_rejects_bad_arrays(name, data):
    X, r = data
    learner = build(name)
    with pytest.raises(ValueError, match="finite"):
        learner.fit(np.where(np.eye(120, 8) > 0, np.nan, X), r)
    with pytest.raises(ValueError, match="residuals must have shape"):
        learner.fit(X, r[:-1])
    with pytest.raises(ValueError, match="2-D"):
        learner.fit(X[:, 0], r)


@pytest.mark.parametrize("name", ["mlp", "cnn", "gb", "rff"])
def test_predict_rejects_wrong_width(name, data):
    X, r = data
    model = build(name).fit(X, r)
    with pytest.raises(ValueError, match=r"expected features of shape \(n, 8\)"):
        model.predict(X[:, :5])


@pytest.mark.parametrize("name,bad", [
    ("mlp", {"epochs": 0}), ("mlp", {"lr": -1.0}), ("mlp", {"hidden": (8, 0)}), ("mlp", {"batch_size": 0}),
    ("cnn", {"channels": ()}), ("gb", {"n_estimators": 0}), ("gb", {"learning_rate": 2.0}),
    ("rff", {"n_components": 0}), ("rff", {"gamma": 0.0}), ("rff", {"lam": 0.0}),
])
def test_bad_options(name, bad):
    extra = {"patch_shape": PATCH} if name == "cnn" else {}
    with pytest.raises(ValueError):
        make_learner(name, **bad, **extra)


@pytest.mark.parametrize("seed", [1.5, "1", True])
def test_bad_seed(seed):
    with pytest.raises(TypeError, match="seed must be an int"):
        make_learner("mlp", seed=seed)


@pytest.mark.parametrize("local_loss", ["l2", "l1"])
@pytest.mark.parametrize("name", ["linear", "rff"])
def test_bound_learner_fits_like_fit_and_returns_its_train_predictions(name, local_loss, data):
    from securegal.learners.base import bind

    X, r = data
    learner = build(name, local_loss=local_loss)
    bound = bind(learner, X)
    assert hasattr(learner, "bind")
    for scale in (1.0, -0.5):  # round after round on the same block
        model, predictions = bound.fit_predict(scale * r)
        np.testing.assert_allclose(predictions, model.predict(X), atol=1e-10)
        np.testing.assert_allclose(model.predict(X), learner.fit(X, scale * r).predict(X), atol=1e-9)


def test_bound_ridge_solves_the_ridge_normal_equations(data):
    """The factored Gram matrix gives the textbook ridge solution (unpenalized intercept)."""
    X, r = data
    lam = 0.05
    model, _ = make_learner("linear", lam=lam).bind(X).fit_predict(r)
    Phi = np.hstack([X, np.ones((len(X), 1))])
    penalty = lam * len(X) * np.diag([1.0] * X.shape[1] + [0.0])
    np.testing.assert_allclose(model.coef, np.linalg.solve(Phi.T @ Phi + penalty, Phi.T @ r), atol=1e-10)


def test_bind_falls_back_to_fit_then_predict(data):
    from securegal.learners.base import bind

    X, r = data
    learner = build("gb")
    model, predictions = bind(learner, X).fit_predict(r)
    np.testing.assert_allclose(predictions, model.predict(X))


def test_bound_learner_rejects_bad_residuals(data):
    X, r = data
    bound = make_learner("linear").bind(X)
    with pytest.raises(ValueError, match="n=120"):
        bound.fit_predict(r[:10])
    with pytest.raises(ValueError, match="finite"):
        bound.fit_predict(np.full_like(r, np.nan))
