"""Depth providers: plane geometry exact on the ground plane, truth loader, registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from loc2_engine.cameras import PanoramaCamera, PinholeCamera
from loc2_engine.depth import DEPTH_PROVIDERS, as_depth_map, get_depth_provider, register_depth_provider
from loc2_engine.depth.plane import DEFAULT_CAMERA_HEIGHT_M, PlaneDepth, ground_scale, pixel_centres
from loc2_engine.errors import DepthError
from loc2_engine.exif import ExifInfo
from loc2_engine.ground import GroundImage


def _ground(camera):
    image = np.zeros((camera.height, camera.width, 3), np.uint8)
    return GroundImage("x.png", image, camera, ExifInfo(), camera.kind)


@pytest.mark.parametrize("camera", [PanoramaCamera(128, 64), PinholeCamera.from_hfov(80, 60, 70.0)])
def test_plane_points_lie_on_the_ground_plane(camera):
    depth = PlaneDepth(camera_height_m=2.0)(_ground(camera))
    assert depth.shape == (camera.height, camera.width) and depth.dtype == np.float32
    rays = camera.pixel_to_ray(pixel_centres(camera.height, camera.width))
    z = depth.astype(np.float64) * rays[..., 2].numpy()  # height of the 3-D point below the camera
    ok = np.isfinite(depth)
    assert ok.sum() > 0.4 * depth.size
    np.testing.assert_allclose(z[ok], -2.0, rtol=1e-5)
    # at and above the horizon: no ground
    assert not ok[rays[..., 2].numpy() >= 0].any()


def test_plane_pano_matches_closed_form():
    cam = PanoramaCamera(256, 128)
    depth = PlaneDepth()(_ground(cam))
    row = 100  # below the horizon (row 64)
    el = math.radians(90.0 - (row + 0.5) / 128 * 180.0)
    np.testing.assert_allclose(depth[row], DEFAULT_CAMERA_HEIGHT_M / math.sin(-el), rtol=1e-5)
    assert np.isnan(depth[:64]).all()  # horizon and sky rows


def test_plane_pinhole_horizon_is_the_principal_row():
    cam = PinholeCamera.from_hfov(64, 48, 60.0)  # cy = 23.5
    depth = PlaneDepth()(_ground(cam))
    assert np.isnan(depth[:24]).all() and np.isfinite(depth[26:]).all()


@pytest.mark.parametrize("camera", [PanoramaCamera(128, 64), PinholeCamera.from_hfov(80, 60, 70.0)])
def test_ground_scale_recovers_the_scale_of_relative_ground_range(camera):
    """Relative range = true range / 7 with a quarter of the ground pixels covered by nearer objects:
    the scale is 7 (objects only raise the ratio, and the low percentile ignores them)."""
    true = PlaneDepth(camera_height_m=DEFAULT_CAMERA_HEIGHT_M)(_ground(camera)).astype(np.float64)
    relative = true / 7.0
    rng = np.random.default_rng(0)
    objects = np.isfinite(true) & (rng.random(true.shape) < 0.25)
    relative[objects] *= rng.uniform(0.2, 0.9, int(objects.sum()))  # things standing on the ground
    relative[~np.isfinite(true)] = rng.uniform(1.0, 5.0, int((~np.isfinite(true)).sum()))  # walls above
    assert ground_scale(relative, camera) == pytest.approx(7.0, rel=1e-5)
    # a camera twice as high sees the same picture of a world twice as large
    assert ground_scale(relative, camera, 2 * DEFAULT_CAMERA_HEIGHT_M) == pytest.approx(14.0, rel=1e-5)
    # nothing below the horizon with depth: no estimate
    assert ground_scale(np.where(np.isfinite(true), np.nan, 1.0), camera) is None


def test_truth_reads_npy_and_marks_sky(tmp_path):
    cam = PanoramaCamera(64, 32)
    d = np.full((32, 64), 7.5, np.float32)
    d[0, 0], d[0, 1], d[0, 2] = np.nan, np.inf, -1.0
    np.save(tmp_path / "d.npy", d)
    truth = get_depth_provider("truth")
    out = truth(_ground(cam), truth_path=str(tmp_path / "d.npy"))
    assert out.shape == (32, 64) and np.isnan(out[0, :3]).all() and (out[1:] == 7.5).all()
    # a map at twice the resolution is kept as is (the pipeline samples it at token positions)
    np.save(tmp_path / "big.npy", np.ones((64, 128), np.float32))
    assert truth(_ground(cam), truth_path=str(tmp_path / "big.npy")).shape == (64, 128)


def test_truth_errors_are_specific(tmp_path):
    truth = get_depth_provider("truth")
    g = _ground(PanoramaCamera(64, 32))
    with pytest.raises(DepthError, match="ground-truth depth"):
        truth(g)
    with pytest.raises(DepthError, match="does not exist"):
        truth(g, truth_path=str(tmp_path / "missing.npy"))
    np.save(tmp_path / "tall.npy", np.ones((64, 32), np.float32))
    with pytest.raises(DepthError, match="same size"):
        truth(g, truth_path=str(tmp_path / "tall.npy"))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(DepthError, match="cannot be read"):
        truth(g, truth_path=str(tmp_path / "obj.npy"))  # pickled objects are refused


def test_registry_names_and_lazy_entries(tmp_path):
    with pytest.raises(DepthError, match="plane"):
        get_depth_provider("nonsense")
    register_depth_provider("flat", "loc2_engine.depth.plane:PlaneDepth")
    try:
        assert get_depth_provider("flat", camera_height_m=3.0).camera_height_m == 3.0
    finally:
        del DEPTH_PROVIDERS["flat"]
    with pytest.raises(ValueError):
        register_depth_provider("bad", "no_colon")


def test_a_weight_file_selects_the_mono_network_with_those_weights(tmp_path):
    from loc2_engine.models.mono_depth import MonoDepthNet, save_mono

    torch.manual_seed(0)
    save_mono(MonoDepthNet({"channels": [8, 8, 16, 16]}), tmp_path / "mine.safetensors")
    provider = get_depth_provider(str(tmp_path / "mine.safetensors"))
    assert provider.name == "mono" and provider._net.conf["channels"] == [8, 8, 16, 16]
    with pytest.raises(DepthError, match="mono weight file"):
        get_depth_provider(str(tmp_path / "missing.safetensors"))


def test_as_depth_map_masks_invalid():
    out = as_depth_map(np.array([[1.0, 0.0], [np.nan, -2.0]]), (2, 2))
    assert out.dtype == np.float32 and np.isfinite(out).sum() == 1
    with pytest.raises(DepthError):
        as_depth_map(np.zeros((2, 2, 2)), (2, 2))
