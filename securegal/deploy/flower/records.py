"""securegal bytes inside Flower records: one ``ArrayRecord`` holding one uint8 ``Array``.

An ``Array`` (not a ``ConfigRecord`` value) because Flower splits arrays into chunks of
``FLWR_PRIVATE_MAX_ARRAY_CHUNK_SIZE`` (5 MiB) on the wire, so CKKS contexts and ciphertexts of
hundreds of MB pass without raising gRPC limits. The payload is opaque to Flower: our codec
encodes and validates it at both ends.
"""
from __future__ import annotations

from . import require_flwr
from ...errors import ProtocolError

require_flwr()
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict  # noqa: E402

# Message types (ClientApp routes on them): securegal protocol messages, and the identity handshake.
ACTION = "securegal"
IDENTITY_ACTION = "securegal_identity"
MESSAGE_TYPE = f"query.{ACTION}"
IDENTITY_TYPE = f"query.{IDENTITY_ACTION}"
RECORD = "securegal"
ARRAY = "bytes"
STYPE = "securegal.codec"


def pack(data: bytes) -> RecordDict:
    """``data`` (codec bytes) as a message's content."""
    array = Array(dtype="uint8", shape=(len(data),), stype=STYPE, data=bytes(data))
    return RecordDict({RECORD: ArrayRecord({ARRAY: array})})


def unpack(content: RecordDict) -> bytes:
    """The codec bytes in ``content``; ProtocolError if it is not what :func:`pack` makes."""
    record = content.get(RECORD) if isinstance(content, RecordDict) else None
    if not isinstance(record, ArrayRecord) or list(record.keys()) != [ARRAY]:
        raise ProtocolError(f"Flower message content must hold one ArrayRecord {RECORD!r} with one array {ARRAY!r}")
    array = record[ARRAY]
    if array.stype != STYPE or array.dtype != "uint8" or tuple(array.shape) != (len(array.data),):
        raise ProtocolError(f"Flower array {ARRAY!r} is not securegal codec bytes "
                            f"(stype {array.stype!r}, dtype {array.dtype!r}, shape {tuple(array.shape)})")
    return bytes(array.data)


def config(**values) -> RecordDict:
    """A content of one ConfigRecord (the identity handshake)."""
    return RecordDict({RECORD: ConfigRecord(values)})


def read_config(content: RecordDict, *keys: str) -> dict:
    """``keys`` of the ConfigRecord made by :func:`config`; ProtocolError if one is missing."""
    record = content.get(RECORD) if isinstance(content, RecordDict) else None
    if not isinstance(record, ConfigRecord) or not set(keys) <= set(record.keys()):
        raise ProtocolError(f"Flower identity message must hold a ConfigRecord {RECORD!r} with {sorted(keys)}")
    return {k: record[k] for k in keys}
