"""DP on CKKS residuals (securegal/privacy/hedp.py): same accounting as the plain DP trainer,
homomorphic noise at the calibrated level, refusals before data moves, the prediction bound."""
import dataclasses
import math

import numpy as np
import pytest

from securegal import messages as m
from securegal.errors import BudgetExceeded, ConfigError, ProtocolError
from securegal.privacy.dp.mechanisms import clip_rows
from securegal.privacy.dp.trainer import DPConfig, DPTrainer
from securegal.privacy.he.layers import CkksResiduals
from securegal.privacy.hedp import CkksDPTrainer, ClippedCkksResiduals, circuit_error, circuit_sensitivity, \
    prediction_bound
from securegal.privacy.plan import FeatureDP, PrivacyPlan
from securegal.run import train

pytestmark = pytest.mark.filterwarnings("ignore::securegal.privacy.dp.mechanisms.InsecureNoiseWarning")

PARTY = "party1"


def _setup(channel, n, k, rounds):
    fields = dict(channel.setup_fields(PARTY))
    fields.setdefault("options", {})
    return m.Setup(train_ids=np.arange(n, dtype=np.int64), n_outputs=k, rounds=rounds, task="classification", **fields)


def _data(n=400, d=20, k=3, rounds=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    rs = [rng.normal(size=(n, k)) for _ in range(rounds)]
    return X, rs


@pytest.fixture(scope="module")
def channel():
    return ClippedCkksResiduals(1.0)


def test_accountant_matches_the_plain_dp_trainer(channel):
    """The same training releases as the plaintext trainer, a little more noise on each (FLOOD_SHARE
    of the budget goes to the test-prediction replies' flood), and the planned replies only."""
    from securegal.privacy.hedp import FLOOD_SHARE, PREDICT_REPLIES

    X, rs = _data(n=200, d=5, k=2, rounds=3)
    config = DPConfig(3.0, 1e-5, seed=1)
    enc, plain = CkksDPTrainer(PARTY, config), DPTrainer(config)
    enc.setup(X, _setup(channel, 200, 2, 3))
    plain.setup(X, dataclasses.replace(_setup(channel, 200, 2, 3), residuals="plain", he_context=b""))
    for t, r in enumerate(rs, start=1):
        enc.fit_round(t, channel.seal(r, t, PARTY))
        plain.fit_round(t, r)
    a, b = enc.report(), plain.report()
    assert [(r["round"], r["what"]) for r in a["releases"]] == [(r["round"], r["what"]) for r in b["releases"]]
    assert [r["what"] for r in a["releases"]] == ["gram", "stat", "pred", "stat", "pred", "stat", "pred"]
    za, zb = a["noise_multiplier"], b["noise_multiplier"]
    for kind in ("gram", "stat", "pred"):  # the training releases get 1 - FLOOD_SHARE of the RDP
        assert za[kind] / zb[kind] == pytest.approx(1 / math.sqrt(1 - FLOOD_SHARE), rel=0.02)
    X_test = np.random.default_rng(1).normal(size=(50, 5))
    for _ in range(PREDICT_REPLIES):
        enc.predict(X_test, 3)
    assert enc.report()["epsilon_spent"] <= 3.0
    with pytest.raises(BudgetExceeded, match="flood"):
        enc.predict(X_test, 3)


def test_homomorphic_noise_matches_the_calibrated_std(channel):
    """Decrypting on the label-owner side: train predictions minus the noise-free smoother
    output have the calibrated pred std; test predictions reveal G~^-1 e with the stat std."""
    n, d, k, rounds = 400, 20, 3, 3
    X, rs = _data(n, d, k, rounds)
    X_test = np.random.default_rng(9).normal(size=(300, d))
    trainer = CkksDPTrainer(PARTY, DPConfig(3.0, 1e-5, seed=2))
    trainer.setup(X, _setup(channel, n, k, rounds))
    pred_noise = []
    for t, r in enumerate(rs, start=1):
        f = channel.open(trainer.fit_round(t, channel.seal(r, t, PARTY)), t, PARTY, (n, k))
        phi, gram = trainer.ridge.feature_map(d)(X), trainer._gram
        pred_noise.append(f - phi @ np.linalg.solve(gram, phi.T @ clip_rows(r, 1.0)))
    pred_noise = np.concatenate(pred_noise).ravel()
    sigma_f = trainer.noise_std["pred"]
    assert abs(pred_noise.mean()) < 4 * sigma_f / math.sqrt(pred_noise.size)
    assert pred_noise.std() == pytest.approx(sigma_f, rel=0.06)  # 3600 draws: sd of the estimate ~1.2%

    test = channel.open(trainer.predict(X_test, rounds), 0, PARTY, (rounds, len(X_test), k))
    phi_t = trainer.ridge.feature_map(d)(X_test)
    stat_noise = []
    for t, r in enumerate(rs):
        clean = phi_t @ np.linalg.solve(trainer._gram, phi.T @ clip_rows(r, 1.0))
        offset = np.linalg.lstsq(phi_t, test[t] - clean, rcond=None)[0]  # = G~^-1 e_t
        stat_noise.append(trainer._gram @ offset)
    stat_noise = np.concatenate(stat_noise).ravel()  # 3 rounds x 21 x 3 = 189 draws: sd ~5%
    assert stat_noise.std() == pytest.approx(trainer.noise_std["stat"], rel=0.25)
    assert trainer.noise_std["stat"] == pytest.approx(
        trainer.accountant.noise_multipliers["stat"] * 2 * trainer.ridge.feature_clip * 1.0)


def test_budget_is_enforced_and_never_overspent(channel):
    X, rs = _data(n=200, d=5, k=2, rounds=3)
    trainer = CkksDPTrainer(PARTY, DPConfig(2.0, 1e-5, seed=3))
    trainer.setup(X, _setup(channel, 200, 2, 2))  # planned for 2 rounds
    for t in (1, 2):
        trainer.fit_round(t, channel.seal(rs[t - 1], t, PARTY))
    before = trainer.accountant.releases
    with pytest.raises(BudgetExceeded):
        trainer.fit_round(3, channel.seal(rs[2], 3, PARTY))
    assert trainer.accountant.releases == before and 3 not in trainer.models
    assert trainer.accountant.epsilon_spent <= 2.0


def test_too_small_a_budget_is_refused_before_data_moves(tmp_path):
    with pytest.raises(ConfigError, match="too small"):
        train("wine", parties=4, rounds=3, out=tmp_path / "run", weighting="uniform", eta=1.0,
              plan=PrivacyPlan(residuals="ckks", feature_dp=FeatureDP(epsilon=1e-6)))
    assert not (tmp_path / "run").exists()


def test_party_refuses_a_label_owner_that_declares_no_clip():
    X, _ = _data(n=50, d=3, k=1, rounds=1)
    trainer = CkksDPTrainer(PARTY, DPConfig(3.0, 1e-5))
    with pytest.raises(ProtocolError, match="residual clip"):
        trainer.setup(X, _setup(CkksResiduals(), 50, 1, 1))
    with pytest.raises(ProtocolError, match="plain"):
        trainer.setup(X, m.Setup(train_ids=np.arange(50, dtype=np.int64), n_outputs=1, rounds=1,
                                 task="classification", residuals="plain", he_context=b"", options={}))


def test_prediction_bound_holds_on_random_neighbours():
    """||Phi G^-1 Phi^T r - Phi' G^-1 Phi'^T r||_F <= the bound, for a fixed (noisy) G."""
    rng = np.random.default_rng(5)
    B, C, c, n, d, k = 0.5, 1.0, 0.1, 60, 4, 2
    worst = 0.0
    for _ in range(200):
        x = clip_rows(rng.normal(size=(n, d)), B)
        phi = np.hstack([x, np.full((n, 1), c)])
        phi2 = phi.copy()
        phi2[rng.integers(n), :d] = clip_rows(rng.normal(size=(1, d)) * 10, B)[0]
        r = clip_rows(rng.normal(size=(n, k)) * 10, C)
        E = rng.normal(size=(d + 1, d + 1))
        gram = phi.T @ phi + 0.05 * (E + E.T)
        w, V = np.linalg.eigh(gram)
        gram = (V * np.maximum(w, 0)) @ V.T + 0.5 * np.eye(d + 1)
        diff = phi @ np.linalg.solve(gram, phi.T @ r) - phi2 @ np.linalg.solve(gram, phi2.T @ r)
        bound = prediction_bound(B, C, c, n, float(np.linalg.eigvalsh(gram)[0]))
        worst = max(worst, np.linalg.norm(diff) / bound)
    assert 0 < worst <= 1.0


def test_cli_refuses_label_dp_with_ckks(tmp_path, capsys):
    from securegal.cli import main

    out = tmp_path / "run"
    assert main(["train", "--dataset", "wine", "--residuals", "ckks", "--label-epsilon", "2",
                 "--out", str(out), "--no-progress"]) != 0
    assert "only ever see ciphertexts" in capsys.readouterr().err and not out.exists()


def test_without_feedback_the_party_returns_encrypted_zeros_and_spends_nothing_on_them(channel):
    from securegal.privacy.dp.trainer import NO_FEEDBACK_SHARES

    X, rs = _data(n=100, d=4, k=2, rounds=2)
    trainer = CkksDPTrainer(PARTY, DPConfig(3.0, 1e-5, shares=dict(NO_FEEDBACK_SHARES), seed=4))
    trainer.setup(X, _setup(channel, 100, 2, 2))
    for t, r in enumerate(rs, start=1):
        f = channel.open(trainer.fit_round(t, channel.seal(r, t, PARTY)), t, PARTY, (100, 2))
        assert np.abs(f).max() < 1e-4  # CKKS encryptions of zero
    assert [r.what for r in trainer.accountant.releases] == ["gram", "stat", "stat"]
    assert "pred" not in trainer.noise_std and trainer.accountant.epsilon_spent <= 3.0
    test = channel.open(trainer.predict(X[:10], 2), 0, PARTY, (2, 10, 2))
    assert np.abs(test).max() > 1e-3  # the DP round models still predict


def test_cli_feedback_flag_needs_epsilon(tmp_path, capsys):
    from securegal.cli import main

    assert main(["train", "--dataset", "wine", "--dp-feedback", "off", "--out", str(tmp_path / "r"),
                 "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "feedback (--dp-feedback) only applies to feature-DP (--epsilon" in err


def test_outputs_are_flooded_with_fresh_noise_in_every_reply(channel):
    """Circuit privacy: every reply's slots carry fresh flooding noise, the accounted ``flood``
    release's (two replies for the same rows differ by sqrt(2) times its std)."""
    from securegal.privacy.dp.trainer import NO_FEEDBACK_SHARES
    from securegal.privacy.hedp import FLOOD_STD

    n, d, k = 300, 5, 2
    X, rs = _data(n, d, k, rounds=1)
    trainer = CkksDPTrainer(PARTY, DPConfig(3.0, 1e-5, shares=dict(NO_FEEDBACK_SHARES), seed=5))
    trainer.setup(X, _setup(channel, n, k, 1))
    trainer.fit_round(1, channel.seal(rs[0], 1, PARTY))
    X_test = np.random.default_rng(3).normal(size=(1000, d))
    payload = trainer.predict(X_test, 1)
    assert 0 < payload.nbytes <= trainer.reply_bytes(1000, 1)  # the bound checked before any work
    flood = trainer.noise_std["flood"]
    a, b = (channel.open(p, 0, PARTY, (1, 1000, k)) for p in (payload, trainer.predict(X_test, 1)))
    diff = (a - b).ravel()
    assert diff.std() == pytest.approx(math.sqrt(2) * flood, rel=0.05)  # 2000 draws: sd ~1.6%
    z = trainer.accountant.noise_multipliers["flood"]
    B = trainer.ridge.feature_clip
    assert flood == max(FLOOD_STD, z * circuit_sensitivity(4096, 1, circuit_error(B, n)))  # 2000 values: one ciphertext
    assert "flood" in trainer.report()["mechanism"]["circuit_privacy"]


def test_ledger_records_the_data_independent_prediction_sensitivity_the_mechanism_uses(channel):
    """The ``pred`` release's sensitivity in the table's ledger is the bound the noise is scaled
    by: ``Delta_f`` with the public ridge floor (known at setup), not the plaintext ``2 C_f``."""
    from securegal.privacy.dp.ledger import Ledger
    from securegal.privacy.dp.mechanisms import gram_sensitivity

    n, d, k = 200, 5, 2
    X, rs = _data(n=n, d=d, k=k, rounds=2)
    config = DPConfig(3.0, 1e-5, seed=4)
    trainer = CkksDPTrainer(PARTY, config)
    trainer.ledger, trainer.session = Ledger("t", config.budget), "s1"
    trainer.setup(X, _setup(channel, n, k, 2))
    z = trainer.accountant.noise_multipliers
    B = trainer.ridge.feature_clip
    assert B == config.for_rows(n).feature_clip == pytest.approx(math.sqrt(n) / 20)  # the plaintext rule
    floor = config.lam * n + z["gram"] * gram_sensitivity(B, config.intercept) * math.sqrt(d + 1)
    expected = prediction_bound(B, 1.0, config.intercept, n, floor) \
        + circuit_sensitivity(4096, 1, circuit_error(B, n))  # the circuit's error: 600 values fit one ciphertext
    recorded = {e.release.what: e.release.sensitivity for e in trainer.ledger.entries}
    assert recorded["pred"] == pytest.approx(expected) and recorded["pred"] != 2 * config.prediction_clip
    assert trainer.noise_std["pred"] == pytest.approx(z["pred"] * recorded["pred"])
    trainer.fit_round(1, channel.seal(rs[0], 1, PARTY))
    # the bound holds whatever the data: the floor is at most the noisy Gram's smallest eigenvalue
    assert floor <= np.linalg.eigvalsh(trainer._gram)[0] * (1 + 1e-9)
    mechanism = trainer.report()["mechanism"]
    assert mechanism["prediction_sensitivity"] == pytest.approx(expected)
    assert mechanism["feature_clip"] == B and mechanism["feature_clip_by"].startswith("training rows")
    # one of two rounds and one of the planned test-prediction replies: the session settles to
    # exactly those releases, each with the sensitivity its reservation recorded
    trainer.predict(X[:10], 1)
    assert trainer.ledger.settle("s1", trainer.accountant.releases, "finished") > 0
    assert trainer.ledger.epsilon_spent == pytest.approx(trainer.accountant.epsilon_spent, rel=1e-9)
    kept = [e.release for i, e in enumerate(trainer.ledger.entries) if not trainer.ledger.returned(i)]
    assert sorted((x.what, x.steps) for x in kept) == [("flood", 1), ("gram", 1), ("pred", 1), ("stat", 1)]
    assert {x.what: x.sensitivity for x in kept}["pred"] == pytest.approx(expected)


def _all_slots(channel, payload, kind, round, shape):
    """Every slot of every ciphertext of a reply, decrypted as complex numbers (what the key
    holder can read, not only the slots the layout uses)."""
    import tenseal.sealapi as sealapi
    from securegal.privacy.he import wire

    secret = channel.secret
    vectors = wire.unpack(payload, secret, kind, PARTY, round, shape, len(secret.levels) - 1, channel._layouts[PARTY])
    out = []
    for v in vectors:
        for ct in v:
            pt = sealapi.Plaintext()
            secret._decryptor.decrypt(ct, pt)
            out.append(np.asarray(secret.encoder.decode_complex(pt)))
    return np.concatenate(out)


def test_every_slot_real_and_imaginary_is_noised_and_the_circuit_error_is_within_its_bound(channel):
    """Circuit privacy over the whole decryption: the slots no value uses and the imaginary
    parts carry the flood too (before, they held the bare circuit error, ~1e-8); train
    predictions carry the DP noise there; the circuit's own error is far below its bound E(B)."""
    from securegal.privacy.dp.trainer import NO_FEEDBACK_SHARES
    from securegal.privacy.hedp import FLOOD_STD

    n, d, k = 300, 6, 2
    X, rs = _data(n, d, k, rounds=1)
    X_test = np.random.default_rng(4).normal(size=(500, d))
    trainer = CkksDPTrainer(PARTY, DPConfig(3.0, 1e-5, shares=dict(NO_FEEDBACK_SHARES), seed=6))
    trainer.setup(X, _setup(channel, n, k, 1))
    trainer.fit_round(1, channel.seal(rs[0], 1, PARTY))
    a, b = (_all_slots(channel, trainer.predict(X_test, 1), "test_predictions", 0, (1, 500, k)) for _ in range(2))
    flood, used = trainer.noise_std["flood"], 500 * k
    assert flood >= FLOOD_STD
    for part in (np.real, np.imag):
        unused = part(a[used:])  # 3096 slots: std estimate within ~2.5%
        assert unused.std() == pytest.approx(flood, rel=0.08) and abs(unused.mean()) < 4 * flood / 50
        assert part(a - b).std() == pytest.approx(np.sqrt(2) * flood, rel=0.06)  # fresh in every reply
    assert np.imag(a[:used]).std() == pytest.approx(flood, rel=0.08)

    # the error the circuit leaves, without any noise: the smoother's raw test predictions
    model = trainer.models[1][0]
    raw = trainer.smoother.predict([model], X_test)[0]
    slots = np.concatenate([channel.secret.encoder.decode_complex(_decrypt(channel, ct)) for v in raw for ct in v])
    clean = trainer.ridge.feature_map(d)(X_test) @ np.linalg.solve(
        trainer._gram, trainer.ridge.feature_map(d)(X).T @ clip_rows(rs[0], 1.0))
    exact = np.zeros(slots.size, dtype=np.complex128)
    exact[:used] = clean.T.ravel()  # packed layout: output columns one after another
    error = np.abs(np.r_[np.real(slots - exact), np.imag(slots - exact)]).max()
    # fresh keys and encryption noise each run: in this configuration (n = 300, d = 6) the max over
    # 8192 slot parts ranged 2^-26.6 to just above 2^-24 in about 170 runs, and the bound here,
    # E(B = 0.87, n = 300) = 2^-19, keeps a margin of 2^2.4 or more everywhere measured: E / 4
    bound = circuit_error(trainer.ridge.feature_clip, n)
    assert error <= bound / 4, (error, bound)

    feedback = CkksDPTrainer(PARTY, DPConfig(3.0, 1e-5, seed=7))
    feedback.setup(X, _setup(channel, n, k, 1))
    reply = _all_slots(channel, feedback.fit_round(1, channel.seal(rs[0], 1, PARTY)), "predictions", 1, (n, k))
    sigma = feedback.noise_std["pred"]
    for values in (np.real(reply[n * k:]), np.imag(reply)):
        assert values.std() == pytest.approx(sigma, rel=0.08)


def test_the_circuit_error_bound_grows_with_the_clip_and_shrinks_with_the_rows(channel):
    """E(B, n) is CIRCUIT_ERROR up to B = 0.5 and 100 rows, linear in B above the clip, 1 / sqrt(n)
    above 100 rows down to 2^-3 of it; a CKKS+DP party scales its flood and its pred sensitivity
    by its own B and n."""
    from securegal.privacy.dp.mechanisms import gram_sensitivity
    from securegal.privacy.hedp import CIRCUIT_ERROR, FLOOD_STD

    E = CIRCUIT_ERROR
    assert circuit_error(0.25, 20) == circuit_error(0.5, 100) == E
    assert circuit_error(1.0, 50) == 2 * E and circuit_error(2.0, 1) == 4 * E
    assert circuit_error(0.5, 400) == pytest.approx(E / 2) and circuit_error(2.0, 1600) == pytest.approx(E)
    assert circuit_error(0.5, 6400) == circuit_error(0.5, 10**7) == pytest.approx(E / 8)
    assert circuit_sensitivity(4096, 3, circuit_error(2.0, 50)) == pytest.approx(
        4 * circuit_sensitivity(4096, 3, circuit_error(0.5, 50)))
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="feature_clip"):
            circuit_error(bad, 100)
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="n_rows"):
            circuit_error(0.5, bad)

    n, d, k = 200, 3, 1
    X, rs = _data(n, d, k, rounds=1)
    small, large = (CkksDPTrainer(PARTY, DPConfig(3.0, 1e-5, feature_clip=b, seed=8)) for b in (0.5, 2.0))
    for trainer in (small, large):
        trainer.setup(X, _setup(channel, n, k, 1))
    z_small, z_large = small.accountant.noise_multipliers, large.accountant.noise_multipliers
    assert z_small == pytest.approx(z_large)  # the same budget plan: only the sensitivities differ
    per_ct = {t: t.noise_std["flood_per_ciphertext"] for t in (small, large)}
    assert per_ct[large] == pytest.approx(4 * per_ct[small])
    for trainer, B in ((small, 0.5), (large, 2.0)):  # pred: the ridge bound at B plus the circuit's E(B, n)
        config = trainer.config
        floor = config.lam * n + z_small["gram"] * gram_sensitivity(B, config.intercept) * math.sqrt(d + 1)
        assert trainer.pred_sensitivity == pytest.approx(
            prediction_bound(B, 1.0, config.intercept, n, floor) + circuit_sensitivity(4096, 1, circuit_error(B, n)))
    assert large.report()["mechanism"]["circuit_privacy"].count(f"{circuit_error(2.0, n):g}") == 1
    large.fit_round(1, channel.seal(rs[0], 1, PARTY))
    large.predict(np.zeros((10, d)), 1)
    assert large.circuit_error == circuit_error(2.0, n)
    assert large.noise_std["flood"] == max(FLOOD_STD, z_large["flood"] * circuit_sensitivity(4096, 1, large.circuit_error))


def _decrypt(channel, ct):
    import tenseal.sealapi as sealapi

    pt = sealapi.Plaintext()
    channel.secret._decryptor.decrypt(ct, pt)
    return pt


@pytest.mark.parametrize("chain", ["residual", "low scale"])
def test_party_refuses_a_chain_its_circuit_error_bound_was_not_measured_on(chain):
    """CKKS+DP's circuit-error bound was measured on DP_CKKS_PARAMS; a context with one rescaling
    prime (the non-DP chain), or with two at scale 2^30 (accepted before: about 2^10 more circuit
    error than the flood covers; code review H2), is refused before anything is spent."""
    from securegal.privacy.he.params import RESIDUAL_CKKS_PARAMS, CkksParams

    params = RESIDUAL_CKKS_PARAMS if chain == "residual" else CkksParams(8192, (60, 30, 30, 60), 30)
    X, _ = _data(n=50, d=3, k=1, rounds=1)
    trainer = CkksDPTrainer(PARTY, DPConfig(3.0, 1e-5))
    with pytest.raises(ProtocolError, match=r"measured on \(N 8192, primes \(60, 40, 40, 60\), scale 2\^40\); the "
                                            r"label owner sent N 8192, primes \(60, (60, 60|30, 30, 60)\)"):
        trainer.setup(X, _setup(ClippedCkksResiduals(1.0, params), 50, 1, 1))
    assert trainer.accountant is None or not trainer.accountant.releases


def test_a_context_without_the_rotation_keys_is_refused_before_anything_is_reserved():
    """Verifier G N3: a CKKS+DP party accepted a context lacking rotation keys at setup, reserved
    its whole plan, spent round 1 and only then refused (round 2: an internal error)."""
    from dataclasses import replace

    from securegal.privacy.he.keys import SecretContext
    from securegal.privacy.he.params import DP_CKKS_PARAMS

    X, _ = _data(n=50, d=3, k=1, rounds=1)
    setup = _setup(ClippedCkksResiduals(1.0, DP_CKKS_PARAMS), 50, 1, 1)
    setup = replace(setup, he_context=SecretContext(DP_CKKS_PARAMS).public_bytes(steps=[1]))
    trainer = CkksDPTrainer(PARTY, DPConfig(3.0, 1e-5))
    with pytest.raises(ProtocolError, match="lacks rotation keys"):
        trainer.setup(X, setup)
    assert trainer.accountant is None  # nothing calibrated, reserved or spent
