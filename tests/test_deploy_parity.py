"""One federation, several deployments: every registered layer gives the same results embedded
and networked (gRPC, parties in their own server threads), and every ``securegal train`` flag is
honoured or refused with ``--federation``, never ignored."""
import argparse
import json

import numpy as np
import pytest

from securegal.cli import build_parser
from securegal.deploy.localnet import federation_config
from securegal.deploy.networked import REFUSED_FLAGS, FederationConfig, federation_from_args, train_federation
from securegal.errors import ConfigError
from securegal.privacy.registry import LAYERS
from securegal.run import train

from .contracts import LAYER_EPSILON
from .test_network_dp import FAST_RETRY, parties_in_threads

NOISE_SEED = 7


def _layer_settings(name):
    """(embedded plan, each party's [privacy] keys, the federation's extra keys) for one layer."""
    layer = LAYERS[name]
    if layer.budget is None:
        return layer.plan(), {}, {}
    plan = layer.plan(LAYER_EPSILON, seed=NOISE_SEED)
    if layer.budget == "feature":
        party = {"epsilon": LAYER_EPSILON, "noise_seed": NOISE_SEED}
        extra = {"residual_clip": plan.declared_clip} if plan.residuals == "ckks" else {}
        return plan, party, extra
    return plan, {}, {"label_dp": {"epsilon": LAYER_EPSILON, "noise_seed": NOISE_SEED}}


def _comparable(metrics):
    return json.loads(json.dumps({k: v for k, v in metrics.items() if k not in ("seconds", "deployment", "he")}))


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_networked_and_embedded_runs_agree_for_every_layer(name, tmp_path):
    plan, party_privacy, extra = _layer_settings(name)
    embedded = train("breast_cancer", parties=3, rounds=2, seed=0, plan=plan)
    budgets = {"party1": party_privacy, "party2": party_privacy}
    with parties_in_threads(tmp_path, budgets, residuals=plan.residuals) as (peers, _):
        path = tmp_path / "federation.toml"
        path.write_text(federation_config(data={"dataset": "breast_cancer"}, peers=peers, rounds=2, seed=0,
                                          out=tmp_path / "run", certs=None, transport=FAST_RETRY,
                                          residuals=plan.residuals, extra=extra))
        networked = train_federation(FederationConfig.load(path))
    assert networked["deployment"] == "grpc" and embedded["deployment"] == "embedded"
    if plan.feature_dp is not None:  # the parties report the same releases as the embedded trainers
        for party in ("party1", "party2"):
            for key in ("releases", "epsilon_spent", "noise_multiplier"):
                assert networked["privacy"][party][key] == embedded["privacy"][party][key], (party, key)
    if plan.label_dp is not None:
        assert networked["privacy"]["alice"] == embedded["privacy"]["alice"]
    a, b = _comparable(networked), _comparable(embedded)
    for d in (a, b):  # the parties' budgets are theirs: the label owner's plan cannot list them
        d.pop("plan"), d.pop("privacy", None)
    if plan.residuals == "ckks":  # encryption noise: the same scores, weights and steps within 1e-6
        for key in ("weights", "eta"):
            np.testing.assert_allclose(a.pop(key), b.pop(key), atol=1e-6)
    assert a == b


def _train_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


# How a networked run honours each flag that it does not refuse: the FederationConfig attribute
# it overrides, or "run" for flags used by the run itself (tested in tests/test_network.py).
HONOURED = {
    "rounds": lambda c: c.rounds, "seed": lambda c: c.seed,
    "local_loss": lambda c: c.local_loss, "weights": lambda c: c.weighting, "eta": lambda c: c.eta,
    "eta_max": lambda c: c.eta_max, "min_parties": lambda c: c.min_parties,
    "residuals": lambda c: c.plan.residuals, "label_epsilon": lambda c: c.plan.label_dp.epsilon,
}
RUN_FLAGS = {"overwrite", "no_progress", "insecure", "verbose"}
NEEDS_LABEL_DP = {"delta", "accountant", "label_session_epsilon"}
NEEDS_CKKS = {"hidden_membership"}  # refused with the file's plain residuals, honoured with ckks (below)
NOT_FLAGS = {"help", "federation", "resume", "func"}


def _sample(action):
    if action.nargs == 0:
        return []
    if action.choices:
        return [list(action.choices)[-1]]
    if action.type is int:
        return ["2"]
    if action.type is float:
        return ["0.002" if action.dest == "delta" else "1.5"]
    return ["rff" if action.dest == "learner" else "x"]


