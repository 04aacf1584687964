"""all_finite: the chunked check agrees with np.isfinite(a).all() across chunk boundaries."""
import numpy as np
import pytest

from securegal.core.finite import CHUNK, all_finite


@pytest.mark.parametrize("where", [0, CHUNK - 1, CHUNK, 2 * CHUNK + 5])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_entry_anywhere_is_found(where, bad):
    a = np.zeros((2 * CHUNK + 6, 1))
    assert all_finite(a)
    a[where, 0] = bad
    assert not all_finite(a)
    assert not all_finite(a.T)  # a non-contiguous view


def test_empty_and_integer_arrays_are_finite():
    assert all_finite(np.zeros((0, 3)))
    assert all_finite(np.arange(10))
