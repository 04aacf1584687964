"""Missing cells of a feature-DP party's table: filled with its declared public centres, never a
statistic of its rows, or refused naming the columns; embedded (``--csv``, ``--party``) and
networked (``party.toml``) alike, through ``read_party_file``. Without DP: the median, as before."""
import json

import numpy as np
import pytest

import securegal.data.party_file as party_file
from securegal.cli import main
from securegal.deploy.localnet import party_config
from securegal.deploy.party_process import PartyConfig
from securegal.errors import ConfigError

N = 200
GAPS = [3, 50, 117]
CENTRE = 7.5  # far from the median of a standard normal column


def _values(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(N, 4))


def _cell(x: float, row: int) -> str:
    return "" if row in GAPS else f"{x:.4f}"


@pytest.fixture
def loaded(monkeypatch):
    """Every table ``read_party_file`` returns during the test (what the parties were given)."""
    seen = []
    real = party_file.read_party_file

    def spy(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(party_file, "read_party_file", spy)
    return seen


def _median_of_c() -> float:
    c = np.round(_values(0)[:, 2], 4)  # as written to the CSV
    return float(np.median(np.delete(c, GAPS)))


@pytest.fixture
def single_table(tmp_path):
    """One CSV (ids, a, b, c with 3 missing cells, d, target) and a --columns file declaring its
    four columns a, b, c, d (under feature-DP a missing cell adds no indicator column)."""
    x = _values(0)
    y = (x.sum(axis=1) > 0).astype(int)
    rows = "".join(f"r{i},{x[i, 0]:.4f},{x[i, 1]:.4f},{_cell(x[i, 2], i)},{x[i, 3]:.4f},{y[i]}\n" for i in range(N))
    (tmp_path / "nan.csv").write_text("id,a,b,c,d,target\n" + rows)
    (tmp_path / "cols.toml").write_text(f"centre = [0, 0, {CENTRE}, 0]\nscale = [1, 1, 1, 1]\n")
    return tmp_path


def _csv_run(base, *extra):
    return main(["train", "--csv", str(base / "nan.csv"), "--id", "id", "--target", "target", "-M", "3", "-T", "2",
                 "--no-progress", *extra])


def test_embedded_csv_dp_run_fills_the_declared_centre(single_table, loaded, capsys):
    out = single_table / "dp"
    assert _csv_run(single_table, "--epsilon", "2", "--columns", str(single_table / "cols.toml"),
                    "--out", str(out)) == 0, capsys.readouterr().err
    (table,) = loaded
    assert table.columns == ("a", "b", "c", "d")  # no c=<missing>: one row's gap would add it
    assert table.X[GAPS, 2].tolist() == [CENTRE] * 3 and table.summary.imputed == {"c": (3, CENTRE)}
    assert json.loads((out / "metrics.json").read_text())["data"]["imputed"] == {"c": 3}


def test_embedded_csv_dp_run_without_centres_is_refused_naming_the_column(single_table, capsys):
    assert _csv_run(single_table, "--epsilon", "2", "--out", str(single_table / "dp")) == 2
    err = capsys.readouterr().err
    assert "feature-DP" in err and "column(s) 'c' " in err and len(err.strip().splitlines()) == 1, err
    assert not (single_table / "dp").exists()


def test_embedded_csv_without_dp_still_imputes_the_median(single_table, loaded, capsys):
    out = single_table / "plain"
    assert _csv_run(single_table, "--out", str(out)) == 0, capsys.readouterr().err
    (table,) = loaded
    assert table.summary.imputed == {"c": (3, pytest.approx(_median_of_c()))}
    assert np.all(table.X[GAPS, 2] == table.summary.imputed["c"][1])


@pytest.fixture
def two_tables(tmp_path):
    """alice (label owner: pid, a1, y) and bank (pid, b1 with 3 missing cells, b2), and a
    --columns file declaring bank's columns b1, b2."""
    x = _values(0)
    y = (x.sum(axis=1) > 0).astype(int)
    (tmp_path / "a.csv").write_text("pid,a1,y\n" + "".join(f"p{i},{x[i, 0]:.4f},{y[i]}\n" for i in range(N)))
    (tmp_path / "b.csv").write_text("pid,b1,b2\n" + "".join(f"p{i},{_cell(x[i, 2], i)},{x[i, 1]:.4f}\n"
                                                          for i in range(N)))
    (tmp_path / "cols.toml").write_text(f"[bank]\ncentre = [{CENTRE}, 0]\nscale = [1, 1]\n")
    return tmp_path


def _organizations_run(base, *extra):
    return main(["train", "--label-owner", f"alice={base / 'a.csv'}", "--party", f"bank={base / 'b.csv'}",
                 "--id", "pid", "--target", "y", "-T", "2", "--no-progress", *extra])


def _bank(tables):
    (table,) = [t for t in tables if t.columns[0] == "b1"]
    return table


def test_embedded_party_dp_run_fills_the_declared_centre(two_tables, loaded, capsys):
    assert _organizations_run(two_tables, "--epsilon", "2", "--columns", str(two_tables / "cols.toml"),
                              "--out", str(two_tables / "dp")) == 0, capsys.readouterr().err
    bank = _bank(loaded)
    assert bank.X[GAPS, 0].tolist() == [CENTRE] * 3 and bank.summary.imputed == {"b1": (3, CENTRE)}


def test_embedded_party_dp_run_without_centres_is_refused_naming_the_parties(two_tables, capsys):
    """Without --columns no DP party has public knowledge of its columns (review A: the refusal named
    the label owner's file, whose columns need none)."""
    assert _organizations_run(two_tables, "--epsilon", "2", "--out", str(two_tables / "dp")) == 2
    err = capsys.readouterr().err
    assert "feature-DP parties bank standardize with public" in err and "--columns FILE" in err, err
    assert len(err.strip().splitlines()) == 1 and not (two_tables / "dp").exists()


def test_embedded_party_without_dp_still_imputes_the_median(two_tables, loaded, capsys):
    assert _organizations_run(two_tables, "--out", str(two_tables / "plain")) == 0, capsys.readouterr().err
    assert _bank(loaded).summary.imputed == {"b1": (3, pytest.approx(_median_of_c()))}


def _party(base, privacy=None) -> PartyConfig:
    text = party_config("bank", data={"csv": "b.csv", "id_column": "pid"}, learner_seed=1, certs=None,
                        transcripts=None, privacy=privacy)
    (base / "p.toml").write_text(text)
    return PartyConfig.load(base / "p.toml")


def test_networked_dp_party_fills_its_declared_centre(two_tables):
    cfg = _party(two_tables, {"epsilon": 2.0, "columns": {"centre": [CENTRE, 0], "scale": [1, 1]}})
    assert cfg.table.X[GAPS, 0].tolist() == [CENTRE] * 3


def test_networked_dp_party_fills_the_middle_of_declared_bounds(two_tables):
    """Bounds alone (or bounds with dp_epsilon) declare the centre (lower + upper) / 2: public."""
    for extra in ({}, {"dp_epsilon": 0.5}):
        cfg = _party(two_tables, {"epsilon": 2.0, "columns": {"lower": [5, -4], "upper": [10, 4], **extra}})
        assert cfg.table.X[GAPS, 0].tolist() == [CENTRE] * 3


def test_networked_dp_party_without_centres_is_refused_naming_the_column(two_tables):
    with pytest.raises(ConfigError, match=r"p.toml: b.csv: feature-DP .*column\(s\) 'b1' ") as info:
        _party(two_tables, {"epsilon": 2.0})
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in two_tables.iterdir()) == ["a.csv", "b.csv", "cols.toml", "p.toml"]  # no ledger


