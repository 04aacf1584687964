"""One organization's own table (CSV or Parquet) turned into IDs and a float feature matrix.

Read with pyarrow (its multi-threaded CSV reader, or Parquet) and checked with pyarrow's
vectorised compute functions; nothing here parses text by hand. The owning
party does all encoding with its own data only:

- the ID column holds strings or integers (a CSV column is integers when every cell is one);
- numeric columns are used as they are;
- text columns are one-hot encoded with the party's own categories (``col=value``, sorted);
- missing cells are imputed, with the column median or with declared public centres
  (``centres``), and get an indicator column ``col=<missing>``; ``missing="refuse"`` refuses
  them instead.

A table serving feature-DP (``private=True``) gets columns that depend on its header and column
types only, never on its rows (one row could otherwise add a column, and the number of columns
is public): text columns are refused, missing cells get no indicator column, and they are filled
only with declared centres, never a statistic of the rows (without centres they are refused).

Refused, each with a one-line :class:`ConfigError`: a file that is not what its suffix says,
duplicate column names, a missing ID column, IDs that are missing, duplicated or of mixed
kinds, a target column at a feature party, numbers written in Python-only forms (``1_000``)
or in hexadecimal (``0x10``, which pyarrow's integer parser would accept; IDs and numbers follow
one rule: optionally signed decimal digits), a column that mixes numbers and text, a text
column with too many categories, a number that is infinite or of magnitude over
``MAX_MAGNITUDE`` (features and target alike), and any cell longer than ``max_field_chars``.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..align.ids import UNPRINTABLE_ID, first_unprintable
from ..errors import ConfigError, printable

MISSING_POLICIES = ("impute", "refuse")
MAX_FIELD_CHARS = 1024
MAX_CATEGORIES = 64
MISSING_SUFFIX = "=<missing>"
# Larger numbers are refused: squared and summed over any number of rows (means, variances, Gram
# matrices) they stay finite in float64, whose largest value is 1.8e308.
MAX_MAGNITUDE = 1e100
_NUMBER = r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*$"
_PYTHON_NUMBER = r"^\s*[+-]?[0-9][0-9_]*_[0-9_]*(\.[0-9_]*)?([eE][+-]?[0-9_]+)?\s*$"


@dataclass(frozen=True)
class TableSummary:
    """What the party did to its table (its own knowledge, for its run summary)."""

    rows: int
    numeric: tuple[str, ...]
    categorical: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    imputed: Mapping[str, tuple[int, float]] = field(default_factory=dict)  # column -> (cells, value)


@dataclass(frozen=True)
class PartyTable:
    """``ids`` (n,) of ``id_kind`` ("str" | "int"), features ``X`` (n, d) float64 named by
    ``columns``, the label owner's raw ``target`` column (None at a feature party)."""

    ids: np.ndarray
    id_kind: str
    X: np.ndarray
    columns: tuple[str, ...]
    summary: TableSummary
    target: np.ndarray | None = None


