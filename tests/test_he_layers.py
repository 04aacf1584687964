import dataclasses

import numpy as np
import pytest
from scipy.signal import fftconvolve

from securegal.data.datasets import load_dataset
from securegal.errors import ConfigError, InsecureParameters, ProtocolError
from securegal.learners.linear import LinearLearner
from securegal.messages import EncryptedPayload, Setup
from securegal.privacy.plain import PlainTrainer
from securegal.privacy.he import wire
from securegal.privacy.he.layers import CkksResiduals, CkksTrainer, check_learner, ckks_trainers
from securegal.privacy.plan import PrivacyPlan
from securegal.run import train
from securegal.transcript import read_transcripts


@pytest.fixture(scope="module")
def channel():
    return CkksResiduals()


def _setup(channel, n, k, party="bob"):
    return Setup(train_ids=np.arange(n, dtype=np.int64), n_outputs=k, rounds=3, task="regression",
                 **channel.setup_fields(party))


def _close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_trainer_matches_plain_trainer(channel):
    rng = np.random.default_rng(0)
    n, k = 700, 3
    X, X_test = rng.normal(size=(n, 6)), rng.normal(size=(90, 6))
    setup = _setup(channel, n, k)
    enc, plain = CkksTrainer("bob", LinearLearner()), PlainTrainer(LinearLearner())
    enc.setup(X, setup)
    plain.setup(X, dataclasses.replace(setup, residuals="plain", he_context=b""))
    for t in (1, 2):
        r = rng.normal(size=(n, k))
        reply = enc.fit_round(t, channel.seal(r, t, "bob"))
        assert isinstance(reply, EncryptedPayload) and reply.meta["party"] == "bob"
        _close(channel.open(reply, t, "bob", (n, k)), plain.fit_round(t, r))
    preds = channel.open(enc.predict(X_test, 3), 0, "bob", (3, 90, k))
    want = plain.predict(X_test, 3)
    _close(preds[:2], want[:2])
    assert np.abs(preds[2]).max() < 1e-6  # round 3 was never fitted: encrypted zeros
    report = channel.report()["he"]
    assert report["security_bits"] == 128 and report["bytes_sent"] > 0 and report["bytes_received"] > 0
    assert enc.report()["he"]["bytes_received"] > 0


def test_zero_sum_residuals_travel_without_their_last_column(channel):
    """Cross-entropy residual rows sum to zero: the label owner encrypts K-1 columns (half the
    ciphertexts at K=2), the party derives the last column's model and predictions, and the
    reply, the test predictions and the plaintext fit agree as before."""
    rng = np.random.default_rng(4)
    n, k = 5000, 2  # n*K > 4096 slots: one vector per column
    X, X_test = rng.normal(size=(n, 8)), rng.normal(size=(60, 8))
    setup = _setup(channel, n, k)
    enc, plain = CkksTrainer("bob", LinearLearner()), PlainTrainer(LinearLearner())
    enc.setup(X, setup)
    plain.setup(X, dataclasses.replace(setup, residuals="plain", he_context=b""))
    a = rng.normal(size=n)
    r = np.stack([a, -a], axis=1)
    sealed = channel.seal(r, 1, "bob")
    assert sealed.meta["omitted"] == "last" and len(sealed.blobs) == 3  # 1 column x (2 chunks + its mean)
    reply = enc.fit_round(1, sealed)
    assert reply.meta["omitted"] == "last" and len(reply.blobs) == 2  # the reply leaves it out too
    _close(channel.open(reply, 1, "bob", (n, k)), plain.fit_round(1, r))
    general = rng.normal(size=(n, k))  # rows that do not sum to zero travel whole
    sealed = channel.seal(general, 2, "bob")
    assert "omitted" not in sealed.meta and len(sealed.blobs) == 6
    full = enc.fit_round(2, sealed)
    _close(channel.open(full, 2, "bob", (n, k)), plain.fit_round(2, general))
    short = wire.pack(enc.context, "predictions", "bob", 2, (n, k), reply.blobs, enc.smoother.layout, omitted=True)
    with pytest.raises(ProtocolError, match="leaves out column"):  # only where the residuals left it out
        channel.open(short, 2, "bob", (n, k))
    _close(channel.open(enc.predict(X_test, 2), 0, "bob", (2, 60, k)), plain.predict(X_test, 2))


