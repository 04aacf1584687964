"""A DP feature party's self-audit reports its own privacy ledger (what its table spent)."""
import json

import numpy as np
import pytest

from securegal.attacks import audit
from securegal.cli import main
from securegal.errors import ConfigError
from securegal.privacy.dp.ledger import read_ledger
from securegal.privacy.plan import FeatureDP, PrivacyPlan
from securegal.run import train


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ledger_audit")
    (root / "ledgers").mkdir()
    train("breast_cancer", parties=3, rounds=3, seed=0, out=root / "run", ground_truth=True,
          plan=PrivacyPlan(feature_dp=FeatureDP(epsilon=1.0)), ledger=root / "ledgers")
    with np.load(root / "run" / audit.GROUND_TRUTH) as npz:
        ids, X = npz["sample_ids"], npz["features.party1"]
    rows = np.column_stack([ids, X])
    (root / "party1.csv").write_text("id," + ",".join(f"x{j}" for j in range(X.shape[1])) + "\n"
                                     + "".join(",".join([str(int(r[0]))] + [repr(float(v)) for v in r[1:]]) + "\n"
                                               for r in rows))
    return root


def test_feature_party_self_audit_shows_its_ledger(dp_run, capsys):
    ledger = dp_run / "ledgers" / "party1.securegal-ledger.json"
    out = dp_run / "audit"
    assert main(["audit", str(dp_run / "run"), "--as", "party1", "--data", str(dp_run / "party1.csv"),
                 "--ledger", str(ledger), "--net-steps", "20", "--out", str(out)]) == 0
    result = json.loads((out / audit.AUDIT).read_text())
    block = result["privacy"]["party1"]
    truth = read_ledger(ledger)
    assert block["epsilon_budget"] == 1.0 and block["epsilon_spent"] == pytest.approx(truth.epsilon_spent)
    assert 0 < block["epsilon_this_session"] <= 1.0 and block["releases"] and block["sessions"] == 1
    assert result["layers"]["feature_dp_epsilon"]["party1"] == 1.0
    assert all(a["epsilon"] == 1.0 for a in result["attacks"])
    md, page = (out / "audit.md").read_text(), (out / "audit.html").read_text()
    assert "DP ledger" in md and "party1.securegal-ledger.json" in md and "DP ledger" in page
    assert "--ledger" in result["command"]


def test_ledger_path_from_the_party_toml(dp_run, tmp_path):
    from securegal.commands.audit_data import load_own_data

    toml = tmp_path / "party1.toml"
    toml.write_text(f'name = "party1"\n[data]\ncsv = "{dp_run / "party1.csv"}"\nid_column = "id"\n'
                    f'[privacy]\nepsilon = 1.0\nledger = "{dp_run / "ledgers" / "party1.securegal-ledger.json"}"\n')
    session = read_ledger(dp_run / "ledgers" / "party1.securegal-ledger.json").entries[0].session
    block = load_own_data(toml).privacy(session)
    assert block["source"].endswith("party1.securegal-ledger.json") and block["epsilon_this_session"] > 0
    assert block["epsilon_spent"] > 0.9  # the earlier run's session spent it
    with pytest.raises(ConfigError, match="holds no release of session no-such-session"):
        load_own_data(toml).privacy("no-such-session")
    toml.write_text(f'name = "party1"\n[data]\ncsv = "{dp_run / "party1.csv"}"\n[privacy]\nepsilon = 1.0\n')
    with pytest.raises(ConfigError, match="party1.csv.securegal-ledger.json"):  # beside the CSV, as the party keeps it
        load_own_data(toml).privacy("s")


def test_missing_ledger_is_one_line_error(dp_run, capsys):
    assert main(["audit", str(dp_run / "run"), "--as", "party1", "--data", str(dp_run / "party1.csv"),
                 "--ledger", str(dp_run / "nope.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--ledger" in err and "does not exist" in err and len(err.splitlines()) == 1


def test_more_bad_input_is_one_line(dp_run, tmp_path, capsys):
    (tmp_path / "bare" / "transcripts").mkdir(parents=True)
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"version": 1, "table": "x"')
    owner_csv = tmp_path / "alice.csv"
    owner_csv.write_text("id,label\n0,1\n")
    base = ["audit", str(dp_run / "run"), "--as"]
    cases = [
        (["audit", str(tmp_path / "bare"), "--as", "party1", "--data", str(dp_run / "party1.csv")],
         "no party transcripts"),
        (base + ["party1", "--data", str(dp_run / "party1.csv"), "--ledger", str(corrupt)], "corrupt.json"),
        (base + ["alice", "--data", str(owner_csv), "--target", "label", "--ledger",
                 str(dp_run / "ledgers" / "party1.securegal-ledger.json")], "label owner"),
        (base + ["party1", "--data", str(dp_run / "party1.csv"), "--known-rows", "nan"], "--known-rows"),
        (base + ["party1", "--data", str(dp_run / "party1.csv"), "--known-labels", "-0.1"], "--known-labels"),
        (["audit", str(dp_run / "run"), "--ledger", str(corrupt)], "--ledger"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_a_ledger_that_never_saw_the_session_is_refused(dp_run, tmp_path, capsys):
    """Re-verification of review A: a ledger of another table reported "0 spent by this run's
    session" with exit 0, although the transcript shows DP releases."""
    from securegal.privacy.dp.accountant import Budget
    from securegal.privacy.dp.ledger import open_ledger

    other = tmp_path / "other.json"
    open_ledger(other, "id:another-table", Budget(1.0, 1e-5)).close()
    code = main(["audit", str(dp_run / "run"), "--as", "party1", "--data", str(dp_run / "party1.csv"),
                 "--ledger", str(other), "--net-steps", "20", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "holds no release of session" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_a_session_the_party_refused_is_named_as_releasing_nothing(dp_run, tmp_path, capsys):
    """Auditing a session the budget refused blamed the ledger ("not the ledger of the table that
    served this transcript"); the ledger was right, the session released nothing (review A L3)."""
    from securegal import messages as m
    from securegal.transcript import TranscriptWriter
    from securegal.wire.codec import encode

    writer = TranscriptWriter(tmp_path / "run" / "transcripts" / "party1", "party1")
    setup = m.Envelope("refused-1", 0, "alice", "party1", 0,
                       m.Setup(np.arange(5), n_outputs=2, rounds=3, task="classification"))
    no = m.Envelope("refused-1", 0, "party1", "alice", 0,
                    m.ErrorReply("budget_exceeded", "session refused: left 1e-05 of epsilon 1"))
    for direction, env in (("received", setup), ("sent", no)):
        writer.record(direction, encode(env), env)
    writer.close()
    code = main(["audit", str(tmp_path / "run"), "--as", "party1", "--data", str(dp_run / "party1.csv"),
                 "--ledger", str(dp_run / "ledgers" / "party1.securegal-ledger.json"), "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert ("session refused-1: party1 released nothing in it (it answered budget_exceeded: session refused: left "
            "1e-05 of epsilon 1), so there is nothing to audit; the sessions it trained in: none") in err
    assert not (tmp_path / "a").exists()
