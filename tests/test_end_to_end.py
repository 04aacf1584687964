import json

import numpy as np
import pytest

from securegal.cli import main
from securegal.run import train
from securegal.transcript import read_transcripts

KEYS = {"dataset", "task", "metric", "parties", "rounds", "seed", "gal", "weights", "eta"}


def test_train_writes_a_complete_run_directory(tmp_path):
    m = train("wine", parties=4, rounds=4, seed=1, baselines=True, out=tmp_path / "run")
    on_disk = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(m))
    assert KEYS <= set(m) and {"alone", "joint", "gal_uniform"} <= set(m)
    assert m["metric"] == "accuracy" and len(m["gal"]["per_round"]) == 4
    assert np.allclose(np.sum(m["weights"], axis=1), 1.0) and len(m["eta"]) == 4
    assert (tmp_path / "run" / "curve.png").stat().st_size > 1000
    assert m["gal"]["test"] > m["alone"]["test"]


def test_transcripts_hold_each_partys_view(tmp_path):
    train("wine", parties=3, rounds=3, seed=0, out=tmp_path, ground_truth=True)
    views = read_transcripts(tmp_path)
    assert set(views) == {"alice", "party1", "party2"}
    bob = views["party1"]
    kinds = [(r.direction, r.kind) for r in bob.records]
    assert kinds[:6] == [("received", "psi_request"), ("sent", "psi_reply"), ("received", "psi_selection"),
                         ("sent", "psi_selection_ack"), ("received", "setup"), ("sent", "setup_ack")]
    assert kinds.count(("received", "fit_request")) == 3
    # rows travel as this session's random handles, never as the label owner's row numbers
    setup = next(bob.select("setup")).envelope.body
    truth = np.load(tmp_path / "ground_truth.npz")
    assert not np.isin(setup.train_ids, truth["sample_ids"]).any() and setup.train_ids.min() > 2 ** 32
    # plain GAL: the first residual reveals every training label (what CKKS must prevent)
    _, r1 = bob.arrays("fit_request", "received")[0]
    assert np.array_equal(r1.argmax(axis=1), truth["labels"])
    # the label owner's view has both directions for every peer
    alice = views["alice"]
    assert {r.receiver for r in alice.select(direction="sent")} == {"party1", "party2"}


@pytest.mark.parametrize("dataset,metric", [("diabetes", "mad"), ("iris", "accuracy")])
def test_gal_beats_alone(dataset, metric):
    m = train(dataset, parties=4, rounds=5, seed=0, baselines=True)
    better = (lambda a, b: a < b) if metric == "mad" else (lambda a, b: a > b)
    assert m["metric"] == metric and better(m["gal"]["test"], m["alone"]["test"])


def test_training_is_deterministic_given_the_seed():
    a = train("breast_cancer", parties=4, rounds=3, seed=5)
    b = train("breast_cancer", parties=4, rounds=3, seed=5)
    assert a["gal"]["per_round"] == b["gal"]["per_round"] and a["weights"] == b["weights"]


def test_csv_end_to_end(tmp_path, rng):
    X = rng.normal(size=(120, 4))
    y = (X[:, 0] + X[:, 3] > 0).astype(int)
    path = tmp_path / "data.csv"
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header="a,b,c,d,label", comments="")
    m = train(csv=path, target="label", parties=2, rounds=3)
    assert m["task"] == "classification" and m["gal"]["test"] > 70