def test_reply_for_another_party_or_round_is_refused(channel):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 2))
    enc = CkksTrainer("bob", LinearLearner())
    enc.setup(X, _setup(channel, 50, 1))
    r = rng.normal(size=(50, 1))
    with pytest.raises(ProtocolError, match="party"):
        enc.fit_round(1, channel.seal(r, 1, "carol"))
    reply = enc.fit_round(1, channel.seal(r, 1, "bob"))
    with pytest.raises(ProtocolError, match="round"):
        channel.open(reply, 2, "bob", (50, 1))
    with pytest.raises(ProtocolError, match="party"):
        channel.open(reply, 1, "carol", (50, 1))
    with pytest.raises(ProtocolError, match="expected CKKS"):
        enc.fit_round(2, r)


def test_trainer_refuses_plain_setup_and_secret_contexts(channel):
    X = np.zeros((10, 2))
    setup = _setup(channel, 10, 1)
    with pytest.raises(ProtocolError, match="plain"):
        CkksTrainer("bob", LinearLearner()).setup(X, dataclasses.replace(setup, residuals="plain"))
    with pytest.raises(InsecureParameters, match="secret key"):
        CkksTrainer("bob", LinearLearner()).setup(X, dataclasses.replace(setup, he_context=channel.secret.to_bytes()))


class _Tree:
    name = "gb"

    def fit(self, X, r):
        raise NotImplementedError


def test_learners_that_cannot_run_encrypted_are_refused_up_front():
    with pytest.raises(ConfigError, match="'gb' cannot run on CKKS"):
        check_learner(_Tree())
    with pytest.raises(ConfigError, match="local loss 'l1'"):
        ckks_trainers("bob", 1, LinearLearner(local_loss="l1"))
    with pytest.raises(ConfigError, match="local loss 'l1'"):
        train("diabetes", parties=3, rounds=1, plan=PrivacyPlan(residuals="ckks"), local_loss="l1")


def _sliding_correlation(v: np.ndarray, y: np.ndarray) -> float:
    """max over every window of len(y) consecutive values of |Pearson correlation with y|."""
    n = len(y)
    if len(v) < n:
        return 0.0
    yc = y - y.mean()
    cov = fftconvolve(v, yc[::-1], mode="valid")
    c1, c2 = np.concatenate([[0.0], np.cumsum(v)]), np.concatenate([[0.0], np.cumsum(v * v)])
    s1, s2 = c1[n:] - c1[:-n], c2[n:] - c2[:-n]
    var = np.maximum(s2 - s1 * s1 / n, 0.0)
    ok = var > 1e-9 * n
    corr = np.abs(cov[ok]) / np.sqrt(var[ok] * (yc @ yc))
    return float(corr.max(initial=0.0))


