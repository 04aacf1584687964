"""Messages show numbers as users type them, not as numpy reprs (np.float64(...))."""
import pytest

from securegal.errors import ConfigError
from securegal.privacy.dp.standardize import ColumnBounds


def test_bounds_error_names_plain_numbers():
    with pytest.raises(ConfigError) as info:
        ColumnBounds((0.0, 10.0), (1.0, 1.0))
    assert str(info.value) == "column 1: lower bound 10.0 must be < upper bound 1.0"