def test_networked_party_without_dp_still_imputes_the_median(two_tables):
    cfg = _party(two_tables)
    assert cfg.table.X[GAPS, 0] == pytest.approx([_median_of_c()] * 3)


def test_under_feature_dp_one_row_cannot_change_the_columns(tmp_path):
    """A DP party one-hot encoded text with its rows' own categories and added `col=<missing>` only
    when a cell was missing: replacing one row (a category no other row has, or a blank cell)
    changed d, which the SetupAck publishes and the noise split depends on (independent review S)."""
    x = _values(1)
    base = "".join(f"p{i},{x[i, 0]:.4f},{x[i, 1]:.4f}\n" for i in range(N))
    blank = base.replace(f"p7,{x[7, 0]:.4f},", "p7,,", 1)
    tables = {}
    for name, rows in (("full", base), ("blank", blank)):
        (tmp_path / f"{name}.csv").write_text("pid,b1,b2\n" + rows)
        tables[name] = party_file.read_party_file(tmp_path / f"{name}.csv", "pid", private=True, centres=[0, 0])
    assert tables["full"].columns == tables["blank"].columns == ("b1", "b2")
    assert tables["blank"].X[7, 0] == 0.0  # the declared centre
    assert party_file.read_party_file(tmp_path / "blank.csv", "pid").columns == ("b1", "b1=<missing>", "b2")
    (tmp_path / "ward.csv").write_text("pid,b1,ward\n" + "".join(f"p{i},{x[i, 0]:.4f},{'AB'[i % 2]}\n"
                                                                 for i in range(N)))
    with pytest.raises(ConfigError, match="column 'ward' holds text; under feature-DP the columns must not depend "
                                          "on the rows") as info:
        party_file.read_party_file(tmp_path / "ward.csv", "pid", private=True)
    assert "\n" not in str(info.value)
    assert party_file.read_party_file(tmp_path / "ward.csv", "pid").columns == ("b1", "ward=A", "ward=B")