def test_every_train_flag_is_honoured_or_refused_with_federation(tmp_path):
    path = tmp_path / "federation.toml"
    path.write_text(federation_config(data={"dataset": "breast_cancer"}, peers={"party1": "127.0.0.1:1",
                                      "party2": "127.0.0.1:2"}, rounds=4, seed=0, out=tmp_path / "run", certs=None))
    parser = _train_parser()
    checked = set()
    for action in parser._actions:
        if action.dest in NOT_FLAGS or not action.option_strings:
            continue
        flag = action.option_strings[-1]
        args = parser.parse_args(["--federation", str(path), flag, *_sample(action)])
        checked.add(action.dest)
        if action.dest in REFUSED_FLAGS:
            long = next(o for o in action.option_strings if o.startswith("--"))
            with pytest.raises(ConfigError, match=f"{long} cannot be used"):
                federation_from_args(args)
        elif action.dest in HONOURED:
            cfg = federation_from_args(args)
            expected = args.residuals or getattr(args, action.dest)
            assert HONOURED[action.dest](cfg) == (expected if action.dest != "residuals" else args.residuals), flag
        elif action.dest in NEEDS_LABEL_DP or action.dest == "dp_residual_clip" or action.dest in NEEDS_CKKS:
            with pytest.raises(ConfigError):  # alone they have nothing to apply to: refused, not ignored
                federation_from_args(args)
        else:
            assert action.dest in RUN_FLAGS, f"{flag} is neither honoured nor refused with --federation"
            federation_from_args(args)
    assert checked >= set(HONOURED) | set(REFUSED_FLAGS) | NEEDS_CKKS
    # with ckks residuals, --hidden-membership applies (each party then refuses it without DP feedback)
    args = parser.parse_args(["--federation", str(path), "--residuals", "ckks", "--hidden-membership"])
    assert federation_from_args(args).plan.hidden_membership
    assert not federation_from_args(parser.parse_args(["--federation", str(path)])).plan.hidden_membership
    # with a label-DP budget, --delta/--accountant/--dp-residual-clip apply to it
    args = parser.parse_args(["--federation", str(path), "--label-epsilon", "3", "--delta", "0.002",
                              "--accountant", "prv", "--dp-residual-clip", "0.5", "--label-session-epsilon", "1"])
    label_dp = federation_from_args(args).plan.label_dp
    assert (label_dp.epsilon, label_dp.delta, label_dp.accountant, label_dp.residual_clip) == (3, 0.002, "prv", 0.5)
    assert label_dp.session_epsilon == 1


def test_a_networked_label_owner_keeps_its_labels_lifetime_ledger(tmp_path):
    """`[label_dp] ledger` gives the networked label owner the embedded `--ledger`'s label ledger:
    a second run on the same labels gets what is left of the lifetime budget, here nothing."""
    from securegal.errors import BudgetExceeded
    from securegal.privacy.dp.ledger import read_ledger

    (tmp_path / "ledgers").mkdir()
    extra = {"label_dp": {"epsilon": 2.0, "ledger": "ledgers"}}
    with parties_in_threads(tmp_path, {"party1": {}, "party2": {}}, residuals="plain") as (peers, _):
        for run in ("first", "second"):
            path = tmp_path / f"{run}.toml"
            path.write_text(federation_config(data={"dataset": "breast_cancer"}, peers=peers, rounds=2, seed=0,
                                              out=tmp_path / run, certs=None, transport=FAST_RETRY, extra=extra))
            if run == "first":
                metrics = train_federation(FederationConfig.load(path))
                assert metrics["privacy"]["alice"]["ledger"]["lifetime_epsilon_spent"] == pytest.approx(2.0, abs=1e-3)
            else:
                with pytest.raises(BudgetExceeded, match="session refused: left"):
                    train_federation(FederationConfig.load(path))
    led = read_ledger(tmp_path / "ledgers" / "alice.labels.securegal-ledger.json")
    assert len(led.spent_by_session()) == 1 and not (tmp_path / "second" / "metrics.json").exists()


def test_a_layer_is_found_by_its_name_in_any_case_and_an_unknown_one_is_named():
    from securegal.errors import ConfigError
    from securegal.privacy.registry import layer

    assert layer("DP") is LAYERS["dp"] and layer(" CKKS+DP ") is LAYERS["ckks+dp"]
    with pytest.raises(ConfigError, match="unknown privacy layer 'dpp'; registered: plain, ckks, dp"):
        layer("dpp")
    with pytest.raises(ConfigError, match="named by a string, got None"):
        layer(None)


def test_train_refuses_what_a_deployment_cannot_honour_from_its_own_declaration(tmp_path):
    """Code review M6: ``Deployment.supports`` was never read (a deployment other than the
    embedded one was treated as networked by isinstance checks)."""
    from securegal.deploy.networked import NetworkedDeployment

    class Remote(NetworkedDeployment):
        def __init__(self):  # nothing to reach: train() must refuse before it would
            pass

    for flag in ("baselines", "ground_truth"):
        with pytest.raises(ConfigError, match=f"^{flag} needs every party's data in this process; the grpc deployment"):
            train("wine", deployment=Remote(), out=tmp_path / "run", **{flag: True})
    assert not (tmp_path / "run").exists()
