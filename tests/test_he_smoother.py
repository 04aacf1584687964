import numpy as np
import pytest

from .he_fixtures import decrypt_outputs, encrypt_residuals
from securegal.errors import ProtocolError
from securegal.learners.base import SmootherOperator
from securegal.learners.linear import LinearLearner
from securegal.privacy.he.smoother import EncryptedSmoother


def _close(got, want):
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale)


# packed (K columns in one ciphertext, repeated input), one column, columns over several chunks,
# packed with a model wider than the input period, and a test set needing two chunks
@pytest.mark.parametrize("n,d,k,n_test", [(200, 5, 1, 107), (300, 7, 3, 157), (5000, 3, 2, 2507),
                                          (40, 20, 2, 30), (1500, 4, 2, 2500)])
def test_fit_and_predict_match_plaintext(secret_context, public_context, n, d, k, n_test):
    rng = np.random.default_rng(n)
    X, r = rng.normal(size=(n, d)), rng.normal(size=(n, k))
    op = LinearLearner(lam=1e-2).operator(X)
    sm = EncryptedSmoother(public_context, op, outputs=k)
    assert sm.layout.packed == (k > 1 and n * k <= public_context.slots)
    rd = sm.fit(encrypt_residuals(secret_context, public_context, r, sm.layout))
    z_plain = op.A @ r
    _close(decrypt_outputs(secret_context, rd.f, sm.layout), op.phi_train @ z_plain)
    # the plaintext learner's own fit agrees too (same ridge)
    _close(decrypt_outputs(secret_context, rd.f, sm.layout), LinearLearner(lam=1e-2).fit(X, r).predict(X))
    X_test = rng.normal(size=(n_test, d))
    (per_round,) = sm.predict([rd.z], X_test)
    got = decrypt_outputs(secret_context, per_round, sm.layout.with_rows(n_test))
    _close(got, op.feature_map(X_test) @ z_plain)


def test_model_ciphertext_is_replicated_z(secret_context, public_context):
    rng = np.random.default_rng(1)
    X, r = rng.normal(size=(100, 3)), rng.normal(size=(100, 1))
    op = LinearLearner().operator(X)
    sm = EncryptedSmoother(public_context, op)
    rd = sm.fit(encrypt_residuals(secret_context, public_context, r, sm.layout))
    slots = secret_context.decrypt([rd.z[0][0]], 16) / np.sqrt(100)
    _close(slots, np.tile((op.A @ r)[:, 0], 4))  # p=4, replicated every 4 slots


