"""ECDH private set intersection (securegal.align): correctness against pandas.merge, what the
feature party sees, fresh secrets, refusal of malformed points and oversized messages."""
import hashlib

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from nacl import bindings as sodium

from securegal import messages as m
from securegal.align import (FeaturePartyPsi, LabelOwnerPsi, Workers, align_in_process, canonical_ids, common_rows,
                             group)
from securegal.align.psi import _wire
from securegal.errors import ConfigError, ProtocolError
from securegal.transcript import TranscriptWriter, read_transcript
from securegal.wire.codec import Limits, decode, encode


def merge_pairs(owner_ids, party_ids) -> set[tuple[int, int]]:
    """(label owner row, party row) for every shared ID, by pandas.merge."""
    left = pd.DataFrame({"id": pd.Series(owner_ids, dtype=object), "i": np.arange(len(owner_ids))})
    right = pd.DataFrame({"id": pd.Series(party_ids, dtype=object), "j": np.arange(len(party_ids))})
    joined = left.merge(right, on="id")
    return set(zip(joined["i"].tolist(), joined["j"].tolist()))


def psi_pairs(owner_ids, party_ids, workers=None):
    owner = LabelOwnerPsi(owner_ids, "sess", workers)
    party = FeaturePartyPsi(party_ids, "sess", workers)
    reply = _wire(party.respond(_wire(owner.request(), "a", "b", "sess")), "b", "a", "sess")
    mine = owner.finish(reply)
    got_rows = party.rows_of(mine.handles[mine.matched])
    return mine, party, set(zip(np.flatnonzero(mine.matched).tolist(), got_rows.tolist()))


# IDs that print (spaces included): one holding a control or zero-width character is refused
printable_ids = st.text(st.characters(exclude_categories=("C", "Zl", "Zp", "Zs"), include_characters=" "), max_size=12)
ids_strategy = st.one_of(
    st.lists(printable_ids, unique=True, min_size=1, max_size=25),
    st.lists(st.integers(-2**70, 2**70), unique=True, min_size=1, max_size=25),
)


@settings(max_examples=40, deadline=None)
@given(ids_strategy, st.data())
def test_intersection_equals_pandas_merge(owner_ids, data):
    kind = type(owner_ids[0])
    others = data.draw(st.lists(printable_ids if kind is str else st.integers(-2**70, 2**70), unique=True,
                                max_size=25))
    shared = data.draw(st.lists(st.sampled_from(owner_ids), unique=True))
    party_ids = list(dict.fromkeys(shared + others))
    party_ids = data.draw(st.permutations(party_ids)) if party_ids else [kind()]
    mine, party, pairs = psi_pairs(owner_ids, party_ids)
    assert pairs == merge_pairs(owner_ids, party_ids)
    assert np.array_equal(party.rows_of(party.row_handles), np.arange(len(party_ids)))
    assert mine.party_rows == len(party_ids) and party.label_owner_rows == len(owner_ids)
    if pairs:
        chosen = party.select(_wire(mine.selection(), "a", "b", "sess"))
        assert sorted(chosen.rows.tolist()) == sorted(j for _, j in pairs)
        assert chosen.label_owner_rows == len(owner_ids)


def test_worker_processes_give_the_same_matching():
    owner = [f"MRN-{i:06d}" for i in range(0, 300)]
    party = [f"MRN-{i:06d}" for i in range(150, 500)][::-1]
    with Workers(2, chunk=17) as workers:
        mine, theirs = align_in_process(owner, party, "pool", workers)
        request = LabelOwnerPsi(owner[:60], "pool", workers).request()
        tampered = request.points[:40 * 32] + ORDER_TWO + request.points[41 * 32:]
        with pytest.raises(ProtocolError, match="point 40 is not a valid group element"):
            FeaturePartyPsi(party, "pool", workers).respond(m.PsiRequest("pool", "str", tampered))
    assert mine.matched.sum() == 150 and np.array_equal(np.flatnonzero(mine.matched), np.arange(150, 300))
    assert sorted(theirs.rows.tolist()) == sorted(j for _, j in merge_pairs(owner, party))


