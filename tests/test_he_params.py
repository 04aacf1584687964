import pytest

from securegal.errors import InsecureParameters
from securegal.privacy.he import CkksParams
from securegal.privacy.he.params import MAX_LOG_Q, security_bits


def test_default_parameters_meet_128_bits():
    p = CkksParams()
    assert (p.poly_modulus_degree, p.coeff_mod_bit_sizes, p.scale_bits) == (8192, (60, 40, 40, 60), 40)
    assert p.total_modulus_bits == 200 and p.security_bits == 128 and p.slots == 4096 and p.depth == 2


@pytest.mark.parametrize("n,bits", [(8192, (60, 60, 60, 60)), (4096, (60, 40, 40)), (2048, (30, 30))])
def test_modulus_above_the_standard_is_refused(n, bits):
    with pytest.raises(InsecureParameters, match="below 128-bit"):
        CkksParams(n, bits, 25)


def test_each_bound_is_exactly_the_table():
    for n, max_bits in MAX_LOG_Q[128].items():
        assert security_bits(n, max_bits) >= 128
        assert security_bits(n, max_bits + 1) == 0


def test_higher_levels_reported():
    assert CkksParams(16384, (60, 40, 40, 60), 40).security_bits == 256
    assert CkksParams(8192, (40, 30, 30, 40), 30).security_bits == 192


@pytest.mark.parametrize("kwargs,match", [
    ({"poly_modulus_degree": 3000}, "not one of"),
    ({"coeff_mod_bit_sizes": (60, 70, 60)}, r"\[20, 60\]"),
    ({"scale_bits": 60}, "below the first prime"),
    ({"coeff_mod_bit_sizes": (60,)}, "at least 2"),
    ({"scale_bits": 40.5}, "scale_bits must be a whole number, got 40.5"),  # failed later in struct (review K)
    ({"coeff_mod_bit_sizes": (60, 40.5, 60)}, "coeff_mod_bit_sizes must be whole numbers"),
    ({"poly_modulus_degree": 8192.0}, "poly_modulus_degree must be a whole number"),
    ({"output_scale_bits": True}, "output_scale_bits must be a whole number"),
])
def test_bad_parameters(kwargs, match):
    from securegal.errors import SecuregalError

    with pytest.raises(SecuregalError, match=match) as info:  # ConfigError, or InsecureParameters
        CkksParams(**kwargs)
    assert "\n" not in str(info.value)


def test_the_two_chains_the_plan_chooses():
    from securegal.privacy.he.params import DP_CKKS_PARAMS, RESIDUAL_CKKS_PARAMS
    from securegal.privacy.plan import FeatureDP, PrivacyPlan

    one = RESIDUAL_CKKS_PARAMS
    assert one.coeff_mod_bit_sizes == (60, 60, 60) and one.depth == 1 and one.security_bits == 128
    assert one.output_scale == 2.0 ** 46 and one.output_range == 2.0 ** 13
    assert DP_CKKS_PARAMS == CkksParams() and DP_CKKS_PARAMS.output_range == 2.0 ** 19
    assert PrivacyPlan(residuals="ckks").ckks_params == one
    assert PrivacyPlan(residuals="ckks", feature_dp=FeatureDP(epsilon=3.0)).ckks_params == DP_CKKS_PARAMS
    assert PrivacyPlan(residuals="ckks", residual_clip=1.0).ckks_params == DP_CKKS_PARAMS  # DP parties may join
    assert PrivacyPlan(residuals="plain").ckks_params is None


@pytest.mark.parametrize("bits,out", [((60, 40, 40, 60), 46), ((60, 60, 60), 53), ((60, 60, 60), 39)])
def test_output_scale_needs_one_rescaling_prime_and_headroom(bits, out):
    with pytest.raises(ValueError, match="output_scale_bits"):
        CkksParams(8192, bits, 40, output_scale_bits=out)
