import numpy as np
import pytest

from securegal.core import zscore
from securegal.core.zscore import ZScore


def test_fit_equals_numpy_to_the_bit_across_blocks_and_keeps_constant_columns(monkeypatch, rng):
    monkeypatch.setattr(zscore, "_BLOCK_ROWS", 7)  # several blocks and a short last one
    X = rng.normal(3.0, 2.0, size=(50, 4)) * [1.0, 1e3, 1.0, 1e-3]
    X[:, 2] = 5.0
    z = ZScore.fit(X)
    np.testing.assert_array_equal(z.mean, X.mean(axis=0))
    np.testing.assert_array_equal(z.std, np.where(X.std(axis=0) == 0, 1.0, X.std(axis=0)))
    assert z.std[2] == 1.0


def test_owned_rows_are_standardized_in_place_views_are_not_touched(rng):
    X = rng.normal(size=(20, 3))
    z = ZScore.fit(X)
    expected = (X - X.mean(axis=0)) / X.std(axis=0)
    copy = X.copy()
    out = z(copy)
    assert out is copy
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    view = X[:, :3]  # a view of the caller's table: left as it is
    before = X.copy()
    np.testing.assert_allclose(z(view), expected, rtol=1e-12)
    np.testing.assert_array_equal(X, before)


def test_fit_refuses_empty_or_non_matrix_input():
    with pytest.raises(ValueError, match="non-empty"):
        ZScore.fit(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="shape"):
        ZScore.fit(np.zeros(3))


def test_fit_and_rows_on_picked_rows_equal_copying_them_first_to_the_bit(monkeypatch, rng):
    """A party's training rows picked from its (strided) table: the statistics and the
    standardized rows, float64 or float32, equal those of the copied rows, without the copy."""
    monkeypatch.setattr(zscore, "_BLOCK_ROWS", 7)
    table = rng.normal(2.0, 3.0, size=(80, 9)) * np.linspace(1e-3, 1e3, 9)
    table[:, 4] = -1.5
    X = table[:, 2:7]  # a party's columns: a view with a row stride of the whole table
    rows = np.sort(rng.choice(80, size=53, replace=False))
    copied = np.ascontiguousarray(X[rows])
    z = ZScore.fit(X, rows)
    reference = ZScore.fit(copied)
    np.testing.assert_array_equal(z.mean, copied.mean(axis=0))
    np.testing.assert_array_equal(z.std, reference.std)
    standardized = reference(copied.copy())
    np.testing.assert_array_equal(z.rows(X, rows), standardized)
    built = z.rows(X, rows, np.float32)
    assert built.dtype == np.float32
    np.testing.assert_array_equal(built, standardized.astype(np.float32))
    before = table.copy()
    z.rows(X, rows)
    np.testing.assert_array_equal(table, before)  # the table is only read
    with pytest.raises(ValueError, match="0 rows"):
        ZScore.fit(X, rows[:0])
