"""The label owner checks what a feature party's replies carry before it uses it."""
import numpy as np
import pytest

from securegal import messages as m
from securegal.data.datasets import load_dataset
from securegal.data.split import split_rows, vertical_split
from securegal.deploy.embedded import EmbeddedDeployment
from securegal.deploy.federation import GalJob, TargetScaler
from securegal.errors import ProtocolError
from securegal.privacy.plan import PrivacyPlan


def _owner(tmp_path):
    data = load_dataset("wine")
    split = split_rows(data, 0, 0.2, 0.1)
    job = GalJob.from_plan(PrivacyPlan(), dataset=data, n_train=len(split.train), parties=3, rounds=2,
                           learner="linear", seed=0, scaler=TargetScaler.fit(data, data.y[split.train]))
    return EmbeddedDeployment().build(job, data, split, vertical_split(data, 3), run_dir=tmp_path)


@pytest.mark.parametrize("columns", ["\\u00b2", "9" * 5000, "-3", " 4", "3.0", ""])
def test_a_setup_ack_whose_column_count_is_not_a_small_whole_number_is_a_protocol_error(tmp_path, columns):
    """'\\u00b2'.isdigit() is true and int() refused it, and 5000 digits exceed Python's int limit:
    both crashed the label owner with an internal error instead of naming the party."""
    owner = _owner(tmp_path)
    exchange = owner.messenger.exchange

    def party1_lies(t, requests, *bounds):
        out = exchange(t, requests, *bounds)
        if isinstance(out.get("party1"), m.SetupAck):
            out["party1"] = m.SetupAck({**out["party1"].info, "columns": columns})
        return out

    owner.messenger.exchange = party1_lies
    with pytest.raises(ProtocolError, match="party 'party1' answered Setup with columns=") as info:
        owner.setup()
    assert "\\n" not in str(info.value) and len(str(info.value)) < 200


def test_finite_but_huge_predictions_drop_the_party_from_the_round(tmp_path, caplog):
    """1e150 from one party overflowed the weight fit: every step came out 0 and the run
    reported the prior's accuracy with exit 0; 1e300 made the model NaN."""
    owner = _owner(tmp_path)
    each = owner.messenger.exchange_each

    def party1_shouts(t, requests, *bounds):
        for party, reply in each(t, requests, *bounds):
            if party == "party1" and isinstance(reply, m.FitReply):
                reply = m.FitReply(np.full_like(reply.predictions, 1e150), reply.info)
            yield party, reply

    owner.messenger.exchange_each = party1_shouts
    owner.setup()
    model = owner.fit()
    assert all(r.absent == ("party1",) and r.weights["party1"] == 0.0 for r in model.rounds)
    assert all(r.eta > 0 and np.isfinite(r.train_loss) for r in model.rounds) and np.isfinite(owner.F).all()
    assert "predictions of 'party1' in round 1: largest |value| 1e+150 exceeds" in caplog.text


def test_a_malformed_prediction_reply_leaves_the_party_out_of_prediction(tmp_path):
    """A wrong-shaped PredictReply aborted the whole run after training, where an unreachable party
    is only left out (missing_at_predict)."""
    owner = _owner(tmp_path)
    owner.setup()
    owner.fit()
    exchange = owner.messenger.exchange

    def party1_misshapes(t, requests, *bounds):
        out = exchange(t, requests, *bounds)
        if isinstance(out.get("party1"), m.PredictReply):
            out["party1"] = m.PredictReply(out["party1"].predictions[:, :1])
        return out

    owner.messenger.exchange = party1_misshapes
    rows = np.setdiff1d(np.arange(178), owner.train_ids)[:10]  # predictions for training rows are refused
    F = owner.predict_rounds(rows)
    assert F.shape[1] == 10 and np.isfinite(F).all()
    assert owner.model.missing_at_predict == {"party1"}


def test_a_non_finite_weight_fit_stops_the_run_before_the_model_is_touched(tmp_path, monkeypatch):
    from securegal.parties import label_owner
    owner = _owner(tmp_path)
    owner.setup()
    before = owner.F.copy()
    monkeypatch.setattr(label_owner, "fit_assistance_weights", lambda r, P, loss: np.full(len(P), np.nan))
    model = owner.fit()
    assert model.rounds == [] and "round 1: the weights (nan, nan, nan) or the step" in model.stopped
    np.testing.assert_array_equal(owner.F, before)


def test_moderate_garbage_is_left_out_of_the_round_and_named(tmp_path, caplog):
    """+-100 per class from one party kept a weight of about 0.01, dominated the step and the line
    search took none: the run ended at the prior's accuracy with nothing said (review W F3b)."""
    owner = _owner(tmp_path)
    each = owner.messenger.exchange_each

    def party1_garbage(t, requests, *bounds):
        for party, reply in each(t, requests, *bounds):
            if party == "party1" and isinstance(reply, m.FitReply):
                reply = m.FitReply(np.where(np.arange(reply.predictions.shape[1]) == 0, 100.0, -100.0)
                                   * np.ones_like(reply.predictions), reply.info)
            yield party, reply

    honest = _owner(tmp_path / "honest")
    honest.setup()
    honest_model = honest.fit()
    owner.messenger.exchange_each = party1_garbage
    owner.setup()
    model = owner.fit()
    assert "round 1: party1's predictions (RMS 100) are" in caplog.text and "left out of the round" in caplog.text
    assert "party2's predictions" not in caplog.text
    assert model.outsized == {"party1": [1, 2]}  # metrics.json's gal.outsized_predictions
    assert all(r.absent == ("party1",) and r.weights["party1"] == 0.0 for r in model.rounds)
    # the others' rounds go on: steps like the honest run's (about 10), not the stalled 0.0x
    assert all(r.eta > 1 for r in model.rounds) and honest_model.rounds[-1].eta > 1
    assert model.rounds[-1].train_loss < 1.1 * honest_model.rounds[-1].train_loss  # 0.0497 against 0.0496


