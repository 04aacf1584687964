"""Sample IDs as bytes: one unambiguous, type-tagged encoding for strings and integers.

``"42"`` and ``42`` are different IDs (``b"s:42"`` and ``b"i:42"``); integers are written in
canonical decimal, so ``np.int64(7)`` and ``7`` are the same ID. Booleans, floats and anything
else are refused, and one table holds IDs of one kind only.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ConfigError

# The longest ID in UTF-8 bytes or decimal digits (a CSV cell is at most 1,024 characters).
MAX_ID_CHARS = 4096
# Why an ID holding a character that does not print is refused (named by its row, never its value).
UNPRINTABLE_ID = ("holds a character that does not print (a control character, tab, line break or zero-width space): "
                  "it would silently match no other table's ID; clean the ID column")


def first_unprintable(ids: Sequence[str]) -> int | None:
    """The position of the first text ID holding a character that does not print, or None."""
    return next((i for i, v in enumerate(ids) if not v.isprintable()), None)


def id_kind(ids: Sequence) -> str:
    """``"str"`` or ``"int"`` for a non-empty sequence of IDs of one kind; ConfigError otherwise."""
    values = _values(ids)
    if isinstance(values, np.ndarray) and values.dtype.kind != "O":
        if values.dtype.kind in "iu":
            return "int"
        if values.dtype.kind == "U":
            return "str"
        raise ConfigError(f"IDs must be strings or integers, got dtype {values.dtype}")
    kinds = {_kind_of(v) for v in values}
    if len(kinds) > 1:
        raise ConfigError(f"IDs mix {' and '.join(sorted(kinds))} values; use one kind per table")
    return kinds.pop()


def _values(ids: Sequence):
    """A 1-D numpy array, or the sequence itself (never coerced: ``np.asarray`` turns mixed
    lists into strings and booleans into integers)."""
    if hasattr(ids, "to_numpy"):
        ids = ids.to_numpy()
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1 or len(ids) == 0:
            raise ConfigError(f"IDs must be a non-empty 1-D sequence, got shape {ids.shape}")
        return ids
    if isinstance(ids, (str, bytes)) or len(ids) == 0:
        raise ConfigError("IDs must be a non-empty sequence of strings or integers")
    return ids


def _kind_of(value) -> str:
    if isinstance(value, str):
        return "str"
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return "int"
    raise ConfigError(f"IDs must be strings or integers, got {type(value).__name__}")


def canonical_ids(ids: Sequence) -> tuple[str, list[bytes]]:
    """The kind of ``ids`` and each ID's canonical bytes, in order. Duplicates are refused."""
    kind = id_kind(ids)
    values = _values(ids)
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if kind == "int":
        encoded = [_int_bytes(v) for v in values]
    else:
        try:
            encoded = [b"s:" + v.encode("utf-8") for v in values]
        except UnicodeEncodeError:
            raise ConfigError("an ID string cannot be encoded as UTF-8 (lone surrogate)") from None
        hidden = first_unprintable(values)
        if hidden is not None:  # rows, not values: IDs are never printed or logged
            raise ConfigError(f"the ID at index {hidden} (counting from 0) {UNPRINTABLE_ID}")
    longest = max(len(e) for e in encoded) - 2
    if longest > MAX_ID_CHARS:  # rows, not values: IDs are never printed or logged
        row = next(i for i, e in enumerate(encoded) if len(e) - 2 > MAX_ID_CHARS)
        raise ConfigError(f"the ID at index {row} (counting from 0) is longer than {MAX_ID_CHARS} "
                          f"{'digits' if kind == 'int' else 'bytes'}")
    if len(set(encoded)) != len(encoded):
        raise ConfigError(f"{len(encoded) - len(set(encoded))} duplicate IDs; every row needs its own ID")
    return kind, encoded


def _int_bytes(value) -> bytes:
    try:
        return b"i:%d" % int(value)
    except ValueError:  # Python will not write an integer of more than 4,300 digits: too long anyway
        return b"i:" + b"9" * (MAX_ID_CHARS + 1)
