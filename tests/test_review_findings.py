"""One regression test per finding of the independent bad-input and fault review (issue
"Bad input and faults"), named after the finding. The broad suites are tests/test_bad_input.py
and tests/test_faults.py."""
import json
import logging
import os
import shutil
import stat

import numpy as np
import pytest

from securegal import messages as m
from securegal.cli import main
from securegal.data.tables import FeatureTable
from securegal.deploy.localnet import federation_config, party_config
from securegal.deploy.networked import FederationConfig, train_federation
from securegal.errors import ConfigError, PartyUnavailable, ProtocolError
from securegal.parties.feature_party import FeatureParty
from securegal.run import train

from .test_faults import FAST, ROUNDS, party_servers


def _fed(tmp_path, peers, **kw):
    path = tmp_path / "federation.toml"
    path.write_text(federation_config(data={"dataset": "wine"}, peers=peers, rounds=ROUNDS, seed=0,
                                      out=tmp_path / "run", certs=None, transport=FAST, **kw))
    return path


def test_finding_01_resume_on_a_finished_run_keeps_its_result(tmp_path, capsys):
    with party_servers(tmp_path) as peers:
        path = _fed(tmp_path, peers)
        assert main(["train", "--federation", str(path), "--insecure", "--no-progress"]) == 0
        kept = (tmp_path / "run" / "metrics.json").read_bytes()
        capsys.readouterr()
        assert main(["train", "--resume", str(tmp_path / "run"), "--insecure", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "finished" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "run" / "metrics.json").read_bytes() == kept


def test_finding_02_a_refused_start_does_not_wedge_the_parties(tmp_path):
    with party_servers(tmp_path) as peers:
        with pytest.raises(PartyUnavailable, match="only 3 parties joined"):  # 4 asked of 3 reachable
            train_federation(FederationConfig.load(_fed(tmp_path, {**peers, "party9": "127.0.0.1:9"},
                                                        min_parties=4), insecure=True))
        metrics = train_federation(FederationConfig.load(_fed(tmp_path, peers), insecure=True))  # served again
    assert len(metrics["gal"]["per_round"]) == ROUNDS


def test_finding_02_an_idle_session_expires(rng):
    table = FeatureTable(list(range(30)), rng.normal(size=(30, 2)))
    from securegal.learners.linear import LinearLearner
    from securegal.privacy.plain import PlainTrainer

    party = FeatureParty("bob", table, lambda s: PlainTrainer(LinearLearner()), label_owner="alice",
                         session_timeout=0.0)
    setup = m.Setup(list(range(20)), 1, 2, "regression")  # the default policy's min_rows
    party.handle(m.Envelope("s1", 0, "alice", "bob", 0, setup))
    party.handle(m.Envelope("s2", 0, "alice", "bob", 0, setup))  # s1 idle past the timeout: expired
    assert party.session == "s2"
    strict = FeatureParty("bob", table, lambda s: PlainTrainer(LinearLearner()), label_owner="alice",
                          session_timeout=3600.0)
    strict.handle(m.Envelope("s1", 0, "alice", "bob", 0, setup))
    with pytest.raises(ProtocolError, match=r"still open; refusing a new setup \(a run stopped after it started can "
                                            r"be resumed with --resume; a new one, once that session finishes, or in "
                                            r"3[56]\d\d s, when it has been idle for its timeout\)"):
        strict.handle(m.Envelope("s2", 0, "alice", "bob", 0, setup))


def test_finding_03_no_reachable_party_is_an_error_not_a_success(tmp_path, capsys):
    path = _fed(tmp_path, {"party1": "127.0.0.1:9", "party2": "127.0.0.1:10"})
    assert main(["train", "--federation", str(path), "--insecure", "--no-progress"]) == 2
    assert "only 1 parties joined" in capsys.readouterr().err
    assert not (tmp_path / "run" / "metrics.json").exists()
    with pytest.raises(ConfigError, match="host:port"):
        FederationConfig.load(_fed(tmp_path, {"party1": "not an address"}), insecure=True)


def test_finding_04_results_never_contain_keys(tmp_path):
    from securegal.deploy.localnet import main as localnet

    assert localnet(["--dataset", "wine", "--parties", "3", "--rounds", "2", "--out", str(tmp_path / "demo")]) == 0
    assert (tmp_path / "demo" / "metrics.json").is_file()
    assert [p for p in tmp_path.rglob("*") if p.suffix in (".key", ".pem")] == []


@pytest.mark.parametrize("argv", [["certs", "init", "CERTS", "--parties", "a,b", "--days", "100000000"],
                                  ["party", "serve", "--config", "PARTY", "--insecure"]])
def test_finding_05_no_tracebacks(argv, tmp_path, capsys):
    (tmp_path / "p.toml").write_text(party_config("party1", data={"dataset": "wine", "parties": 3, "block": 1},
                                                  learner_seed=1, certs=None, transcripts=None,
                                                  listen="127.0.0.1:99999"))
    argv = [a.replace("CERTS", str(tmp_path / "certs")).replace("PARTY", str(tmp_path / "p.toml")) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "certs").exists()


def test_finding_05_a_garbage_ca_is_a_one_line_error(tmp_path):
    from securegal.transport.certs import Identity, init_federation

    init_federation(tmp_path / "c", ["party1"])
    (tmp_path / "c" / "ca.pem").write_text("garbage")
    with pytest.raises(ConfigError, match="is not a PEM certificate"):
        Identity.from_dir(tmp_path / "c", "party1")


def test_finding_06_validation_comes_before_writing(tmp_path, capsys):
    for flag, value in (("--eta", "-1"), ("--eta-max", "0"), ("--weights", "uniform"), ("--rounds", "1000000000")):
        argv = ["train", "--dataset", "wine", "--out", str(tmp_path / "out"), "--no-progress", flag, value]
        if flag == "--weights":
            argv += ["--label-epsilon", "1", "--weights", "learned"]
        assert main(argv) == 2, flag
    assert list(tmp_path.iterdir()) == []


def test_finding_07_a_broken_party_does_not_start(tmp_path):
    from securegal.deploy.party_process import PartyConfig
    from securegal.transport.certs import init_federation

    data = {"dataset": "wine", "parties": 3, "block": 1}
    good = party_config("party1", data=data, learner_seed=1, certs=None, transcripts=None)
    init_federation(tmp_path / "a", ["party1"])
    init_federation(tmp_path / "b", ["alice"])
    other_ca = good.replace("insecure = true", f'cert = "{tmp_path}/a/party1.pem"\nkey = "{tmp_path}/a/party1.key"\n'
                                               f'ca = "{tmp_path}/b/ca.pem"')
    for text, match in ((good.replace('name = "linear"', 'name = "zzz"'), "unknown learner 'zzz'"),
                        (good.replace("seed = 1", "seed = 1\noptions = { depth = 3 }"), "has no option depth"),
                        (good.replace("127.0.0.1:0", "127.0.0.1:99999"), "port in 0..65535"),
                        (other_ca, "not signed by the CA")):
        (tmp_path / "p.toml").write_text(text)
        with pytest.raises(ConfigError, match=match):
            PartyConfig.load(tmp_path / "p.toml")


def test_finding_08_everything_a_run_writes_is_private(tmp_path):
    train("wine", parties=3, rounds=2, out=tmp_path / "run", ground_truth=True)
    for path in (tmp_path / "run").rglob("*"):
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    assert stat.S_IMODE(os.stat(tmp_path / "run").st_mode) == 0o700


def test_finding_09_the_audit_refuses_to_mix_sessions(tmp_path):
    from securegal.transcript import read_transcripts

    train("wine", parties=3, rounds=2, out=tmp_path / "a")
    train("wine", parties=3, rounds=2, out=tmp_path / "b")
    shutil.rmtree(tmp_path / "a" / "transcripts" / "party1")
    os.replace(tmp_path / "b" / "transcripts" / "party1", tmp_path / "a" / "transcripts" / "party1")
    with pytest.raises(ConfigError, match="mix 2 sessions"):
        read_transcripts(tmp_path / "a")


def test_finding_10_parties_log_sessions_refusals_and_budget_but_no_ids(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    with party_servers(tmp_path) as peers:
        train_federation(FederationConfig.load(_fed(tmp_path, peers), insecure=True))
    text = caplog.text
    assert "session" in text and "started by alice" in text and "finished after 3 rounds" in text
    from securegal.deploy.party_process import build_party, PartyConfig

    (tmp_path / "dp.toml").write_text(party_config("party1", data={"dataset": "wine", "parties": 3, "block": 1},
                                                   learner_seed=1, certs=None, transcripts=None,
                                                   privacy={"epsilon": 1e-7}))
    endpoint = build_party(PartyConfig.load(tmp_path / "dp.toml"))
    from securegal.wire.codec import encode

    from securegal.align import LabelOwnerPsi
    from securegal.wire.codec import decode

    caplog.clear()
    owner = LabelOwnerPsi(list(range(178)), "s9")  # the label owner aligns first: rows travel as handles
    reply = decode(endpoint.handle(encode(m.Envelope("s9", 0, "alice", "party1", 0, owner.request())))).body
    handles = owner.finish(reply).handles[:100]
    endpoint.handle(encode(m.Envelope("s9", 0, "alice", "party1", 1, m.PsiSelection(np.sort(handles)))))
    endpoint.handle(encode(m.Envelope("s9", 0, "alice", "party1", 2, m.Setup(handles, 3, 2, "classification"))))
    assert "refused a request" in caplog.text and "left 1e-07 of epsilon 1e-07" in caplog.text
    assert not any(str(h) in caplog.text for h in handles)  # no row handle (let alone an ID) is logged


def test_finding_11_the_transcript_seq_never_restarts(tmp_path):
    from securegal.transcript import TranscriptWriter

    env = m.Envelope("s", 0, "alice", "bob", 0, m.Finish())
    from securegal.wire.codec import encode

    for _ in range(2):  # a resumed label owner opens its transcript again
        writer = TranscriptWriter(tmp_path / "t", "alice")
        writer.record("sent", encode(env), env)
        writer.record("sent", encode(env), env)
        writer.close()
    seqs = [json.loads(line)["seq"] for line in (tmp_path / "t" / "index.jsonl").open()]
    assert seqs == [0, 1, 2, 3]


def test_label_owner_audits_itself_from_a_federation_file_whose_csv_has_ids(tmp_path):
    """Review C: ``audit --as alice --data federation.toml`` ignored ``[data] id_column`` and took the
    ID column for a feature ("168 categories"); the file's id_column now names the rows."""
    from securegal.commands.audit_data import from_toml

    rows = "".join(f"pt-{i:03d},{i * 0.1:.1f},{'ab'[i % 2]}\n" for i in range(30))
    (tmp_path / "alice.csv").write_text("pid,x,y\n" + rows)
    (tmp_path / "federation.toml").write_text(federation_config(
        data={"csv": "alice.csv", "target": "y", "id_column": "pid"}, peers={"party1": "127.0.0.1:1"},
        rounds=2, seed=0, out=tmp_path / "run", certs=None))
    own = from_toml(tmp_path / "federation.toml", None, None)
    assert list(own.ids[:2]) == ["pt-000", "pt-001"] and own.features.shape == (30, 1)
    assert list(own.labels[:3]) == ["a", "b", "a"]


def test_a_self_audit_refuses_another_partys_config(tmp_path):
    """Review A: ``audit --as party2 --data party1.toml`` scored party2's transcript against party1's
    table and wrote a wrong report with exit 0."""
    from securegal.commands.audit_data import load_own_data

    path = tmp_path / "party1.toml"
    path.write_text(party_config("party1", data={"dataset": "wine", "parties": 3, "block": 1}, learner_seed=1,
                                 certs=None, transcripts=None))
    with pytest.raises(ConfigError, match="is the config of 'party1', not of 'party2'"):
        load_own_data(path, party="party2")
    assert load_own_data(path, party="party1").features.shape[0] == 178
    fed = _fed(tmp_path, {"party1": "127.0.0.1:1"})
    with pytest.raises(ConfigError, match="is the config of 'alice', not of 'party1'"):
        load_own_data(fed, party="party1")


def test_a_table_too_small_to_split_by_class_says_how_many_rows_it_needs(tmp_path, capsys):
    """Review A: 10 rows passed the 10-row minimum and then failed with scikit-learn's message."""
    (tmp_path / "ten.csv").write_text("a,b,y\n" + "".join(f"{i},{i * 3 % 7},{i % 2}\n" for i in range(10)))
    code = main(["train", "--csv", str(tmp_path / "ten.csv"), "--target", "y", "-M", "2", "-T", "2",
                 "--no-progress", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "10 rows give 1 validation rows, fewer than its 2 classes" in err and "20 rows" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_a_target_that_is_almost_classes_is_trained_as_regression_loudly(tmp_path, caplog):
    """Review A: one stray 0.5 among 0/1 labels switched the task to regression without a word."""
    from securegal.data.datasets import load_csv

    rows = "".join(f"{i},{i % 5},{0.5 if i == 7 else i % 2}\n" for i in range(40))
    (tmp_path / "t.csv").write_text("a,b,y\n" + rows)
    with caplog.at_level(logging.WARNING):
        assert load_csv(tmp_path / "t.csv", "y").task == "regression"
    assert "1 non-integer value(s) (e.g. 0.5) among 2 integer classes" in caplog.text


def test_an_integer_quantity_can_be_trained_as_regression_everywhere(tmp_path, caplog, capsys):
    """Review C: a length of stay in days (1-14) was trained as classification with no word and no
    way to say otherwise; --task, train(task=...) and federation.toml [data] task now say it."""
    import json

    import numpy as np

    from securegal.cli import main
    from securegal.deploy.networked import FederationConfig
    from securegal.run import train

    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 4))
    los = np.clip(np.round(7 + 1.5 * X[:, 0] + X[:, 3]), 3, 11).astype(int)  # 3-11 days
    (tmp_path / "los.csv").write_text("x0,x1,x2,x3,los_days\n" + "".join(
        ",".join(f"{v:.4f}" for v in row) + f",{y}\n" for row, y in zip(X, los)))
    with caplog.at_level(logging.WARNING):
        assert train(csv=tmp_path / "los.csv", target="los_days", parties=2, rounds=2)["task"] == "classification"
    assert "distinct integers); if it is a quantity such as a length of stay, say so: task regression" in caplog.text
    metrics = train(csv=tmp_path / "los.csv", target="los_days", parties=2, rounds=2, task="regression")
    assert metrics["task"] == "regression" and metrics["metric"] == "mad"
    assert main(["train", "--csv", str(tmp_path / "los.csv"), "--target", "los_days", "--task", "regression",
                 "-M", "2", "-T", "2", "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["task"] == "regression"
    for bad, needle in ((dict(task="ranking"), "--task must be classification or regression"),
                        (dict(dataset="wine", task="regression"), "the built-in 'wine' is a classification task")):
        kwargs = {"csv": tmp_path / "los.csv", "target": "los_days", **bad}
        if "dataset" in bad:
            kwargs.pop("csv"), kwargs.pop("target")
        with pytest.raises(ConfigError, match=needle):
            train(parties=2, rounds=2, **kwargs)
    toml = tmp_path / "f.toml"
    toml.write_text(f'name = "alice"\nout = "{tmp_path / "net"}"\n[data]\ncsv = "los.csv"\ntarget = "los_days"\n'
                    'task = "regression"\n[[party]]\nname = "p1"\naddress = "127.0.0.1:1"\n')
    assert FederationConfig.load(toml, insecure=True).data["task"] == "regression"
    toml.write_text(f'name = "alice"\nout = "{tmp_path / "net"}"\n[data]\ndataset = "wine"\ntask = "regression"\n'
                    '[[party]]\nname = "p1"\naddress = "127.0.0.1:1"\n')
    with pytest.raises(ConfigError, match="task says how to train csv's target"):
        FederationConfig.load(toml, insecure=True)


def test_python_api_inputs_that_failed_deep_inside_are_named(tmp_path):
    """Review C: wrong types through the Python API raised TypeError/AttributeError/ValueError from
    deep inside, and "no"/"false" were taken for True."""
    import pandas as pd

    from securegal.attacks.self_audit import OwnData
    from securegal.bench import crypto
    from securegal.privacy.plan import FeatureDP

    cases = [
        (dict(plan="dp"), "plan must be a PrivacyPlan"),
        (dict(overwrite="no"), "overwrite must be True or False, got 'no'"),
        (dict(ground_truth="false", out=tmp_path / "g"), "ground_truth must be True or False"),
        (dict(ground_truth=True), "ground_truth writes ground_truth.npz into the run directory: give out"),
        (dict(validation_fraction="0.1"), "validation_fraction must be a number in \\(0, 1\\)"),
        (dict(learner_options=[1, 2]), "learner_options must be a dict"),
        (dict(columns=[0, 1]), "columns must be a ColumnSpec"),
        (dict(id_column=0), "id_column must be a column name, got 0"),
        (dict(ledger=1), "ledger must be a path, got 1"),
        (dict(deployment="embedded"), "deployment must be a Deployment"),
    ]
    for kwargs, needle in cases:
        with pytest.raises(ConfigError, match=needle):
            train("wine", parties=2, rounds=1, **kwargs)
    with pytest.raises(ConfigError, match="write the frame to a CSV or Parquet file"):
        train(csv=pd.DataFrame({"a": [1]}), target="a")
    assert train("wine", parties=np.int64(2), rounds=np.int64(1), seed=np.int64(3), eta=np.float32(0.5),
                 test_fraction=np.float32(0.2))["seed"] == 3
    assert type(FeatureDP(epsilon=np.float32(3)).epsilon) is float  # numpy scalars become Python numbers
    from securegal.privacy.plan import PrivacyPlan
    from securegal.privacy.dp.table import ColumnSpec

    (tmp_path / "t.csv").write_text("a,y\n" + "".join(f"{i % 9},{i % 2}\n" for i in range(40)))
    with pytest.raises(ConfigError, match="a dict of per-organization ColumnSpecs is for one table per organization"):
        train(csv=tmp_path / "t.csv", target="y", parties=2, rounds=1,
              plan=PrivacyPlan(feature_dp=FeatureDP(epsilon=1)), columns={"party1": ColumnSpec(lower=[0], upper=[9])})
    (tmp_path / "t.csv").unlink()
    for bad in (dict(feedback="off"), dict(seed=-1)):
        with pytest.raises(ConfigError, match="feature-DP (feedback|seed) must be"):
            FeatureDP(epsilon=1, **bad)
    with pytest.raises(ConfigError, match="sizes must be \\(n, p\\) pairs"):
        crypto.run(sizes=(1024, 8), paillier_n=0)
    with pytest.raises(ConfigError, match="row 1, column 0"):
        OwnData(np.arange(3), np.array([[1.0, 2], [np.nan, 1], [1, 1]]), source="mine")
    assert not any(tmp_path.iterdir())  # nothing written by any refusal
