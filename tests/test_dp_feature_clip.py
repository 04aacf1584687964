"""The DP ridge's feature clip B follows the session's training rows (docs/privacy.md section 2)."""
import math
import warnings

import pytest

from securegal.errors import ConfigError
from securegal.privacy.dp.mechanisms import InsecureNoiseWarning, gram_sensitivity, statistic_sensitivity
from securegal.privacy.dp.trainer import DPConfig, feature_clip_for, release_plan
from securegal.privacy.plan import FeatureDP, PrivacyPlan
from securegal.run import train


@pytest.mark.parametrize("rows, clip", [(1, 0.5), (100, 0.5), (124, math.sqrt(124) / 20), (400, 1.0),
                                        (900, 1.5), (1600, 2.0), (10**7, 2.0)])
def test_the_rule_is_sqrt_n_over_20_within_half_and_two(rows, clip):
    assert feature_clip_for(rows) == pytest.approx(clip)


def test_the_rule_never_decreases_with_rows():
    clips = [feature_clip_for(n) for n in range(1, 5000, 7)]
    assert all(a <= b for a, b in zip(clips, clips[1:]))
    assert clips[0] == 0.5 and clips[-1] == 2.0


@pytest.mark.parametrize("rows", [0, -3, 2.5, True, None])
def test_bad_row_counts_are_refused(rows):
    with pytest.raises(ValueError, match="n_rows"):
        feature_clip_for(rows)


def test_a_set_clip_is_kept_and_a_missing_one_is_chosen_before_any_plan():
    assert DPConfig(1.0, 1e-5, feature_clip=0.7).for_rows(10**6).feature_clip == 0.7
    config = DPConfig(1.0, 1e-5)
    assert config.feature_clip is None and config.for_rows(400).feature_clip == 1.0
    with pytest.raises(ConfigError, match="for_rows"):
        release_plan(config, 3)
    with pytest.raises(ConfigError, match="for_rows"):
        config.ridge()
    plan = {p.what: p.sensitivity for p in release_plan(config.for_rows(900), 3)}
    assert plan["gram"] == gram_sensitivity(1.5, config.intercept)
    assert plan["stat"] == statistic_sensitivity(1.5, config.residual_clip)
    with pytest.raises(ConfigError, match="feature_clip"):
        FeatureDP(epsilon=1.0, feature_clip=0.0)


@pytest.mark.parametrize("clip", [None, 0.7])
def test_a_dp_run_reports_the_clip_it_used(clip):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureNoiseWarning)
        m = train("wine", parties=3, rounds=2, seed=0,
                  plan=PrivacyPlan(feature_dp=FeatureDP(epsilon=2.0, feature_clip=clip, seed=1)))
    expected = feature_clip_for(m["n_train"]) if clip is None else clip
    for party, block in m["privacy"].items():
        mechanism = block["mechanism"]
        assert mechanism["feature_clip"] == pytest.approx(expected), party
        assert ("training rows" in mechanism["feature_clip_by"]) == (clip is None)
        # wine's 13 columns over 3 parties, 4 or 5 each: the gram gets sqrt((d + 1) / 9) of 0.3
        d = m["data"]["n_columns"][party]
        assert d < 8 and mechanism["shares"]["gram"] == pytest.approx(0.3 * math.sqrt((d + 1) / 9)), party
        assert mechanism["shares"]["gram"] + mechanism["shares"]["stat"] == pytest.approx(0.9)
        assert mechanism["shares_by"].startswith("columns")
