import numpy as np
import pytest
import tenseal as ts

from securegal.errors import InsecureParameters, ProtocolError
from securegal.privacy.he import PublicContext, SecretContext
from securegal.privacy.he._seal import galois_elements
from securegal.privacy.he.keys import MAGIC, default_rotation_steps


def test_public_context_holds_only_the_listed_rotation_keys(secret_context):
    pc = secret_context.public_context(steps=[1, 8, 64])
    assert pc.steps == (1, 8, 64)
    assert pc.galois_keys.size() == 3
    assert all(pc.galois_keys.has_key(e) for e in galois_elements(pc.seal, [1, 8, 64]))
    assert not pc.galois_keys.has_key(galois_elements(pc.seal, [2])[0])


def test_public_context_has_no_room_for_a_secret_key(public_context):
    with pytest.raises(AttributeError):
        public_context.secret_key = b"x"
    assert not hasattr(public_context, "_secret_key") and not hasattr(public_context, "decrypt")
    with pytest.raises(TypeError):
        PublicContext()


def test_default_public_context_size_is_seeded_and_small(secret_context):
    data = secret_context.public_bytes()
    assert secret_context.public_context().steps == default_rotation_steps(4096)
    # 12 seeded rotation keys at N=8192: about 8 MB (TenSEAL's default set is about 35 MB)
    assert 4e6 < len(data) < 10e6


def test_secret_key_in_our_format_is_refused(secret_context):
    with pytest.raises(InsecureParameters, match="secret key"):
        PublicContext.from_bytes(secret_context.to_bytes())


def test_tenseal_context_with_secret_key_is_refused():
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, 8192, coeff_mod_bit_sizes=[60, 40, 40, 60])
    with pytest.raises(InsecureParameters, match="secret key"):
        PublicContext.from_bytes(ctx.serialize(save_secret_key=True))
    with pytest.raises(ProtocolError, match="bad magic"):
        PublicContext.from_bytes(ctx.serialize())


@pytest.mark.parametrize("cut", [5, 200, 1000])
def test_truncated_public_context_is_refused(secret_context, cut):
    data = secret_context.public_bytes(steps=[1])
    with pytest.raises(ProtocolError):
        PublicContext.from_bytes(data[:-cut])


def test_insecure_parameters_in_context_are_refused(secret_context):
    data = bytearray(secret_context.public_bytes(steps=[1]))
    # the parameter section follows MAGIC, the section count, the "id" section and the "params" name
    pos = data.index(b"params") + len(b"params") + 8
    data[pos + 6:pos + 10] = bytes([60, 60, 60, 60])
    with pytest.raises(InsecureParameters):
        PublicContext.from_bytes(bytes(data))


def test_secret_context_round_trip(secret_context):
    restored = SecretContext.from_bytes(secret_context.to_bytes())
    pc = secret_context.public_context(steps=[1])
    ct = pc.load_ciphertext(secret_context.encrypt(np.arange(3.0))[0])
    np.testing.assert_allclose(restored.decrypt([ct], 3), np.arange(3.0), atol=1e-6)
    assert restored.context_id == secret_context.context_id


def test_seeded_encryption_is_half_size(secret_context):
    (blob,) = secret_context.encrypt(np.ones(10))
    full = 2 * 8192 * 3 * 8
    assert len(blob) < 0.6 * full
    assert MAGIC not in blob


def test_output_scale_travels_with_the_parameters():
    from securegal.privacy.he.params import RESIDUAL_CKKS_PARAMS

    assert SecretContext(RESIDUAL_CKKS_PARAMS).public_context(steps=[1]).params == RESIDUAL_CKKS_PARAMS


def test_parameters_seal_refuses_are_a_protocol_error_not_an_internal_one():
    """Verifier G N2: N = 32768 with 20-bit primes made SEAL raise RuntimeError ("failed to find
    enough qualifying primes"), which the party answered as an internal error."""
    import struct

    from securegal.errors import ProtocolError, reply_code
    from securegal.privacy.he.keys import PublicContext, SecretContext, _pack_sections, _unpack_sections
    from securegal.privacy.he.params import DP_CKKS_PARAMS

    sections = _unpack_sections(SecretContext(DP_CKKS_PARAMS).public_bytes(), "context")
    sections["params"] = struct.pack("<IBB6B", 32768, 20, 6, 21, 20, 20, 20, 20, 20)
    with pytest.raises(ProtocolError, match="CKKS public context") as info:
        PublicContext.from_bytes(_pack_sections(sections))
    assert reply_code(info.value) == "protocol"
