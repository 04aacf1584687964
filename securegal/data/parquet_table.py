"""A party's table served out of core: a Parquet file whose feature columns are read in row batches.

:class:`ParquetTable` is what a feature party with ``stream = true`` (``party.toml [data]``) holds
instead of a :class:`~securegal.data.party_file.PartyTable`: the ID column is read and checked as
:func:`~securegal.data.party_file.read_party_file` checks it (every row's own ID, what private set
intersection aligns), the feature columns never are as a whole. Its rows are keyed by row number
0..n-1 like a party's in-memory :class:`~securegal.data.tables.FeatureTable`; a
:class:`RowSelection` names some of them (a session's training rows, a predict request's rows) and
yields them one batch at a time, reading only the row groups that hold any.

What it reads is limited to what streaming can honour, each refusal a one-line :class:`ConfigError`
at open: a Parquet file, numeric (integer, floating or boolean) feature columns, no missing or
non-finite cell (checked by one pass when the table is opened; nothing is imputed), no target
column at a feature party.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError, ProtocolError
from .party_file import _check_unique, _first_line, _ids

DEFAULT_BATCH_ROWS = 1 << 16
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass(frozen=True, eq=False)
class ParquetTable:
    """The Parquet file ``path``: :attr:`ids` (each row's own ID, of ``id_kind``) and the numeric
    feature ``columns``, read ``batch_rows`` rows at a time. Open with :meth:`open`."""

    path: Path
    own_ids: np.ndarray | None  # None: no ID column, the rows are numbered (never materialized until asked)
    id_kind: str
    columns: tuple[str, ...]
    group_starts: np.ndarray  # first row of each row group, then the row count
    batch_rows: int = DEFAULT_BATCH_ROWS
    patch_shape = None  # never an image patch

    @classmethod
    def open(cls, path: str | Path, id_column: str | None, *, target: str | None = None,
             batch_rows: int = DEFAULT_BATCH_ROWS) -> "ParquetTable":
        """Open and check ``path``; ``id_column`` None numbers the rows 0..n-1 (single-table demos
        and benchmarks). ``target``: the label column, which a feature party's table must not hold."""
        path = Path(path)
        name = path.name
        if path.suffix.lower() not in PARQUET_SUFFIXES:
            raise ConfigError(f"{name}: a streamed table must be Parquet (.parquet or .pq), got {path.suffix!r}")
        if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
            raise ConfigError(f"batch_rows must be an integer >= 1, got {batch_rows!r}")
        if not path.is_file():
            raise ConfigError(f"{path}: no such file")
        try:
            meta = pq.ParquetFile(path).metadata
            schema = meta.schema.to_arrow_schema()
        except (pa.ArrowException, OSError) as exc:
            raise ConfigError(f"{name}: not a readable Parquet file ({_first_line(exc)})") from None
        _check_unique(schema.names, name)
        index = [c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)]
        if id_column is not None and id_column not in schema.names:
            raise ConfigError(f"{name}: no ID column {id_column!r} (columns: {', '.join(schema.names[:20])})")
        if target is not None and target in schema.names:
            raise ConfigError(f"{name}: a feature party's table holds the target column {target!r}; remove it")
        columns = tuple(c for c in schema.names if c != id_column and c not in index)
        if not columns:
            raise ConfigError(f"{name}: the table has no feature columns")
        for col in columns:
            kind = schema.field(col).type
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
                raise ConfigError(f"{name}: column {col!r} is {kind}; a streamed table holds numeric columns only "
                                  f"(encode text beforehand, or serve the table in memory)")
        if meta.num_rows == 0:
            raise ConfigError(f"{name}: the table has no rows")
        sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        if id_column is None:
            ids, kind = None, "int"
        else:
            ids, kind = _ids(pq.read_table(path, columns=[id_column]).column(0), name, id_column)
        table = cls(path, ids, kind, columns, starts, batch_rows)
        table._check_cells()
        return table

    @property
    def ids(self) -> np.ndarray:
        """Each row's own ID: the ID column's, or the row numbers 0..n-1 (made on each call)."""
        return np.arange(self.n_rows, dtype=np.int64) if self.own_ids is None else self.own_ids

    @property
    def n_rows(self) -> int:
        return int(self.group_starts[-1])

    @property
    def n_features(self) -> int:
        return len(self.columns)

    def _check_cells(self) -> None:
        """One pass: every feature cell present (checked by :meth:`_read`) and finite."""
        for _, X in self._read(np.arange(len(self.group_starts) - 1)):
            finite = np.isfinite(X).all(axis=0)
            if not finite.all():
                bad = self.columns[int(np.flatnonzero(~finite)[0])]
                raise ConfigError(f"{self.path.name}: column {bad!r} holds non-finite values (NaN or infinite)")

    def _read(self, groups: np.ndarray, shift: np.ndarray | None = None,
              scale: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, float64 features) of each batch of the row groups ``groups`` (sorted),
        one run of consecutive groups per reader, in file order. The features are column-major
        (Fortran order): each column is one contiguous copy, with ``shift`` subtracted and then
        divided by ``scale`` (per column) as it is copied, when given. Every batch of a pass is
        written into the same buffer: a batch is valid until the next one is taken."""
        if not len(groups):
            return
        breaks = np.flatnonzero(np.diff(groups) != 1) + 1
        reader = pq.ParquetFile(self.path)
        meta = reader.metadata
        if meta.num_rows != self.n_rows or meta.num_row_groups != len(self.group_starts) - 1:
            raise ConfigError(f"{self.path.name} changed since it was opened ({meta.num_rows} rows, were "
                              f"{self.n_rows}); restart the party")
        buffer = np.empty((self.batch_rows, len(self.columns)), order="F")  # every batch of the pass, in turn
        for run in np.split(groups, breaks):
            start = int(self.group_starts[run[0]])
            for batch in reader.iter_batches(batch_size=self.batch_rows, row_groups=run.tolist(),
                                             columns=list(self.columns), use_threads=False):
                X = buffer[:batch.num_rows]
                for j, col in enumerate(batch.columns):
                    if col.null_count:
                        raise ConfigError(f"{self.path.name}: column {self.columns[j]!r} has missing cells; a "
                                          f"streamed table imputes nothing (fill them beforehand, or serve "
                                          f"the table in memory)")
                    values = col.to_numpy(zero_copy_only=False)
                    if shift is None:
                        X[:, j] = values
                    else:  # z-scored in the copy, while the column is in cache: the same bits as after it
                        np.subtract(values, shift[j], out=X[:, j])
                        X[:, j] /= scale[j]
                yield start, X
                start += batch.num_rows

    def positions(self, sample_ids: np.ndarray) -> np.ndarray:
        """Row positions of ``sample_ids`` (row numbers); unknown ones are a protocol error."""
        pos = np.asarray(sample_ids, dtype=np.int64)
        missing = (pos < 0) | (pos >= self.n_rows)
        if missing.any():
            raise ProtocolError(f"{int(missing.sum())} requested sample IDs are unknown to this party "
                                f"(first: {int(pos[missing][0])})")
        return pos

    def select(self, positions: np.ndarray) -> "RowSelection":
        """The rows at ``positions`` (distinct), in that order."""
        return RowSelection(self, self.positions(positions))


class RowSelection:
    """Some distinct rows of a :class:`ParquetTable` in a given order; :meth:`batches` reads them
    batch by batch. Costs the positions plus, unless they are sorted, their sort order."""

    def __init__(self, table: ParquetTable, positions: np.ndarray):
        positions = np.asarray(positions, dtype=np.int64)
        if positions.ndim != 1:
            raise ProtocolError(f"row positions must be one-dimensional, got shape {positions.shape}")
        self.table = table
        if positions.size > 1 and not (positions[1:] > positions[:-1]).all():
            self._order = np.argsort(positions, kind="stable")
            self._sorted = positions[self._order]
        else:
            self._order, self._sorted = None, positions
        if self._sorted.size > 1 and not (self._sorted[1:] > self._sorted[:-1]).all():
            repeated = self._sorted.size - np.unique(self._sorted).size
            raise ProtocolError(f"{repeated} requested sample IDs are repeated")

    @property
    def n(self) -> int:
        return int(self._sorted.size)

    @property
    def shape(self) -> tuple[int, int]:
        return self.n, self.table.n_features

    def batches(self, shift: np.ndarray | None = None,
                scale: np.ndarray | None = None) -> Iterator[tuple[np.ndarray | slice, np.ndarray | None, np.ndarray]]:
        """(where, local, X) per batch holding any selected row: ``X`` all the batch's rows
        (float64 features, column-major: raw, or ``(x - shift) / scale`` per column when given),
        ``local`` the selected ones among them (None: all, in order) and ``where`` their places
        in the selection's order (an index array, or a slice for a sorted run). Whole batches,
        so a caller can work on them without gathering rows; ``X`` is valid (and the caller's
        to overwrite) until the next batch is taken."""
        starts = self.table.group_starts
        bounds = np.searchsorted(self._sorted, starts)
        groups = np.flatnonzero(bounds[1:] > bounds[:-1])  # row groups holding any selected row
        for first, X in self.table._read(groups, shift, scale):
            lo, hi = np.searchsorted(self._sorted, [first, first + X.shape[0]])
            if lo == hi:
                continue
            local = None if hi - lo == X.shape[0] else self._sorted[lo:hi] - first
            yield (slice(lo, hi) if self._order is None else self._order[lo:hi]), local, X
