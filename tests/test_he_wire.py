import dataclasses

import numpy as np
import pytest

from securegal.errors import ProtocolError
from securegal.privacy.he import CkksParams, SecretContext
from securegal.privacy.he import wire
from securegal.privacy.he.layout import Layout

COLUMNS = Layout.for_training(5000, 2, 4096)  # 2 columns x 2 chunks, not packed
ONE = Layout.for_training(10, 1, 4096)


@pytest.fixture
def payload(secret_context):
    r = np.random.default_rng(0).normal(size=(5000, 2))
    blobs = [b for v in COLUMNS.input_vectors(r) for b in secret_context.encrypt(v)]
    return r, wire.pack(secret_context, "residuals", "bob", 3, r.shape, blobs, COLUMNS)


def _open(public_context, payload, **over):
    args = dict(kind="residuals", party="bob", round=3, shape=(5000, 2), level=0, layout=COLUMNS)
    args.update(over)
    return wire.unpack(payload, public_context, **args)


def test_round_trip(secret_context, public_context, payload):
    r, p = payload
    assert p.scheme == "ckks" and len(p.blobs) == 4 and p.meta["slots"] == "4096"
    cols = _open(public_context, p)
    np.testing.assert_allclose(wire.decrypt(secret_context, cols, r.shape, COLUMNS), r, atol=1e-5)


def test_tampered_byte_refused(public_context, payload):
    _, p = payload
    blob = bytearray(p.blobs[1])
    blob[len(blob) // 2] ^= 0x01
    bad = dataclasses.replace(p, blobs=(p.blobs[0], bytes(blob), *p.blobs[2:]))
    with pytest.raises(ProtocolError, match="digest"):
        _open(public_context, bad)


def test_truncated_refused(public_context, payload):
    _, p = payload
    bad = dataclasses.replace(p, blobs=(p.blobs[0][:-7], *p.blobs[1:]))
    with pytest.raises(ProtocolError, match="digest"):
        _open(public_context, bad)


def test_truncated_with_recomputed_digest_refused_by_seal(secret_context, public_context, payload):
    _, p = payload
    blobs = (p.blobs[0][:-7], *p.blobs[1:])
    bad = wire.pack(secret_context, "residuals", "bob", 3, (5000, 2), blobs, COLUMNS)
    with pytest.raises(ProtocolError, match="not valid"):
        _open(public_context, bad)


@pytest.mark.parametrize("over,match", [
    ({"round": 4}, "round"), ({"party": "carol"}, "party"), ({"kind": "predictions"}, "kind"),
    ({"shape": (5000, 3)}, "shape"), ({"level": 2}, "level"),
    ({"layout": Layout(5000, 2, 4096, True)}, "layout"),
])
def test_misrouted_refused(public_context, payload, over, match):
    with pytest.raises(ProtocolError, match=match):
        _open(public_context, payload[1], **over)


def test_other_session_refused(public_context):
    other = SecretContext()
    p = wire.pack(other, "residuals", "bob", 3, (10, 1), other.encrypt(np.ones(10)), ONE)
    with pytest.raises(ProtocolError, match="another CKKS context"):
        _open(public_context, p, shape=(10, 1), layout=ONE)


def test_wrong_number_of_slots_refused(public_context):
    other = SecretContext(CkksParams(16384, (60, 40, 40, 60), 40))
    p = wire.pack(other, "residuals", "bob", 3, (10, 1), other.encrypt(np.ones(10)), ONE)
    with pytest.raises(ProtocolError, match="8192 slots"):
        _open(public_context, p, shape=(10, 1), layout=ONE)
    forged = dataclasses.replace(p, meta={**p.meta, "slots": "4096", "context": public_context.context_id.hex()})
    with pytest.raises(ProtocolError):
        _open(public_context, forged, shape=(10, 1), layout=ONE)


def test_wrong_blob_count_and_plain_payload_refused(public_context, payload):
    _, p = payload
    with pytest.raises(ProtocolError, match="ciphertexts, expected"):
        _open(public_context, dataclasses.replace(p, blobs=p.blobs[:3]))
    with pytest.raises(ProtocolError, match="expected CKKS"):
        _open(public_context, np.zeros((5000, 2)))
    with pytest.raises(ProtocolError, match="scheme"):
        _open(public_context, dataclasses.replace(p, scheme="paillier"))


def test_omitted_column_is_bound_and_accepted_only_where_asked(secret_context, public_context):
    r = np.random.default_rng(5).normal(size=(5000, 1))
    blobs = [b for v in COLUMNS.with_rows(5000).input_vectors(np.hstack([r, -r]))[:2] for b in secret_context.encrypt(v)]
    p = wire.pack(secret_context, "residuals", "bob", 3, (5000, 2), blobs, COLUMNS, omitted=True)
    assert len(_open(public_context, p, allow_omitted=True)) == 1 and wire.omits_last(p)
    with pytest.raises(ProtocolError, match="leaves out column"):  # e.g. a DP party, noised per column
        _open(public_context, p)
    stripped = dataclasses.replace(p, meta={k: v for k, v in p.meta.items() if k != "omitted"})
    with pytest.raises(ProtocolError, match="ciphertexts, expected 4"):
        _open(public_context, stripped, allow_omitted=True)
    with pytest.raises(ValueError, match="only residuals"):
        wire.pack(secret_context, "test_predictions", "bob", 0, (1, 5000, 2), blobs, COLUMNS, omitted=True)