def read_party_file(path: str | Path, id_column: str | None, *, target: str | None = None, label_owner: bool = False,
                    missing: str = "impute", centres: Sequence[float] | None = None, private: bool = False,
                    max_categories: int = MAX_CATEGORIES, max_field_chars: int = MAX_FIELD_CHARS) -> PartyTable:
    """Read and encode one party's table. ``target`` names the label column: the label owner's
    table must hold it (``label_owner=True``), a feature party's table must not.

    ``centres``: declared public centres, one per column of ``X`` in the order of ``columns`` (as
    a ``ColumnSpec`` declares them); a numeric column's missing cells get its centre instead of the
    median. ``private``: the table serves feature-DP, so missing cells without centres are refused.
    """
    path = Path(path)
    if missing not in MISSING_POLICIES:
        raise ConfigError(f"missing must be one of {MISSING_POLICIES}, got {missing!r}")
    if centres is not None:
        centres = _centres(centres)
    if label_owner and not target:
        raise ConfigError("the label owner's table needs a target column name")
    table = _read(path, id_column)
    name = path.name
    _check_unique(table.column_names, name)
    if path.suffix.lower() == ".csv":
        _check_integer_forms(path, table, id_column, name)
    if id_column is not None and id_column not in table.column_names:
        shown = ", ".join(table.column_names[:20])
        raise ConfigError(f"{name}: no ID column {id_column!r} (columns: {shown})")
    if target is not None and target == id_column:
        raise ConfigError(f"{name}: the ID column {id_column!r} cannot be the target")
    if target is not None and not label_owner and target in table.column_names:
        raise ConfigError(f"{name}: a feature party's table holds the target column {target!r}; remove it")
    if label_owner and target not in table.column_names:
        raise ConfigError(f"{name}: the label owner's table has no target column {target!r}")
    if table.num_rows == 0:
        raise ConfigError(f"{name}: the table has no rows")
    _check_field_lengths(table, name, max_field_chars)
    if id_column is None:  # a single-table demo: the rows get synthetic IDs 0..n-1
        ids, kind = np.arange(table.num_rows, dtype=np.int64), "int"
    else:
        ids, kind = _ids(table.column(id_column), name, id_column)
    y = None
    if label_owner:
        col = table.column(target)
        if col.null_count:
            raise ConfigError(f"{name}: target column {target!r} is missing in {col.null_count} rows")
        y = col.to_numpy()
        if pa.types.is_floating(col.type):
            _check_magnitude(y, name, f"target column {target!r}")
    features = table.drop_columns([c for c in (id_column, target) if c is not None and c in table.column_names])
    X, columns, summary = _encode(features, name, missing, centres, private, max_categories)
    return PartyTable(ids, kind, X, columns, summary, y)


