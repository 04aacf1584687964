import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from securegal import messages as m
from securegal.errors import ProtocolError
from securegal.wire import securegal_pb2 as pb
from securegal.wire.codec import Limits, decode, encode

ARR = np.arange(12, dtype=np.float64).reshape(4, 3)
IDS = np.array([3, 1, 7], dtype=np.int64)
BODIES = [
    m.Setup(IDS, 3, 10, "classification", "plain", b"", {"a": "b"}),
    m.Setup(IDS, 1, 2, "regression", "ckks", b"\x00ctx", {}),
    m.SetupAck({"party": "bob"}),
    m.FitRequest(ARR),
    m.FitRequest(m.EncryptedPayload("ckks", (4, 3), (b"c1", b"c2"), {"layout": "columns"})),
    m.FitReply(ARR, {"x": "1"}),
    m.PredictRequest(IDS, 5),
    m.PredictReply(ARR.reshape(2, 2, 3)),
    m.Finish(), m.FinishAck({}), m.ErrorReply("protocol", "bad"),
    m.PsiRequest("sess-1", "str", bytes(range(64))),
    m.PsiRequest("sess-1", "int", b"\x07" * 32),
    m.PsiReply(bytes(range(32)), b"\x01" * 64, np.array([9, 4], dtype=np.int64)),
    m.PsiReply(b"", b"", np.zeros(0, dtype=np.int64)),
    m.PsiSelection(np.array([4, 9], dtype=np.int64)),
    m.PsiSelectionAck(2),
]


def same(a, b):
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if hasattr(a, "__dataclass_fields__"):
        return type(a) is type(b) and all(same(getattr(a, f), getattr(b, f)) for f in a.__dataclass_fields__)
    if isinstance(a, dict) or hasattr(a, "items"):
        return dict(a) == dict(b)
    return a == b


@pytest.mark.parametrize("body", BODIES, ids=lambda b: type(b).__name__)
def test_every_message_round_trips(body):
    env = m.Envelope("sess", 2, "alice", "party1", 7, body)
    assert same(decode(encode(env)), env)


def _fit_request_bytes(tensor: pb.Tensor, **env_fields) -> bytes:
    fields = dict(version=1, session="s", round=1, sender="a", receiver="b", seq=0)
    fields.update(env_fields)
    env = pb.Envelope(**fields)
    env.fit_request.residuals.plain.CopyFrom(tensor)
    return env.SerializeToString()


@pytest.mark.parametrize("tensor,match", [
    (pb.Tensor(dtype="object", shape=[1], data=b"\x00" * 8), "not allowed"),
    (pb.Tensor(dtype="float64", shape=[2, 2], data=b"\x00" * 8), "needs 32"),
    (pb.Tensor(dtype="float64", shape=[1], data=np.array([np.nan]).tobytes()), "NaN"),
    (pb.Tensor(dtype="float64", shape=[1], data=np.array([np.inf]).tobytes()), "NaN or infinite"),
    (pb.Tensor(dtype="float64", shape=[1 << 40, 1 << 40], data=b""), "every size in 0"),
    (pb.Tensor(dtype="float64", shape=[1 << 20, 1 << 20], data=b""), "exceeds the limit of"),
    (pb.Tensor(dtype="float64", shape=[0, (1 << 63) - 1], data=b""), "every size in 0"),
    (pb.Tensor(dtype="float64", shape=[1, 1, 1, 1, 1], data=b"\x00" * 8), "rank"),
])
def test_bad_tensors_are_refused(tensor, match):
    with pytest.raises(ProtocolError, match=match):
        decode(_fit_request_bytes(tensor))


def test_envelope_checks():
    good = pb.Tensor(dtype="float64", shape=[1], data=b"\x00" * 8)
    with pytest.raises(ProtocolError, match="version 2"):
        decode(_fit_request_bytes(good, version=2))
    with pytest.raises(ProtocolError, match="session"):
        decode(_fit_request_bytes(good, session=""))
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        decode(_fit_request_bytes(good), Limits(max_message_bytes=10))
    with pytest.raises(ProtocolError, match="no body"):
        decode(pb.Envelope(version=1, session="s", sender="a", receiver="b").SerializeToString())
    with pytest.raises(TypeError):
        decode("text")


def test_arrays_of_other_dtypes_cannot_be_sent():
    with pytest.raises(TypeError, match="dtype"):
        encode(m.Envelope("s", 0, "a", "b", 0, m.FitRequest(np.array(["x"]))))


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_give_clean_errors_only(data):
    try:
        decode(data)
    except ProtocolError:
        pass