def test_string_and_integer_ids_are_distinct_and_kinds_must_agree():
    assert canonical_ids(["1", "2"])[1] != canonical_ids([1, 2])[1]
    assert canonical_ids([np.int64(7), 8]) == canonical_ids(np.array([7, 8]))
    owner = LabelOwnerPsi(["1", "2"], "s")
    party = FeaturePartyPsi([1, 2], "s")
    with pytest.raises(ProtocolError, match="no row could match"):
        party.respond(owner.request())


@pytest.mark.parametrize("ids,match", [
    ([1, "1"], "mix"), ([True, 2], "bool"), ([1.5], "float"), (["a", "a"], "duplicate"), ([], "non-empty"),
    (np.array([1.0, 2.0]), "dtype"), ("abc", "non-empty sequence"),
])
def test_bad_id_lists_are_refused(ids, match):
    with pytest.raises(ConfigError, match=match):
        canonical_ids(ids)


def test_selection_of_rows_the_party_lacks_is_refused():
    mine, _ = align_in_process(["a", "b", "c"], ["b", "z"], "s")
    assert mine.selection([1]).handles.tolist() == [mine.handles[1]]
    with pytest.raises(ConfigError, match="not held"):
        mine.selection([0])


def test_common_rows_are_those_every_party_holds():
    owner = ["a", "b", "c", "d"]
    one, _ = align_in_process(owner, ["d", "b", "c"], "s1")
    two, _ = align_in_process(owner, ["a", "c", "d"], "s2")
    assert common_rows([one, two]).tolist() == [2, 3]


def _unkeyed_forms(ids, session) -> list[bytes]:
    """Every way an ID could leak without the label owner's key."""
    kind, canon = canonical_ids(ids)
    forms = []
    for raw, c in zip(ids, canon):
        text = str(raw).encode()
        forms += [text, c, hashlib.sha256(text).digest(), hashlib.sha256(c).digest(), hashlib.sha512(c).digest()[:32]]
        if kind == "int":
            forms.append(int(raw).to_bytes(8, "little", signed=True))
    points = group.hash_to_group(group.hash_prefix(session), canon)
    forms += [points[i:i + 32] for i in range(0, len(points), 32)]
    return forms


@pytest.mark.parametrize("make", [lambda i: f"patient-{i:08d}", lambda i: 10**12 + 7919 * i])
def test_party_transcript_holds_no_raw_or_unkeyed_id(tmp_path, make):
    """The party's transcript, read back as the audit reads it: no ID of the label owner's, raw or
    hashed without the label owner's key, appears in anything the party received or sent."""
    owner_ids = [make(i) for i in range(0, 40)]
    party_ids = [make(i) for i in range(30, 60)]
    owner = LabelOwnerPsi(owner_ids, "leak")
    party = FeaturePartyPsi(party_ids, "leak")
    log = TranscriptWriter(tmp_path / "party1", "party1")

    def to_party(body, seq):
        env = m.Envelope("leak", 0, "alice", "party1", seq, body)
        raw = encode(env)
        log.record("received", raw, env)
        return decode(raw).body

    def from_party(body, seq):
        env = m.Envelope("leak", 0, "party1", "alice", seq, body)
        raw = encode(env)
        log.record("sent", raw, env)
        return decode(raw).body

    reply = from_party(party.respond(to_party(owner.request(), 0)), 0)
    mine = owner.finish(reply)
    from_party(m.PsiSelectionAck(len(party.select(to_party(mine.selection(), 1)).rows)), 1)
    log.close()
    transcript = read_transcript(tmp_path / "party1")
    assert [r.kind for r in transcript.records] == ["psi_request", "psi_reply", "psi_selection", "psi_selection_ack"]
    seen = b"".join(r.raw for r in transcript.records)
    assert len(seen) > 40 * 32
    for form in _unkeyed_forms(owner_ids, "leak"):
        assert form not in seen


