"""The field-of-view gate: a pinhole localized with the wrong HFOV is marked low_confidence with the reason,
one with the right HFOV is left alone. End to end with the oracle matcher of test_pipeline (every token
matched to the aerial cell under its true ground position, truth depth), which sees the photo through its
true camera whatever HFOV the photo is said to have."""

from __future__ import annotations

import math

import numpy as np
import pytest

from loc2_engine.cameras import PanoramaCamera, PinholeCamera
from loc2_engine.errors import LocalizationError
from loc2_engine.fov_check import FOV_CODE, MIN_MATCHES, estimate_fov, fov_gate
from loc2_engine.ground import GroundImage
from loc2_engine.pipeline import Localizer
from loc2_engine.result import Result
from test_pipeline import OracleMatcher, _oracle_for, _scene

TRUE_HFOV = 60.0


def _localized(tmp_path, said_hfov):
    """The oracle scene of a TRUE_HFOV pinhole, localized as if its HFOV were ``said_hfov``."""
    scene = _scene(tmp_path, "pinhole", hfov_deg=TRUE_HFOV)
    matcher = OracleMatcher()
    _oracle_for(scene, matcher)  # the true camera's matches
    true = scene["ground"]
    said = GroundImage(true.path, true.image, PinholeCamera.from_hfov(true.camera.width, true.camera.height,
                                                                    said_hfov), true.exif, "pinhole")
    loc = Localizer(model=matcher, depth="truth", device="cpu")
    return loc.localize(said, scene["raster"], scene["prior"], depth_map=scene["depth"])


def test_the_right_hfov_passes(tmp_path):
    res = _localized(tmp_path, TRUE_HFOV)
    assert res.status == "ok" and res.error_code != FOV_CODE and not res.error
    assert res.quality_features["fov_ratio"] == pytest.approx(1.0, abs=0.1)


def test_two_and_a_half_times_the_hfov_is_flagged_with_the_reason(tmp_path):
    res = _localized(tmp_path, 2.5 * TRUE_HFOV)
    assert res.ok and res.status == "low_confidence" and res.error_code == FOV_CODE
    assert "150°" in res.error and "--hfov" in res.error
    # the field of view the matches point to is nearer the true one than the assumed (seen from a pose that
    # the wrong camera has also moved and turned)
    assert res.quality_features["fov_ratio"] * 2.5 * TRUE_HFOV < (TRUE_HFOV + 2.5 * TRUE_HFOV) / 2


def _pose_seen_by(camera, hfov_true, n=400, seed=0):
    """uv (n, 2) and xy_aerial (n, 2) of ground points 3-30 m ahead of a camera at the origin facing north,
    photographed by a pinhole of ``hfov_true`` of ``camera``'s size."""
    rng = np.random.default_rng(seed)
    truth = PinholeCamera.from_hfov(camera.width, camera.height, hfov_true)
    u = rng.uniform(0, camera.width, n)
    ahead = rng.uniform(3.0, 30.0, n)
    xy = np.stack([ahead * (u - truth.cx) / truth.fx, ahead], -1)
    return np.stack([u, rng.uniform(0, camera.height, n)], -1), xy


def test_the_estimate_is_the_true_hfov_and_needs_a_pinhole_and_matches():
    camera = PinholeCamera.from_hfov(640, 480, 150.0)
    uv, xy = _pose_seen_by(camera, 60.0)
    found = estimate_fov(camera, uv, xy, np.ones(len(uv)), np.zeros(2), 0.0)
    assert found.hfov_deg == pytest.approx(60.0, rel=0.1) and not found.plausible
    right = estimate_fov(PinholeCamera.from_hfov(640, 480, 60.0), uv, xy, np.ones(len(uv)), np.zeros(2), 0.0)
    assert right.ratio == pytest.approx(1.0, abs=0.1) and right.plausible
    assert estimate_fov(PanoramaCamera(512, 256), uv, xy, np.ones(len(uv)), np.zeros(2), 0.0) is None
    few = MIN_MATCHES - 1
    assert estimate_fov(camera, uv[:few], xy[:few], np.ones(few), np.zeros(2), 0.0) is None
    # matches behind the camera have no bearing in the frame: they do not count
    assert estimate_fov(camera, uv, xy, np.ones(len(uv)), np.zeros(2), 180.0) is None


def test_a_failed_result_is_left_as_it_is():
    failed = Result.failure("a.jpg", LocalizationError("no pose"))
    assert fov_gate(failed, PinholeCamera.from_hfov(640, 480, 60.0)) is failed
    assert math.isnan(failed.x)
