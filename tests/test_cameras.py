"""Camera models (pixel <-> ray) and lifting (pixel + depth -> BEV), incl. depth sampling."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from loc2_engine.cameras import PanoramaCamera, PinholeCamera, hfov_from_focal_35mm, looks_like_panorama
from loc2_engine.errors import CameraError, DepthError
from loc2_engine.lifting import lift_coefficients, lift_to_bev, sample_depth_at

PANO = PanoramaCamera(200, 100)
PIN = PinholeCamera.from_hfov(160, 120, 90.0)


def _t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def test_panorama_directions():
    W, H = PANO.width, PANO.height
    uv = _t([W / 2 - 0.5, H / 2 - 0.5], [3 * W / 4 - 0.5, H / 2 - 0.5], [W / 4 - 0.5, H / 2 - 0.5],
            [-0.5, H / 2 - 0.5], [W / 2 - 0.5, -0.5], [W / 2 - 0.5, H - 0.5])
    expected = _t([0, 1, 0], [1, 0, 0], [-1, 0, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1])
    assert torch.allclose(PANO.pixel_to_ray(uv), expected, atol=1e-12)


def test_panorama_round_trip():
    gen = torch.Generator().manual_seed(0)
    uv = torch.rand(500, 2, generator=gen, dtype=torch.float64) * _t(200.0, 98.0) + _t(-0.5, 0.5)
    back, valid = PANO.ray_to_pixel(PANO.pixel_to_ray(uv))
    assert valid.all()
    assert torch.allclose(back, uv, atol=1e-9)
    back, valid = PANO.ray_to_pixel(_t([0, 0, 0], [float("nan"), 1, 0]))
    assert not valid.any() and torch.isnan(back).all()


def test_panorama_aspect_is_checked():
    with pytest.raises(CameraError, match="twice as wide"):
        PanoramaCamera(300, 100)
    assert looks_like_panorama(2048, 1024) and looks_like_panorama(1429, 714)
    assert not looks_like_panorama(4000, 3000)
    assert PANO.resized(1428, 714) == PanoramaCamera(1428, 714)


def test_pinhole_geometry():
    cam = PinholeCamera.from_hfov(160, 120, 90.0)
    assert cam.hfov_deg == pytest.approx(90.0)
    assert cam.fx == pytest.approx(80.0) and (cam.cx, cam.cy) == (79.5, 59.5)
    rays = cam.pixel_to_ray(_t([79.5, 59.5], [-0.5, 59.5], [159.5, 59.5], [79.5, -0.5]))
    assert torch.allclose(rays[0], _t(0, 1, 0))
    # the left and right image edges are 45° off the axis; the top edge looks up
    assert math.degrees(math.atan2(rays[1, 0], rays[1, 1])) == pytest.approx(-45.0)
    assert math.degrees(math.atan2(rays[2, 0], rays[2, 1])) == pytest.approx(45.0)
    assert rays[3, 2] > 0 and rays[3, 0] == 0


def test_pinhole_round_trip_and_behind():
    gen = torch.Generator().manual_seed(1)
    uv = torch.rand(300, 2, generator=gen, dtype=torch.float64) * _t(160.0, 120.0) - 0.5
    back, valid = PIN.ray_to_pixel(PIN.pixel_to_ray(uv))
    assert valid.all() and torch.allclose(back, uv, atol=1e-9)
    back, valid = PIN.ray_to_pixel(_t([0.1, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]))
    assert valid.tolist() == [False, False, True]
    assert torch.isnan(back[:2]).all() and torch.allclose(back[2], _t(PIN.cx, PIN.cy))


def test_pinhole_rejects_bad_fov():
    for bad in (0.0, 180.0, float("nan"), None):
        with pytest.raises(CameraError, match="field of view"):
            PinholeCamera.from_hfov(100, 100, bad)


def test_resized_cameras_see_the_same_rays():
    gen = torch.Generator().manual_seed(2)
    uv = torch.rand(50, 2, generator=gen, dtype=torch.float64) * _t(160.0, 120.0) - 0.5
    for cam, (w, h) in ((PIN, (40, 30)), (PIN, (320, 240)), (PANO, (64, 32))):
        small = cam.resized(w, h)
        uv_small = (uv + 0.5) * _t(w / cam.width, h / cam.height) - 0.5
        assert torch.allclose(small.pixel_to_ray(uv_small), cam.pixel_to_ray(uv), atol=1e-12)
    assert PIN.resized(40, 30).hfov_deg == pytest.approx(PIN.hfov_deg)


def test_hfov_from_35mm_focal():
    # 3:2 frame: the equivalent focal is the full-frame one, hfov = 2 atan(18 / f)
    assert hfov_from_focal_35mm(24.0, 6000, 4000) == pytest.approx(math.degrees(2 * math.atan(18 / 24)), abs=1e-3)
    # a 4:3 phone at 26 mm: narrower horizontally than a 3:2 frame with the same diagonal
    assert 65.0 < hfov_from_focal_35mm(26.0, 4032, 3024) < 70.0
    with pytest.raises(CameraError, match="focal"):
        hfov_from_focal_35mm(0.0, 100, 100)


def test_lift_panorama_range():
    W, H = PANO.width, PANO.height
    uv = _t([W / 2 - 0.5, H / 2 - 0.5], [3 * W / 4 - 0.5, H / 2 - 0.5], [W / 2 - 0.5, H / 4 - 0.5])
    xy = lift_to_bev(PANO, uv, _t(10.0, 4.0, 10.0))
    assert torch.allclose(xy[:2], _t([0.0, 10.0], [4.0, 0.0]), atol=1e-12)
    assert torch.allclose(xy[2], _t(0.0, 10 * math.cos(math.radians(45))), atol=1e-12)  # 45° up: horizontal part


def test_lift_pinhole_z_and_range():
    uv = _t([PIN.cx + PIN.fx, PIN.cy + 7.0])
    assert torch.allclose(lift_to_bev(PIN, uv, _t(5.0), kind="z"), _t([5.0, 5.0]))
    ray = PIN.pixel_to_ray(uv)[0]
    assert torch.allclose(lift_to_bev(PIN, uv, _t(5.0), kind="range")[0], 5.0 * ray[:2])
    with pytest.raises(DepthError, match="panorama"):
        lift_coefficients(PANO, uv, "z")
    with pytest.raises(ValueError, match="depth kind"):
        lift_coefficients(PIN, uv, "disparity")


def test_lift_invalid_depth_is_nan():
    uv = _t([10.0, 10.0], [20.0, 20.0], [30.0, 30.0], [40.0, 40.0])
    xy = lift_to_bev(PIN, uv, _t(float("nan"), 0.0, -1.0, 2.0), kind="z")
    assert torch.isnan(xy[:3]).all() and torch.isfinite(xy[3]).all()


@settings(max_examples=40, deadline=None)
@given(st.floats(-50, 50), st.floats(0.5, 80), st.floats(-3, 10), st.booleans())
def test_lifting_inverts_projection(x, y, z, pano):
    """A 3-D point seen at its pixel with its depth lifts back to its own (x, y)."""
    p = _t(x, y, z)
    cam = PANO if pano else PinholeCamera.from_hfov(640, 480, 170.0)
    uv, valid = cam.ray_to_pixel(p)
    assert bool(valid)
    assert torch.allclose(lift_to_bev(cam, uv, p.norm(), "range"), p[:2], atol=1e-6)
    if not pano:
        assert torch.allclose(lift_to_bev(cam, uv, p[1], "z"), p[:2], atol=1e-6)


def test_lift_coefficients_are_linear_factors():
    gen = torch.Generator().manual_seed(3)
    uv = torch.rand(2, 7, 2, generator=gen) * torch.tensor([160.0, 120.0])
    d = torch.rand(2, 7, generator=gen) * 20 + 1
    for kind in ("range", "z"):
        coef = lift_coefficients(PIN, uv, kind)
        assert coef.shape == (2, 7, 2)
        assert torch.allclose(d[..., None] * coef, lift_to_bev(PIN, uv, d, kind))


def test_sample_depth_nearest_and_bilinear():
    depth = torch.arange(12, dtype=torch.float32).reshape(1, 3, 4) + 1.0  # value = 1 + 4 row + col
    depth[0, 2, 3] = float("nan")
    uv = torch.tensor([[[0.0, 0.0], [1.4, 1.6], [0.5, 0.5], [3.0, 2.0], [2.5, 1.5], [-0.6, 0.0], [1.0, 2.5]]])
    near = sample_depth_at(depth, uv, "nearest")[0]
    assert near[:3].tolist() == [1.0, 10.0, 6.0]  # x.5 rounds to the next pixel
    assert torch.isnan(near[3]) and torch.isnan(near[5])
    assert near[6] == 10.0  # v = 2.5 is the lower edge of row 2: inside
    bil = sample_depth_at(depth, uv, "bilinear")[0]
    assert bil[0] == 1.0 and bil[1] == pytest.approx(1 + 4 * 1.6 + 1.4)
    assert bil[2] == pytest.approx(1 + 4 * 0.5 + 0.5)
    assert torch.isnan(bil[4])  # one of the four neighbours is sky
    assert torch.isnan(bil[5])  # outside
    assert bil[6] == pytest.approx(10.0)  # border replicated


def test_sample_depth_zero_is_invalid_and_exact_pixels_ignore_nan_neighbours():
    depth = torch.tensor([[[2.0, float("nan")], [0.0, 3.0]]])
    uv = torch.tensor([[[0.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    assert torch.equal(sample_depth_at(depth, uv, "bilinear")[0, [0, 2]], torch.tensor([2.0, 3.0]))
    assert torch.isnan(sample_depth_at(depth, uv, "nearest")[0, 1])
