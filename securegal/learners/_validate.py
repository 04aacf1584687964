"""Small argument checks shared by the learners."""
from __future__ import annotations

import numbers

from ..errors import ConfigError


def check_seed(seed) -> int:
    """Return ``seed`` as an int; raise TypeError for anything that is not an integer."""
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r} ({type(seed).__name__})")
    return int(seed)


def check_positive_int(name: str, value) -> int:
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1):
        raise ConfigError(f"{name} must be a positive int, got {value!r}")
    return int(value)
