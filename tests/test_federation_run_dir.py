"""The networked label owner's run directory and flags (review findings, 2026-12-04): a resumed
run keeps the command-line overrides it was started with, ``--overwrite`` keeps the earlier
result until the new run has started, and flags that cannot be honoured are refused."""
import json
import stat

import numpy as np
import pytest

from securegal.cli import main
from securegal.deploy.checkpoint import Checkpoint
from securegal.deploy.localnet import federation_config
from securegal.deploy.networked import FederationConfig, NetworkedDeployment, train_federation
from securegal.deploy.party_process import PartyConfig
from securegal.errors import ConfigError

from .test_table_budget import _party_file


class _Owner:  # what Checkpoint.save reads: a label owner after setup
    session, peers, weighting, eta, calibration = "s1", ["party1"], "learned", None, None
    party_columns = {"party1": 3}
    F = np.zeros((5, 3))
    model = type("M", (), {"rounds": []})()

    def alignment_state(self):
        return {}


def _federation(tmp_path, **keys):
    path = tmp_path / "federation.toml"
    path.write_text(federation_config(data={"dataset": "wine"}, peers={"party1": "127.0.0.1:1"}, rounds=3, seed=0,
                                      out=tmp_path / "run", certs=None, **keys))
    return path


def _checkpoint(cfg):
    Checkpoint(cfg.out, cfg.path, cfg.text, cfg.overrides).save(_Owner())


def test_a_resumed_run_keeps_the_overrides_it_was_started_with(tmp_path):
    path = _federation(tmp_path)
    cfg = FederationConfig.load(path, insecure=True, rounds=7, label_epsilon=4.0, seed=None)
    assert cfg.overrides == {"rounds": 7, "label_epsilon": 4.0}
    _checkpoint(cfg)
    state = json.loads((cfg.out / "checkpoint" / "state.json").read_text())
    assert state["overrides"] == {"rounds": 7, "label_epsilon": 4.0}
    resumed = FederationConfig.for_resume(cfg.out, insecure=True, min_parties=None)
    assert resumed.rounds == 7 and resumed.plan.label_dp is not None and resumed.plan.label_dp.epsilon == 4.0
    assert resumed.min_parties == cfg.min_parties == 2
    again = FederationConfig.for_resume(cfg.out, insecure=True, min_parties=1)  # the one flag resume may change
    assert again.min_parties == 1 and again.rounds == 7


def test_a_run_started_with_residuals_ckks_over_a_plain_file_is_not_resumed(tmp_path):
    cfg = FederationConfig.load(_federation(tmp_path), insecure=True, residuals="ckks")
    _checkpoint(cfg)
    resumed = FederationConfig.for_resume(cfg.out, insecure=True)
    assert resumed.plan.residuals == "ckks"
    with pytest.raises(ConfigError, match="cannot resume a ckks run"):
        train_federation(resumed, resume=True)


def test_a_label_dp_run_is_not_resumed(tmp_path):
    """A resumed label-DP run counted only the releases after the stop and sent the interrupted
    round again with fresh noise: PLD 8.02 against a budget of 8 (independent review S)."""
    cfg = FederationConfig.load(_federation(tmp_path), insecure=True, label_epsilon=4.0)
    _checkpoint(cfg)
    resumed = FederationConfig.for_resume(cfg.out, insecure=True)
    before = sorted(p.name for p in (cfg.out / "checkpoint").iterdir())
    with pytest.raises(ConfigError, match="cannot resume a label-DP run: its accountant is not checkpointed") as info:
        train_federation(resumed, resume=True)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in (cfg.out / "checkpoint").iterdir()) == before  # nothing touched


def test_a_checkpoint_without_its_overrides_is_refused(tmp_path):
    cfg = FederationConfig.load(_federation(tmp_path), insecure=True)
    _checkpoint(cfg)
    state_path = cfg.out / "checkpoint" / "state.json"
    state = json.loads(state_path.read_text())
    del state["overrides"]
    state_path.write_text(json.dumps(state))
    with pytest.raises(ConfigError, match="overrides"):
        FederationConfig.for_resume(cfg.out, insecure=True)


