"""Self-audit from one party's transcript and own data; active attacks from the CLI; the reports."""
import json
import shutil

import numpy as np
import pytest

from securegal.attacks import audit
from securegal.attacks.self_audit import OwnData, self_audit
from securegal.cli import main
from securegal.errors import ConfigError
from securegal.run import train


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    root = tmp_path_factory.mktemp("self_audit")
    run_dir = root / "wine"
    train("wine", parties=3, rounds=4, seed=0, out=run_dir, ground_truth=True)
    with np.load(run_dir / audit.GROUND_TRUTH) as npz:
        ids, labels, party1 = npz["sample_ids"], npz["labels"], npz["features.party1"]
    # Each organization's own file: IDs, in its own (shuffled) order, plus rows the run never used.
    order = np.random.default_rng(1).permutation(ids.size)
    extra = np.arange(10_000, 10_005)
    feats = np.vstack([party1[order], np.zeros((extra.size, party1.shape[1]))])
    _csv(root / "party1.csv", ["id"] + [f"x{j}" for j in range(party1.shape[1])],
         np.column_stack([np.concatenate([ids[order], extra]), feats]))
    _csv(root / "alice.csv", ["id", "label"], np.column_stack([ids[order], labels[order]]))
    return root


def _csv(path, header, rows):
    """IDs (the first column) as integers, every other cell as a float."""
    path.write_text(",".join(header) + "\n" + "".join(
        ",".join([str(int(float(r[0])))] + [repr(float(v)) for v in r[1:]]) + "\n" for r in rows))


def _rows(result, attack, metric, attacker=None):
    return [a for a in result["attacks"] if a["attack"] == attack and a["metric"] == metric
            and (attacker is None or a["attacker"] == attacker)]


def test_self_audits_agree_with_the_ground_truth_audit(wine, capsys):
    embedded = audit.audit_run(wine / "wine", steps=50, report=False)
    assert main(["audit", str(wine / "wine"), "--as", "party1", "--data", str(wine / "party1.csv"),
                 "--net-steps", "50"]) == 0
    assert main(["audit", str(wine / "wine"), "--as", "alice", "--data", str(wine / "alice.csv"),
                 "--target", "label", "--net-steps", "50"]) == 0
    own_features = json.loads((wine / "wine" / "self-audit" / "party1" / audit.AUDIT).read_text())
    own_labels = json.loads((wine / "wine" / "self-audit" / "alice" / audit.AUDIT).read_text())
    for attack in ("hat_matrix", "inversion_net"):
        mine, theirs = _rows(own_features, attack, "r2"), _rows(embedded, attack, "r2")
        theirs = [a for a in theirs if a["victim"] == "party1"]
        assert [a["score"] for a in mine] == pytest.approx([a["score"] for a in theirs])
    for attack in ("label_inversion", "label_clustering"):
        for metric in ("accuracy", "auc"):
            mine = {a["attacker"]: a["score"] for a in _rows(own_labels, attack, metric)}
            theirs = {a["attacker"]: a["score"] for a in _rows(embedded, attack, metric)}
            assert mine == pytest.approx(theirs)
    # Plain GAL: the known truths, as each party sees them itself.
    assert all(v["verdict"] == "LEAKS" for v in own_labels["verdicts"])
    assert all(a["score"] == 1.0 for a in _rows(own_labels, "label_inversion", "accuracy"))
    assert any(v["verdict"] == "LEAKS" and v["attack"] == "hat_matrix" for v in own_features["verdicts"])
    assert _rows(own_features, "hat_matrix", "r2")[0]["score"] >= 0.9
    assert any("model completion" in n for n in own_labels["notes"])
    for name in ("audit.md", "audit.html"):
        assert (wine / "wine" / "self-audit" / "alice" / name).is_file()


def test_self_audit_from_the_partys_own_config(wine, tmp_path):
    cfg = tmp_path / "party1.toml"
    cfg.write_text('name = "party1"\n[data]\ndataset = "wine"\nparties = 3\nblock = 1\n')
    data = __import__("securegal.commands.audit_data", fromlist=["load_own_data"]).load_own_data(cfg)
    result = self_audit(wine / "wine", "party1", data, steps=20, out=tmp_path / "out", report=False)
    assert _rows(result, "hat_matrix", "r2")[0]["score"] >= 0.9
    assert (tmp_path / "out" / audit.AUDIT).is_file()


