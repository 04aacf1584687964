"""Bad input at every entry point: CLI flags, CSV files, party.toml, federation.toml and
checkpoints. For every case: exit 2 (or ConfigError) with one line, no traceback, and no file
left behind. Cases are generated where possible (hypothesis for config values); the figures for
the issue note come from ``pytest tests/test_bad_input.py -q`` (the parametrised case count).
"""
import copy
import json
import tomllib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from securegal.cli import main
from securegal.deploy import config as schema
from securegal.deploy.localnet import federation_config, party_config
from securegal.errors import ConfigError

PARTY_DATA = {"dataset": "wine", "parties": 3, "block": 1}
BAD_NUMBERS = ["-1", "0", "nan", "inf", "1e309", "abc", ""]


def _files(path):
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*"))


def _one_clean_line(code, err, expected_code=2):
    assert code == expected_code, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


# ---------------------------------------------------------------- CLI flags of `train`

FLAG_CASES = [(flag, value) for flag in ("--rounds", "--parties") for value in [*BAD_NUMBERS, "100000000"]]
FLAG_CASES += [("--seed", value) for value in ("-1", "nan", "abc", "", "1e3", str(2 ** 40))]
FLAG_CASES += [(flag, value) for flag in ("--eta", "--eta-max", "--epsilon", "--label-epsilon")
               for value in BAD_NUMBERS]
FLAG_CASES += [(flag, value) for flag in ("--delta", "--dp-feature-clip", "--dp-residual-clip", "--dp-prediction-clip")
               for value in ["-1", "0", "nan", "inf", "abc", *(["2"] if flag == "--delta" else ["1e400"])]]
FLAG_CASES += [("--learner", v) for v in ("svm", "", "LINEAR", "linear;rm")]
FLAG_CASES += [("--dataset", v) for v in ("nope", "", "../etc/passwd", "iris ")]
FLAG_CASES += [("--weights", "random"), ("--residuals", "paillier"), ("--accountant", "gdp"),
               ("--local-loss", "l3"), ("--dp-feedback", "maybe"), ("--min-parties", "2"), ("--insecure", None)]