def test_overwrite_with_resume_is_refused(tmp_path, capsys):
    cfg = FederationConfig.load(_federation(tmp_path), insecure=True)
    _checkpoint(cfg)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code = main(["train", "--resume", str(cfg.out), "--overwrite", "--insecure", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--overwrite cannot be used with --resume" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize("value", ["0", "-1", "3"])
def test_min_parties_outside_one_to_every_party_is_refused(tmp_path, value, capsys):
    code = main(["train", "--federation", str(_federation(tmp_path)), "--insecure", "--no-progress",
                 "--min-parties", value])
    err = capsys.readouterr().err
    assert code == 2 and f"min_parties must be in 1..2, got {value}" in err
    assert not (tmp_path / "run").exists()


def test_learner_is_refused_with_a_federation_before_anything_is_touched(tmp_path, capsys):
    """--learner used to reach only the label owner while the parties ran their party.toml's
    learner and metrics.json named the flag's (independent review C): refused, never half-honoured."""
    for learner in ("nosuch", "rff"):
        code = main(["train", "--federation", str(_federation(tmp_path)), "--insecure", "--no-progress",
                     "--learner", learner])
        err = capsys.readouterr().err
        assert code == 2 and "--learner cannot be used with --federation" in err and "party.toml [learner]" in err
        assert not (tmp_path / "run").exists()


class _RefusedAtSetup(NetworkedDeployment):
    """A deployment whose parties refuse the session (as a party out of budget does)."""

    def _start(self, owner):
        (self.cfg.out / "transcripts" / self.cfg.name).mkdir(parents=True, exist_ok=True)
        (self.cfg.out / "transcripts" / self.cfg.name / "new.bin").write_bytes(b"new run")
        raise ConfigError("party1 refused: budget_exceeded")


@pytest.mark.parametrize("parties_write_here", [True, False])
def test_overwrite_keeps_the_earlier_result_when_the_new_run_fails_before_it_starts(tmp_path, parties_write_here):
    """Review A: with no party transcripts beside the label owner's, the failed run removed the
    empty transcripts/ directory, putting the earlier transcript back failed, the set-aside copy
    was deleted and the refusal was replaced by "No such file or directory"."""
    cfg = FederationConfig.load(_federation(tmp_path), insecure=True)
    earlier = {"metrics.json": b'{"earlier": 1}', "curve.png": b"png", "checkpoint/state.json": b"{}",
               "transcripts/alice/old.bin": b"old"}
    if parties_write_here:
        earlier["transcripts/party1/theirs.bin"] = b"party's own"
    for name, data in earlier.items():
        (cfg.out / name).parent.mkdir(parents=True, exist_ok=True)
        (cfg.out / name).write_bytes(data)
    with pytest.raises(ConfigError, match="budget_exceeded"):
        train_federation(cfg, overwrite=True, deployment=_RefusedAtSetup)
    kept = {p.relative_to(cfg.out).as_posix(): p.read_bytes() for p in cfg.out.rglob("*") if p.is_file()}
    assert kept == earlier  # nothing of the new run, nothing set aside left behind
    assert stat.S_IMODE((cfg.out / "transcripts").stat().st_mode) == 0o700 or parties_write_here
    assert sorted(p.name for p in cfg.out.iterdir()) == ["checkpoint", "curve.png", "metrics.json", "transcripts"]


def test_a_session_budget_above_the_lifetime_budget_is_refused_at_start_up(tmp_path):
    path = _party_file(tmp_path, {"epsilon": 3.0, "session_epsilon": 5.0, "ledger": "p.ledger.json"})
    with pytest.raises(ConfigError, match="session_epsilon 5 exceeds the table's lifetime epsilon 3"):
        PartyConfig.load(path, insecure=True)
    assert not (tmp_path / "p.ledger.json").exists()




@pytest.mark.parametrize("second, message", [("alice", "lists the label owner 'alice' itself"),
                                             ("party1", "got 'party1' twice")])
def test_the_party_list_names_each_feature_party_once(tmp_path, second, message):
    path = tmp_path / "federation.toml"
    text = federation_config(data={"dataset": "wine"}, peers={"party1": "127.0.0.1:1", "party2": "127.0.0.1:2"},
                             rounds=3, seed=0, out=tmp_path / "run", certs=None)
    path.write_text(text.replace('"party2"', f'"{second}"'))
    with pytest.raises(ConfigError, match=message):
        FederationConfig.load(path, insecure=True)


@pytest.mark.parametrize("theirs", [None, "iris", "breast_cancer"])
def test_a_party_on_a_builtin_dataset_refuses_a_label_owner_on_another(tmp_path, theirs):
    """Built-in rows are keyed by row number, so a federation on iris would align with parties
    serving wine: the label owner's Setup names its built-in dataset and the party compares."""
    from securegal import messages as m
    from securegal.deploy.config import BUILTIN_DATASET_OPTION
    from securegal.deploy.party_process import build_party
    from securegal.wire.codec import decode, encode

    endpoint = build_party(PartyConfig.load(_party_file(tmp_path), insecure=True))  # breast_cancer, block 1
    options = {"local_loss": "l2"} if theirs is None else {"local_loss": "l2", BUILTIN_DATASET_OPTION: theirs}
    setup = m.Setup(np.arange(100), 2, 2, "classification", options=options)
    reply = decode(endpoint.handle(encode(m.Envelope("s1", 0, "alice", "party1", 0, setup)))).body
    refused = isinstance(reply, m.ErrorReply) and "serves built-in dataset 'breast_cancer'" in reply.message
    assert refused == (theirs not in (None, "breast_cancer")), reply  # naming none: served as before
    if refused:
        assert reply.code == "policy" and f"the label owner's is {theirs!r}" in reply.message
    endpoint.close()


def test_a_networked_label_owner_names_its_builtin_dataset_in_setup(tmp_path):
    from securegal.deploy.config import BUILTIN_DATASET_OPTION

    seen = []

    class Stop(NetworkedDeployment):  # the label owner as built, stopped before its Setup goes out
        def _start(self, owner):
            seen.append(dict(owner.setup_options))
            raise ConfigError("stopped before setup")

    with pytest.raises(ConfigError, match="stopped before setup"):
        train_federation(FederationConfig.load(_federation(tmp_path), insecure=True), deployment=Stop)
    assert seen == [{"local_loss": seen[0]["local_loss"], BUILTIN_DATASET_OPTION: "wine"}]


def test_a_run_stopped_after_telling_its_parties_to_finish_is_not_resumed(tmp_path):
    """Killed between Finish and metrics.json, a resumed label owner would find every party's
    session finished and score itself alone: it is refused instead, and nothing is touched."""
    cfg = FederationConfig.load(_federation(tmp_path), insecure=True)
    checkpoint = Checkpoint(cfg.out, cfg.path, cfg.text, cfg.overrides)
    checkpoint.save(_Owner())
    assert json.loads((cfg.out / "checkpoint" / "state.json").read_text())["finishing"] is False
    checkpoint.mark_finishing(_Owner())
    before = {p: p.read_bytes() for p in cfg.out.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match="told its parties that the session is finished"):
        train_federation(FederationConfig.for_resume(cfg.out, insecure=True), resume=True)
    assert {p: p.read_bytes() for p in cfg.out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("label_dp_in, residuals, clip_goes_to", [
    ("file", None, "label_dp"), ("flag", None, "label_dp"), (None, None, "residual_clip"),
    (None, "ckks", "residual_clip")])
def test_dp_residual_clip_goes_where_the_resolved_plan_uses_it(tmp_path, label_dp_in, residuals, clip_goes_to):
    """``--dp-residual-clip``: label-DP's C when label-DP is on (from [label_dp] or the flag),
    otherwise the ckks clip DP parties rely on (refused over plain residuals)."""
    extra = {"label_dp": {"epsilon": 4.0}} if label_dp_in == "file" else None
    path = tmp_path / "federation.toml"
    path.write_text(federation_config(data={"dataset": "wine"}, peers={"party1": "127.0.0.1:1"}, rounds=3, seed=0,
                                      out=tmp_path / "run", certs=None, extra=extra))
    overrides = dict(dp_residual_clip=0.5, residuals=residuals,
                     label_epsilon=4.0 if label_dp_in == "flag" else None)
    if clip_goes_to == "residual_clip" and residuals != "ckks":
        with pytest.raises(ConfigError, match="needs residuals = 'ckks'"):
            FederationConfig.load(path, insecure=True, **overrides)
        return
    cfg = FederationConfig.load(path, insecure=True, **overrides)
    if clip_goes_to == "label_dp":
        assert cfg.plan.label_dp.residual_clip == 0.5 and cfg.plan.residual_clip is None
    else:
        assert cfg.plan.residual_clip == 0.5


@pytest.mark.parametrize("keys, refused", [({"eta": 0.5, "eta_max": 2.0}, "the step is fixed \\(eta = 0.5\\)"),
                                           ({"eta_max": 2.0, "label_dp": {"epsilon": 4.0}}, "the step is fixed"),
                                           ({"eta_max": 2.0}, None)])
def test_eta_max_in_the_federation_file_is_refused_where_the_step_is_fixed(tmp_path, keys, refused):
    path = tmp_path / "federation.toml"
    path.write_text(federation_config(data={"dataset": "wine"}, peers={"party1": "127.0.0.1:1"}, rounds=3, seed=0,
                                      out=tmp_path / "run", certs=None, extra=keys))
    if refused:
        with pytest.raises(ConfigError, match=f"eta_max .* {refused}"):
            FederationConfig.load(path, insecure=True)
    else:
        assert FederationConfig.load(path, insecure=True).eta_max == 2.0


@pytest.mark.parametrize("out", ["run", "new/deeper/run"])
def test_a_run_refused_before_it_starts_leaves_no_run_directory(tmp_path, out):
    path = tmp_path / "federation.toml"
    path.write_text(federation_config(data={"dataset": "wine"}, peers={"party1": "127.0.0.1:1"}, rounds=3, seed=0,
                                      out=tmp_path / out, certs=None))
    cfg = FederationConfig.load(path, insecure=True)
    with pytest.raises(ConfigError, match="budget_exceeded"):
        train_federation(cfg, deployment=_RefusedAtSetup)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["federation.toml"]


@pytest.mark.parametrize("gal, says", [({"test": 1.0}, "finished and wrote"),
                                       ({"test": 1.0, "stopped": "party1 refused: budget_exceeded"},
                                        r"stopped early \(party1 refused: budget_exceeded; its parties")])
def test_resuming_a_run_that_wrote_its_result_says_how_it_ended(tmp_path, gal, says):
    """Review A: a run stopped early (exit 3) was called "finished" when resumed."""
    cfg = FederationConfig.load(_federation(tmp_path), insecure=True)
    cfg.out.mkdir()
    (cfg.out / "metrics.json").write_text(json.dumps({"gal": gal}))
    with pytest.raises(ConfigError, match=says):
        train_federation(cfg, resume=True)