def test_self_audit_reads_the_transcript_where_the_partys_config_keeps_it(wine, tmp_path, capsys):
    """New-user review L6: with transcripts = "transcripts-plain/party1" in its party.toml, the
    self-audit looked only in RUN_DIR/transcripts/party1 (a symlink was needed)."""
    run = tmp_path / "run"
    (run / "transcripts").mkdir(parents=True)
    shutil.copytree(wine / "wine" / "transcripts" / "party1", tmp_path / "transcripts-plain" / "kept")
    cfg = tmp_path / "party1.toml"
    cfg.write_text('name = "party1"\ntranscripts = "transcripts-plain/kept"\n'
                   '[data]\ndataset = "wine"\nparties = 3\nblock = 1\n')
    assert main(["audit", str(run), "--as", "party1", "--data", str(cfg), "--net-steps", "20", "--no-report"]) == 0
    result = json.loads((run / "self-audit" / "party1" / audit.AUDIT).read_text())
    assert _rows(result, "hat_matrix", "r2")[0]["score"] >= 0.9
    capsys.readouterr()
    cfg.write_text('name = "party1"\n[data]\ndataset = "wine"\nparties = 3\nblock = 1\n')  # no transcripts key
    assert main(["audit", str(run), "--as", "party1", "--data", str(cfg), "--no-report"]) == 2
    assert "holds no party transcripts" in capsys.readouterr().err