def test_rotations_do_not_grow_with_n(secret_context, public_context):
    rng = np.random.default_rng(2)
    counts = {}
    P, slots = 8, public_context.slots
    for n in (1000, 9000, 33000, 50000):
        X, r = rng.normal(size=(n, 7)), rng.normal(size=(n, 1))
        sm = EncryptedSmoother(public_context, LinearLearner().operator(X))
        sm.fit(encrypt_residuals(secret_context, public_context, r, sm.layout))
        counts[n] = sm.last_rotations
        assert sm.last_rotations == sm.rotations_per_column()
        assert sm.last_rotations <= 2 * (P - 1) + int(np.log2(slots // P))
    # from P chunks on, the count is exactly 2(P-1) + log2(slots/P), whatever n: never O(n)
    assert counts[33000] == counts[50000] == 2 * (P - 1) + int(np.log2(slots // P))
    # a one-ciphertext input repeats with period 1024, so its fold needs log2(1024/8) = 7 rotations
    assert counts[1000] < counts[9000]


def test_wrong_number_of_chunks_or_level_is_refused(secret_context, public_context):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(5000, 2))
    sm = EncryptedSmoother(public_context, LinearLearner().operator(X))
    cols = encrypt_residuals(secret_context, public_context, rng.normal(size=(5000, 1)), sm.layout)
    with pytest.raises(ProtocolError, match="expected 2"):
        sm.fit([cols[0][:1]])
    rd = sm.fit(cols)
    with pytest.raises(ProtocolError, match="top level"):
        sm.fit([list(rd.f[0])])


def test_missing_rotation_keys_refused(secret_context):
    """The context is the label owner's: a ProtocolError (reply code "protocol"), not a ValueError
    that the party answered as an internal error with a traceback (code review M1)."""
    from securegal.errors import reply_code

    pc = secret_context.public_context(steps=[1])
    X = np.random.default_rng(4).normal(size=(50, 3))
    with pytest.raises(ProtocolError, match="lacks rotation keys") as info:
        EncryptedSmoother(pc, LinearLearner().operator(X))
    assert reply_code(info.value) == "protocol"


def test_bad_operator_refused(public_context):
    with pytest.raises(ValueError, match="do not match"):
        EncryptedSmoother(public_context, SmootherOperator(np.ones((3, 10)), np.ones((10, 2)), lambda X: X))
    with pytest.raises(TypeError):
        EncryptedSmoother(object(), SmootherOperator(np.ones((3, 10)), np.ones((10, 3)), lambda X: X))


@pytest.mark.slow
def test_production_size_matches_plaintext(secret_context, public_context):
    rng = np.random.default_rng(5)
    n, d = 65536, 15
    X, r = rng.normal(size=(n, d)), rng.normal(size=(n, 1))
    op = LinearLearner().operator(X)
    sm = EncryptedSmoother(public_context, op)
    rd = sm.fit(encrypt_residuals(secret_context, public_context, r, sm.layout))
    _close(decrypt_outputs(secret_context, rd.f, sm.layout), op.phi_train @ (op.A @ r))


def test_model_cut_into_power_of_two_blocks_matches_plaintext(secret_context, public_context):
    """p = 9 (8 columns and the intercept) over 10 chunks runs as blocks of 8 and 1: 18 instead
    of 32 plaintext products per chunk, and the same fit and predictions."""
    rng = np.random.default_rng(6)
    n, d = 40000, 8
    X, r = rng.normal(1.0, 2.0, size=(n, d)), rng.normal(size=(n, 1))
    X = (X - X.mean(axis=0)) / X.std(axis=0)  # z-scored, as a feature party's columns are
    op = LinearLearner().operator(X)
    sm = EncryptedSmoother(public_context, op)
    assert [(b.lo, b.hi) for b in sm.parts] == [(0, 8), (8, 9)]
    rd = sm.fit(encrypt_residuals(secret_context, public_context, r, sm.layout))
    assert sm.last_rotations == sm.rotations_per_column()
    _close(decrypt_outputs(secret_context, rd.f, sm.layout), op.phi_train @ (op.A @ r))
    X_test = rng.normal(size=(5000, d))
    (per_round,) = sm.predict([rd.z], X_test)
    got = decrypt_outputs(secret_context, per_round, sm.layout.with_rows(5000))
    _close(got, op.feature_map(X_test) @ (op.A @ r))
    # the CKKS-equals-plain contract (1e-6) holds at this layout with room to spare (~5e-8)
    assert np.abs(got - op.feature_map(X_test) @ (op.A @ r)).max() < 1e-6


def test_derived_column_predictions_are_minus_the_others(secret_context, public_context):
    """Residual rows summing to zero travel without their last column; the party derives that
    column's model, train and test predictions by ciphertext additions (no rotations)."""
    rng = np.random.default_rng(8)
    n, d, n_test = 6000, 5, 2000
    X, r = rng.normal(size=(n, d)), rng.normal(size=(n, 2))
    r[:, 1] = -r[:, 0]
    op = LinearLearner().operator(X)
    sm = EncryptedSmoother(public_context, op, outputs=2)
    vectors = encrypt_residuals(secret_context, public_context, r, sm.layout)
    rd = sm.fit(vectors[:1], omitted_last=True)
    assert rd.derived_last and len(rd.z) == 2
    X_test = rng.normal(size=(n_test, d))
    sm.predict([rd.z[:1]], X_test)
    first_only = sm.last_rotations
    (per_round,) = sm.predict([rd.z], X_test, [rd.derived_last])
    assert sm.last_rotations == first_only  # the derived column costs no rotation
    _close(decrypt_outputs(secret_context, per_round, sm.layout.with_rows(n_test)), op.feature_map(X_test) @ op.A @ r)


@pytest.mark.parametrize("n,d,k,n_test", [(300, 7, 3, 157), (5000, 3, 2, 2507), (40000, 8, 1, 5000)])
def test_one_rescaling_prime_meets_the_contract(residual_secret_context, residual_public_context, n, d, k, n_test):
    """The chain without feature-DP (60, 60, 60): stage 1 is not rescaled, stage 2 rescales once;
    fit and predictions equal plaintext within the 1e-6 CKKS-equals-plain contract, packed, in
    one ciphertext and over 10 chunks (p = 9 cut into 8 + 1)."""
    secret, public = residual_secret_context, residual_public_context
    rng = np.random.default_rng(n + 1)
    X, r = rng.normal(1.0, 2.0, size=(n, d)), rng.normal(size=(n, k))
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    op = LinearLearner().operator(X)
    sm = EncryptedSmoother(public, op, outputs=k)
    rd = sm.fit(encrypt_residuals(secret, public, r, sm.layout))
    assert all(public.level_of(ct) == 1 for chunks in rd.f for ct in chunks)  # the last level
    assert np.abs(decrypt_outputs(secret, rd.f, sm.layout) - op.phi_train @ (op.A @ r)).max() < 1e-6
    X_test = rng.normal(size=(n_test, d))
    (per_round,) = sm.predict([rd.z], X_test)
    got = decrypt_outputs(secret, per_round, sm.layout.with_rows(n_test))
    assert np.abs(got - op.feature_map(X_test) @ (op.A @ r)).max() < 1e-6
