"""Three organizations with their own files: string IDs, shuffled rows, partial overlap, a
categorical column and missing cells, built here from mlxtend's auto-mpg data (used by no other
test). A networked federation aligns them by private set intersection and trains."""
import json

import numpy as np
import pandas as pd
import pytest

from securegal.deploy import config as schema
from securegal.deploy.localnet import federation_config
from securegal.deploy.networked import FederationConfig, train_federation
from securegal.deploy.party_process import PartyConfig, serve_party
from securegal.run import train

from .test_network_dp import FAST_RETRY


def _tables(tmp_path):
    from mlxtend.data import autompg_data

    X, mpg = autompg_data()
    rng = np.random.default_rng(11)
    n = len(mpg)
    ids = [f"MRN-{v:06d}" for v in rng.choice(900_000, size=n, replace=False) + 100_000]
    origin = np.array(["usa", "europe", "japan"])[X[:, 6].astype(int) - 1]
    full = pd.DataFrame({"patient": ids, "cylinders": X[:, 0], "displacement": X[:, 1], "horsepower": X[:, 2],
                         "weight": X[:, 3], "acceleration": X[:, 4], "year": X[:, 5], "origin": origin,
                         "efficient": (mpg > np.median(mpg)).astype(int)})
    full.loc[rng.choice(n, 6, replace=False), "horsepower"] = np.nan  # a few missing cells
    keep = {"owner": rng.random(n) < 0.9, "clinic": rng.random(n) < 0.8, "insurer": rng.random(n) < 0.85}
    columns = {"owner": ["patient", "year", "efficient"], "clinic": ["patient", "weight", "acceleration"],
               "insurer": ["patient", "cylinders", "displacement", "horsepower", "origin"]}
    paths = {}
    for name, cols in columns.items():
        part = full.loc[keep[name], cols].sample(frac=1.0, random_state=int(rng.integers(1000)))
        paths[name] = tmp_path / f"{name}.csv"
        part.to_csv(paths[name], index=False)
    return full, keep, paths


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_three_organizations_align_privately_and_train(tmp_path):
    import queue
    import threading

    full, keep, paths = _tables(tmp_path)
    stops, addresses = [], {}
    try:
        for name in ("clinic", "insurer"):
            toml = tmp_path / f"{name}.toml"
            toml.write_text(schema.dump({"name": name, "label_owner": "alice", "listen": "127.0.0.1:0",
                                         "transcripts": str(tmp_path / "run" / "transcripts" / name),
                                         "data": {"csv": str(paths[name]), "id_column": "patient"},
                                         "tls": {"insecure": True}}))
            ready, stop = queue.Queue(), threading.Event()
            threading.Thread(target=serve_party, args=(PartyConfig.load(toml),),
                             kwargs={"stop": stop, "on_ready": ready.put}, daemon=True).start()
            stops.append(stop)
            addresses[name] = f"127.0.0.1:{ready.get(timeout=60)}"
        fed = tmp_path / "federation.toml"
        fed.write_text(federation_config(data={"csv": str(paths["owner"]), "target": "efficient",
                                               "id_column": "patient"},
                                         peers=addresses, rounds=5, seed=0, out=tmp_path / "run", certs=None,
                                         transport=FAST_RETRY))
        metrics = train_federation(FederationConfig.load(fed))
    finally:
        for stop in stops:
            stop.set()
    # the intersection is what pandas.merge finds on the same files
    merged = pd.read_csv(paths["owner"]).merge(pd.read_csv(paths["clinic"]), on="patient") \
        .merge(pd.read_csv(paths["insurer"]), on="patient")
    assert metrics["data"]["aligned_rows"] == len(merged) and metrics["data"]["label_owner_rows"] == keep["owner"].sum()
    assert 0.6 < len(merged) / len(full) < 0.75
    # the categorical column and the missing cells stay with the insurer; the label owner's own columns are recorded
    assert metrics["data"]["columns"]["alice"] == ["year"]
    # no party's transcript holds an ID, raw or as a hash it could compare without the session secret
    for name in ("clinic", "insurer"):
        raw = (tmp_path / "run" / "transcripts" / name / "messages.bin").read_bytes()
        assert b"MRN-" not in raw
    # the embedded default runs the same path (PSI, handles) from the same files and gives the same result
    from securegal.cli import main

    assert main(["train", "--label-owner", f"alice={paths['owner']}", "--party", f"clinic={paths['clinic']}",
                 "--party", f"insurer={paths['insurer']}", "--id", "patient", "--target", "efficient",
                 "--rounds", "5", "--baselines", "--out", str(tmp_path / "embedded"), "--no-progress"]) == 0
    embedded = json.loads((tmp_path / "embedded" / "metrics.json").read_text())
    for key in ("gal", "weights", "eta", "n_train", "n_test"):
        assert embedded[key] == metrics[key], key
    assert embedded["data"]["n_columns"] == metrics["data"]["n_columns"] == {"alice": 1, "clinic": 2, "insurer": 7}
    assert metrics["data"]["columns"] == {"alice": ["year"]}  # networked: the parties' column names stay theirs
    assert "origin=japan" in embedded["data"]["columns"]["insurer"]
    joint, alone_e = embedded["joint"]["test"], embedded["alone"]["test"]
    print(f"embedded: GAL {embedded['gal']['test']:.2f}, Joint {joint:.2f}, Alone {alone_e:.2f}")
    assert abs(embedded["gal"]["test"] - joint) <= 1.5 and embedded["gal"]["test"] > alone_e
    # GAL beats the label owner alone (year only) on the same aligned rows
    alone = train(csv=paths["owner"], target="efficient", id_column="patient", parties=1, rounds=5)
    print(f"aligned {len(merged)} of {len(full)}; GAL {metrics['gal']['test']:.2f} vs alone {alone['gal']['test']:.2f}")
    assert metrics["gal"]["test"] > alone["gal"]["test"] + 5
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["gal"]["test"] == metrics["gal"]["test"]


