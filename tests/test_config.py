"""`LocalizerConfig`: settings named by field land in their stage, unknown names are refused, and the
matcher's own values fill only what the user left unset."""

import dataclasses

import pytest

from loc2_engine.config import LocalizerConfig


def test_a_setting_named_by_its_field_lands_in_its_stage():
    config = LocalizerConfig().with_overrides(hypotheses=500, n_matches=64, seed=3, radius_m=12.0)
    stages = (config.pose.hypotheses, config.matching.n_matches, config.seed, config.photo.radius_m)
    assert stages == (500, 64, 3, 12.0)
    assert config.pose.th_inlier_m == LocalizerConfig().pose.th_inlier_m  # the rest untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.pose.hypotheses = 1


def test_an_unknown_setting_is_refused_naming_the_known_ones():
    with pytest.raises(TypeError, match="unknown Localizer setting 'pano_rolls'.*'hypotheses'"):
        LocalizerConfig().with_overrides(pano_rolls=4)
    with pytest.raises(ValueError, match="aerial_quarters"):
        LocalizerConfig().with_overrides(aerial_quarters=3)


def test_the_matchers_own_values_fill_only_what_was_left_unset():
    own = {"mirror_tta": True, "aerial_quarters": 4, "ray_depth_rel": 0.0, "letterbox": False}
    resolved = LocalizerConfig().with_overrides(mirror_tta=False).resolved(own)
    assert resolved.matching.mirror_tta is False  # the user's choice wins
    assert (resolved.matching.aerial_quarters, resolved.pose.ray_depth_rel) == (4, 0.0)
    assert resolved.setting("aerial_quarters") == 4
    with pytest.raises(KeyError):
        resolved.setting("letterbox")  # not a pipeline setting: the matcher keeps it