@settings(max_examples=500, deadline=None)
@given(st.integers(0, len(BODIES) - 1), st.data())
def test_mutated_valid_messages_give_clean_errors_only(i, data):
    raw = bytearray(encode(m.Envelope("sess", 1, "alice", "party1", 0, BODIES[i])))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    try:
        decode(bytes(raw))
    except ProtocolError:
        pass


# Wire bytes pinned: the existing messages' format must not change, the PSI messages' must not drift.
GOLDEN = [
    (m.Envelope("s", 1, "alice", "party1", 3, m.Setup(np.array([3, 1, 7]), 2, 10, "classification", "plain", b"", {})),
     "080112017318012205616c6963652a06706172747931300352410a240a05696e7436341201031a18030000000000000001000000"
     "0000000007000000000000001002180a220e636c617373696669636174696f6e2a05706c61696e"),
    (m.Envelope("s", 1, "alice", "party1", 4, m.FitRequest(np.array([[0.5, -1.0]]))),
     "080112017318012205616c6963652a06706172747931300462230a210a1f0a07666c6f61743634120201021a10000000000000e0"
     "3f000000000000f0bf"),
    (m.Envelope("s", 0, "alice", "party1", 1, m.PsiRequest("sess", "str", bytes(range(32)))),
     "08011201732205616c6963652a0670617274793130019a012d0a047365737312037374721a20000102030405060708090a0b0c0d"
     "0e0f101112131415161718191a1b1c1d1e1f"),
    (m.Envelope("s", 0, "party1", "alice", 1, m.PsiReply(bytes(32), bytes([1]) * 32, np.array([5]))),
     "080112017322067061727479312a05616c6963653001a2015a0a20" + "00" * 32 + "1220" + "01" * 32
     + "1a140a05696e7436341201011a080500000000000000"),
    (m.Envelope("s", 0, "alice", "party1", 2, m.PsiSelection(np.array([5, 9]))),
     "08011201732205616c6963652a067061727479313002aa011e0a1c0a05696e7436341201021a100500000000000000090000000000"
     "0000"),
    (m.Envelope("s", 0, "party1", "alice", 2, m.PsiSelectionAck(2)),
     "080112017322067061727479312a05616c6963653002b201020802"),
]


@pytest.mark.parametrize("env,golden", GOLDEN, ids=lambda v: getattr(v, "kind", ""))
def test_wire_bytes_match_the_golden_encoding(env, golden):
    assert encode(env).hex() == golden
    assert same(decode(bytes.fromhex(golden)), env)


def _reply_bytes(kind: str, **fields) -> bytes:
    env = pb.Envelope(version=1, session="s", round=0, sender="party1", receiver="alice", seq=1)
    body = getattr(env, kind)
    for key, value in fields.items():
        if isinstance(value, dict):
            getattr(body, key).update(value)
        else:
            setattr(body, key, value)
    body.SetInParent()
    return env.SerializeToString()


@pytest.mark.parametrize("kind", ["setup_ack", "finish_ack"])
def test_a_replys_info_map_is_bounded(kind):
    """A reply's info was copied whole: a party could send millions of characters that every log
    line and refusal then echoed."""
    from securegal.wire.codec import MAX_ENTRIES, MAX_INFO_CHARS
    with pytest.raises(ProtocolError, match=f"has {MAX_INFO_CHARS + 2} characters, at most {MAX_INFO_CHARS}"):
        decode(_reply_bytes(kind, info={"x": "9" * (MAX_INFO_CHARS + 1)}))
    with pytest.raises(ProtocolError, match=f"has {MAX_ENTRIES + 1} entries"):
        decode(_reply_bytes(kind, info={f"k{i}": "" for i in range(MAX_ENTRIES + 1)}))
    with pytest.raises(ProtocolError, match="key has 300 characters"):
        decode(_reply_bytes(kind, info={"k" * 300: "v"}))
    report = "r" * 200_000  # a long run's privacy report passes
    assert decode(_reply_bytes(kind, info={"privacy": report})).body.info["privacy"] == report


def test_an_error_reply_is_bounded_and_our_own_long_messages_are_cut_to_fit():
    from securegal.wire.codec import MAX_ERROR_CHARS
    with pytest.raises(ProtocolError, match=f"error reply message has {MAX_ERROR_CHARS + 1} characters"):
        decode(_reply_bytes("error", code="policy", message="A" * (MAX_ERROR_CHARS + 1)))
    with pytest.raises(ProtocolError, match="error reply code has 100 characters"):
        decode(_reply_bytes("error", code="c" * 100, message="bad"))
    long = m.ErrorReply("policy", "why " * 5000)
    sent = decode(encode(m.Envelope("s", 0, "party1", "alice", 1, long))).body
    assert len(sent.message) == MAX_ERROR_CHARS and sent.message.endswith("(cut: 20000 characters in all)")
