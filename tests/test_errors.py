"""The error taxonomy: one class per ErrorReply code, the mapping both ways, LayerMismatch, and
ConfigError (not a bare ValueError) for settings a user can get wrong."""
import math

import numpy as np
import pytest

from securegal import errors
from securegal.errors import (
    REPLY_CODES,
    BudgetExceeded,
    ConfigError,
    InternalError,
    LayerMismatch,
    PartyRefused,
    PartyUnavailable,
    PolicyRefused,
    ProtocolError,
    SecuregalError,
    error_from_reply,
    reply_code,
)
from securegal.core.assistance import l1_step
from securegal.learners.registry import make_learner
from securegal.messages import Setup


def test_every_reply_code_has_exactly_one_class():
    assert set(REPLY_CODES) == {"invalid", "protocol", "layer_mismatch", "budget_exceeded", "policy",
                                "unavailable", "internal"}
    assert len(set(REPLY_CODES.values())) == len(REPLY_CODES)
    assert all(cls.code == code and issubclass(cls, SecuregalError) for code, cls in REPLY_CODES.items())


@pytest.mark.parametrize("exc,code", [
    (ConfigError("x"), "invalid"), (errors.InsecureParameters("x"), "invalid"), (ProtocolError("x"), "protocol"),
    (LayerMismatch("x"), "layer_mismatch"), (BudgetExceeded("x"), "budget_exceeded"),
    (PolicyRefused("x"), "policy"), (PartyUnavailable("x"), "unavailable"), (InternalError("x"), "internal"),
    # not securegal's own: a bug, never "invalid input"
    (ValueError("x"), "internal"), (TypeError("x"), "internal"), (KeyError("x"), "internal"),
    (PartyRefused("p", "permission_denied", "x"), "internal"),
])
def test_reply_code(exc, code):
    assert reply_code(exc) == code


@pytest.mark.parametrize("code", sorted(REPLY_CODES))
def test_a_reply_becomes_the_codes_class_and_a_party_refusal(code):
    exc = error_from_reply("party1", code, "because")
    assert isinstance(exc, REPLY_CODES[code]) and isinstance(exc, PartyRefused)
    assert (exc.party, exc.code, exc.message) == ("party1", code, "because")
    assert str(exc) == f"party 'party1' refused ({code}): because"
    assert reply_code(exc) == code  # relaying it keeps the code


def test_budget_refusal_is_caught_as_budget_exceeded():
    with pytest.raises(BudgetExceeded):
        raise error_from_reply("party2", "budget_exceeded", "epsilon would reach 2.1 > 2")


def test_an_unknown_code_is_still_a_party_refusal():
    exc = error_from_reply("party1", "permission_denied", "unknown certificate")
    assert type(exc) is PartyRefused and exc.code == "permission_denied"


def test_a_refusals_control_characters_cannot_redraw_the_operators_terminal():
    """A party's ErrorReply reached stderr and the logs verbatim: escape sequences cleared the
    screen and printed a fake success line."""
    exc = error_from_reply("party1", "policy\x1b[2J", "harmless\n\x1b[31mFAKE: training finished OK\r\x00")
    text = str(exc)
    assert text.isprintable() and "\\x1b[2J" in text and "\\n" in text and "\\r" in text
    assert exc.message.startswith("harmless\n")  # what the party said is kept as it was


# --- every "wrong residual mode for this trainer" is one class ------------------------------------

def _setup(residuals, n=40, **options):
    return Setup(train_ids=np.arange(n), n_outputs=1, rounds=2, task="regression", residuals=residuals,
                 options=options)


def _plain_trainer():
    from securegal.privacy.plain import PlainTrainer

    return PlainTrainer(make_learner("linear"))


def _ckks_trainer():
    from securegal.privacy.he.layers import CkksTrainer

    return CkksTrainer("party1", make_learner("linear"))


def _ckks_dp_trainer():
    from securegal.privacy.dp.trainer import DPConfig
    from securegal.privacy.hedp import CkksDPTrainer

    return CkksDPTrainer("party1", DPConfig(2.0, 1e-5))


def _dp_trainer():
    from securegal.privacy.dp.trainer import DPConfig, DPTrainer

    return DPTrainer(DPConfig(2.0, 1e-5))


