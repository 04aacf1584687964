"""Messages <-> chunked frames (protocol/transport.proto), with every incoming frame checked.

Pure functions and a small reassembler: no sockets here, so the grpc server and client share
exactly the same splitting and the same validation, and the fuzz tests reach all of it.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Iterable, Iterator

from google.protobuf.message import DecodeError

from ..errors import ConfigError, ProtocolError
from ..wire import transport_pb2 as pb
from ..wire.codec import DEFAULT_MAX_MESSAGE_BYTES

MESSAGE_ID = re.compile(r"^[0-9a-f]{1,64}$")
FRAME_OVERHEAD = 256  # bytes a frame may add around its data (field tags, id, counters)
DEFAULT_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class FrameLimits:
    """Bounds on what one side sends and accepts.

    ``chunk_bytes``: the most data in one frame (senders split at this size, receivers reject
    larger frames). ``max_message_bytes``: the largest whole message accepted.
    """

    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    def __post_init__(self):
        if not isinstance(self.chunk_bytes, int) or self.chunk_bytes < 1:
            raise ConfigError(f"chunk_bytes must be a positive int, got {self.chunk_bytes!r}")
        if not isinstance(self.max_message_bytes, int) or self.max_message_bytes < 0:
            raise ConfigError(f"max_message_bytes must be a non-negative int, got {self.max_message_bytes!r}")

    @property
    def max_frame_bytes(self) -> int:
        """Size of the largest serialized frame (what gRPC's per-message limit must allow)."""
        return self.chunk_bytes + FRAME_OVERHEAD


DEFAULT_FRAME_LIMITS = FrameLimits()


def new_message_id() -> str:
    return secrets.token_hex(16)


def split(message_id: str, data: bytes, limits: FrameLimits = DEFAULT_FRAME_LIMITS) -> Iterator[pb.Frame]:
    """The frames that carry ``data``; refuses a message the limits would make the peer reject."""
    if not MESSAGE_ID.match(message_id):
        raise ValueError(f"message id {message_id!r} must be 1-64 characters of [0-9a-f]")
    if len(data) > limits.max_message_bytes:
        raise ProtocolError(f"message of {len(data)} bytes exceeds the limit of {limits.max_message_bytes}")
    size, step = len(data), limits.chunk_bytes
    count = max(1, -(-size // step))
    view = memoryview(data)
    for i in range(count):
        yield pb.Frame(message_id=message_id, index=i, count=count, total_size=size,
                       data=bytes(view[i * step:(i + 1) * step]))


def decode_frame(raw: bytes, limits: FrameLimits = DEFAULT_FRAME_LIMITS) -> pb.Frame:
    """Parse one serialized frame and check it on its own (id, counters, sizes)."""
    if len(raw) > limits.max_frame_bytes:
        raise ProtocolError(f"frame of {len(raw)} bytes exceeds the limit of {limits.max_frame_bytes}")
    frame = pb.Frame()
    try:
        frame.ParseFromString(raw)
    except (DecodeError, ValueError) as exc:
        raise ProtocolError(f"undecodable frame: {exc}") from None
    check_frame(frame, limits)
    return frame


def check_frame(frame: pb.Frame, limits: FrameLimits = DEFAULT_FRAME_LIMITS) -> None:
    if not MESSAGE_ID.match(frame.message_id):
        raise ProtocolError(f"frame message id {frame.message_id[:80]!r} must be 1-64 characters of [0-9a-f]")
    if frame.total_size > limits.max_message_bytes:
        raise ProtocolError(f"message of {frame.total_size} bytes exceeds the limit of {limits.max_message_bytes}")
    if len(frame.data) > limits.chunk_bytes:
        raise ProtocolError(f"frame carries {len(frame.data)} bytes, the chunk limit is {limits.chunk_bytes}")
    if frame.count < 1 or frame.index >= frame.count:
        raise ProtocolError(f"frame index {frame.index} / count {frame.count} is invalid")
    if frame.total_size == 0 and frame.count != 1:
        raise ProtocolError(f"an empty message must be one frame, got count {frame.count}")
    if frame.total_size > 0 and (frame.count > frame.total_size or not frame.data):
        raise ProtocolError(f"{frame.count} frames for {frame.total_size} bytes: every frame must carry data")


class Reassembler:
    """Accepts the frames of one message in order and returns the message when complete."""

    def __init__(self, limits: FrameLimits = DEFAULT_FRAME_LIMITS):
        self.limits = limits
        self.message_id: str | None = None
        self._first: pb.Frame | None = None
        self._parts: list[bytes] = []
        self._received = 0
        self._message: bytes | None = None

    def add(self, frame: pb.Frame) -> bytes | None:
        """Take the next frame; the whole message once its last frame arrived, else None."""
        check_frame(frame, self.limits)
        if self._message is not None:
            raise ProtocolError(f"frame {frame.index} arrived after message {self.message_id} was complete")
        first = self._first
        if first is None:
            self._first, self.message_id = frame, frame.message_id
        elif (frame.message_id, frame.count, frame.total_size) != (first.message_id, first.count, first.total_size):
            raise ProtocolError(f"frame {frame.index} does not belong to message {first.message_id} "
                                f"(id {frame.message_id[:80]!r}, count {frame.count}, size {frame.total_size})")
        if frame.index != len(self._parts):
            raise ProtocolError(f"frame {frame.index} arrived out of order, expected {len(self._parts)}")
        self._received += len(frame.data)
        if self._received > frame.total_size:
            raise ProtocolError(f"frames carry more than the announced {frame.total_size} bytes")
        self._parts.append(frame.data)
        if frame.index + 1 < frame.count:
            return None
        if self._received != frame.total_size:
            raise ProtocolError(f"message {frame.message_id} announced {frame.total_size} bytes, frames carry {self._received}")
        self._message, self._parts = b"".join(self._parts), []
        return self._message

    def finish(self) -> tuple[str, bytes]:
        """Raise unless a message is complete (call when the stream ended)."""
        if self._message is None:
            want = self._first.count if self._first is not None else "?"
            raise ProtocolError(f"stream ended after {len(self._parts)} of {want} frames")
        return self.message_id, self._message


def reassemble(raw_frames: Iterable[bytes], limits: FrameLimits = DEFAULT_FRAME_LIMITS) -> tuple[str, bytes]:
    """Decode a whole stream of serialized frames into ``(message_id, message)``.

    Exactly one message per stream; anything malformed, oversized, reordered, truncated or
    trailing raises :class:`ProtocolError`.
    """
    r = Reassembler(limits)
    for raw in raw_frames:
        r.add(decode_frame(raw, limits))
    return r.finish()