def _read(path: Path, id_column: str) -> pa.Table:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ConfigError(f"{path.name}: unknown table format {suffix!r}; use .csv or .parquet")
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        if suffix == ".csv":
            from pyarrow import csv

            # IDs stay text until every one is known to be an integer (see _ids); empty text is missing
            types = {} if id_column is None else {id_column: pa.string()}
            convert = csv.ConvertOptions(strings_can_be_null=True, column_types=types)
            return csv.read_csv(path, convert_options=convert)
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        # a pandas index stored as a column is not data of the organization's
        index = [c for c in (table.schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)]
        return table.drop_columns([c for c in index if c in table.column_names])
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        kind = "CSV" if suffix == ".csv" else "Parquet"
        raise ConfigError(f"{path.name}: not a readable {kind} file ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _check_unique(names, where: str) -> None:
    dup = sorted(str(n) for n, count in Counter(names).items() if count > 1)
    if dup:
        raise ConfigError(f"{where}: duplicate column names: {', '.join(dup)}")


def _as_text(col: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """The column as strings if it is text (string or dictionary of strings), else None."""
    t = col.type
    if pa.types.is_dictionary(t):
        t = t.value_type
        col = col.cast(t)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return col
    return None


def _check_field_lengths(table: pa.Table, where: str, bound: int) -> None:
    for name, col in zip(table.column_names, table.columns):
        text = _as_text(col)
        if text is not None and len(text) and text.null_count < len(text):
            longest = pc.max(pc.utf8_length(text)).as_py()
            if longest > bound:
                raise ConfigError(f"{where}: column {name!r} has a field of {longest} characters (limit {bound})")


def _check_integer_forms(path: Path, table: pa.Table, id_column: str | None, where: str) -> None:
    """pyarrow's CSV reader parses ``0x10`` as the integer 16; securegal reads a number only in
    decimal (as it reads integer IDs). Only a CSV with integer columns that holds ``0x`` at all
    is parsed again, with those columns as text, so the common case costs nothing or one search."""
    ints = [c for c, t in zip(table.column_names, table.schema.types) if pa.types.is_integer(t) and c != id_column]
    if not ints:
        return
    raw = path.read_bytes()
    if b"0x" not in raw and b"0X" not in raw:
        return
    from pyarrow import csv

    convert = csv.ConvertOptions(strings_can_be_null=True, include_columns=ints,
                                 column_types={c: pa.string() for c in ints})
    text = csv.read_csv(pa.BufferReader(raw), convert_options=convert)
    for name, col in zip(text.column_names, text.columns):
        col = col.drop_null()
        bad = pc.invert(_integer_like(col))
        if pc.any(bad).as_py():
            value = col.filter(bad)[0].as_py()
            raise ConfigError(f"{where}: column {name!r} writes a number in a form securegal does not read "
                              f"({value!r}); write plain decimal digits")


def _integer_like(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """True where a string is an optionally signed run of ASCII digits (vectorised, no regex)."""
    signed = pc.or_(pc.starts_with(text, "-"), pc.starts_with(text, "+"))
    digits = pc.if_else(signed, pc.utf8_slice_codeunits(text, 1), text)
    return pc.and_(pc.ascii_is_decimal(digits), pc.greater(pc.utf8_length(digits), 0))


def _ids(col: pa.ChunkedArray, where: str, name: str) -> tuple[np.ndarray, str]:
    if col.null_count:
        first = int(np.argmax(col.is_null().to_numpy(zero_copy_only=False)))
        raise ConfigError(f"{where}: ID column {name!r} is empty in {col.null_count} rows (the first: data row "
                          f"{first + 1})")
    text = _as_text(col)
    if pa.types.is_integer(col.type):
        ids, kind = col.cast(pa.int64()).to_numpy(), "int"
    elif text is None:
        raise ConfigError(f"{where}: ID column {name!r} holds {col.type} values; IDs are strings or integers")
    else:
        looks_int = _integer_like(text)
        count = pc.sum(looks_int).as_py() or 0
        if count == len(text):
            try:
                ids = text.cast(pa.int64()).to_numpy()
            except pa.ArrowInvalid:  # beyond 64 bits
                ids = np.array([int(v) for v in text.to_pylist()], dtype=object)
            kind = "int"
        elif count:  # rows, not values: IDs are never printed or logged
            mask = looks_int.to_numpy(zero_copy_only=False)
            first, other = int(np.argmax(mask)), int(np.argmin(mask))
            raise ConfigError(f"{where}: ID column {name!r} mixes integer IDs (data row {first + 1}) and text IDs "
                              f"(data row {other + 1})")
        else:
            ids, kind = text.to_numpy(zero_copy_only=False), "str"
            hidden = first_unprintable(ids.tolist())
            if hidden is not None:
                raise ConfigError(f"{where}: ID column {name!r}: data row {hidden + 1} {UNPRINTABLE_ID}")
    distinct = len(np.unique(ids)) if ids.dtype != object else len(set(ids.tolist()))  # a set: hashing beats sorting
    if distinct != len(ids):
        seen: dict = {}
        rows = next((seen[v], i) for i, v in enumerate(ids.tolist()) if seen.setdefault(v, i) != i)
        raise ConfigError(f"{where}: ID column {name!r} has {len(ids) - distinct} duplicate IDs (the first: data "
                          f"rows {rows[0] + 1} and {rows[1] + 1} both hold {printable(str(ids[rows[0]]))[:80]!r})")
    return ids, kind


def _centres(centres) -> np.ndarray:
    """Declared centres as a float vector, refused unless a flat list of finite numbers."""
    try:
        values = np.asarray(centres, dtype=np.float64)
    except (TypeError, ValueError):
        values = None
    if values is None or values.ndim != 1 or not np.isfinite(values).all():
        raise ConfigError(f"centres must be a list of finite numbers (one per feature column), got {centres!r}")
    return values


def _check_magnitude(values: np.ndarray, where: str, what: str) -> None:
    """Refuse infinite numbers and finite ones over MAX_MAGNITUDE (missing cells, NaN, pass)."""
    if np.isinf(values).any():
        raise ConfigError(f"{where}: {what} holds infinite values (inf, or a number beyond float64's range)")
    huge = np.abs(values) > MAX_MAGNITUDE
    if huge.any():
        raise ConfigError(f"{where}: {what} holds {values[huge][0]:g}, beyond the largest magnitude securegal "
                          f"reads ({MAX_MAGNITUDE:g})")


def _encode(table: pa.Table, where: str, missing: str, centres: np.ndarray | None, private: bool,
            max_categories: int):
    blocks, names, numeric, categorical, imputed = [], [], [], {}, {}
    gaps: dict[str, int] = {}  # numeric column -> its position in X, filled once X's columns are known
    for name, col in zip(table.column_names, table.columns):
        lacking = col.null_count
        if lacking and missing == "refuse":
            raise ConfigError(f"{where}: column {name!r} is missing in {lacking} rows (missing = refuse)")
        text = _as_text(col)
        if pa.types.is_null(col.type) or lacking == len(col):
            raise ConfigError(f"{where}: column {name!r} has no values")
        if text is not None and private:
            raise ConfigError(f"{where}: column {name!r} holds text; under feature-DP the columns must not depend on "
                              "the rows (one-hot encoding with the rows' own categories lets one row add a column): "
                              "encode it as numbers, one column per category you name in advance, or drop it")
        if text is not None:
            onehot, cats = _one_hot(text, where, name, max_categories)
            blocks.append(onehot)
            names += [f"{name}={c}" for c in cats]
            categorical[name] = cats
            if lacking:
                imputed[name] = (lacking, 0.0)
        elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type):
            values = col.cast(pa.float64()).to_numpy()  # nulls become NaN
            _check_magnitude(values, where, f"column {name!r}")
            if lacking:
                gaps[name] = len(names)
                imputed[name] = (lacking, np.nan)
            blocks.append(values[:, None])
            names.append(name)
            numeric.append(name)
        else:
            raise ConfigError(f"{where}: column {name!r} has type {col.type}; use numbers or text")
        if lacking and not private:  # under feature-DP one row's missing cell would add this column
            blocks.append(col.is_null().to_numpy(zero_copy_only=False).astype(np.float64)[:, None])
            names.append(f"{name}{MISSING_SUFFIX}")
    if gaps and private and centres is None:
        raise ConfigError(f"{where}: feature-DP fills missing cells only with declared public centres, never a "
                          f"statistic of the rows; declare centres for column(s) {', '.join(map(repr, gaps))} "
                          f"([privacy.columns] or --columns), or fill them")
    if gaps and centres is not None and len(centres) != len(names):
        raise ConfigError(f"{where}: {len(centres)} declared centres for {len(names)} feature columns "
                          f"({', '.join(names[:20])})")
    X = np.ascontiguousarray(np.hstack(blocks) if blocks else np.zeros((table.num_rows, 0)), dtype=np.float64)
    for name, j in gaps.items():
        holes = np.isnan(X[:, j])
        fill = float(centres[j]) if centres is not None else float(np.median(X[~holes, j]))
        X[holes, j] = fill
        imputed[name] = (imputed[name][0], fill)
    summary = TableSummary(table.num_rows, tuple(numeric), categorical, imputed)
    return X, tuple(names), summary


def _one_hot(text: pa.ChunkedArray, where: str, name: str, max_categories: int) -> tuple[np.ndarray, tuple[str, ...]]:
    values = pc.unique(text).drop_null()  # the checks below look at distinct values only
    python_form = pc.match_substring_regex(values, _PYTHON_NUMBER)
    if pc.any(python_form).as_py():
        value = values.filter(python_form)[0].as_py()
        raise ConfigError(f"{where}: column {name!r} writes a number in a Python-only form ({value!r}); "
                          f"write plain digits")
    is_number = pc.match_substring_regex(values, _NUMBER)
    if 0 < (pc.sum(is_number).as_py() or 0) < len(values):
        first_num = values.filter(is_number)[0].as_py()
        first_text = values.filter(pc.invert(is_number))[0].as_py()
        raise ConfigError(f"{where}: column {name!r} mixes numbers ({first_num!r}) and text ({first_text!r})")
    if len(values) > max_categories:
        raise ConfigError(f"{where}: column {name!r} has {len(values)} categories (limit {max_categories}); "
                          f"is it an identifier?")
    cats = tuple(sorted(values.to_pylist()))
    codes = pc.index_in(text, value_set=pa.array(cats, type=pa.string())).to_numpy(zero_copy_only=False)
    present = ~np.isnan(codes.astype(np.float64))
    onehot = np.zeros((len(text), len(cats)))
    onehot[np.flatnonzero(present), codes[present].astype(np.int64)] = 1.0
    return onehot, cats