def _dpgd_trainer():
    from securegal.privacy.dp.dpgd import DPGDConfig, DPGDTrainer

    return DPGDTrainer(DPGDConfig(2.0, 1e-5))


@pytest.mark.parametrize("make,wrong", [
    (_plain_trainer, "ckks"),
    (_ckks_trainer, "plain"), (_ckks_dp_trainer, "plain"), (_dp_trainer, "ckks"), (_dpgd_trainer, "ckks"),
])
def test_wrong_residual_mode_raises_layer_mismatch(make, wrong, rng):
    trainer = make()
    with pytest.raises(LayerMismatch, match=repr(wrong)):
        trainer.setup(rng.normal(size=(40, 3)), _setup(wrong))


def test_ckks_dp_party_refuses_a_label_owner_without_declared_clip(rng):
    with pytest.raises(LayerMismatch, match="residual clip"):
        _ckks_dp_trainer().setup(rng.normal(size=(40, 3)), _setup("ckks"))


# --- settings a user can get wrong raise ConfigError ---------------------------------------------

def _dp_config(**kw):
    from securegal.privacy.dp.trainer import DPConfig

    return DPConfig(**{"epsilon": 1.0, "delta": 1e-5, **kw})


def _dpgd_config(**kw):
    from securegal.privacy.dp.dpgd import DPGDConfig

    return DPGDConfig(**{"epsilon": 1.0, "delta": 1e-5, **kw})


def _label_dp_config(**kw):
    from securegal.privacy.dp.layers import LabelDPConfig

    return LabelDPConfig(**{"epsilon": 1.0, "delta": 1e-5, **kw})


def _clipped_ckks(clip):
    from securegal.privacy.hedp import ClippedCkksResiduals

    return ClippedCkksResiduals(clip)


def _budget_too_small():
    from securegal.privacy.dp.trainer import plan_noise

    return plan_noise(_dp_config(epsilon=1e-6), 100, 10)


def _delta_above_one_over_n():
    from securegal.privacy.dp.trainer import plan_noise

    return plan_noise(_dp_config(delta=0.05), 100, 10)


@pytest.mark.parametrize("build,needle", [
    (lambda: _dp_config(epsilon=-1.0), "epsilon"),
    (lambda: _dp_config(delta=2.0), "delta"),
    (lambda: _dp_config(feature_clip=0.0), "feature_clip"),
    (lambda: _dp_config(residual_clip=math.nan), "residual_clip"),
    (lambda: _dp_config(prediction_clip=-1.0), "prediction_clip"),
    (lambda: _dp_config(accountant="gdp"), "accountant"),
    (lambda: _dp_config(shares={"gram": 0.0, "stat": 1.0}), "shares"),
    (lambda: _dpgd_config(lr=0.0), "lr"),
    (lambda: _dpgd_config(steps=0), "steps"),
    (lambda: _label_dp_config(residual_clip=0.0), "residual_clip"),
    (lambda: _label_dp_config(epsilon=0.0), "epsilon"),
    (lambda: _label_dp_config(accountant="gdp"), "accountant"),
    (lambda: _dpgd_config(accountant="gdp"), "accountant"),
    (lambda: _clipped_ckks(-1.0), "residual_clip"),
    (_budget_too_small, "too small"),
    (_delta_above_one_over_n, "delta must be < 1/n"),
    (lambda: l1_step(np.ones(3), np.ones(3), eta_max=math.inf), "eta_max"),
    (lambda: make_learner("linear", lam=0.0), "lam"),
    (lambda: make_learner("linear", local_loss="l3"), "local loss"),
    (lambda: make_learner("mlp", epochs=0), "epochs"),
    (lambda: make_learner("mlp", lr=-1.0), "lr"),
    (lambda: make_learner("gb", learning_rate=2.0), "learning_rate"),
    (lambda: make_learner("rff", gamma=0.0), "gamma"),
    (lambda: make_learner("cnn", patch_shape=(8,)), "patch_shape"),
    (lambda: make_learner("cnn", patch_shape=(8, 8), channels=()), "channels"),
])
def test_user_settings_raise_config_error(build, needle):
    with pytest.raises(ConfigError, match=needle):
        build()
