"""Each organization's own table (securegal.data.party_file): encoding, imputation, refusals."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from securegal.core.zscore import ZScore
from securegal.data.party_file import MAX_MAGNITUDE, MISSING_SUFFIX, read_party_file
from securegal.errors import ConfigError


def write(tmp_path, text: str, name: str = "t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


CSV = """patient_id,age,sex,bmi,y
MRN-3,40,F,22.5,1
MRN-1,,M,31.0,0
MRN-2,61,F,,1
MRN-9,55,,27.0,0
"""


def test_label_owner_table_is_encoded_and_imputed(tmp_path):
    t = read_party_file(write(tmp_path, CSV), "patient_id", target="y", label_owner=True)
    assert t.id_kind == "str" and t.ids.tolist() == ["MRN-3", "MRN-1", "MRN-2", "MRN-9"]
    assert t.target.tolist() == [1, 0, 1, 0]
    assert t.columns == ("age", f"age{MISSING_SUFFIX}", "sex=F", "sex=M", f"sex{MISSING_SUFFIX}", "bmi",
                         f"bmi{MISSING_SUFFIX}")
    assert t.X[:, 0].tolist() == [40, 55, 61, 55]  # median of 40, 61, 55
    assert t.X[:, 1].tolist() == [0, 1, 0, 0]
    assert t.X[:, 2:5].tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]]
    assert t.X[:, 5].tolist() == [22.5, 31.0, 27.0, 27.0]
    assert t.summary.imputed == {"age": (1, 55.0), "sex": (1, 0.0), "bmi": (1, 27.0)}
    assert t.summary.categorical == {"sex": ("F", "M")} and t.summary.numeric == ("age", "bmi")
    assert t.X.dtype == np.float64 and t.X.flags.c_contiguous


# one per encoded column: age, age=<missing>, sex=F, sex=M, sex=<missing>, bmi, bmi=<missing>
CENTRES = [50.0, 0.0, 0.5, 0.5, 0.0, 25.0, 0.0]


def test_declared_public_centres_replace_the_median(tmp_path):
    t = read_party_file(write(tmp_path, CSV), "patient_id", target="y", label_owner=True, centres=CENTRES)
    assert t.X[:, 0].tolist() == [40, 50, 61, 55] and t.X[:, 5].tolist() == [22.5, 31.0, 25.0, 27.0]
    assert t.summary.imputed == {"age": (1, 50.0), "sex": (1, 0.0), "bmi": (1, 25.0)}
    assert t.X[3, 2:5].tolist() == [0, 0, 1]  # a missing category is its indicator


NUMERIC = CSV.replace(",sex", "").replace(",F,", ",").replace(",M,", ",").replace(",,27.0", ",27.0")


def test_a_private_table_never_fills_with_a_statistic_of_its_rows(tmp_path):
    """Feature-DP (``private``): no median, and no column that depends on the rows: missing
    numeric cells take declared centres without an indicator (or are refused, naming the
    columns), and text columns are refused."""
    assert NUMERIC.splitlines()[0] == "patient_id,age,bmi,y"
    with pytest.raises(ConfigError, match=r"t.csv: feature-DP .*column\(s\) 'age', 'bmi' ") as info:
        read_party_file(write(tmp_path, NUMERIC), "patient_id", target="y", label_owner=True, private=True)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="3 declared centres for 2 feature columns"):
        read_party_file(write(tmp_path, NUMERIC), "patient_id", target="y", label_owner=True, centres=[1, 2, 3],
                        private=True)
    t = read_party_file(write(tmp_path, NUMERIC), "patient_id", target="y", label_owner=True, centres=[50, 25],
                        private=True)
    assert t.columns == ("age", "bmi") and t.X.tolist() == [[40, 22.5], [50, 31], [61, 25], [55, 27]]
    with pytest.raises(ConfigError, match="column 'sex' holds text; under feature-DP"):
        read_party_file(write(tmp_path, CSV), "patient_id", target="y", label_owner=True, centres=CENTRES,
                        private=True)


def test_feature_party_with_integer_ids_and_parquet(tmp_path):
    frame = pd.DataFrame({"cid": [30, 10, 20], "income": [1.5, 2.5, np.nan], "region": ["n", "s", "n"]})
    path = tmp_path / "p.parquet"
    frame.to_parquet(path)
    t = read_party_file(path, "cid", target="y")
    assert t.id_kind == "int" and t.ids.tolist() == [30, 10, 20] and t.target is None
    assert t.columns == ("income", f"income{MISSING_SUFFIX}", "region=n", "region=s")
    assert t.X[2, :2].tolist() == [2.0, 1.0]


def test_a_stored_pandas_index_is_not_a_feature_and_text_targets_stay_text(tmp_path):
    frame = pd.DataFrame({"id": ["a", "b"], "x": [1.0, 2.0], "y": ["yes", "no"]}, index=[7, 9])
    path = tmp_path / "i.parquet"
    frame.to_parquet(path)
    t = read_party_file(path, "id", target="y", label_owner=True)
    assert t.columns == ("x",) and t.target.tolist() == ["yes", "no"]


def test_csv_integer_ids_are_integers(tmp_path):
    t = read_party_file(write(tmp_path, "id,x\n007,1\n-3,2\n12,3\n"), "id")
    assert t.id_kind == "int" and t.ids.tolist() == [7, -3, 12]


def test_missing_refuse_names_the_column_and_count(tmp_path):
    with pytest.raises(ConfigError, match=r"column 'age' is missing in 1 rows \(missing = refuse\)"):
        read_party_file(write(tmp_path, CSV), "patient_id", target="y", label_owner=True, missing="refuse")


@pytest.mark.parametrize("text,kwargs,match", [
    ("id,a,y,c,y\n1,2,3,4,5\n", {"target": "y", "label_owner": True}, "duplicate column names: y"),
    ("id,a,a\n1,2,3\n", {}, "duplicate column names: a"),
    ("id,a,y\n1,2,3\n", {"target": "y"}, "feature party's table holds the target column 'y'"),
    ("id,a\n1,2\n", {"target": "y", "label_owner": True}, "no target column 'y'"),
    ("pid,a\n1,2\n", {}, "no ID column 'id'"),
    ("id,a\nA-1,2\nA-2,3\nA-1,4\n", {}, "1 duplicate IDs \\(the first: data rows 1 and 3 both hold 'A-1'\\)"),
    ("id,a\n5,2\n05,3\n", {}, "1 duplicate IDs"),
    ("id,a\nA-1,2\n17,3\n", {}, "mixes integer IDs \\(data row 2\\) and text IDs \\(data row 1\\)"),
    ("id,a\nA-1,2\n,3\n", {}, "ID column .id. is empty in 1 rows \\(the first: data row 2\\)"),
    # an ID that cannot match any other table's, named at the file by its data row (review B, verifier N4)
    ("id,a\nA-1,2\nA-2\u200b,3\n", {}, "ID column 'id': data row 2 holds a character that does not print"),
    ("id,a\nA-1,2\n\"A-2\t\",3\n", {}, "ID column 'id': data row 2 holds a character that does not print"),
    ("id,a\n1,1_000\n2,2\n", {}, "Python-only form \\('1_000'\\)"),
    ("id,a\n1,0x10\n2,2\n", {}, "column 'a' writes a number in a form securegal does not read \\('0x10'\\)"),
    ("id,a,y\n1,2,0X1\n2,3,0\n", {"target": "y", "label_owner": True}, "column 'y' .* \\('0X1'\\)"),
    ("id,a\n1,0x10\n2,2.5\n", {}, "mixes numbers \\('2.5'\\) and text \\('0x10'\\)"),
    ("id,a\n0x10,1\n17,2\n", {}, "mixes integer IDs \\(data row 2\\) and text IDs \\(data row 1\\)"),
    ("id,a\n1,3\n2,x\n", {}, "mixes numbers \\('3'\\) and text \\('x'\\)"),
    ("id,a\n1,inf\n2,2\n", {}, "infinite"),
    ("id,a\n1,\n2,\n", {}, "column 'a' has no values"),
    ("id,a\n", {}, "no rows"),
    ("id,a,y\n1,2,\n2,3,1\n", {"target": "y", "label_owner": True}, "target column 'y' is missing in 1 rows"),
    ("id,a\n1,2,3\n", {}, "not a readable CSV"),
])
def test_bad_tables_are_refused_with_one_line(tmp_path, text, kwargs, match):
    with pytest.raises(ConfigError, match=match) as info:
        read_party_file(write(tmp_path, text), "id", **kwargs)
    assert "\n" not in str(info.value)


def test_oversized_fields_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="field of 2000 characters"):
        read_party_file(write(tmp_path, "id,note\n1," + "x" * 2000 + "\n"), "id")
    with pytest.raises(ConfigError, match="field of 31 characters \\(limit 30\\)"):
        read_party_file(write(tmp_path, "id,a\n" + "k" * 31 + ",1\n"), "id", max_field_chars=30)


def test_too_many_categories_are_refused(tmp_path):
    rows = "".join(f"{i},name{i}\n" for i in range(70))
    with pytest.raises(ConfigError, match="70 categories \\(limit 64\\)"):
        read_party_file(write(tmp_path, "id,name\n" + rows), "id")


def test_a_parquet_file_that_is_not_parquet_is_refused(tmp_path):
    path = write(tmp_path, CSV, "fake.parquet")
    with pytest.raises(ConfigError, match="fake.parquet: not a readable Parquet file") as info:
        read_party_file(path, "patient_id")
    assert "\n" not in str(info.value)


def test_parquet_float_ids_and_unknown_formats_are_refused(tmp_path):
    path = tmp_path / "f.parquet"
    pd.DataFrame({"id": [1.0, 2.0], "a": [1, 2]}).to_parquet(path)
    with pytest.raises(ConfigError, match="holds double values"):
        read_party_file(path, "id")
    with pytest.raises(ConfigError, match="unknown table format '.xlsx'"):
        read_party_file(write(tmp_path, "x", "t.xlsx"), "id")
    with pytest.raises(ConfigError, match="no such file"):
        read_party_file(tmp_path / "absent.csv", "id")
    with pytest.raises(ConfigError, match="missing must be one of"):
        read_party_file(write(tmp_path, CSV), "patient_id", missing="drop")
    for centres in ({"age": 1.0}, [1.0, float("nan")], "1", [[1.0]]):
        with pytest.raises(ConfigError, match="centres must be a list of finite numbers"):
            read_party_file(write(tmp_path, CSV), "patient_id", target="y", label_owner=True, centres=centres)


def test_a_hexadecimal_looking_text_column_is_text_and_decimal_columns_stay_numbers(tmp_path):
    """IDs and numbers follow one rule (optionally signed decimal digits): an ID column of
    ``0x..`` values is text IDs, a file holding ``0x`` still reads its decimal numbers, and a
    column of hexadecimal numbers is refused rather than read as numbers or as categories."""
    table = read_party_file(write(tmp_path, "id,a,note\n0x1F,10,0xf-ish\n0x20,-3,x0\n"), "id")
    assert table.id_kind == "str" and table.ids.tolist() == ["0x1F", "0x20"]
    assert table.columns == ("a", "note=0xf-ish", "note=x0")
    assert table.X[:, 0].tolist() == [10.0, -3.0]
    with pytest.raises(ConfigError, match="column 'b' writes a number .* \\('0xff'\\)"):
        read_party_file(write(tmp_path, "id,b\n1,0xff\n2,0x0\n"), "id")


@pytest.mark.parametrize("value", ["1e308", "-1e308", "1.7976931348623157e308", "-2e200", "1.5e100", "1e101"])
@pytest.mark.parametrize("column", ["a", "y"])
def test_numbers_too_large_to_standardize_are_refused_by_column(tmp_path, value, column):
    """Finite but huge numbers overflow the means, variances and Gram matrices computed from
    them: refused at load time, naming the column (the label owner's target too)."""
    rows = [["1", "0.5", "0"], ["2", "1.5", "1"], ["3", "2.5", "0"]]
    rows[1][1 if column == "a" else 2] = value
    text = "id,a,y\n" + "".join(",".join(r) + "\n" for r in rows)
    with pytest.raises(ConfigError, match=f"column '{column}' holds .*beyond the largest magnitude") as info:
        read_party_file(write(tmp_path, text), "id", target="y", label_owner=True)
    assert "\n" not in str(info.value)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=st.floats(allow_nan=False, allow_infinity=False))
def test_a_number_is_read_and_standardizes_finitely_or_is_refused(tmp_path, x):
    """The bound: every accepted number z-scores to finite values; every refused one is over it."""
    path = write(tmp_path, f"id,a,y\n1,{x!r},0\n2,{-x!r},1\n3,1.0,0\n4,,1\n")
    if abs(x) > MAX_MAGNITUDE:
        with pytest.raises(ConfigError, match="column 'a' holds"):
            read_party_file(path, "id", target="y", label_owner=True)
        return
    t = read_party_file(path, "id", target="y", label_owner=True)
    z = ZScore.fit(t.X)
    assert np.isfinite(z.mean).all() and np.isfinite(z.std).all() and np.isfinite(z(t.X)).all()
