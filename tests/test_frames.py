"""Frame splitting and reassembly, and fuzzing of everything that decodes frames."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from securegal.errors import ConfigError, ProtocolError
from securegal.transport.frames import FrameLimits, decode_frame, reassemble, split
from securegal.wire import transport_pb2 as pb

SMALL = FrameLimits(chunk_bytes=16, max_message_bytes=256)
FUZZ = settings(max_examples=1400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def wire(frames):
    return [f.SerializeToString() for f in frames]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=256), chunk=st.integers(1, 64))
def test_round_trip(data, chunk):
    limits = FrameLimits(chunk_bytes=chunk, max_message_bytes=256)
    frames = list(split("ab12", data, limits))
    assert len(frames) == max(1, -(-len(data) // chunk))
    assert reassemble(wire(frames), limits) == ("ab12", data)


def test_limits():
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        list(split("a", b"x" * 257, SMALL))
    big = SMALL.__class__(chunk_bytes=16, max_message_bytes=1024)
    with pytest.raises(ProtocolError, match="exceeds the limit of 256"):
        reassemble(wire(split("a", b"x" * 300, big)), SMALL)
    with pytest.raises(ProtocolError, match="chunk limit"):
        reassemble(wire(split("a", b"x" * 40, FrameLimits(chunk_bytes=32))), SMALL)
    with pytest.raises(ConfigError):
        FrameLimits(chunk_bytes=0)
    with pytest.raises(ValueError, match="message id"):
        list(split("not hex!", b"", SMALL))


@pytest.mark.parametrize("mutate, match", [
    (lambda f: f[:-1], "stream ended after 2 of 3"),
    (lambda f: [], "stream ended after 0"),
    (lambda f: f + f[-1:], "after message"),
    (lambda f: [f[1], f[0], f[2]], "out of order"),
    (lambda f: [f[0], f[0], f[1], f[2]], "out of order"),
])
def test_broken_streams(mutate, match):
    frames = list(split("cafe", b"y" * 40, SMALL))
    with pytest.raises(ProtocolError, match=match):
        reassemble(wire(mutate(frames)), SMALL)


@pytest.mark.parametrize("field, value, match", [
    ("message_id", "beef", "does not belong"),
    ("total_size", 41, "does not belong"),
    ("count", 4, "does not belong"),
])
def test_mixed_messages(field, value, match):
    frames = list(split("cafe", b"y" * 40, SMALL))
    setattr(frames[1], field, value)
    with pytest.raises(ProtocolError, match=match):
        reassemble(wire(frames), SMALL)


def test_announced_size_must_match():
    short = pb.Frame(message_id="a", index=0, count=1, total_size=10, data=b"12345")
    with pytest.raises(ProtocolError, match="announced 10 bytes"):
        reassemble([short.SerializeToString()], SMALL)
    many_empty = pb.Frame(message_id="a", index=0, count=1000, total_size=10, data=b"")
    with pytest.raises(ProtocolError, match="every frame must carry data"):
        decode_frame(many_empty.SerializeToString(), SMALL)


@FUZZ
@given(raw=st.binary(max_size=400))
def test_fuzz_decode_frame_random_bytes(raw):
    try:
        frame = decode_frame(raw, SMALL)
    except ProtocolError:
        return
    assert len(frame.data) <= SMALL.chunk_bytes and frame.index < frame.count


frame_fields = st.builds(
    pb.Frame,
    message_id=st.sampled_from(["a", "b", "0" * 64, "0" * 65, "", "Z"]),
    index=st.integers(0, 5), count=st.integers(0, 6),
    total_size=st.integers(0, 300) | st.sampled_from([2**64 - 1, 2**32]),
    data=st.binary(max_size=20))


@FUZZ
@given(frames=st.lists(frame_fields, max_size=8))
def test_fuzz_reassemble_structured_frames(frames):
    try:
        message_id, data = reassemble(wire(frames), SMALL)
    except ProtocolError:
        return
    assert len(data) <= SMALL.max_message_bytes
    assert sum(len(f.data) for f in frames) == len(data) == frames[0].total_size


@FUZZ
@given(chunks=st.lists(st.binary(max_size=60), max_size=6))
def test_fuzz_reassemble_random_streams(chunks):
    try:
        _, data = reassemble(chunks, SMALL)
    except ProtocolError:
        return
    assert len(data) <= SMALL.max_message_bytes