def test_self_audit_bad_input_is_one_line(wine, tmp_path, capsys):
    shifted = tmp_path / "shifted.csv"
    text = (wine / "party1.csv").read_text().splitlines()
    rows = [line.split(",") for line in text[1:]]
    _csv(shifted, text[0].split(","), [[float(r[0]) + 100_000] + [float(x) for x in r[1:]] for r in rows])
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(b"id,x\n\xff\xfe\x00,1\n")
    (tmp_path / "empty").mkdir()
    base = ["audit", str(wine / "wine"), "--data", str(wine / "party1.csv")]
    cases = [
        (["audit", str(tmp_path / "empty"), "--as", "party1", "--data", str(wine / "party1.csv")], "transcripts"),
        (base + ["--as", "mallory"], "mallory"),
        (["audit", str(wine / "wine"), "--as", "party1", "--data", str(shifted)], "does not match"),
        (base + ["--as", "party1", "--known-rows", "1.5"], "--known-rows"),
        (base + ["--as", "party1", "--known-labels", "0"], "--known-labels"),
        (["audit", str(wine / "wine"), "--as", "alice", "--data", str(wine / "alice.csv")], "--target"),
        (base + ["--as", "party1", "--id-column", "nope"], "nope"),
        (["audit", str(wine / "wine"), "--as", "party1", "--data", str(garbage)], "not a UTF-8 CSV"),
        (["audit", str(wine / "wine"), "--as", "party1", "--data", str(tmp_path / "missing.csv")], "does not exist"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_own_data_rejects_duplicate_ids():
    with pytest.raises(ValueError, match="unique"):
        OwnData(np.array([1, 1, 2]), np.zeros((3, 1)))


@pytest.mark.parametrize("epsilon, leaks", [(None, True), ("1", False)])
def test_active_crafted_residuals_from_the_cli(tmp_path, capsys, epsilon, leaks):
    out = tmp_path / "active"
    argv = ["audit", "--active", "crafted_residuals", "--dataset", "wine", "--rounds", "4", "--out", str(out)]
    assert main(argv + (["--epsilon", epsilon] if epsilon else [])) == 0
    result = json.loads((out / audit.AUDIT).read_text())
    r2 = _rows(result, "active_residuals", "r2")
    verdicts = [v for v in result["verdicts"] if v["attack"] == "active_residuals"]
    assert len(r2) == 3 and len(verdicts) == 3
    if leaks:  # plain: the crafted replies give the columns away
        assert all(a["score"] > 0.99 for a in r2) and all(v["verdict"] == "LEAKS" for v in verdicts)
    else:  # feature-DP at epsilon 1 stops it: what is left is immaterial. DP bounds the advantage, it
        # does not zero it, so with ~140 rows the sign-flip test can still flag a real 0.02 R^2 as LEAKS
        # (seen once in CI: r2 -0.234 against -0.254, p = 0.0003); the size is what DP is judged on.
        # Each run draws fresh noise: over 360 replies (120 runs) the advantage exceeded 0.05 once
        # (0.073, a 1-in-100 failure of this test at 0.05), and plain replies score above 0.99.
        assert all(a["advantage"] < 0.15 for a in r2), [(a["advantage"], a["se"]) for a in r2]
        assert result["layers"]["mode"] == "feature-DP" and result["epsilon"] == 1.0
    assert "--active crafted_residuals" in (out / "audit.md").read_text()


def test_active_needs_out_and_a_known_name(capsys):
    assert main(["audit", "--active", "crafted_residuals", "--dataset", "wine"]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["audit", "--active", "nope", "--dataset", "wine", "--out", "x"]) == 2
    assert "unknown active attack" in capsys.readouterr().err


def test_html_report_is_self_contained_with_verdicts(wine):
    audit.audit_run(wine / "wine", steps=20)
    page = (wine / "wine" / "audit.html").read_text()
    assert "LEAKS" in page and "data:image/png;base64," in page and "Decision rule" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page and "<link" not in page
    md = (wine / "wine" / "audit.md").read_text()
    assert "| attack |" in md and "## What each attack does" in md and "securegal audit" in md
    assert (wine / "wine" / "audit_labels.png").stat().st_size > 0


def test_self_audits_of_a_ckks_run(tmp_path):
    from securegal.commands.audit_data import load_own_data
    from securegal.privacy.plan import PrivacyPlan

    owner = tmp_path / "alice.toml"
    owner.write_text('name = "alice"\n[data]\ndataset = "wine"\n[[party]]\nname = "party1"\naddress = "x"\n'
                     '[[party]]\nname = "party2"\naddress = "x"\n')

    def audited(name: str):
        run_dir = tmp_path / name
        train("wine", parties=3, rounds=3, seed=0, out=run_dir, ground_truth=True, plan=PrivacyPlan(residuals="ckks"))
        return run_dir, self_audit(run_dir, "alice", load_own_data(owner), steps=20, report=False)

    run_dir, labels = audited("ckks")
    if any(v["verdict"] == "LEAKS" for v in labels["verdicts"]):
        # Fresh keys every run, and the audit's rate of false LEAKS is at most 1% per audit by
        # design (2 of 180 of these runs measured): a LEAKS is checked once more on fresh keys.
        # Both false happens about once in 10^4 runs; a real leak shows in both.
        run_dir, labels = audited("ckks-again")
    # The label owner audits exactly what each party received: ciphertext bytes, which hide the labels.
    assert {a["view"] for a in labels["attacks"]} == {"ckks ciphertext bytes"}
    assert labels["layers"]["mode"] == "CKKS" and not any(v["verdict"] == "LEAKS" for v in labels["verdicts"])
    party = tmp_path / "party1.toml"
    party.write_text('name = "party1"\n[data]\ndataset = "wine"\nparties = 3\nblock = 1\n')
    features = self_audit(run_dir, "party1", load_own_data(party), steps=20, report=False)
    # The party cannot decrypt its own replies; the stand-in (a linear learner's span) shows the label
    # owner, who can, rebuilds its columns.
    assert all(a["view"].startswith("stand-in") for a in features["attacks"])
    assert any(v["verdict"] == "LEAKS" and v["attack"] == "hat_matrix" for v in features["verdicts"])


def test_self_audit_of_tables_with_text_ids(tmp_path, capsys):
    """Found by an independent re-measurement: the audit read --data as numbers only, so an
    organization whose table has text IDs (which training supports) could not audit itself."""
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    ids = [f"p{i:05d}" for i in np.random.default_rng(3).permutation(100_000)[:len(y)]]
    names = np.array(["setosa", "versicolor", "virginica"])[y]

    def table(path, columns, extra=None):
        lines = ["id," + ",".join([f"x{j}" for j in columns] + (["y"] if extra is not None else []))]
        for i in np.random.default_rng(len(columns)).permutation(len(y)):  # each file in its own order
            cells = [ids[i]] + [repr(float(X[i, j])) for j in columns] + ([extra[i]] if extra is not None else [])
            lines.append(",".join(cells))
        path.write_text("\n".join(lines) + "\n")

    table(tmp_path / "alice.csv", [0], names)
    table(tmp_path / "p1.csv", [1, 2])
    table(tmp_path / "p2.csv", [3])
    run = tmp_path / "run"
    assert main(["train", "--label-owner", f"alice={tmp_path / 'alice.csv'}", "--party", f"party1={tmp_path / 'p1.csv'}",
                 "--party", f"party2={tmp_path / 'p2.csv'}", "--id", "id", "--target", "y", "-T", "2",
                 "--no-progress", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["audit", str(run), "--as", "alice", "--data", str(tmp_path / "alice.csv"), "--id-column", "id",
                 "--target", "y", "--net-steps", "20", "--no-report"]) == 0
    assert main(["audit", str(run), "--as", "party1", "--data", str(tmp_path / "p1.csv"), "--id-column", "id",
                 "--net-steps", "20", "--no-report"]) == 0
    labels = json.loads((run / "self-audit" / "alice" / audit.AUDIT).read_text())
    features = json.loads((run / "self-audit" / "party1" / audit.AUDIT).read_text())
    # the same labels as numbers (10, 20, 30 sort as the names do): encoded as training encodes them
    table(tmp_path / "alice_numeric.csv", [0], (10 * (y + 1)).astype(str))
    assert main(["audit", str(run), "--as", "alice", "--data", str(tmp_path / "alice_numeric.csv"), "--id-column",
                 "id", "--target", "y", "--net-steps", "20", "--no-report"]) == 0
    numeric = json.loads((run / "self-audit" / "alice" / audit.AUDIT).read_text())
    assert _rows(numeric, "label_inversion", "accuracy") == _rows(labels, "label_inversion", "accuracy")
    # integer IDs against a run that named its rows by text IDs: a one-line mismatch, not a crash
    with pytest.raises(ConfigError, match="its IDs are integers, the run named its rows by text IDs"):
        OwnData(np.array([1, 2, 3]), np.zeros((3, 2))).rows(np.array(["p00001", "p00002"]), "party1")
    # plain GAL: the residuals give the labels away, the predictions the features (the known truths)
    assert all(a["score"] == 1.0 for a in _rows(labels, "label_inversion", "accuracy"))
    assert _rows(features, "hat_matrix", "r2")[0]["score"] >= 0.9


def test_a_party_that_served_several_sessions_audits_each(tmp_path):
    """Review A: a party process keeps every session in one transcript, but its alignment record
    was one file overwritten by each session, so its self-audit failed after the second one. Each
    session now keeps its own record, and the audit takes one session (--session, default the
    latest)."""
    from securegal.commands.audit_data import load_own_data
    from securegal.deploy.networked import train_federation
    from securegal.transcript import read_transcript
    from tests.test_faults import federation, party_servers

    with party_servers(tmp_path) as peers:
        for out in ("run", "run2"):
            train_federation(federation(tmp_path, peers, out=out))
    sessions = read_transcript(tmp_path / "run" / "transcripts" / "party1").sessions
    assert len(sessions) == 2
    data = load_own_data(tmp_path / "party1.toml", party="party1")
    audits = [self_audit(tmp_path / "run", "party1", data, steps=20, out=tmp_path / f"a{i}", report=False,
                         session=s) for i, s in enumerate(sessions)]
    latest = self_audit(tmp_path / "run", "party1", data, steps=20, out=tmp_path / "latest", report=False)
    assert [str(a["session"]) for a in audits] == list(sessions)
    assert str(latest["session"]) == sessions[-1]
    assert all(a["n_train"] > 0 and "holds 2 sessions" in " ".join(a["notes"]) for a in audits)
    with pytest.raises(ConfigError, match="--session 'nosuch'"):
        self_audit(tmp_path / "run", "party1", data, steps=20, out=tmp_path / "x", report=False, session="nosuch")


@pytest.mark.parametrize("feedback", [False, True])
def test_a_ckks_dp_partys_self_audit_attacks_what_it_released(tmp_path, feedback):
    """The stand-in (a noise-free linear span) ignored the party's DP settings: without feedback
    the party sent encryptions of zero, yet its self-audit said LEAKS (R^2 0.93) where the embedded
    audit of the same run found no advantage (independent review S)."""
    from securegal.commands.audit_data import load_own_data
    from securegal.privacy.plan import FeatureDP, PrivacyPlan

    run_dir = tmp_path / "run"
    train("wine", parties=3, rounds=2, seed=0, out=run_dir,
          plan=PrivacyPlan(residuals="ckks", feature_dp=FeatureDP(epsilon=2.0, feedback=feedback)))
    party = tmp_path / "party1.toml"
    party.write_text('name = "party1"\n[data]\ndataset = "wine"\nparties = 3\nblock = 1\n')
    features = self_audit(run_dir, "party1", load_own_data(party), steps=20, report=False)
    views = {a["view"] for a in features["attacks"]}
    assert not any(v["verdict"] == "LEAKS" for v in features["verdicts"])
    if feedback:  # per-row releases it cannot decrypt: the stand-in, marked a worst case
        assert all("without the party's DP noise" in v for v in views)
        assert all(a["overstates"] for a in features["attacks"])
    else:
        assert all("encryptions of zero" in v for v in views)
        assert all(a["advantage"] <= 1e-9 for a in features["attacks"] if a["metric"] == "r2")