def test_a_malformed_psi_reply_names_its_party(tmp_path):
    """`point 0 is not a valid group element` did not say which of the parties sent it (review W F7)."""
    owner = _owner(tmp_path)
    exchange = owner.messenger.exchange

    def party2_garbles(t, requests, *bounds):
        out = exchange(t, requests, *bounds)
        reply = out.get("party2")
        if isinstance(reply, m.PsiReply):
            out["party2"] = m.PsiReply(b"\xff" * len(reply.blinded), reply.points, reply.handles)
        return out

    owner.messenger.exchange = party2_garbles
    with pytest.raises(ProtocolError, match="PSI reply of 'party2': point 0 is not a valid group element"):
        owner.setup()


def test_the_label_owners_own_row_minimum_is_checked_before_any_party_is_asked(tmp_path, capsys, monkeypatch):
    """Its own block's min_rows was checked only at its own Setup, after every party had answered
    the intersection: a DP party's lifetime max_sessions lost one to a run that could never start,
    and the refusal read like a party's (review N)."""
    from securegal.cli import main

    rng = np.random.default_rng(0)
    x = rng.normal(size=(25, 4))
    (tmp_path / "small.csv").write_text("id,a,b,c,d,y\n" + "".join(
        f"r{i},{x[i, 0]:.3f},{x[i, 1]:.3f},{x[i, 2]:.3f},{x[i, 3]:.3f},{i % 2}\n" for i in range(25)))
    from securegal.parties.messenger import Messenger

    asked, real = [], Messenger.exchange
    monkeypatch.setattr(Messenger, "exchange", lambda self, t, reqs: asked.append(list(reqs)) or real(self, t, reqs))
    code = main(["train", "--csv", str(tmp_path / "small.csv"), "--id", "id", "--target", "y", "-M", "3",
                 "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "the label owner's own block needs at least 20 training rows" in err, err
    assert asked == [] and not (tmp_path / "run").exists()


def _answering_party1_with(owner, reply_body):
    """party1's handler answers every request of ``reply_body``'s kind with it (well-formed)."""
    from securegal.wire.codec import DEFAULT_LIMITS, decode, encode

    handlers = owner.messenger.transport.handlers
    honest = handlers["party1"]
    seen = []

    def handler(raw: bytes) -> bytes:
        env = decode(raw, DEFAULT_LIMITS)
        if m.REPLY_TO.get(type(env.body)) is type(reply_body):
            seen.append(env.kind)
            return encode(m.Envelope(env.session, env.round, "party1", env.sender, env.seq, reply_body))
        return honest(raw)

    handlers["party1"] = handler
    return seen


def test_a_prediction_reply_larger_than_the_request_allows_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    """Only plain fit replies were bounded by what was asked; a PredictReply for 10 rows could
    take the whole 1 GiB message limit, decoded, copied and recorded (review W F6)."""
    from securegal.parties import messenger

    owner = _owner(tmp_path)
    owner.setup()
    owner.fit()
    decoded = []
    real_decode = messenger.decode
    monkeypatch.setattr(messenger, "decode", lambda raw, limits: decoded.append(len(raw)) or real_decode(raw, limits))
    rows = np.setdiff1d(np.arange(178), owner.train_ids)[:10]
    bound = 8 * 2 * 10 * 3 + messenger.REPLY_SLACK_BYTES  # rounds x rows x K values, and the envelope's room
    seen = _answering_party1_with(owner, m.PredictReply(np.zeros((2, bound // 48 + 1000, 3))))
    F = owner.predict_rounds(rows)
    assert seen == ["predict_request"] and owner.model.missing_at_predict == {"party1"} and np.isfinite(F).all()
    assert max(decoded) < bound  # party2's honest reply was decoded; party1's never was


def test_an_encrypted_fit_reply_larger_than_its_ciphertexts_is_refused_before_it_is_decoded(tmp_path):
    """A CKKS party's fit reply is at most the request's layout in full-level ciphertexts; beyond
    that it was received, decoded and recorded up to the 1 GiB limit (review W F6)."""
    from securegal.parties.messenger import REPLY_SLACK_BYTES
    from securegal.privacy.he.layout import Layout

    data = load_dataset("wine")
    split = split_rows(data, 0, 0.2, 0.1)
    job = GalJob.from_plan(PrivacyPlan(residuals="ckks"), dataset=data,
                           n_train=len(split.train), parties=3, rounds=1, learner="linear", seed=0,
                           scaler=TargetScaler.fit(data, data.y[split.train]))
    owner = EmbeddedDeployment().build(job, data, split, vertical_split(data, 3), run_dir=tmp_path)
    owner.setup()
    p = owner.channel.secret.params
    layout = Layout.for_training(owner.n, owner.k, owner.channel.secret.slots)  # wine: K = 3 packed in one
    bound = layout.blobs * 2 * p.poly_modulus_degree * len(p.coeff_mod_bit_sizes) * 8
    blob = b"\0" * (bound + REPLY_SLACK_BYTES)
    seen = _answering_party1_with(owner, m.FitReply(m.EncryptedPayload("ckks", (owner.n, owner.k), (blob,))))
    model = owner.fit()
    assert seen == ["fit_request"] and model.rounds[0].absent == ("party1",)
    assert owner.channel.reply_bytes("party1", (owner.n, owner.k)) == bound  # what the honest party2 fitted within
