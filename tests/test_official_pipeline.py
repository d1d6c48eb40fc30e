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
from loc2_engine.errors import DepthError
from loc2_engine.exif import ExifInfo
from loc2_engine.ground import GroundImage
from loc2_engine.lifting import lift_tokens
from loc2_engine.models.official import KITTI, OfficialMatcher
from loc2_engine.pipeline import Localizer, Prior
from images import scene_like

pytest.importorskip("transformers")

from official_fixtures import (KITTI_CAM, files, ground_plane_range, official_kitti_tokens, vigor,  # noqa: E402,F401
                               write_raster)

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

    # the plane beyond 40 m near the horizon is clipped; a 45 m range everywhere is < 40 m of z-depth only
    # towards the image sides (the official clip is on z-depth)
    for depth in (depth, np.full((375, 1242), 45.0, np.float32)):
        lifted = lift_tokens(loc.matcher, loc.depth, photo.fitted(1232, 364, letterbox=False), depth)
        xy, valid = lifted.xy_bev, lifted.valid
        want_xy, want_valid = official_kitti_tokens(depth)
        assert torch.equal(valid, want_valid)
        assert 100 < int(valid.sum()) < 2288 // 2
        assert torch.allclose(xy[valid].double(), want_xy[want_valid], rtol=1e-5, atol=1e-5)


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