def test_every_session_uses_fresh_secrets():
    ids = [f"id-{i}" for i in range(20)]
    first, second = LabelOwnerPsi(ids, "same"), LabelOwnerPsi(ids, "same")
    a, b = first.request().points, second.request().points
    assert all(a[i:i + 32] != b[i:i + 32] for i in range(0, len(a), 32))
    request = LabelOwnerPsi(ids, "same").request()
    r1, r2 = FeaturePartyPsi(ids, "same").respond(request), FeaturePartyPsi(ids, "same").respond(request)
    assert r1.blinded != r2.blinded and set(r1.handles.tolist()).isdisjoint(r2.handles.tolist())
    assert len({group.new_scalar() for _ in range(50)}) == 50


def test_secrets_are_single_use():
    owner, party = LabelOwnerPsi(["a", "b"], "s"), FeaturePartyPsi(["b"], "s")
    request = owner.request()
    with pytest.raises(ProtocolError):
        owner.request()
    reply = party.respond(request)
    with pytest.raises(ProtocolError, match="already answered"):
        party.respond(request)
    owner.finish(reply)
    with pytest.raises(ProtocolError):
        owner.finish(reply)


def _good_point() -> bytes:
    return group.hash_to_group(b"x", [b"y"])


FIELD = 2 ** 255 - 19
ORDER_TWO = (FIELD - 1).to_bytes(32, "little")  # as an Edwards encoding (0, -1); as a u-coordinate of small order
# u-coordinates of small order on Curve25519 (X25519 gives zero for them: refused)
SMALL_ORDER = {"zero": bytes(32), "one": (1).to_bytes(32, "little"),
               "order eight": bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
               "minus one": ORDER_TWO}
NON_CANONICAL = {"u = p": FIELD.to_bytes(32, "little"), "top bit set": bytes(31) + b"\x80",
                 "u = 2^255 - 1": bytes([0xff] * 31 + [0x7f])}


@pytest.mark.parametrize("bad", [*SMALL_ORDER.values(), *NON_CANONICAL.values()],
                         ids=[*SMALL_ORDER, *NON_CANONICAL])
def test_malformed_points_are_refused_by_both_roles(bad):
    party = FeaturePartyPsi(["a"], "s")
    with pytest.raises(ProtocolError, match="point 1 is not a valid group element"):
        party.respond(m.PsiRequest("s", "str", _good_point() + bad))
    owner = LabelOwnerPsi(["a", "b"], "s")
    reply = FeaturePartyPsi(["a", "c"], "s").respond(owner.request())
    with pytest.raises(ProtocolError, match="point 0 is not a valid group element"):
        owner.finish(m.PsiReply(reply.blinded, bad + reply.points[32:], reply.handles))
    if bad in NON_CANONICAL.values():  # points that are only compared must be canonical too
        owner = LabelOwnerPsi(["a", "b"], "s")
        reply = FeaturePartyPsi(["a", "c"], "s").respond(owner.request())
        with pytest.raises(ProtocolError, match="point 1 is not a valid group element"):
            owner.finish(m.PsiReply(reply.blinded[:32] + bad, reply.points, reply.handles))


