"""DP through the whole federation: metrics.json privacy block, clean stop, CLI errors."""
import json
import re
from types import SimpleNamespace

import numpy as np
import pytest

from securegal.cli import main
from securegal.errors import ConfigError
from securegal.privacy.dp import trainer as dp_trainer
from securegal.privacy.plan import FeatureDP, LabelDP, PrivacyPlan
from securegal.run import train
from securegal.transcript import read_transcript


def test_dp_run_writes_privacy_block_and_noised_transcripts(tmp_path):
    out = tmp_path / "run"
    metrics = train("wine", parties=4, rounds=3, out=out, weighting="uniform", eta=1.0,
                    plan=PrivacyPlan(feature_dp=FeatureDP(epsilon=3.0)))
    written = json.loads((out / "metrics.json").read_text())
    assert set(written["privacy"]) == {"party1", "party2", "party3"}
    for block in written["privacy"].values():
        assert block["epsilon_spent"] <= block["epsilon_budget"] == 3.0
        assert [(r["round"], r["what"]) for r in block["releases"]][:3] == [(1, "gram"), (1, "stat"), (1, "pred")]
        assert block["mechanism"]["secure_noise"] is True
    # what party1 sent is the noised, clipped release, not its model's predictions
    sent = read_transcript(out / "transcripts" / "party1").payloads("fit_reply", "sent")
    assert len(sent) == 3
    f = sent[0][1]
    assert f.shape == (metrics["n_train"], 3) and np.abs(f).max() > 0.01  # noise, not 0.01-clipped rows