@pytest.mark.parametrize("flag,value", FLAG_CASES)
def test_bad_train_flag(flag, value, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    extra = [] if flag in ("--epsilon", "--label-epsilon") else (
        ["--epsilon", "1"] if flag.startswith("--dp-") or flag in ("--delta", "--accountant") else [])
    argv = ["train", "--dataset", "wine", "--rounds", "2", "--no-progress", "--out", "out", *extra, flag]
    if value is not None:
        argv.append(value)
    if flag == "--dataset":
        argv = ["train", "--rounds", "2", "--no-progress", "--out", "out", flag, value]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: choices and types are refused before anything runs
        code = exc.code
    _one_clean_line(code, capsys.readouterr().err)
    assert _files(tmp_path) == []


@pytest.mark.parametrize("argv", [
    ["--csv", "x.csv", "--dataset", "wine"],
    ["--federation", "missing.toml"],
    ["--resume", "nowhere"],
    ["--federation", "f.toml", "--resume", "nowhere"],
    ["--target", "y"],
    ["--dataset", "wine", "--eta", "0.5", "--eta-max", "0.001"],
    ["--dataset", "wine", "--epsilon", "3", "--eta-max", "0.001"],
    ["--dataset", "wine", "--residuals", "ckks", "--epsilon", "3", "--dp-prediction-clip", "0.1"],
    ["--dataset", "wine", "--epsilon", "3", "--dp-feedback", "off", "--dp-prediction-clip", "0.1"],
])
def test_bad_train_flag_combinations(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["train", "--no-progress", *argv])
    except SystemExit as exc:
        code = exc.code
    _one_clean_line(code, capsys.readouterr().err)
    assert _files(tmp_path) == []


@pytest.mark.parametrize("argv", [["--eta", "0.5", "--eta-max", "1"], ["--label-epsilon", "3", "--eta-max", "1"]])
def test_eta_max_with_a_fixed_step_is_refused_with_federation(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.toml").write_text(schema.dump(_good_federation()))
    code = main(["train", "--federation", "f.toml", "--insecure", "--no-progress", *argv])
    err = capsys.readouterr().err
    _one_clean_line(code, err)
    assert "--eta-max" in err and _files(tmp_path) == ["f.toml"]


# ---------------------------------------------------------------- CSV files through `train --csv`

GOOD_ROWS = "".join(f"{i % 7},{(i * 3) % 5},{i % 2}\n" for i in range(40))
CSV_CASES = {
    "empty": "",
    "header_only": "a,b,y\n",
    "no_target": "a,b,c\n" + GOOD_ROWS,
    "text_cell": "a,b,y\n" + GOOD_ROWS + "x,1,0\n",
    "missing_target": "a,b,y\n" + GOOD_ROWS + "1,1,\n",
    "mixed_number_text": "a,b,y\n" + GOOD_ROWS + "x,1,0\n",
    "unknown_suffix": None,
    "inf_cell": "a,b,y\n" + GOOD_ROWS + "inf,1,0\n",
    "huge_cell": "a,b,y\n" + GOOD_ROWS + "1e308,1,0\n",  # finite, but its square overflows
    "huge_negative_cell": "a,b,y\n" + GOOD_ROWS + "1,-1e200,0\n",
    "huge_target": "a,b,y\n" + GOOD_ROWS + "1,1,1e308\n",
    "ragged_long": "a,b,y\n" + GOOD_ROWS + "1,2,3,4\n",
    "ragged_short": "a,b,y\n" + GOOD_ROWS + "1\n",
    "python_underscore": "a,b,y\n" + GOOD_ROWS + "1_000,1,0\n",
    "too_few_rows": "a,b,y\n1,2,0\n2,3,1\n",
    "single_class": "a,b,y\n" + "".join(f"{i},{i},1\n" for i in range(40)),
    "only_target": "y\n" + "".join(f"{i % 2}\n" for i in range(40)),
    "duplicate_target": "a,y,b,y\n" + "".join(f"{i},{i % 2},{i},{i % 2}\n" for i in range(40)),
    "huge_field": "a,b,y\n" + GOOD_ROWS + ("9" * 200_000) + ",1,0\n",
    "binary_garbage": "\x00\x01\x02\xff\xfe" * 50,
    "quote_unclosed": 'a,b,y\n"1,2,0\n' + GOOD_ROWS,
    "blank_header": ",,\n" + GOOD_ROWS,
}


@pytest.mark.parametrize("name", sorted(CSV_CASES))
def test_bad_csv(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    file = "data.txt" if CSV_CASES[name] is None else "data.csv"
    (tmp_path / file).write_bytes((CSV_CASES[name] or GOOD_ROWS).encode("latin-1"))
    code = main(["train", "--csv", file, "--target", "y", "--rounds", "2", "--parties", "2",
                 "--no-progress", "--out", "out"])
    _one_clean_line(code, capsys.readouterr().err)
    assert _files(tmp_path) == [file]


@pytest.mark.parametrize("cell", ["", "nan", "NA"])
def test_missing_cells_are_imputed_or_refused(cell, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text("a,b,y\n" + GOOD_ROWS + f"{cell},1,0\n")
    argv = ["train", "--csv", "data.csv", "--target", "y", "--rounds", "2", "--parties", "2", "--no-progress"]
    assert main([*argv, "--out", "imputed"]) == 0
    metrics = json.loads((tmp_path / "imputed" / "metrics.json").read_text())
    assert metrics["data"]["imputed"] == {"a": 1}
    capsys.readouterr()
    assert main([*argv, "--out", "refused", "--missing", "refuse"]) == 2
    err = capsys.readouterr().err
    assert "column 'a' is missing in 1 rows" in err and not (tmp_path / "refused").exists()


# ---------------------------------------------------------------- party.toml and federation.toml

def _good_party():
    return tomllib.loads(party_config("party1", data=PARTY_DATA, learner_seed=1, certs=None, transcripts=None))


def _good_federation():
    return tomllib.loads(federation_config(data={"dataset": "wine"}, peers={"party1": "127.0.0.1:5001",
                                                                           "party2": "127.0.0.1:5002"},
                                           rounds=3, seed=0, out="run", certs=None))


def _set(doc, path, value):
    doc = copy.deepcopy(doc)
    node = doc
    for key in path[:-1]:
        node = node.setdefault(key, {}) if not isinstance(node, list) else node[key]
    node[path[-1]] = value
    return doc


PARTY_MUTATIONS = [
    (("name",), "bad name!"), (("name",), 7), (("listen",), "nohost"), (("listen",), "127.0.0.1:99999"),
    (("listen",), "127.0.0.1:-1"), (("label_owner",), ""), (("colour",), 1), (("data", "block"), 0),
    (("data", "block"), 3), (("data", "parties"), 1), (("data", "dataset"), "nope"), (("data", "csv"), "x.csv"),
    (("data", "zzz"), 1), (("learner", "name"), "zzz"), (("learner", "options"), {"depth": 3}),
    (("learner", "seed"), -1), (("learner", "seed"), "one"), (("learner", "local_loss"), "l3"),
    (("privacy", "residuals"), "paillier"), (("privacy", "epsilon"), -1.0), (("privacy", "epsilon"), "1"),
    (("privacy", "epsilon"), float("nan")), (("privacy", "epsilon"), float("inf")), (("privacy", "delta"), 0.5),
    (("privacy", "delta"), 0.0), (("privacy", "feedback"), "maybe"), (("privacy", "accountant"), "gdp"),
    (("privacy", "feature_clip"), 0.0), (("tls", "insecure"), "yes"), (("tls", "cert"), "x.pem"),
    (("limits", "chunk_bytes"), 2 ** 32), (("limits", "chunk_bytes"), 0), (("limits", "max_message_bytes"), -5),
    (("limits", "session_timeout"), 0), (("transcripts",), 5),
    # C_f with no plaintext pred release to clip: no effect, refused as on the command line
    (("privacy",), {"epsilon": 1.0, "feedback": "off", "prediction_clip": 0.1}),
    (("privacy",), {"residuals": "ckks", "epsilon": 1.0, "prediction_clip": 0.1}),
]


@pytest.mark.parametrize("path,value", PARTY_MUTATIONS, ids=lambda v: str(v)[:30])
def test_bad_party_toml(path, value, tmp_path):
    from securegal.deploy.party_process import PartyConfig

    doc = _set(_good_party(), path, value)
    (tmp_path / "p.toml").write_text(schema.dump(doc))
    with pytest.raises(ConfigError) as err:
        PartyConfig.load(tmp_path / "p.toml")
    assert "\n" not in str(err.value) and "p.toml" in str(err.value)
    assert _files(tmp_path) == ["p.toml"]


FEDERATION_MUTATIONS = [
    (("rounds",), 0), (("rounds",), 10 ** 9), (("rounds",), "3"), (("seed",), -1), (("eta",), -1.0),
    (("eta",), 0.0), (("eta_max",), 0.0), (("eta_max",), 1e12), (("weights",), "random"),
    (("min_parties",), 0), (("min_parties",), 9), (("residuals",), "paillier"), (("residual_clip",), 1.0),
    (("residual_clip",), -1.0), (("learner",), 3), (("local_loss",), "l3"), (("out",), 5), (("colour",), 1),
    (("data", "dataset"), None), (("data", "csv"), "x.csv"), (("data", "target"), "y"),
    (("label_dp",), {"epsilon": -1.0}), (("label_dp",), {"epsilon": 1.0, "delta": 2.0}), (("label_dp",), {"delta": 1e-5}),
    (("transport", "timeout"), 0), (("transport", "attempts"), 0), (("transport", "chunk_bytes"), 2 ** 32),
    (("transport", "backoff"), -1.0), (("party",), []), (("party", 0, "address"), "nohost"),
    (("party", 0, "address"), "127.0.0.1:0"), (("party", 0, "address"), "127.0.0.1:70000"),
    (("party", 0, "name"), "party2"), (("party", 0, "name"), "alice"), (("party", 0, "name"), "bad name"),
    (("name",), "bad/name"),
]


@pytest.mark.parametrize("path,value", FEDERATION_MUTATIONS, ids=lambda v: str(v)[:30])
def test_bad_federation_toml(path, value, tmp_path):
    from securegal.deploy.networked import FederationConfig

    doc = _set(_good_federation(), path, value)
    if value is None:
        doc["data"].pop(path[-1])
    (tmp_path / "f.toml").write_text(schema.dump(doc))
    with pytest.raises(ConfigError) as err:
        FederationConfig.load(tmp_path / "f.toml", insecure=True)
    assert "\n" not in str(err.value) and "f.toml" in str(err.value)
    assert _files(tmp_path) == ["f.toml"]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["rounds", "seed", "eta", "eta_max", "min_parties", "residuals", "weights", "out",
                            "learner", "residual_clip", "local_loss"]),
       value=st.one_of(st.integers(-10 ** 12, 10 ** 12), st.floats(allow_nan=True), st.text(max_size=8),
                       st.booleans(), st.lists(st.integers(), max_size=2)))
def test_generated_federation_values_are_accepted_or_refused_cleanly(tmp_path_factory, key, value):
    from securegal.deploy.networked import FederationConfig

    tmp = tmp_path_factory.mktemp("gen")
    doc = _set(_good_federation(), (key,), value)
    (tmp / "f.toml").write_text(schema.dump(doc))
    try:
        cfg = FederationConfig.load(tmp / "f.toml", insecure=True)
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:  # accepted: the value is what the file said, within its documented bounds
        assert 1 <= cfg.rounds <= schema.MAX_ROUNDS and cfg.seed >= 0
    assert _files(tmp) == ["f.toml"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_generated_toml_text_never_crashes_the_schema(tmp_path_factory, text):
    from securegal.deploy.party_process import PartyConfig

    tmp = tmp_path_factory.mktemp("txt")
    (tmp / "p.toml").write_text(text, encoding="utf-8", errors="surrogateescape") if text.isprintable() else \
        (tmp / "p.toml").write_bytes(text.encode("utf-8", "replace"))
    with pytest.raises(ConfigError):
        PartyConfig.load(tmp / "p.toml")


# ---------------------------------------------------------------- checkpoints (`train --resume`)

CHECKPOINT_DAMAGE = {
    "missing_state": lambda d: (d / "state.json").unlink(),
    "not_json": lambda d: (d / "state.json").write_text("{not json"),
    "json_list": lambda d: (d / "state.json").write_text("[]"),
    "wrong_format": lambda d: _edit(d, lambda s: s.update(format="other")),
    "wrong_version": lambda d: _edit(d, lambda s: s.update(version=99)),
    "no_session": lambda d: _edit(d, lambda s: s.pop("session")),
    "no_weighting": lambda d: _edit(d, lambda s: s.pop("weighting")),
    "no_rounds": lambda d: _edit(d, lambda s: s.pop("rounds")),
    "round_without_weights": lambda d: _edit(d, lambda s: s["rounds"][0].pop("weights")),
    "missing_F": lambda d: (d / "F_0001.npy").unlink(),
    "corrupt_F": lambda d: (d / "F_0001.npy").write_bytes(b"garbage"),
    "pickled_F": lambda d: (d / "F_0001.npy").write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (1,), }" + b" " * 60 + b"\n" + b"\x80\x04K\x01."),
    "config_changed": lambda d: (d.parent.parent / "federation.toml").write_text(
        (d.parent.parent / "federation.toml").read_text().replace("rounds = 3", "rounds = 4")),
    "config_missing": lambda d: (d.parent.parent / "federation.toml").unlink(),
}


def _edit(directory, change):
    state = json.loads((directory / "state.json").read_text())
    change(state)
    (directory / "state.json").write_text(json.dumps(state))


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory):
    """A networked label owner's checkpoint after round 1 of 3 (written by the real Checkpoint)."""
    import numpy as np

    from securegal.deploy.checkpoint import Checkpoint
    from securegal.parties.label_owner import RoundResult

    base = tmp_path_factory.mktemp("ckpt")
    text = federation_config(data={"dataset": "wine"}, peers={"party1": "127.0.0.1:5001"}, rounds=3, seed=0,
                             out=base / "run", certs=None)
    (base / "federation.toml").write_text(text)

    class Owner:  # what Checkpoint.save reads
        session, peers, weighting, eta, calibration = "s1", ["party1"], "learned", None, None
        party_columns = {"party1": 3}
        F = np.zeros((5, 3))
        model = type("M", (), {"rounds": []})()

        def alignment_state(self):
            return {}

    ckpt = Checkpoint(base / "run", base / "federation.toml", text)
    owner = Owner()
    ckpt.save(owner)
    owner.model.rounds.append(RoundResult(1, {"alice": 0.5, "party1": 0.5}, 1.0, 0.3))
    ckpt.save(owner)
    return base


@pytest.mark.parametrize("damage", sorted(CHECKPOINT_DAMAGE))
def test_bad_checkpoint(damage, checkpointed, tmp_path, capsys):
    import shutil

    base = tmp_path / "copy"
    shutil.copytree(checkpointed, base)
    text = (base / "federation.toml").read_text().replace(str(checkpointed), str(base))
    (base / "federation.toml").write_text(text)
    state = base / "run" / "checkpoint" / "state.json"
    state.write_text(state.read_text().replace(str(checkpointed), str(base)))
    CHECKPOINT_DAMAGE[damage](base / "run" / "checkpoint")
    before = _files(base)
    code = main(["train", "--resume", str(base / "run"), "--insecure", "--no-progress"])
    _one_clean_line(code, capsys.readouterr().err)
    assert _files(base) == before  # nothing written, nothing reset


@pytest.mark.parametrize("address", ["", "host", ":50051", "host:", "host:http", "host:65536", "host:-1", 5])
def test_address_parser_names_the_bad_address(address):
    from securegal.transport.address import split_address
    with pytest.raises(ConfigError, match="party address must be host:port"):
        split_address(address, "party address")


def test_address_parser_reads_ipv6_and_any_port():
    from securegal.transport.address import split_address
    assert split_address("[::1]:0", any_port=True) == ("::1", 0)
    assert split_address("example.org:443") == ("example.org", 443)
    with pytest.raises(ConfigError, match="port in 1..65535"):
        split_address("127.0.0.1:0")


@pytest.mark.parametrize("path", [("out",), ("data", "dataset"), ("party", 0, "name")])
def test_a_nul_character_in_a_config_value_is_refused_by_key(tmp_path, path):
    from securegal.deploy.networked import FederationConfig

    doc = _good_federation()
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = "a\0b"
    (tmp_path / "f.toml").write_text(schema.dump(doc))
    with pytest.raises(ConfigError, match=rf"f\.toml: {'.'.join(map(str, path))}: a NUL character"):
        FederationConfig.load(tmp_path / "f.toml", insecure=True)
