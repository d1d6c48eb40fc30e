"""Official Loc² models inside `Localizer`: input resizing, depth reading and masking, end to end.

Random weights in the official formats (official_fixtures.py); with them the matches are meaningless, so the
end-to-end runs only ask for a clean result (a pose, or a failure about matching), and the exactness is
checked on the lifted tokens against the official conventions written out independently (docs/method.md §1.2, §3).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from loc2_engine.cameras import PanoramaCamera, PinholeCamera
from loc2_engine.depth import as_depth_map, get_depth_provider
from loc2_engine.depth.truth import TruthDepth
from loc2_engine.errors import DepthError
from loc2_engine.exif import ExifInfo
from loc2_engine.ground import GroundImage
from loc2_engine.lifting import lift_tokens
from loc2_engine.models.official import KITTI, OfficialMatcher
from loc2_engine.pipeline import Localizer, Prior
from images import scene_like

pytest.importorskip("transformers")

from official_fixtures import (KITTI_CAM, files, ground_plane_range, ground_plane_z, official_kitti_tokens,  # noqa: E402,F401
                               ray_length, vigor, wall_z, write_raster)

PRIOR = Prior(500075, 4999925, "EPSG:32633", radius_m=5)
FAST = {"n_matches": 512, "hypotheses": 500}  # random weights: the pose is meaningless, keep RANSAC short


def rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return scene_like(h, w, seed)


def assert_clean(res):
    """A pose, or a failure about matching (random weights); never a depth, camera or input error."""
    assert res.status in ("ok", "low_confidence") or "match" in res.error, res.error


def test_vigor_runs_through_the_localizer(files, tmp_path):
    """The official window size, token grid and lifting go through `Localizer` for a panorama."""
    raster = write_raster(tmp_path / "aerial.tif")
    photo = GroundImage(str(tmp_path / "p.png"), rgb(256, 512), PanoramaCamera(512, 256), ExifInfo(), "pano")
    depth = np.full((256, 512), 10.0, np.float32)
    depth[:100] = np.nan
    loc = Localizer(model="loc2-vigor", depth="truth", device="cpu", weights=files["weights"],
                    backbone=files["meta"], **FAST)
    assert_clean(loc.localize(photo, raster, PRIOR, depth_map=depth))


def test_kitti_sized_photo_runs_end_to_end_with_the_official_depth_reading(files, tmp_path):
    """A 1242×375 KITTI photo and its own-size depth map: the model's non-uniform resize to 1232×364 (aspect
    3.312 -> 3.385) must not refuse the map, and every token must read, lift and mask depth as the official
    loader does, through the camera of the resized image (fx != fy)."""
    photo = GroundImage(str(tmp_path / "k.png"), rgb(375, 1242), KITTI_CAM, ExifInfo(), "user")
    depth = ground_plane_range(KITTI_CAM)
    loc = Localizer(model="loc2-kitti", depth="truth", device="cpu", weights=files["weights"],
                    backbone=files["meta"], **FAST)
    assert_clean(loc.localize(photo, write_raster(tmp_path / "aerial.tif"), PRIOR, depth_map=depth))

    # every token reads, lifts and masks depth as the official model does with the scene's z-depth map
    for name, z_map in kitti_scenes().items():
        xy, valid = lifted_kitti_tokens(loc.matcher, photo, z_map * ray_length(KITTI_CAM))
        want_xy, want_valid = official_kitti_tokens(z_map)
        assert torch.equal(valid, want_valid), name
        assert 100 < int(valid.sum()) < 2288, name
        assert_official(xy, want_xy, valid)


def assert_official(xy, want_xy, rows) -> None:
    """xy (N, 2) float32 equals the official want_xy (N, 2) float64 on ``rows`` to float32 rounding: z to 1e-6
    relative, x (small near the principal point; the official grid is float32 too) to 10 µm."""
    xy, want_xy = xy[rows].double(), want_xy[rows]
    assert torch.allclose(xy[:, 1], want_xy[:, 1], rtol=1e-6, atol=0)
    assert torch.allclose(xy[:, 0], want_xy[:, 0], rtol=0, atol=1e-5)


class ZTruth(TruthDepth):
    """Ground-truth z-depth (along the optical axis), as Depth Anything gives for KITTI."""

    kind = "z"


def kitti_scenes():
    """z-depth maps (375×1242, float64) of KITTI scenes: the flat ground, beyond the 40 m clip near the
    horizon; that ground closed by a wall turned across the clip (39-41 m), so that the clip decides for half
    of the tokens; and a constant 45 m of range, < 40 m of z-depth only towards the image sides."""
    ground = ground_plane_z(KITTI_CAM)
    return {"ground": ground, "ground and wall": np.fmin(ground, wall_z(KITTI_CAM)),
            "45 m range": 45.0 / ray_length(KITTI_CAM)}


def lifted_kitti_tokens(matcher, photo, depth, provider=None):
    """The pipeline's lifted tokens (xy (2288, 2), valid (2288,)) of ``photo`` for a depth map (range by
    default; ``provider`` another truth provider) at the photo's own size."""
    lifted = lift_tokens(matcher, provider or get_depth_provider("truth"),
                         photo.fitted(1232, 364, letterbox=False), depth.astype(np.float32))
    return lifted.xy_bev, lifted.valid