def test_csv_with_an_id_column_keeps_it_out_of_the_features(tmp_path, rng, capsys):
    X = rng.normal(size=(120, 4))
    y = (X[:, 0] + X[:, 3] > 0).astype(int)
    path = tmp_path / "data.csv"
    ids = rng.permutation(10_000)[:120]
    np.savetxt(path, np.column_stack([ids, X, y]), delimiter=",", fmt="%.17g", header="pid,a,b,c,d,label",
               comments="")
    code = main(["train", "--csv", str(path), "--target", "label", "--id", "pid", "--parties", "2", "--rounds", "2",
                 "--save-ground-truth", "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["n_train"] + m["n_validation"] + m["n_test"] == 120
    truth = np.load(tmp_path / "run" / "ground_truth.npz")
    columns = np.hstack([truth["features.alice"], truth["features.party1"]])
    assert columns.shape[1] == 4  # pid is not among the features
    train_rows = truth["sample_ids"]
    assert np.allclose(columns, X[train_rows])


def test_an_id_like_column_left_among_the_features_is_warned_about(tmp_path, rng, caplog):
    X = rng.normal(size=(60, 2))
    path = tmp_path / "data.csv"
    np.savetxt(path, np.column_stack([rng.permutation(60) + 1000, X, X[:, 0] > 0]), delimiter=",",
               fmt="%.17g", header="pid,a,b,label", comments="")
    with caplog.at_level("WARNING", logger="securegal.data.datasets"):
        train(csv=path, target="label", parties=2, rounds=1)
    assert "column 'pid' holds a distinct integer in every row" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="securegal.data.datasets"):
        train(csv=path, target="label", id_column="pid", parties=2, rounds=1)
    assert "distinct integer" not in caplog.text


@pytest.mark.parametrize("argv,needle", [
    (["--dataset", "nope"], "unknown dataset 'nope'"),
    (["--dataset", "iris", "--parties", "9"], "only 4 features"),
    (["--dataset", "iris", "--rounds", "0"], "--rounds must be an integer in 1..1000, got 0"),
    (["--dataset", "iris", "--rounds", "1000000000"], "--rounds must be an integer in 1..1000"),
    (["--dataset", "iris", "--eta", "-1"], "--eta must be a number in (0, 1e+06], got -1.0"),
    (["--dataset", "iris", "--eta-max", "nan"], "--eta-max must be a number"),
    (["--dataset", "iris", "--learner", "svm"], "unknown learner 'svm'"),
    (["--csv", "missing.csv", "--target", "y"], "missing.csv: no such file"),
    (["--csv", "data.csv"], "needs --target"),
    (["--dataset", "iris", "--id", "id"], "--id names the ID column of --csv"),
    (["--csv", "data.csv", "--target", "y", "--id", "nope"], "no ID column 'nope'"),
    (["--dataset", "wine", "--missing", "refuse"], "--missing says how missing cells of --csv"),
])
def test_bad_input_gives_one_line_and_no_result(argv, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text("a,y\n" + "1,0\n" * 12)
    out = tmp_path / "out"
    code = main(["train", *argv, "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv"]  # nothing written, not even --out


def test_a_run_that_fails_midway_leaves_nothing_that_looks_like_a_result(tmp_path):
    from securegal.privacy.plain import PlainResiduals

    class FailsInRound2(PlainResiduals):  # the label owner runs out of memory in round 2
        def seal(self, residuals, round, party):
            if round == 2:
                raise MemoryError("simulated")
            return super().seal(residuals, round, party)

    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "metrics.json").write_text("{}")
    with pytest.raises(MemoryError):
        train("wine", parties=3, rounds=3, out=tmp_path / "keep", overwrite=True,
              channel=FailsInRound2())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep"]  # no staging directory left behind
    assert (tmp_path / "keep" / "metrics.json").read_text() == "{}"  # the earlier result is intact


def test_cli_prints_a_summary(tmp_path, capsys):
    assert main(["train", "--dataset", "iris", "--rounds", "2", "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    assert "GAL" in capsys.readouterr().out
    assert main(["train", "--dataset", "iris", "--rounds", "2", "--out", str(tmp_path / "r"), "--no-progress"]) == 2


def test_a_party_that_refuses_setup_stops_the_run_with_its_reason():
    from securegal.errors import ConfigError, PartyRefused
    from securegal.privacy.plain import PlainTrainer

    class Refuses(PlainTrainer):
        def setup(self, X_train, setup):
            raise ConfigError("this party is misconfigured")

    with pytest.raises(PartyRefused, match="misconfigured"):
        train("wine", parties=3, rounds=2, trainers=lambda n, i, learner: (lambda s: Refuses(learner)))



@pytest.mark.parametrize("rounds", [2, 9])
def test_the_summary_shows_eta_on_one_line_at_any_number_of_rounds(rounds, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--dataset", "iris", "--rounds", str(rounds), "--out", str(out), "--no-progress"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "eta per round" in line)
    eta = [f"{e:.2f}" for e in json.loads((out / "metrics.json").read_text())["eta"]]
    shown = eta if rounds <= 6 else [*eta[:3], "...", eta[-1]]
    assert f"eta per round: {', '.join(shown)} (all {rounds} in metrics.json)" in line


def test_a_killed_runs_staging_directory_is_removed_by_the_next_run(tmp_path):
    """kill -9 leaves a hidden .OUT.partial-* staging directory; the next run beside it removes
    those whose process is gone on this host, and leaves a live run's and another host's alone."""
    import hashlib
    import os
    import socket
    import subprocess
    import sys

    from securegal.run import train

    host = hashlib.blake2b(socket.gethostname().encode(), digest_size=4).hexdigest()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    killed = tmp_path / f".run.partial-{host}-{gone.pid}-abc"
    live = tmp_path / f".run.partial-{host}-{os.getpid()}-def"
    elsewhere = tmp_path / f".run.partial-00000000-{gone.pid}-ghi"
    for d in (killed, live, elsewhere):
        d.mkdir()
        (d / "metrics.json").write_text("{}")
    train("wine", parties=2, rounds=1, out=tmp_path / "run")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["run", live.name, elsewhere.name])


def test_overwrite_takes_the_earlier_runs_audit_with_it(tmp_path):
    """An audit describes the run it read: after --overwrite the earlier run's audit.html stood
    beside the new run's metrics (review C)."""
    from securegal.run import train

    out = tmp_path / "run"
    train("wine", parties=2, rounds=1, out=out)
    for name in ("audit.json", "audit.md", "audit.html", "audit_labels.png", "notes.txt"):
        (out / name).write_text("earlier")
    (out / "self-audit" / "party1").mkdir(parents=True)
    train("wine", parties=2, rounds=1, out=out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["curve.png", "metrics.json", "notes.txt", "transcripts"]


def test_progress_true_shows_the_bar_where_stderr_is_not_a_terminal(tmp_path):
    """A 43 s run with progress=True wrote nothing into a log file or a notebook (tqdm drew only on
    a terminal); None keeps that default for the command (review C)."""
    import subprocess
    import sys

    code = "import securegal; securegal.train('wine', parties=2, rounds=3, progress={})"
    for progress, shown in (("True", True), ("None", False)):
        err = subprocess.run([sys.executable, "-c", code.format(progress)], capture_output=True, text=True,
                             timeout=300).stderr
        assert ("0/3 [" in err) == shown, err[-500:]  # the bar, drawn (leave=False clears it at the end)
