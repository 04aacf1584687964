"""FeatureTable: row lookup by sample ID (identity, dense and sparse IDs) without copies or sorts."""
import numpy as np
import pytest

from securegal.data.datasets import load_dataset
from securegal.data.split import Block, party_tables, vertical_split
from securegal.data.tables import FeatureTable
from securegal.errors import ProtocolError


def _reference_rows(ids, X, wanted):
    """The rows by a dictionary from ID to row, the obvious way."""
    where = {int(i): k for k, i in enumerate(ids)}
    return X[[where[int(w)] for w in wanted]]


@pytest.mark.parametrize("kind", ["identity", "dense", "sparse", "unsorted"])
def test_rows_follow_the_requested_ids(kind, rng):
    n = 50
    ids = {"identity": np.arange(n), "dense": np.arange(n) * 2 + 7,
           "sparse": np.sort(rng.choice(10**12, n, replace=False)), "unsorted": rng.permutation(n) * 3}[kind]
    X = rng.normal(size=(n, 3))
    table = FeatureTable(ids, X)
    wanted = rng.permutation(ids)[:20]
    np.testing.assert_array_equal(table.rows(wanted), _reference_rows(ids, X, wanted))
    assert table.rows(wanted).flags.c_contiguous
    assert (np.diff(table.ids) > 0).all()


@pytest.mark.parametrize("ids", [np.arange(10), np.arange(10) * 2 + 5, np.array([3, 10**9, 10**12])])
def test_unknown_ids_are_a_protocol_error(ids):
    table = FeatureTable(ids, np.zeros((len(ids), 2)))
    for bad in (-1, int(ids[-1]) + 1, int(ids[0]) + 1, 2**62):
        if bad in ids:
            continue
        with pytest.raises(ProtocolError, match=f"first: {bad}"):
            table.rows(np.array([ids[0], bad]))


def test_duplicate_ids_and_bad_values_are_refused():
    with pytest.raises(ValueError, match="unique"):
        FeatureTable(np.array([3, 1, 3]), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="NaN"):
        FeatureTable(np.arange(2), np.array([[0.0], [np.nan]]))


def test_sorted_ids_keep_the_caller_array_without_a_copy(rng):
    X = rng.normal(size=(30, 6))
    table = FeatureTable(np.arange(30), X[:, 2:4])
    assert np.shares_memory(table.X, X)


def test_party_tables_view_contiguous_blocks_and_copy_others():
    data = load_dataset("wine")
    blocks = vertical_split(data, 4)
    for table, block in zip(party_tables(data, blocks), blocks):
        assert np.shares_memory(table.X, data.X)
        np.testing.assert_array_equal(table.X, data.X[:, block.columns])
    odd = Block(np.array([0, 2, 5]))
    (table,) = party_tables(data, [odd])
    np.testing.assert_array_equal(table.X, data.X[:, [0, 2, 5]])


@pytest.mark.parametrize("ids", [np.arange(8), np.arange(8) * 3 + 1, np.array([2, 9, 10**12, 10**13])])
def test_distinct_positions_refuse_repeated_ids(ids):
    table = FeatureTable(ids, np.arange(len(ids) * 2, dtype=float).reshape(-1, 2))
    np.testing.assert_array_equal(table.distinct_positions(ids[::-1]), np.arange(len(ids))[::-1])
    with pytest.raises(ProtocolError, match="1 requested sample IDs are repeated"):
        table.distinct_positions(np.array([ids[1], ids[0], ids[1]]))


def test_standardized_rows_match_numpy_and_keep_constant_columns(rng):
    X = np.column_stack([rng.normal(3.0, 2.0, size=40), np.full(40, 7.0), rng.uniform(size=40)])
    table = FeatureTable(np.arange(40) * 5, X)
    wanted = rng.permutation(np.arange(40) * 5)[:25]
    Z, mean, std = table.standardized_rows(wanted)
    raw = X[wanted // 5]
    np.testing.assert_allclose(mean, raw.mean(axis=0))
    np.testing.assert_allclose(std, [raw[:, 0].std(), 1.0, raw[:, 2].std()])
    np.testing.assert_allclose(Z, (raw - mean) / std, atol=1e-12)
    assert not np.shares_memory(Z, table.X)
    np.testing.assert_array_equal(table.X, X)  # the table is untouched
    with pytest.raises(ProtocolError, match="repeated"):
        table.standardized_rows(np.array([0, 5, 0]))
