"""The bound l2 ridge on a large block: float32 storage, float64 products by row blocks."""
import numpy as np
import pytest

from securegal.learners import linear
from securegal.learners.linear import LinearLearner


def _exact(X, r, lam):
    Phi = np.hstack([X, np.ones((X.shape[0], 1))])
    penalty = lam * X.shape[0] * np.eye(Phi.shape[1])
    penalty[-1, -1] = 0.0
    coef = np.linalg.solve(Phi.T @ Phi + penalty, Phi.T @ r)
    return coef, Phi @ coef


def test_a_large_block_is_the_exact_ridge_on_its_float32_rounded_features(monkeypatch, rng):
    monkeypatch.setattr(linear, "FLOAT32_ELEMENTS", 100)  # this block counts as large
    monkeypatch.setattr(linear, "BLOCK_ROWS", 64)  # several row blocks and a short last one
    X, r = rng.normal(size=(1000, 6)), rng.normal(size=(1000, 3))
    bound = LinearLearner(lam=1e-2).bind(X)
    assert bound.X.dtype == np.float32
    model, predictions = bound.fit_predict(r)
    assert predictions.flags.c_contiguous and predictions.dtype == np.float64
    coef, fitted = _exact(X.astype(np.float32).astype(np.float64), r, 1e-2)
    np.testing.assert_allclose(model.coef, coef, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(predictions, fitted, rtol=1e-10, atol=1e-12)
    coef64, fitted64 = _exact(X, r, 1e-2)  # and within float32 rounding of the float64 fit
    np.testing.assert_allclose(predictions, fitted64, atol=1e-6 * np.abs(fitted64).max())


def test_a_small_block_stays_float64_and_exact(rng):
    X, r = rng.normal(size=(200, 4)), rng.normal(size=(200, 2))
    bound = LinearLearner(lam=1e-3).bind(X)
    assert bound.X.dtype == np.float64
    model, predictions = bound.fit_predict(r)
    coef, fitted = _exact(X, r, 1e-3)
    np.testing.assert_allclose(model.coef, coef, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(predictions, fitted, rtol=1e-12, atol=1e-13)


def test_a_block_given_in_float32_is_kept_as_given_and_fits_as_if_converted(monkeypatch, rng):
    """What a party builds for a large block (float32 rows) is bound without a float64 copy and
    fits to the same bits as the float64 rows converted here; ``predict_train`` recomputes the
    train predictions exactly."""
    monkeypatch.setattr(linear, "FLOAT32_ELEMENTS", 100)
    monkeypatch.setattr(linear, "BLOCK_ROWS", 64)
    X, r = rng.normal(size=(1000, 6)), rng.normal(size=(1000, 2))
    learner = LinearLearner(lam=1e-2)
    assert learner.stored_dtype(X.shape) == np.float32 and learner.stored_dtype((10, 6)) == np.float64
    assert LinearLearner(local_loss="l1").stored_dtype(X.shape) == np.float64
    X32 = X.astype(np.float32)
    bound = learner.bind(X32)
    assert bound.X is X32
    model, predictions = bound.fit_predict(r)
    model64, predictions64 = learner.bind(X).fit_predict(r)
    np.testing.assert_array_equal(model.coef, model64.coef)
    np.testing.assert_array_equal(predictions, predictions64)
    np.testing.assert_array_equal(bound.predict_train(model), predictions)
    X32[3, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        learner.bind(X32)


@pytest.mark.parametrize("local_loss", ["l2", "l1"])
def test_predict_train_repeats_the_fit_predictions(local_loss, rng):
    X, r = rng.normal(size=(200, 4)), rng.normal(size=(200, 2))
    bound = LinearLearner(local_loss=local_loss, irls_iterations=3).bind(X)
    model, predictions = bound.fit_predict(r)
    np.testing.assert_array_equal(bound.predict_train(model), predictions)


def test_a_plain_party_builds_a_large_block_in_float32_with_the_same_replies(monkeypatch, rng):
    """The party standardizes its training rows straight into the dtype its ridge keeps them in;
    the round's reply is the one of the float64 rows standardized and bound as before."""
    from securegal import messages as m
    from securegal.core.zscore import ZScore
    from securegal.data.tables import FeatureTable
    from securegal.parties.feature_party import FeatureParty
    from securegal.privacy.plain import PlainTrainer

    monkeypatch.setattr(linear, "FLOAT32_ELEMENTS", 100)
    monkeypatch.setattr(linear, "BLOCK_ROWS", 64)
    table = rng.normal(1.0, 2.0, size=(400, 7))
    train = np.sort(rng.choice(400, size=300, replace=False))
    party = FeatureParty("bob", FeatureTable(np.arange(400), table[:, 2:5]), lambda s: PlainTrainer(LinearLearner()),
                         label_owner="alice")
    party.handle(m.Envelope("s", 0, "alice", "bob", 0, m.Setup(train, 2, 3, "classification")))
    assert party.trainer._bound.X.dtype == np.float32
    r = rng.normal(size=(300, 2))
    reply = party.handle(m.Envelope("s", 1, "alice", "bob", 1, m.FitRequest(r)))
    rows = np.ascontiguousarray(table[train, 2:5])
    _, expected = LinearLearner().bind(ZScore.fit(rows)(rows)).fit_predict(r)
    np.testing.assert_array_equal(reply.predictions, expected)