def test_own_tables_from_python_are_checked_like_the_command_line(tmp_path):
    """Review C: through the Python API an owner named like a party was accepted (one transcript
    directory for two organizations, unreadable afterwards), ``parties`` was ignored and recorded,
    and a pandas frame failed with an AttributeError."""
    import pandas as pd

    from securegal.data.party_file import read_party_file
    from securegal.deploy.embedded import EmbeddedDeployment
    from securegal.errors import ConfigError

    (tmp_path / "lab.csv").write_text("id,a\n" + "".join(f"P{i},{i % 7}\n" for i in range(40)))
    lab = read_party_file(tmp_path / "lab.csv", "id")
    with pytest.raises(ConfigError, match="the label owner and a feature party are both named 'lab'"):
        EmbeddedDeployment({"lab": lab}, owner="lab")
    with pytest.raises(ConfigError, match="write the frame to a CSV or Parquet file"):
        EmbeddedDeployment({"lab": pd.read_csv(tmp_path / "lab.csv")}, owner="hospital")
    with pytest.raises(ConfigError, match="--parties 9: with one table per organization there are 1 \\+ 1 = 2"):
        EmbeddedDeployment({"lab": lab}, owner="hospital").names(9)
    with pytest.raises(ConfigError, match="tables is empty"):  # was the column-block deployment
        EmbeddedDeployment({})
    with pytest.raises(ConfigError, match="tables must be a dict .* got a list"):
        EmbeddedDeployment([lab])


def test_a_party_that_holds_none_of_the_label_owners_rows_is_named(tmp_path):
    """New-user review L5: 'the parties hold only 0 of the label owner's 1029 training rows' did
    not say which party held none (the other overlapped fully)."""
    from securegal.data.party_file import read_party_file
    from securegal.deploy.embedded import EmbeddedDeployment
    from securegal.errors import ConfigError

    rng = np.random.default_rng(2)
    ids = [f"P{i}" for i in range(120)]
    pd.DataFrame({"id": ids, "a": rng.normal(size=120), "y": rng.integers(0, 2, 120)}).to_csv(tmp_path / "o.csv",
                                                                                             index=False)
    pd.DataFrame({"id": ids, "b": rng.normal(size=120)}).to_csv(tmp_path / "bob.csv", index=False)
    pd.DataFrame({"id": [f"Q{i}" for i in range(120)], "c": rng.normal(size=120)}).to_csv(tmp_path / "carol.csv",
                                                                                          index=False)
    tables = {name: read_party_file(tmp_path / f"{name}.csv", "id") for name in ("bob", "carol")}
    with pytest.raises(ConfigError, match=r"hold only 0 of the label owner's \d+ training rows together "
                                          r"\(each: bob \d+, carol 0\)"):
        train(csv=tmp_path / "o.csv", target="y", id_column="id", parties=3, rounds=1,
              deployment=EmbeddedDeployment(tables, owner="alice"))