def grid_ray_tokens(range_map):
    """Tokens of a range map turned into z-depth with the ray at the token-grid position (u_c, v_r) of
    linspace(0, 88, 88) × linspace(0, 26, 26) rather than at the pixel read: an approximation, kept to show
    that the exactness tests below can tell it apart."""
    xy, _ = official_kitti_tokens(range_map)       # the official formula with "z" = range
    fx, cx = KITTI_CAM.fx * 1232 / 1242 / 14, KITTI_CAM.cx * 1232 / 1242 / 14
    fy, cy = KITTI_CAM.fy * 364 / 375 / 14, KITTI_CAM.cy * 364 / 375 / 14
    v, u = torch.meshgrid(torch.linspace(0, 26, 26).double(), torch.linspace(0, 88, 88).double(), indexing="ij")
    length = torch.sqrt(((u - cx) / fx) ** 2 + ((v - cy) / fy) ** 2 + 1).flatten()
    xy = xy / length[:, None]
    return xy, torch.isfinite(xy[:, 1]) & (xy[:, 1] < 40.0)


def test_kitti_range_depth_becomes_the_official_z_depth_with_each_tokens_own_ray(vigor):
    """A range map R = Z·|ray(pixel)| of a scene with z-depth Z: the lifted tokens and the 40 m clip equal the
    official tokens of Z exactly (float rounding), where the ray at the token grid's (u_c, v_r) would not; a
    z-depth provider given Z directly gets the same tokens."""
    kitti = OfficialMatcher(KITTI, vigor.backbone, vigor.heads)
    photo = GroundImage("k.png", rgb(375, 1242), KITTI_CAM, ExifInfo(), "user")
    z_map = kitti_scenes()["ground and wall"]
    range_map = z_map * ray_length(KITTI_CAM)
    want_xy, want_valid = official_kitti_tokens(z_map)
    z_tok = want_xy[:, 1]
    near = (z_tok - 40.0).abs()
    assert int((near < 1.0).sum()) > 300 and float(near.min()) > 1e-4  # many tokens at 39-41 m, none on the edge
    for xy, valid in (lifted_kitti_tokens(kitti, photo, range_map),
                      lifted_kitti_tokens(kitti, photo, z_map, ZTruth())):
        assert torch.equal(valid, want_valid)
        assert_official(xy, want_xy, torch.isfinite(want_xy[:, 1]))  # the masked ones too
    # the grid-ray approximation is off by up to ~1.8 % and moves tokens across the clip
    approx_xy, approx_valid = grid_ray_tokens(range_map)
    rel = ((approx_xy[:, 1] - z_tok) / z_tok).abs()
    assert float(rel.max()) > 0.01 and not torch.equal(approx_valid, want_valid)


def test_depth_maps_of_the_photo_before_a_stretch_are_accepted_and_others_refused():
    stretched = KITTI_CAM.resized(1232, 364)
    assert as_depth_map(np.ones((375, 1242)), (364, 1232), stretched).shape == (375, 1242)
    assert as_depth_map(np.ones((182, 616)), (364, 1232), stretched).shape == (182, 616)  # same aspect
    for camera in (None, PinholeCamera.from_hfov(1232, 364, 81.0)):  # square pixels: nothing was stretched
        with pytest.raises(DepthError, match="1242x375"):
            as_depth_map(np.ones((375, 1242)), (364, 1232), camera)
    with pytest.raises(DepthError):
        as_depth_map(np.ones((375, 1300)), (364, 1232), stretched)


def test_official_depth_clip_masks_tokens_unless_max_range_overrides(vigor):
    """VIGOR: the official clip (35 m of range) applies before half the window (36.2 m); max_range_m wins."""
    photo = GroundImage("p.png", rgb(64, 128), PanoramaCamera(128, 64), ExifInfo(), "pano")
    depth = np.full((64, 128), 10.0, np.float32)
    depth[:, 64:] = 35.5
    assert (vigor.max_depth_m, vigor.max_depth_kind) == (35.0, "range") and vigor.aerial_size_m / 2 > 35.5
    assert (OfficialMatcher(KITTI, vigor.backbone, vigor.heads).max_depth_kind) == "z"  # see the KITTI test
    truth = get_depth_provider("truth")
    valid = lift_tokens(vigor, truth, photo.fitted(1428, 714), depth).valid
    far = torch.arange(102).repeat(51) * 14 * 128 // 1428 >= 64  # token columns that read the far half
    assert torch.equal(valid, ~far)
    valid = lift_tokens(vigor, truth, photo.fitted(1428, 714), depth, max_range_m=36.0).valid
    assert bool(valid.all())