def _on_twist() -> bytes:
    """A canonical u-coordinate off the curve (on its quadratic twist): u^3 + 486662 u^2 + u is
    not a square modulo p."""
    u = 2
    while pow((u ** 3 + 486662 * u * u + u) % FIELD, (FIELD - 1) // 2, FIELD) == 1:
        u += 1
    return u.to_bytes(32, "little")


def test_twist_and_mixed_order_points_reveal_nothing_and_match_nothing():
    """X25519 clamps its scalars to multiples of 8, so a point plus a small-order one gives the
    result of the point alone, and a point on the twist is answered in the twist's large
    prime-order group (Curve25519 is twist-secure); such a point never matches an ID."""
    k, good = group.new_scalar(), _good_point()
    assert group.blind(k, good, 0) != group.blind(k, _on_twist(), 0)
    edwards = sodium.crypto_core_ed25519_from_uniform(hashlib.sha512(b"x").digest()[:32])
    torsion = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")  # order 8
    mixed = sodium.crypto_core_ed25519_add(edwards, torsion)
    assert group.blind(k, sodium.crypto_sign_ed25519_pk_to_curve25519(edwards), 0) == \
        group.blind(k, group._to_montgomery(mixed, 1), 0)
    owner = LabelOwnerPsi(["a", "b"], "s")
    reply = FeaturePartyPsi(["a", "c"], "s").respond(owner.request())
    mine = owner.finish(m.PsiReply(reply.blinded[:32] + _on_twist(), reply.points, reply.handles))
    assert mine.matched.tolist() == [True, False]


def test_exponents_commute_and_hashes_are_prime_order_points():
    a, b = group.new_scalar(), group.new_scalar()
    points = group.hash_to_group(b"prefix", [b"s:1", b"s:2", b"i:3"])
    assert group.blind(a, group.blind(b, points, 0), 0) == group.blind(b, group.blind(a, points, 0), 0)
    for i in range(0, len(points), 32):  # the same points as libsodium's Edwards-to-Montgomery map
        edwards = sodium.crypto_core_ed25519_from_uniform(
            hashlib.sha512(b"prefix" + [b"s:1", b"s:2", b"i:3"][i // 32]).digest()[:32])
        assert points[i:i + 32] == sodium.crypto_sign_ed25519_pk_to_curve25519(edwards)


def test_group_constants_match_the_wire():
    assert group.POINT_BYTES == m.PSI_POINT_BYTES == len(_good_point())


def _psi_env(**body) -> bytes:
    from securegal.wire import securegal_pb2 as pb

    env = pb.Envelope(version=1, session="s", round=0, sender="a", receiver="b", seq=0)
    for name, value in body.items():
        getattr(env, name).CopyFrom(value)
    return env.SerializeToString()


def _handles(values):
    from securegal.wire.codec import tensor_to_proto

    return tensor_to_proto(np.asarray(values, dtype=np.int64))


@pytest.mark.parametrize("make,match", [
    (lambda pb: dict(psi_request=pb.PsiRequest(session="s", id_kind="str", points=b"\x01" * 33)), "whole number"),
    (lambda pb: dict(psi_request=pb.PsiRequest(session="s", id_kind="str", points=b"\x01" * 32 * 5)), "limit 4"),
    (lambda pb: dict(psi_request=pb.PsiRequest(session="s", id_kind="str", points=b"")), "no points"),
    (lambda pb: dict(psi_request=pb.PsiRequest(session="s", id_kind="float", points=b"\x01" * 32)), "id kind"),
    (lambda pb: dict(psi_request=pb.PsiRequest(session="", id_kind="int", points=b"\x01" * 32)), "session"),
    (lambda pb: dict(psi_request=pb.PsiRequest(session="s" * 257, id_kind="int", points=b"\x01" * 32)), "session"),
    (lambda pb: dict(psi_reply=pb.PsiReply(blinded=b"", points=b"\x01" * 64, handles=_handles([1]))), "2 points but 1"),
    (lambda pb: dict(psi_reply=pb.PsiReply(blinded=b"", points=b"\x01" * 64, handles=_handles([1, 1]))), "unique"),
    (lambda pb: dict(psi_reply=pb.PsiReply(blinded=b"", points=b"\x01" * 32, handles=_handles([-1]))), "non-negative"),
    (lambda pb: dict(psi_reply=pb.PsiReply(blinded=b"\x01" * 32 * 5, points=b"", handles=_handles([]))), "limit 4"),
    (lambda pb: dict(psi_selection=pb.PsiSelection(handles=_handles([1, 2, 3, 4, 5]))), "limit 4"),
    (lambda pb: dict(psi_selection_ack=pb.PsiSelectionAck(rows=5)), "limit 4"),
])
def test_malformed_or_oversized_psi_messages_are_refused(make, match):
    from securegal.wire import securegal_pb2 as pb

    with pytest.raises(ProtocolError, match=match):
        decode(_psi_env(**make(pb)), Limits(max_psi_points=4))


def test_request_for_another_session_is_refused():
    request = LabelOwnerPsi(["a"], "one").request()
    with pytest.raises(ProtocolError, match="session"):
        FeaturePartyPsi(["a"], "two").respond(request)


def test_unknown_handles_are_refused():
    _, party = psi_pairs(["a", "b"], ["b", "c"])[:2]
    with pytest.raises(ProtocolError, match="not this party's"):
        party.rows_of(np.array([party._handles.max() + 1]))
    with pytest.raises(ProtocolError, match="twice"):
        party.select(m.PsiSelection(np.array([party._handles[0]] * 2)))


def test_party_policy_and_empty_intersections():
    request = LabelOwnerPsi(["a", "b", "c"], "s").request()
    with pytest.raises(ProtocolError, match="answers at most 2"):
        FeaturePartyPsi(["a"], "s", max_request=2).respond(request)
    owner = LabelOwnerPsi(["a", "b", "c"], "s")
    party = FeaturePartyPsi(["a", "z"], "s", min_rows=2)
    mine = owner.finish(party.respond(owner.request()))
    with pytest.raises(ProtocolError, match="selected 1 of this party's rows; its min_rows is 2"):
        party.select(mine.selection())
    with pytest.raises(ProtocolError, match="selected none of this party.s rows: no ID in common"):
        align_in_process(["a", "b"], ["x", "y"], "s")
    none, _, _ = psi_pairs(["a", "b"], ["x", "y"])
    assert not none.matched.any()
    with pytest.raises(ConfigError, match="0 IDs are held by the label owner and every party"):
        common_rows([none])


def test_matching_on_point_prefixes_is_exact():
    """Points that share their first 8 bytes are matched on all 32 (and never wrongly)."""
    from securegal.align.psi import _match

    rng = np.random.default_rng(5)
    mine = rng.integers(0, 256, size=(50, 32), dtype=np.uint8)
    theirs = np.concatenate([mine[10:30], rng.integers(0, 256, size=(30, 32), dtype=np.uint8)])
    theirs[25, :8] = mine[40, :8]  # same prefix, different point: no match
    i, j = _match(mine.tobytes(), theirs.tobytes())
    assert sorted(zip(i.tolist(), j.tolist())) == [(k, k - 10) for k in range(10, 30)]
    twin = mine.copy()
    twin[1, :8] = twin[0, :8]  # a prefix shared within one list: the whole points decide
    i, j = _match(twin.tobytes(), theirs.tobytes())
    assert sorted(zip(i.tolist(), j.tolist())) == [(k, k - 10) for k in range(10, 30)]


def test_ids_too_long_to_be_ids_get_one_line_naming_the_row():
    """A 5,000-digit integer raised Python's bare ValueError; a 10 MB string ID was accepted
    (review K)."""
    from securegal.align.ids import MAX_ID_CHARS, canonical_ids

    for ids, unit in (([1, 10 ** 5000], "digits"), (["a", "x" * (MAX_ID_CHARS + 1)], "bytes")):
        with pytest.raises(ConfigError, match=f"the ID at index 1 \\(counting from 0\\) is longer than {MAX_ID_CHARS} {unit}") as info:
            canonical_ids(ids)
        assert "xxxx" not in str(info.value)
    assert canonical_ids(["é" * 1024])[0] == "str"  # a CSV cell's longest ID, in any script


@pytest.mark.parametrize("hidden", ["\x01", "\t", "\n", "\u200b", "\u2028", "\x7f"])
def test_an_id_with_a_character_that_does_not_print_is_refused_naming_its_row(hidden):
    """'P100\x01', 'P100\t' or 'P1\u200b00' never matched 'P100': the row dropped out of the
    intersection with no word (review B F4)."""
    from securegal.align.ids import canonical_ids

    with pytest.raises(ConfigError, match="the ID at index 2 \\(counting from 0\\) holds a character that does not print") as info:
        canonical_ids(["P098", "P099", f"P1{hidden}00", "P101"])
    assert "P1" not in str(info.value)  # rows, not values
    assert canonical_ids(["Jane Doe", "José-Ñ 7", "李四"])[0] == "str"  # spaces and any script print


def test_worker_processes_are_bounded_by_the_cores():
    """Up to 256 worker processes were allowed, about 10 GiB on a 2-core machine (review K)."""
    import os

    from securegal.align.workers import max_processes

    assert max_processes() == min(256, 4 * (os.cpu_count() or 1))
    with pytest.raises(ConfigError, match=f"need 1 <= processes <= {max_processes()} \\(four per core here\\)"):
        Workers(max_processes() + 1)