def _max_correlation_in_bytes(raw: bytes, y: np.ndarray, max_stride: int = 4) -> float:
    """Every float64/float32 reading of ``raw`` at every byte alignment and every start, with
    strides up to ``max_stride`` (interleaved columns): the best label correlation found."""
    best = 0.0
    with np.errstate(all="ignore"):
        for dtype in (np.float64, np.float32):
            size = np.dtype(dtype).itemsize
            for offset in range(size):
                flat = np.frombuffer(raw[offset:offset + (len(raw) - offset) // size * size], dtype=dtype)
                flat = flat.astype(np.float64)
                flat[~np.isfinite(flat) | (np.abs(flat) > 1e6)] = 0.0
                for stride in range(1, max_stride + 1):
                    for phase in range(stride):
                        best = max(best, _sliding_correlation(flat[phase::stride], y))
    return best


def test_feature_party_transcript_holds_nothing_correlated_with_labels(tmp_path):
    m_plain = train("breast_cancer", parties=3, rounds=2, seed=0, out=tmp_path / "plain", ground_truth=True)
    m_ckks = train("breast_cancer", parties=3, rounds=2, seed=0, out=tmp_path / "ckks",
                   plan=PrivacyPlan(residuals="ckks"), ground_truth=True)
    assert m_ckks["gal"]["per_round"] == m_plain["gal"]["per_round"]
    assert m_ckks["he"]["poly_modulus_degree"] == 8192 and m_ckks["residuals"] == "ckks"
    for name, expect_leak in (("plain", True), ("ckks", False)):
        view = read_transcripts(tmp_path / name)["party1"]
        y = np.load(tmp_path / name / "ground_truth.npz")["labels"].astype(np.float64)  # in Setup's row order
        fit_requests = list(view.select("fit_request", "received"))
        assert len(fit_requests) == 2
        worst = max(_max_correlation_in_bytes(rec.raw, y) for rec in view.records
                    if rec.kind in ("fit_request", "fit_reply"))
        if expect_leak:  # the same reader finds the labels in plain GAL: the check is not vacuous
            assert worst > 0.9
        else:
            assert worst < 0.3
            assert not view.arrays("fit_request", "received")


class _RecordingChannel(CkksResiduals):
    """Keeps what the label owner decrypted, to check none of it reaches the producing party."""

    def __init__(self):
        super().__init__()
        self.decrypted: dict[str, list[np.ndarray]] = {}

    def open(self, payload, round, party, shape):
        values = super().open(payload, round, party, shape)
        self.decrypted.setdefault(party, []).append(values)
        return values


def test_no_decryption_goes_back_to_the_party_that_computed_it(tmp_path):
    channel = _RecordingChannel()
    train("wine", parties=3, rounds=3, seed=0, out=tmp_path, plan=PrivacyPlan(residuals="ckks"), channel=channel)
    view = read_transcripts(tmp_path)["party1"]
    received = [rec for rec in view.records if rec.direction == "received"]
    assert {rec.kind for rec in received} <= {"psi_request", "psi_selection", "setup", "fit_request",
                                              "predict_request", "finish"}
    assert all(isinstance(rec.payload, EncryptedPayload) for rec in received if rec.kind == "fit_request")
    blob = b"".join(rec.raw for rec in received)
    values = np.concatenate([v.ravel() for v in channel.decrypted["party1"]])
    assert values.size > 100
    # ~200 decrypted values as float64 (a chance 8-byte match in a few MB of ciphertext is ~1e-12;
    # 4-byte float32 patterns would match random bytes by chance)
    for v in values[:: max(1, values.size // 200)]:
        assert np.float64(v).tobytes() not in blob


@pytest.mark.parametrize("shift", [0.0, 3.0])
def test_centred_residuals_with_their_mean_skip_the_intercept_fold(shift):
    """Each residual column travels centred with one ciphertext of its mean: the party's model
    is A (r - m) + m A 1. On z-scored columns the intercept row of A is constant, so its block
    needs no stage 1 (no fold over the slots: 12 rotations fewer); on shifted columns every
    block still runs and adds its m A 1 term. Either way the reply equals the plaintext fit."""
    from securegal.privacy.he.params import RESIDUAL_CKKS_PARAMS

    channel = CkksResiduals(RESIDUAL_CKKS_PARAMS)
    rng = np.random.default_rng(9)
    n, k = 20000, 1
    X = rng.normal(size=(n, 8))
    X = (X - X.mean(axis=0)) / X.std(axis=0) + shift
    X_test = rng.normal(size=(70, 8))
    setup = _setup(channel, n, k)
    enc, plain = CkksTrainer("bob", LinearLearner()), PlainTrainer(LinearLearner())
    enc.setup(X, setup)
    plain.setup(X, dataclasses.replace(setup, residuals="plain", he_context=b""))
    r = rng.normal(0.7, 1.0, size=(n, k))
    sealed = channel.seal(r, 1, "bob")
    assert enc.smoother.layout.pairs and enc.smoother.layout.chunks == 3  # 20000 values, two per slot
    assert sealed.meta["mean"] == "separate" and len(sealed.blobs) == 3 + 1  # 3 chunks and the mean
    got = channel.open(enc.fit_round(1, sealed), 1, "bob", (n, k))
    # feature parties z-score their columns (the 1e-6 contract); shifted columns make every
    # block's model carry the residual mean coherently, ~1e-6 on this chain's 2^33 operators
    tolerance = 1e-6 if shift == 0.0 else 1e-5
    assert np.abs(got - plain.fit_round(1, r)).max() < tolerance
    sm = enc.smoother
    assert [b.constant for b in sm.parts] == [False, shift == 0.0]
    assert sm.last_rotations == sm.rotations_per_column(centred=True)
    # the intercept block's fold over the slots (12 rotations) and its conjugation
    assert sm.rotations_per_column() - sm.rotations_per_column(centred=True) == (13 if shift == 0.0 else 0)
    assert np.abs(channel.open(enc.predict(X_test, 1), 0, "bob", (1, 70, k)) - plain.predict(X_test, 1)).max() < tolerance
    stripped = dataclasses.replace(sealed, meta={key: v for key, v in sealed.meta.items() if key != "mean"})
    with pytest.raises(ProtocolError, match="ciphertexts, expected"):
        enc.fit_round(1, stripped)
    with pytest.raises(ProtocolError, match="sends means"):  # where means are not accepted (CKKS+DP)
        wire.unpack(sealed, enc.context, "residuals", "bob", 1, (n, k), 0, sm.layout, allow_mean=False)
