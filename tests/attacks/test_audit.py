"""securegal audit on real (small) run directories: acceptance numbers and clean errors."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from securegal.attacks import audit
from securegal.experiments.active import CraftedResiduals
from securegal.cli import main
from securegal.run import train


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit_runs")
    for ds in ("wine", "breast_cancer"):
        train(ds, parties=4, rounds=10, seed=0, out=root / ds, ground_truth=True)
    train("wine", parties=4, rounds=3, seed=0, out=root / "wine_crafted", ground_truth=True,
          channel=CraftedResiduals(seed=1))
    train("diabetes", parties=4, rounds=3, seed=0, out=root / "diabetes", ground_truth=True)
    return root


def _rows(result, attack, metric):
    return [a for a in result["attacks"] if a["attack"] == attack and a["metric"] == metric]


@pytest.mark.parametrize("dataset", ["wine", "breast_cancer"])
def test_plain_gal_acceptance(runs, dataset):
    result = audit.audit_run(runs / dataset, known_labels=0.05, known_rows=0.05, steps=50, report=False)
    inversion = _rows(result, "label_inversion", "accuracy")
    assert len(inversion) == 3 and all(a["score"] >= 0.99 for a in inversion)
    hat = _rows(result, "hat_matrix", "r2")
    assert len(hat) == 3 and all(a["score"] >= 0.9 for a in hat)
    on_disk = json.loads((runs / dataset / audit.AUDIT).read_text())
    keys = {"attack", "attacker", "victim", "metric", "score", "baseline", "advantage"}
    assert on_disk["attacks"] and all(keys <= set(a) for a in on_disk["attacks"])
    assert on_disk["epsilon"] == "inf"


def test_regression_run_labels_and_features_leak(runs):
    result = audit.audit_run(runs / "diabetes", known_labels=0.1, known_rows=0.1, steps=100, report=False)
    assert all(a["advantage"] > 0.05 for a in _rows(result, "label_inversion", "r2"))
    assert {a["metric"] for a in result["attacks"]} == {"r2", "mad", "mse"}


def test_crafted_residuals_run_is_audited_as_active_attack(runs):
    result = audit.audit_run(runs / "wine_crafted", known_labels=0.05, known_rows=0.05, report=False)
    active = _rows(result, "active_residuals", "r2")
    assert len(active) == 3 and all(a["score"] > 0.999 for a in active)
    # Crafted residuals carry no labels: the feature parties learn nothing from them.
    assert all(abs(a["advantage"]) < 0.15 for a in _rows(result, "label_inversion", "accuracy"))


def test_rows_curve_grows(runs):
    result = audit.audit_run(runs / "breast_cancer", rows_curve=[0.01, 0.1], steps=50, report=False)
    by_victim = {}
    for pt in result["known_rows_curve"]:
        by_victim.setdefault(pt["victim"], []).append(pt["r2"])
    assert all(r2[0] < r2[1] and r2[1] > 0.99 for r2 in by_victim.values())


def test_cli_audit_several_runs_writes_plot(runs, tmp_path, capsys):
    plot = tmp_path / "adv.png"
    code = main(["audit", str(runs / "wine"), str(runs / "wine_crafted"), "--plot", str(plot), "--net-steps", "50"])
    assert code == 0 and plot.stat().st_size > 0
    assert "label_inversion" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--known-labels", "0"], "--known-labels"),
    (["--known-labels", "1.5"], "--known-labels"),
    (["--known-rows", "1"], "--known-rows"),
])
def test_cli_rejects_fractions_outside_unit_interval(runs, capsys, args, message):
    assert main(["audit", str(runs / "wine"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_rejects_bad_run_dirs(runs, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(runs / "wine", broken)
    cases = []
    cases.append((tmp_path / "missing", "does not exist"))
    (tmp_path / "empty").mkdir()
    cases.append((tmp_path / "empty", "metrics.json"))
    no_truth = tmp_path / "no_truth"
    shutil.copytree(runs / "wine", no_truth)
    (no_truth / audit.GROUND_TRUTH).unlink()
    cases.append((no_truth, "--save-ground-truth"))
    bad_metrics = tmp_path / "bad_metrics"
    shutil.copytree(runs / "wine", bad_metrics)
    (bad_metrics / "metrics.json").write_text("{not json")
    cases.append((bad_metrics, "malformed"))
    (broken / "transcripts" / "party1" / "messages.bin").write_bytes(b"garbage")
    cases.append((broken, "corrupt transcript"))
    for run_dir, message in cases:
        assert main(["audit", str(run_dir)]) == 2, run_dir
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_truncated_ground_truth_is_a_clean_error(runs, tmp_path, capsys):
    run_dir = tmp_path / "trunc"
    shutil.copytree(runs / "wine", run_dir)
    data = (run_dir / audit.GROUND_TRUTH).read_bytes()
    (run_dir / audit.GROUND_TRUTH).write_bytes(data[: len(data) // 2])
    assert main(["audit", str(run_dir)]) == 2
    assert "ground_truth.npz" in capsys.readouterr().err


def test_side_knowledge_draw_is_seeded(runs):
    a = audit.audit_run(runs / "wine", seed=3, steps=20, report=False)
    b = audit.audit_run(runs / "wine", seed=3, steps=20, report=False)
    assert a["attacks"] == b["attacks"]
    assert np.isfinite([x["score"] for x in a["attacks"]]).all()


def test_sweep_trains_and_audits_dp_runs(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["audit", "--sweep", str(out), "--dataset", "wine", "--rounds", "2", "--epsilons", "1",
                 "--label-epsilons", "1", "--no-ckks", "--net-steps", "20"])
    assert code == 0
    assert (out / "plain" / audit.AUDIT).is_file() and (out / "dp-eps1" / audit.AUDIT).is_file()
    label_dp = json.loads((out / "label-dp-eps1" / audit.AUDIT).read_text())
    assert all(a["epsilon"] == 1.0 for a in label_dp["attacks"] if a["victim"] == "alice")
    checked = [a for a in label_dp["attacks"] if "bayes_bound" in a]
    assert {a["attack"] for a in checked} == {"label_inversion", "label_rounds", "label_clustering"}
    assert all(a["metric"] == "accuracy" and a["within_bayes_bound"] for a in checked)
    assert label_dp["layers"]["mode"] == "label-DP" and label_dp["verdicts"]
    assert "Bayes bound" in (out / "label-dp-eps1" / "audit.md").read_text()
    assert (out / audit.PLOT).stat().st_size > 0
    dp = json.loads((out / "dp-eps1" / audit.AUDIT).read_text())
    assert dp["epsilon"] == 1.0
    assert all(a["epsilon"] == 1.0 for a in dp["attacks"] if a["attacker"] == "alice")


def test_sweep_and_run_dirs_are_exclusive(runs, tmp_path, capsys):
    assert main(["audit", str(runs / "wine"), "--sweep", str(tmp_path / "s"), "--dataset", "wine"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["audit"]) == 2
    assert "RUN_DIR" in capsys.readouterr().err


@pytest.mark.parametrize("args, refused", [
    (["--out", "OUT"], "--out"),
    (["--overwrite"], "--overwrite"),
    (["--parties", "9"], "--parties"),
    (["-M", "4"], "--parties"),  # the default value, given: still refused
    (["--rounds", "3"], "--rounds"),
    (["--train-seed", "4"], "--train-seed"),
    (["--epsilons", "1,2"], "--epsilons"),
    (["--label-epsilons", "3"], "--label-epsilons"),
    (["--no-ckks"], "--no-ckks"),
    (["--epsilon", "1"], "--epsilon"),
    (["--residuals", "ckks"], "--residuals"),
    (["--label-epsilon", "1"], "--label-epsilon"),
    (["--dataset", "wine"], "--dataset"),
    (["--csv", "x.csv"], "--csv"),
    (["--target", "y"], "--target"),
    (["--data", "x.csv"], "--data"),
    (["--id-column", "id"], "--id-column"),
    (["--ledger", "x.json"], "--ledger"),
    (["--plot", "p.png"], "--plot"),  # one RUN_DIR: nothing to plot
])
def test_run_dir_audit_refuses_options_it_cannot_honour(tmp_path, capsys, args, refused):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    argv = ["audit", str(run_dir)] + [str(tmp_path / a) if a == "OUT" else a for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert refused in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert [p.name for p in tmp_path.iterdir()] == ["run"] and not any(run_dir.iterdir())


def test_run_dir_audit_names_every_refused_option(tmp_path, capsys):
    argv = ["audit", str(tmp_path), "--out", str(tmp_path / "xx2"), "--epsilons", "1,2", "--rounds", "3",
            "--parties", "9", "--train-seed", "4", "--label-epsilons", "3", "--no-ckks", "--overwrite"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("securegal: error: audit RUN_DIR does not take --epsilons, --label-epsilons, --no-ckks, "
                          "--out, --overwrite, --parties, --rounds, --train-seed (") and len(err.splitlines()) == 1
    assert not (tmp_path / "xx2").exists()


@pytest.mark.parametrize("args, refused", [
    (["RUN", "--as", "party1", "--data", "x.csv", "--overwrite"], "--overwrite"),
    (["RUN", "--as", "party1", "--data", "x.csv", "--rows-curve", "0.1"], "--rows-curve"),
    (["RUN", "--as", "party1", "--data", "x.csv", "--sweep", "OUT"], "--sweep"),
    (["--sweep", "OUT", "--dataset", "wine", "--out", "OUT"], "--out"),
    (["--active", "crafted_residuals", "--out", "OUT", "--plot", "p.png"], "--plot"),
    (["--active", "crafted_residuals", "--out", "OUT", "--sweep", "OUT"], "--sweep"),
    (["--active", "psi_membership", "--out", "OUT", "--seed", "1"], "--seed"),
    (["--active", "psi_membership", "--out", "OUT", "--no-ckks"], "--no-ckks"),
])
def test_every_way_in_refuses_options_it_does_not_use(tmp_path, capsys, args, refused):
    argv = ["audit"] + [str(tmp_path / a) if a in ("RUN", "OUT") else a for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert refused in err and "does not take" in err and len(err.strip().splitlines()) == 1, err
    assert not any(tmp_path.iterdir())


def test_party_that_released_nothing_is_reported_not_fatal(runs, tmp_path):
    run_dir = tmp_path / "silent"
    shutil.copytree(runs / "wine", run_dir)
    transcript = run_dir / "transcripts" / "party2"
    index = [json.loads(line) for line in (transcript / "index.jsonl").read_text().splitlines()]
    kept = [e for e in index if e["kind"] != "fit_request"]
    (transcript / "index.jsonl").write_text("".join(json.dumps(e) + "\n" for e in kept))
    result = audit.audit_run(run_dir, steps=20, report=False)
    assert any("party2" in reason for reason in result["nothing_to_attack"])
    assert not [a for a in result["attacks"] if a["attacker"] == "party2"]
    assert [a for a in result["attacks"] if a["attacker"] == "party1"]


def test_the_layer_in_force_counts_the_parties_own_dp():
    """Review C: a networked run's plan names only the label owner's layer ('plain'), and the audit
    reported "registered layer 'plain'" while its parties ran feature-DP."""
    from securegal.attacks.audit import layers_in_force
    from securegal.attacks.report import _layers_lines

    networked = {"residuals": "plain", "party_names": ["alice", "party1", "party2"], "plan": {"layer": "plain"},
                 "privacy": {"party1": {"epsilon_budget": 3.0, "delta": 1e-5}}}
    layers = layers_in_force(networked)
    assert (layers["layer"], layers["owner_layer"], layers["feature_dp_epsilon"]) == ("dp", "plain", {"party1": 3.0})
    assert "registered layer 'dp' (the label owner's plan: 'plain'" in _layers_lines({"layers": layers})[0]
    embedded = {**networked, "plan": {"layer": "dp"}}
    assert (layers_in_force(embedded)["layer"], layers_in_force(embedded)["owner_layer"]) == ("dp", None)
    assert layers_in_force({**networked, "privacy": {}})["layer"] == "plain"


def _own_csv(tmp_path):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(240, 6)).clip(-4, 4)
    y = (X @ np.array([1.0, -1.0, 0.5, 0.5, -0.5, 0.3]) > 0).astype(int)
    import pandas as pd

    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(6)]).assign(y=y)
    frame.insert(0, "id", [f"r{i}" for i in range(len(y))])
    frame.to_csv(tmp_path / "own.csv", index=False)
    (tmp_path / "cols.toml").write_text("lower = [-4, -4, -4, -4, -4, -4]\nupper = [4, 4, 4, 4, 4, 4]\n")
    return ["--csv", str(tmp_path / "own.csv"), "--target", "y", "--id-column", "id"]


def test_a_sweep_and_an_active_run_take_a_users_csv_with_its_ids_and_columns(tmp_path, capsys, monkeypatch):
    """New-user review M1: the sweep and --active crafted_residuals could not run DP on a user's
    CSV (--columns refused by audit, --id-column refused with --sweep), and a failed sweep left
    its first runs behind, so the next one failed naming an --out never given."""
    import securegal.experiments.sweep as sweep

    own = _own_csv(tmp_path)
    base = ["audit", *own, "--rounds", "2", "--parties", "3", "--epsilons", "1", "--no-ckks", "--net-steps", "20"]
    assert main([*base, "--sweep", str(tmp_path / "s0")]) == 2
    assert "give --columns FILE" in capsys.readouterr().err and not (tmp_path / "s0").exists()
    (tmp_path / "bad.toml").write_text("lower = [-4, -4]\nupper = [4, 4]\n")  # verifier I: 2 of 6 columns
    assert main([*base, "--columns", str(tmp_path / "bad.toml"), "--sweep", str(tmp_path / "s0")]) == 2
    assert "declaration has 2 columns" in capsys.readouterr().err and not (tmp_path / "s0").exists()
    calls = []

    def train_then_interrupted(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(kwargs["out"])
        return train(*args, **kwargs)

    monkeypatch.setattr(sweep, "train", train_then_interrupted)
    assert main([*base, "--columns", str(tmp_path / "cols.toml"), "--sweep", str(tmp_path / "s1")]) == 130
    assert calls and not calls[0].exists() and not calls[0].parent.exists()  # the half sweep is gone, OUT too
    monkeypatch.undo()
    assert main([*base, "--columns", str(tmp_path / "cols.toml"), "--sweep", str(tmp_path / "s1")]) == 0
    dp = json.loads((tmp_path / "s1" / "dp-eps1" / audit.AUDIT).read_text())
    assert dp["epsilon"] == 1.0 and dp["verdicts"]
    import shlex

    reproduce = shlex.split(dp["train_command"])  # each sweep run's own securegal train command
    assert reproduce[reproduce.index("--epsilon") + 1] == "1" and "--columns" in reproduce and "--id" in reproduce
    plain = shlex.split(json.loads((tmp_path / "s1" / "plain" / audit.AUDIT).read_text())["train_command"])
    argv = plain[plain.index("securegal") + 1:]
    argv[argv.index("--out") + 1] = str(tmp_path / "again")
    assert main([*argv, "--no-progress"]) == 0  # it runs as written, and trains the same run
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())["gal"]["test"]
    assert again == json.loads((tmp_path / "s1" / "plain" / "metrics.json").read_text())["gal"]["test"]
    capsys.readouterr()
    assert main([*base, "--columns", str(tmp_path / "cols.toml"), "--sweep", str(tmp_path / "s1")]) == 2
    assert f"--sweep {tmp_path / 's1'} already holds" in capsys.readouterr().err
    assert main(["audit", "--active", "crafted_residuals", *own, "--epsilon", "1", "--columns",
                 str(tmp_path / "cols.toml"), "--rounds", "2", "--parties", "3", "--net-steps", "20",
                 "--out", str(tmp_path / "act")]) == 0
    command = json.loads((tmp_path / "act" / audit.AUDIT).read_text())["train_command"]
    assert "--id-column id --parties 3" in command and f"--columns {tmp_path / 'cols.toml'}" in command


def test_the_reproduce_command_of_a_csv_run_is_the_one_it_was_trained_with(tmp_path, capsys):
    """New-user review M2: audit's Reproduce for a CSV run cut the path to its name, put a
    placeholder for the target and left out --id and --columns, so it failed as written."""
    own = _own_csv(tmp_path)
    argv = ["train", "--csv", own[1], "--target", "y", "--id", "id", "--epsilon", "1", "--columns",
            str(tmp_path / "cols.toml"), "--parties", "3", "--rounds", "2", "--save-ground-truth",
            "--out", str(tmp_path / "r"), "--no-progress"]
    assert main(argv) == 0
    assert main(["audit", str(tmp_path / "r"), "--net-steps", "20", "--no-report"]) == 0
    recorded = json.loads((tmp_path / "r" / audit.AUDIT).read_text())["train_command"]
    import shlex

    assert shlex.split(recorded) == ["cd", str(Path.cwd()), "&&", "securegal", *argv]  # paths may be relative
    rebuilt = audit.train_command({"dataset": "own", "parties": 3, "rounds": 2, "seed": 0}, tmp_path / "x")
    assert "--csv PATH/own.csv --target LABEL_COLUMN [--id ID_COLUMN] [--columns FILE]" in rebuilt