def test_budget_refusal_stops_the_run_cleanly_with_rounds_saved(tmp_path, monkeypatch, capsys):
    real = dp_trainer.reserve_session
    # the parties' plan (reserved in their ledgers) covers 2 rounds; the label owner asks for 4
    monkeypatch.setattr(dp_trainer, "reserve_session",
                        lambda ledger, config, n, rounds, *rest: real(ledger, config, n, 2, *rest))
    code = main(["train", "--dataset", "wine", "--parties", "3", "--rounds", "4", "--epsilon", "2",
                 "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 3
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "budget" in metrics["gal"]["stopped"] and len(metrics["gal"]["per_round"]) == 2
    for block in metrics["privacy"].values():
        assert block["epsilon_spent"] <= block["epsilon_budget"]
        assert max(r["round"] for r in block["releases"]) == 2
    assert "STOPPED EARLY" in capsys.readouterr().out


@pytest.mark.parametrize("flag", ["--epsilon", "--label-epsilon"])
def test_the_summary_names_the_calibrated_multipliers(flag, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--dataset", "wine", "--parties", "3", "--rounds", "2", flag, "3",
                 "--out", str(out), "--no-progress"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    multipliers = metrics["gal"]["multipliers"]
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "multipliers" in x)
    # label-DP keeps no lifetime ledger: the summary says its epsilon is this run's (review S)
    assert ("label-DP is counted per run: runs on the same labels add up" in out) == (flag == "--label-epsilon")
    # the predict replies' exact values for the validation and test rows are outside the guarantee,
    # which only `ledger show` said (review A M1)
    assert ("outside the guarantee: party1, party2 answered exact predictions for the "
            f"{metrics['n_validation']} validation and {metrics['n_test']} test rows" in out) == (flag == "--epsilon")
    assert f"the {metrics['n_validation']} validation rows" in line
    assert all(f"{name}={a:.2f}" in line for name, a in multipliers.items())
    extra = {"alice:alone"} if flag == "--label-epsilon" else set()  # label-DP weighs the exact-label Alone model
    assert set(multipliers) == set(metrics["party_names"]) | extra


@pytest.mark.parametrize("argv,needle", [
    (["--epsilon", "0"], "epsilon"),
    (["--epsilon", "1", "--delta", "0.5"], "delta"),
    (["--epsilon", "1", "--delta", "0.01"], "1/n"),
    # below 1/124 (wine's training rows) but not below 1/178 (the table's rows, as party serve
    # checks): embedded runs wrote a ledger a networked party refuses (review A L1)
    (["--epsilon", "1", "--delta", "0.006"], "< 1/n = 0.00562 for n=178 rows"),
    (["--epsilon", "1e-6"], "too small"),
    (["--label-epsilon", "1e-6"], "too small"),
])
def test_bad_budgets_fail_before_any_data_moves(argv, needle, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--dataset", "wine", "--parties", "3", "--rounds", "3", "--out", str(out),
                 "--no-progress", *argv])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err
    assert not (out / "metrics.json").exists() and not (out / "transcripts").exists()


def test_label_dp_channel_fixes_label_uses_and_accounts(tmp_path):
    plan = PrivacyPlan(label_dp=LabelDP(epsilon=2.0, residual_clip=1.0))
    metrics = train("wine", parties=3, rounds=4, weighting="uniform", eta=0.75, plan=plan)
    block = metrics["privacy"]["alice"]
    assert block["epsilon_spent"] <= 2.0 and len(block["releases"]) == 4
    assert block["mechanism"]["sensitivity"] == pytest.approx(2 ** 0.5)
    assert metrics["eta"] == [0.75] * 4 and metrics["plan"]["layer"] == "label-dp"
    # under label-DP the plan's policy fixes the weights and the step; learned weights are refused
    assert train("wine", parties=3, rounds=2, plan=plan)["eta"] == [0.75 * 3 / 2] * 2
    with pytest.raises(ConfigError, match="uniform"):
        train("wine", parties=3, rounds=2, plan=plan, weighting="learned")
    with pytest.raises(ConfigError, match="classification"):
        train("diabetes", parties=3, rounds=2, plan=plan)


def test_the_row_map_and_ridge_floor_reach_every_dp_trainer_from_one_place():
    """FeatureDP -> DPConfig.ridge() builds the DP ridge of both the plain and the CKKS trainer; the
    defaults are the ball map and the floor lam n + sigma_G sqrt(p); bad knobs fail at the plan."""
    from securegal.privacy.dp.trainer import DPTrainer

    default = FeatureDP(epsilon=1.0).config("plain").for_rows(300).ridge()
    assert (default.coordinate_clip, default.lam, default.noise_ridge) == (None, 1e-3, 1.0)
    spec = FeatureDP(epsilon=1.0, coordinate_clip=1.5, lam=0.01, noise_ridge=2.0)
    trainer = DPTrainer(spec.config("plain"))
    trainer.setup(np.zeros((300, 4)), SimpleNamespace(rounds=3, n_outputs=1, residuals="plain"))
    plain = trainer.ridge
    ckks = spec.config("ckks").for_rows(300).ridge(residual_clip=2.0)  # what CkksDPTrainer.setup builds
    for ridge in (plain, ckks):
        assert (ridge.coordinate_clip, ridge.lam, ridge.noise_ridge) == (1.5, 0.01, 2.0)
        assert ridge.feature_map(4).coordinate_clip == 1.5
    assert ckks.residual_clip == 2.0 and plain.residual_clip == spec.residual_clip
    for bad in (dict(coordinate_clip=0.0), dict(lam=-1.0), dict(noise_ridge=float("nan"))):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            FeatureDP(epsilon=1.0, **bad)


def test_the_default_split_gives_a_party_with_few_columns_a_smaller_gram_share():
    """The default shares are the split from 8 columns on; below, the gram release gets
    sqrt((d + 1) / 9) of its fraction and the stat releases the rest. Given shares are kept. The
    plan's epsilon at a given noise scale does not depend on the split, so a preflight that does
    not know the columns refuses exactly what the party would."""
    import math

    from securegal.privacy.dp.accountant import Budget, calibrate_noise, epsilon_of
    from securegal.privacy.dp.trainer import NO_FEEDBACK_SHARES, release_plan

    config = FeatureDP(epsilon=1.0).config("plain")
    assert config.gram_by_columns and config.for_rows(300).shares == {"gram": 0.3, "stat": 0.6, "pred": 0.1}
    for d, gram in ((1, 0.3 * math.sqrt(2 / 9)), (3, 0.2), (8, 0.3), (40, 0.3)):
        shares = config.for_rows(300, d).shares
        assert shares["gram"] == pytest.approx(gram) and shares["stat"] == pytest.approx(0.9 - gram)
        assert shares["pred"] == 0.1 and not config.for_rows(300, d).gram_by_columns
        assert (shares == config.shares) == (d >= 8)  # from 8 columns on, exactly the default split
    no_feedback = FeatureDP(epsilon=1.0).config("ckks").for_rows(300, 3).shares
    assert no_feedback == pytest.approx({"gram": 0.22, "stat": 0.78}) and set(no_feedback) == set(NO_FEEDBACK_SHARES)
    given = {"gram": 0.3, "stat": 0.6, "pred": 0.1}
    assert FeatureDP(epsilon=1.0, shares=given).config("plain").for_rows(300, 3).shares == given
    budget = Budget(1.0, 1e-5)
    for accountant in ("pld", "rdp"):
        plans = [release_plan(config.for_rows(300, d), 3) for d in (1, 3, 8)]
        assert len({round(epsilon_of(tuple(p.at(7.0) for p in plan), 1e-5, accountant), 9) for plan in plans}) == 1
        z = [calibrate_noise(plan, budget, accountant) for plan in plans]
        assert max(z) / min(z) < 1 + 1e-3


def test_the_budget_shares_reach_the_release_plan_and_bad_ones_fail_at_the_plan():
    """FeatureDP(shares=...) (a tuning knob) splits the budget of the trainer's releases; shares
    the mechanism cannot use are refused when the plan is built, naming the shares."""
    from securegal.privacy.dp.accountant import scales_for_shares
    from securegal.privacy.dp.trainer import NO_FEEDBACK_SHARES, release_plan

    shares = {"gram": 0.2, "stat": 0.7, "pred": 0.1}
    config = FeatureDP(epsilon=1.0, shares=shares).config("plain").for_rows(300)
    assert config.shares == shares
    scales = {p.what: p.scale for p in release_plan(config, 3)}
    assert scales == pytest.approx(scales_for_shares(shares, {"gram": 1, "stat": 3, "pred": 3}))
    assert FeatureDP(epsilon=1.0).config("ckks").shares == NO_FEEDBACK_SHARES  # the default without feedback
    for bad, match in ((dict(shares={"gram": 0.2}), "'stat'"), (dict(shares={"gram": -1.0, "stat": 1.0}), "gram"),
                       (dict(shares=[0.3, 0.7]), "dict"),
                       (dict(shares=shares, feedback=False), "feedback is off")):
        with pytest.raises(ConfigError, match=match):
            FeatureDP(epsilon=1.0, **bad)
    with pytest.raises(ConfigError, match="ckks residuals"):
        FeatureDP(epsilon=1.0, shares=shares).config("ckks")


# Flags with no effect in these runs: refused with one line, nothing written (CLI and Python API alike).
NO_EFFECT = [
    (["--eta", "0.5", "--eta-max", "0.001"], dict(eta=0.5, eta_max=0.001),
     r"eta_max \(--eta-max\) .* fixed \(eta = 0.5\)"),
    (["--epsilon", "3", "--eta-max", "0.001"], dict(plan=PrivacyPlan(feature_dp=FeatureDP(epsilon=3.0)), eta_max=0.001),
     r"fixed \(under DP at 0.75 \* M / T\)"),
    (["--label-epsilon", "3", "--eta-max", "2"], dict(plan=PrivacyPlan(label_dp=LabelDP(epsilon=3.0)), eta_max=2.0),
     r"fixed \(under DP"),
    (["--residuals", "ckks", "--epsilon", "3", "--dp-prediction-clip", "0.1"], None, "no effect on ckks residuals"),
    (["--epsilon", "3", "--dp-feedback", "off", "--dp-prediction-clip", "0.1"], None, "releases none"),
]


@pytest.mark.parametrize("argv,kwargs,message", NO_EFFECT)
def test_flags_without_effect_are_refused_before_anything_is_written(argv, kwargs, message, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--dataset", "wine", "-M", "3", "-T", "2", "--out", str(out), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(message, err), err
    if kwargs is not None:
        with pytest.raises(ConfigError, match=message) as exc:
            train("wine", parties=3, rounds=2, out=out, **kwargs)
        assert "\n" not in str(exc.value)
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("residuals,feedback", [("ckks", None), ("ckks", True), ("plain", False)])
def test_the_plan_refuses_a_prediction_clip_with_no_pred_release(residuals, feedback):
    with pytest.raises(ConfigError, match="prediction_clip"):
        PrivacyPlan(residuals=residuals, feature_dp=FeatureDP(epsilon=1.0, prediction_clip=0.1, feedback=feedback))
    # shares without 'pred' release no predictions either
    with pytest.raises(ConfigError, match="releases none"):
        PrivacyPlan(feature_dp=FeatureDP(epsilon=1.0, prediction_clip=0.1, shares={"gram": 0.4, "stat": 0.6}))
    plan = PrivacyPlan(residuals=residuals, feature_dp=FeatureDP(epsilon=1.0, feedback=feedback))  # the default: fine
    assert plan.feature_dp.config(residuals).prediction_clip == 0.01


def test_eta_max_and_the_prediction_clip_are_honoured_where_they_apply(tmp_path):
    capped = train("wine", parties=3, rounds=2, eta_max=0.001)  # the line search's cap
    assert max(capped["eta"]) <= 0.001 and capped["eta"] != train("wine", parties=3, rounds=2)["eta"]
    plan = PrivacyPlan(feature_dp=FeatureDP(epsilon=3.0, prediction_clip=0.05))
    metrics = train("wine", parties=3, rounds=2, plan=plan)
    assert {b["mechanism"]["prediction_clip"] for b in metrics["privacy"].values()} == {0.05}
    assert metrics["plan"]["feature_dp"]["prediction_clip"] == 0.05


@pytest.mark.parametrize("feedback, clip", [("on", 0.01), ("off", None)])
def test_the_report_names_a_prediction_clip_only_where_pred_is_released(feedback, clip, tmp_path):
    from securegal.privacy.plan import FeatureDP, PrivacyPlan
    from securegal.run import train

    plan = PrivacyPlan(feature_dp=FeatureDP(epsilon=2.0, feedback=feedback == "on"))
    metrics = train("wine", parties=3, rounds=2, seed=0, plan=plan)
    for party in ("party1", "party2"):
        mechanism = metrics["privacy"][party]["mechanism"]
        assert mechanism["prediction_clip"] == clip
        assert ("pred" in mechanism["shares"]) == (clip is not None)


def test_the_label_dp_budget_is_reported_under_the_label_owners_own_name(tmp_path, capsys):
    """Review A: the label-DP block was keyed 'alice' whatever the label owner was called."""
    import json

    from securegal.cli import main

    rng = np.random.default_rng(3)
    x = rng.normal(size=(120, 3))
    y = (x.sum(axis=1) > 0).astype(int)
    (tmp_path / "h.csv").write_text("pid,a1,y\n" + "".join(f"p{i},{x[i, 0]:.4f},{y[i]}\n" for i in range(120)))
    (tmp_path / "b.csv").write_text("pid,b1,b2\n" + "".join(f"p{i},{x[i, 1]:.4f},{x[i, 2]:.4f}\n" for i in range(120)))
    code = main(["train", "--label-owner", f"hosp={tmp_path / 'h.csv'}", "--party", f"bank={tmp_path / 'b.csv'}",
                 "--id", "pid", "--target", "y", "-T", "2", "--label-epsilon", "8", "--no-progress",
                 "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    privacy = json.loads((tmp_path / "run" / "metrics.json").read_text())["privacy"]
    assert "hosp" in privacy and "alice" not in privacy and privacy["hosp"]["epsilon_spent"] <= 8


def test_the_summary_shows_what_is_left_of_the_tables_lifetime_budget(tmp_path):
    """Review A: "epsilon spent 0.668 of 1" read as 0.33 left when 0.00006 was (a table's budget
    composes across sessions); the summary now names both."""
    from securegal.commands.train import summary

    plan = PrivacyPlan(feature_dp=FeatureDP(epsilon=1.0))
    metrics = train("wine", parties=3, rounds=2, plan=plan, ledger=tmp_path)
    line = next(x for x in summary(metrics, tmp_path).splitlines() if "privacy party1" in x)
    left = metrics["privacy"]["party1"]["ledger"]["lifetime_epsilon_remaining"]
    assert "this session's releases epsilon" in line and f"{left:.4g} left" in line, line


def test_baselines_beside_a_dp_run_are_marked_not_private(tmp_path, capsys):
    """--baselines trains Alone, Joint and GAL-uniform without DP on the same tables; they sat in
    metrics.json beside the DP result unmarked (independent review S)."""
    out = tmp_path / "run"
    assert main(["train", "--dataset", "wine", "--parties", "3", "--rounds", "2", "--epsilon", "3", "--baselines",
                 "--out", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "evaluation only" in metrics["baselines_not_private"]
    text = capsys.readouterr().out
    assert [x.split()[0] for x in text.splitlines() if "(not private: evaluation only)" in x] == ["GAL", "Alone", "Joint"]
    assert main(["train", "--dataset", "wine", "--parties", "3", "--rounds", "2", "--baselines",
                 "--out", str(tmp_path / "plain"), "--no-progress"]) == 0
    assert "baselines_not_private" not in json.loads((tmp_path / "plain" / "metrics.json").read_text())
    assert "not private" not in capsys.readouterr().out


def test_label_dp_with_a_ledger_keeps_the_label_columns_lifetime_budget(tmp_path, capsys):
    """Label-DP had no lifetime budget: two runs on the same labels each reported 4 of 4 while
    together they released epsilon 6 (independent review S). With --ledger DIR the label column
    has a ledger: a second run gets what is left, and none once it is spent."""
    from securegal.privacy.dp.accountant import epsilon_of
    from securegal.privacy.dp.ledger import read_ledger

    ledgers = tmp_path / "ledgers"
    ledgers.mkdir()

    def run(name):
        return main(["train", "--dataset", "wine", "--parties", "3", "--rounds", "2", "--label-epsilon", "2",
                     "--ledger", str(ledgers), "--out", str(tmp_path / name), "--no-progress"])

    assert run("first") == 0
    block = json.loads((tmp_path / "first" / "metrics.json").read_text())["privacy"]["alice"]
    assert block["ledger"]["lifetime_epsilon_spent"] == pytest.approx(2.0, abs=1e-3)
    assert "the labels' lifetime epsilon 2 of 2" in capsys.readouterr().out
    assert run("second") == 2
    err = capsys.readouterr().err
    assert "the label column's lifetime budget (ledger " in err and "session refused: left" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "second").exists()
    led = read_ledger(ledgers / "alice.labels.securegal-ledger.json")
    assert len(led.spent_by_session()) == 1 and led.epsilon_spent <= 2.0
    assert epsilon_of(led.releases, 1e-5, "pld") == pytest.approx(led.epsilon_spent)



def test_a_label_dp_run_that_stops_early_reports_the_ledger_after_its_refund(tmp_path, monkeypatch):
    """metrics.json was written before the unused reservation went back: it said 7.9996 of 8
    spent while the ledger said 0.94 (re-verification of review S F5)."""
    from securegal.parties import label_owner
    from securegal.privacy.dp.ledger import read_ledger

    real = label_owner.LabelOwner._round

    def stop_at_round_2(self, t):
        if t == 2:
            raise label_owner.FederationStopped("stopped for the test")
        return real(self, t)

    monkeypatch.setattr(label_owner.LabelOwner, "_round", stop_at_round_2)
    metrics = train("wine", parties=3, rounds=4, seed=0, out=tmp_path / "run", ledger=tmp_path,
                    plan=PrivacyPlan(label_dp=LabelDP(epsilon=2.0)))
    assert "stopped" in metrics["gal"]
    led = read_ledger(tmp_path / "alice.labels.securegal-ledger.json")
    reported = metrics["privacy"]["alice"]["ledger"]
    assert led.epsilon_spent < 1.5 and len(led.refunds) == 1
    assert reported["lifetime_epsilon_spent"] == pytest.approx(led.epsilon_spent)
    assert reported["lifetime_epsilon_remaining"] == pytest.approx(led.remaining())


def test_a_label_session_cap_lets_several_runs_share_the_labels_lifetime_budget(tmp_path, capsys):
    """With a label ledger the first run took the whole lifetime budget: no run could follow
    (review N). --label-session-epsilon caps what one run adds, as session_epsilon does for a party."""
    from securegal.privacy.dp.accountant import epsilon_of
    from securegal.privacy.dp.ledger import read_ledger

    def run(name, *extra):
        return main(["train", "--dataset", "wine", "--parties", "3", "--rounds", "2", "--label-epsilon", "2",
                     "--label-session-epsilon", "0.5", *extra, "--out", str(tmp_path / name), "--no-progress"])

    assert run("nowhere") == 2 and "needs a ledger (--ledger DIR" in capsys.readouterr().err
    (tmp_path / "L").mkdir()
    for name in ("first", "second", "third"):
        assert run(name, "--ledger", str(tmp_path / "L")) == 0
    led = read_ledger(tmp_path / "L" / "alice.labels.securegal-ledger.json")
    after = [s.epsilon_after for s in led.spent_by_session()]  # each run adds at most 0.5 to the lifetime
    assert len(after) == 3 and all(0.45 < b - a <= 0.5 + 1e-6 for a, b in zip([0.0] + after, after)), after
    assert led.epsilon_spent <= 1.5 + 1e-6 and epsilon_of(led.releases, 1e-5, "pld") == pytest.approx(led.epsilon_spent)


def test_a_session_cap_lets_several_embedded_runs_share_each_partys_lifetime_budget(tmp_path, capsys):
    """Docs review: with --ledger the first embedded run took every party's whole lifetime budget,
    so "later runs share it" failed on the second run. --session-epsilon (FeatureDP.session_epsilon)
    caps what one run adds, as a networked party's party.toml session_epsilon does; the third run
    finds too little left and is refused before anything is released or written."""
    from securegal.privacy.dp.ledger import read_ledger

    def run(name, *extra, session="1"):
        return main(["train", "--dataset", "wine", "--parties", "3", "--rounds", "2", "--epsilon", "2.5",
                     "--session-epsilon", session, *extra, "--out", str(tmp_path / name), "--no-progress"])

    assert run("nowhere") == 2 and "--session-epsilon caps what a run adds" in capsys.readouterr().err
    assert run("bigger", "--ledger", str(tmp_path), session="3") == 2
    assert "session_epsilon 3 exceeds the lifetime epsilon 2.5" in capsys.readouterr().err
    (tmp_path / "L").mkdir()
    assert run("first", "--ledger", str(tmp_path / "L")) == 0
    capsys.readouterr()
    # the same split's validation and test rows were disclosed by the first run: under the default
    # predict = "once" the second is refused before it spends anything
    before = (tmp_path / "L" / "party1.securegal-ledger.json").read_bytes()
    assert run("second", "--ledger", str(tmp_path / "L")) == 2
    err = capsys.readouterr().err
    assert "party 'party1' would not predict this run's validation and test rows" in err and "54 of the 54" in err
    assert (tmp_path / "L" / "party1.securegal-ledger.json").read_bytes() == before
    assert not (tmp_path / "second").exists()
    assert run("second", "--ledger", str(tmp_path / "L"), "--dp-predict", "non-training") == 0
    for party in ("party1", "party2"):
        after = [s.epsilon_after for s in read_ledger(tmp_path / "L" / f"{party}.securegal-ledger.json").spent_by_session()]
        assert len(after) == 2 and 0.95 < after[0] <= 1 + 1e-6 and 0.95 < after[1] - after[0] <= 1 + 1e-6, after
    capsys.readouterr()
    assert run("third", "--ledger", str(tmp_path / "L"), "--dp-predict", "non-training") == 2
    assert "left 0.5" in capsys.readouterr().err and not (tmp_path / "third").exists()
    assert PrivacyPlan.from_options(epsilon=2.0, session_epsilon=0.5).feature_dp.session_epsilon == 0.5
    with pytest.raises(ConfigError, match=r"session_epsilon \(--session-epsilon\) caps the feature parties' budget"):
        PrivacyPlan.from_options(label_epsilon=2.0, session_epsilon=0.5)


def test_dp_trainers_without_a_dp_plan_warn_that_the_label_owner_runs_plain_gals_policy():
    """Docs review: privacy.md 5b told Python users to pass the CKKS+DP channel and trainers by
    hand, which skips the plan's DP policy (learned weights and a line search on noised
    predictions: every party dropped by round 3). The docs now give the plan; the hand-made way warns."""
    from securegal.privacy.dp.layers import DPTrainers
    from securegal.privacy.dp.trainer import DPConfig

    with pytest.warns(UserWarning, match="DP trainers and a plan without feature-DP"):
        train("wine", parties=3, rounds=1, trainers=DPTrainers(DPConfig(3.0, 1e-5)))


def test_the_label_dp_losses_are_the_ones_with_a_stated_sensitivity():
    """Code review M5: the plan's list and the channel's sensitivities are kept in two places (the
    plan must not import the channel: the command line reads it for its help); they must agree."""
    from securegal.privacy.dp.layers import _LOSS_SENSITIVITY
    from securegal.privacy.plan import LABEL_DP_LOSSES

    assert set(_LOSS_SENSITIVITY) == set(LABEL_DP_LOSSES)


def test_dp_predict_says_what_later_runs_on_a_ledger_may_predict(tmp_path, capsys):
    """--dp-predict is each embedded DP party's [policy] predict: refused without --ledger (no
    later run to apply to), and a new split whose validation and test rows an earlier run trained
    on is refused before anything is spent, whatever the mode (trained rows are never answered)."""
    def run(name, *extra):
        return main(["train", "--dataset", "wine", "--parties", "3", "--rounds", "1", "--epsilon", "2",
                     "--out", str(tmp_path / name), "--no-progress", *extra])

    assert run("nowhere", "--dp-predict", "non-training") == 2
    assert "--dp-predict non-training says which rows" in capsys.readouterr().err
    (tmp_path / "L").mkdir()
    assert run("first", "--ledger", str(tmp_path / "L"), "--session-epsilon", "0.5") == 0
    capsys.readouterr()
    for mode in ("once", "non-training"):
        assert run(f"other-split-{mode}", "--ledger", str(tmp_path / "L"), "--seed", "5", "--dp-predict", mode) == 2
        assert "were training rows of a session of this table" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="feature-DP predict must be one of once, non-training, none"):
        FeatureDP(epsilon=1, predict="always")
    with pytest.raises(ConfigError, match="an embedded run evaluates"):
        train("wine", parties=3, rounds=1, plan=PrivacyPlan(feature_dp=FeatureDP(epsilon=1, predict="none")),
              ledger=tmp_path / "L")


@pytest.mark.parametrize("flags, layer", [(["--epsilon", "1"], "dp"), (["--label-epsilon", "2"], "label-dp"),
                                          (["--residuals", "ckks"], "ckks")])
def test_a_privacy_layer_with_no_feature_party_is_refused(tmp_path, capsys, flags, layer):
    """New-user review L4: -M 1 --epsilon 1 ran with no party under DP (plan.layer 'dp', privacy
    null) and -M 1 --label-epsilon 2 reported 'epsilon spent 2 of 2' with nobody to release to."""
    assert main(["train", "--dataset", "wine", "--parties", "1", *flags, "--out", str(tmp_path / "r"),
                 "--no-progress"]) == 2
    assert f"the {layer} layer protects what the label owner and the feature parties exchange" in \
        capsys.readouterr().err
    assert not (tmp_path / "r").exists()
