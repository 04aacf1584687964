"""Reading one organization's table (pytest-benchmark).

Run: ``pytest benchmarks/test_party_file.py --benchmark-only``. The file is made here: about
31 MB of CSV, 220k rows with a string ID column, 12 numeric columns (a few missing cells), and
one categorical column. Target (issue 11): read, check and encode it in at most 0.3 s.
"""
import numpy as np
import pandas as pd
import pytest

from securegal.data.party_file import read_party_file

ROWS, NUMERIC = 220_000, 12


@pytest.fixture(scope="module")
def csv_31mb(tmp_path_factory):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"patient_id": [f"MRN-{i:07d}" for i in rng.permutation(ROWS)]})
    for j in range(NUMERIC):
        frame[f"x{j}"] = rng.normal(100, 30, size=ROWS).round(6)
    frame["sex"] = rng.choice(["F", "M", "X"], size=ROWS)
    frame.loc[rng.choice(ROWS, 500, replace=False), "x3"] = np.nan
    path = tmp_path_factory.mktemp("tables") / "hospital.csv"
    frame.to_csv(path, index=False)
    return path


def test_read_31mb_csv(benchmark, csv_31mb):
    size_mb = csv_31mb.stat().st_size / 1e6
    table = benchmark.pedantic(lambda: read_party_file(csv_31mb, "patient_id"), rounds=7, iterations=1,
                               warmup_rounds=1)
    benchmark.extra_info["megabytes"] = round(size_mb, 1)
    assert 29 <= size_mb <= 33
    assert table.X.shape == (ROWS, NUMERIC + 1 + 3) and table.summary.imputed["x3"][0] == 500
