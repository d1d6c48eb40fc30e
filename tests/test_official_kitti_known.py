"""loc2-kitti-known: KITTI ori_noise10 checkpoints, fed aerial tiles turned so that the heading prior points east
(docs/method.md §1.2).

The scene is written in the official conventions, independently of the code: the tile the model sees is the
map turned so that the heading prior's bearing h shows to the right (a bearing β shows at β + 90 - h), the
camera's official yaw in that tile's (down, right) frame is ψ = -(tile bearing of the camera), i.e. -90° when
it faces exactly h (docs/method.md §1.2: ψ = random_ori - 90°), and its ground points (-z, (u - c_x) z / f_x)
are mapped by ψ and the camera's position onto the tile. A scripted matcher places its cells exactly there, in the tile's
(right, up) frame as the official grid does, so the pipeline must return the true pose in the project's frames.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from loc2_engine.errors import ModelError
from loc2_engine.exif import ExifInfo
from loc2_engine.ground import GroundImage
from loc2_engine.models import load_model
from loc2_engine.models.base import AerialFeatures, GroundFeatures, to_input
from loc2_engine.models.official import OfficialMatcher, build_kitti, kitti_variant
from loc2_engine.orientation import CanonicalView
from loc2_engine.pipeline import Localizer, Prior
from loc2_engine.search_area import canonical_view_for
from images import scene_like

pytest.importorskip("transformers")

from official_fixtures import (KITTI_CAM, files, ground_plane_range, ground_plane_z, official_kitti_tokens,  # noqa: E402,F401
                               vigor, write_raster)

CENTRE = (500075.0, 4999925.0)   # centre of write_raster's 600 px x 0.25 m raster (EPSG:32633)
FAST = {"n_matches": 512, "hypotheses": 500}
GSD = 0.198937                   # docs/method.md §1.2: m/px at 504 px
TURNED_PX = 716                  # ceil(504·√2) + 2 = 715, made even like 504


def prior(heading_deg) -> Prior:
    return Prior(*CENTRE, "EPSG:32633", radius_m=5, heading_deg=heading_deg)


def to_tile(xy: torch.Tensor, heading_prior: float) -> torch.Tensor:
    """(N, 2) local (east, north) -> (N, 2) tile (right, up): bearing β becomes β + 90 - h, length kept."""
    bearing = torch.atan2(xy[:, 0], xy[:, 1]) + math.radians(90.0 - heading_prior)
    r = xy.norm(dim=1)
    return torch.stack([r * torch.sin(bearing), r * torch.cos(bearing)], -1)


class Scripted(OfficialMatcher):
    """An official KITTI matcher (``orientation``) with scripted features: aerial cell i lies at ``cells[i]``
    (tile (right, up) metres) where token ``tokens[i]`` is seen; it keeps the inputs it received."""

    def __init__(self, base: OfficialMatcher, tokens: torch.Tensor, cells: torch.Tensor, orientation="known"):
        super().__init__(kitti_variant(orientation), base.backbone, base.heads)
        self.tokens, self.cells, self.aerial_seen, self.ground_seen = tokens, cells, None, None

    def encode_aerial(self, aerial):
        self.aerial_seen = aerial.clone()
        return AerialFeatures(torch.zeros(1, 1, len(self.cells), 1), self.cells)

    def encode_ground(self, ground, kind=None):
        self.ground_seen = ground.clone()
        return GroundFeatures(torch.zeros(1, 1, 26, 88), torch.zeros(2288, 2), (364, 1232))

    def match(self, a, g, ground_valid=None, aerial_valid=None):
        P = torch.zeros(1, len(self.cells), 2288)
        P[0, torch.arange(len(self.cells)), self.tokens] = 0.9
        return P


def scene(base, heading_prior, heading, t_local=(2.0, -1.5), orientation="known") -> Scripted:
    """A camera facing ``heading`` at ``t_local`` (east, north metres from the window centre), seen in the tile
    turned for ``heading_prior``: yaw ψ = -(heading + 90 - h), t_off = (-up, right) of its tile position."""
    psi = -math.radians(heading + 90.0 - heading_prior)
    R = torch.tensor([[math.cos(psi), -math.sin(psi)], [math.sin(psi), math.cos(psi)]], dtype=torch.float64)
    right, up = to_tile(torch.tensor([t_local], dtype=torch.float64), heading_prior)[0]
    xy, valid = official_kitti_tokens(ground_plane_z(KITTI_CAM))
    g_off = torch.stack([-xy[:, 1], xy[:, 0]], -1)               # (down, right): forward = -down
    a_off = g_off @ R.T + torch.stack([-up, right])
    seen = valid & (a_off.abs() < 50.0).all(1)
    tokens = torch.nonzero(seen)[::2, 0]
    cells = torch.stack([a_off[tokens, 1], -a_off[tokens, 0]], -1)  # official (down, right) -> (right, up)
    return Scripted(base, tokens, cells.float(), orientation)


def kitti_photo() -> GroundImage:
    return GroundImage("k.png", scene_like(375, 1242, seed=1), KITTI_CAM, ExifInfo(), "user")


def square_raster(path) -> str:
    """A dark 600 px x 0.25 m raster around CENTRE with a bright 6 m square centred 20 m east, 20 m north."""
    import rasterio
    from rasterio.transform import from_origin

    image = np.full((3, 600, 600), 20, np.uint8)
    image[:, 208:232, 368:392] = 230   # rows (5e6 - N) / 0.25, cols (E - 5e5) / 0.25: N 4999942-48, E 500092-98
    with rasterio.open(path, "w", driver="GTiff", width=600, height=600, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(500000, 5000000, 0.25, 0.25)) as dst:
        dst.write(image)
    return str(path)


def localize(model, raster, heading_prior):
    loc = Localizer(model=model, depth="truth", device="cpu", **FAST)
    return loc.localize(kitti_photo(), raster, prior(heading_prior), depth_map=ground_plane_range(KITTI_CAM))


@pytest.mark.parametrize("heading_prior", [0.0, 90.0, 200.0])
def test_the_matcher_sees_the_map_turned_so_that_the_heading_prior_points_east(vigor, tmp_path, heading_prior):
    model = scene(vigor, heading_prior, heading_prior)
    res = localize(model, square_raster(tmp_path / "sq.tif"), heading_prior)
    assert res.status in ("ok", "low_confidence"), res.error
    tile = model.aerial_seen[0].mean(0)  # (504, 504)
    assert tuple(tile.shape) == (504, 504)
    rows, cols = torch.nonzero(tile > 0.5, as_tuple=True)
    assert 500 < len(rows) < 1000  # the 6 m square: ~30² px at 0.199 m/px
    bearing = math.radians(45.0 + 90.0 - heading_prior)  # the square's bearing, turned
    r_px = 20.0 * math.sqrt(2.0) / GSD
    want = (252.0 - r_px * math.cos(bearing), 252.0 + r_px * math.sin(bearing))  # (row, col) at pixel edges
    got = (float(rows.double().mean()) + 0.5, float(cols.double().mean()) + 0.5)
    assert got == pytest.approx(want, abs=0.5)
    # the result keeps the north-up window the tile was turned out of: the square north-east of its centre
    assert res.window.image.shape == (TURNED_PX, TURNED_PX, 3) and res.window.gsd == pytest.approx(GSD)
    r, c = np.round(res.window.local_to_pixel(np.array([20.0, 20.0]))).astype(int)
    assert res.window.image[r, c].min() > 200 and res.window.image[TURNED_PX // 2, TURNED_PX // 2].max() < 30
    # the photo itself is not turned
    assert tuple(model.ground_seen.shape) == (1, 3, 364, 1232)


def test_a_turn_of_zero_is_the_centre_crop_of_the_window(vigor, tmp_path):
    model = scene(vigor, 90.0, 90.0)
    res = localize(model, write_raster(tmp_path / "a.tif"), 90.0)
    o = (TURNED_PX - 504) // 2
    assert torch.equal(model.aerial_seen, to_input(res.window.image[o:o + 504, o:o + 504]))


@pytest.mark.parametrize("heading_prior, heading", [(0.0, 6.0), (90.0, 85.0), (200.0, 209.0), (315.0, 311.0)])
def test_pose_written_in_the_official_frames_is_recovered_in_project_frames(vigor, tmp_path, heading_prior,
                                                                            heading):
    res = localize(scene(vigor, heading_prior, heading), write_raster(tmp_path / "a.tif"), heading_prior)
    assert res.status in ("ok", "low_confidence"), res.error
    assert abs((res.heading_deg - heading + 180.0) % 360.0 - 180.0) < 1e-3
    assert res.frame.to_local(np.array([[res.x, res.y]]))[0] == pytest.approx([2.0, -1.5], abs=1e-3)


def test_aerial_features_are_cached_per_window_and_turn(vigor, tmp_path):
    loc = Localizer(model=scene(vigor, 0.0, 0.0), depth="truth", device="cpu")
    window = loc.aerial_window(write_raster(tmp_path / "a.tif"), prior(0.0), turned=True)
    first = loc.features.get(window, 90.0)[0].xy_local
    assert torch.equal(loc.features.get(window, 90.0)[0].xy_local, first)
    other = loc.features.get(window, 30.0)[0].xy_local
    assert len(loc.features) == 2 and not torch.allclose(other, first)


def test_without_a_heading_prior_it_is_a_prior_error_naming_the_model(files, tmp_path):
    loc = Localizer(model="loc2-kitti-known", depth="truth", device="cpu", weights=files["weights"],
                    backbone=files["meta"], **FAST)
    res = loc.localize(kitti_photo(), write_raster(tmp_path / "a.tif"), prior(None),
                       depth_map=ground_plane_range(KITTI_CAM))
    assert res.status == "failed" and res.error_code == "prior"
    assert "loc2-kitti-known" in res.error and "heading prior" in res.error and "ori_noise180" in res.error


def test_loc2_kitti_keeps_the_north_up_window(vigor, tmp_path):
    model = scene(vigor, 90.0, 90.0, orientation="unknown")
    assert model.orientation == "unknown"
    loc = Localizer(model=model, depth="truth", device="cpu", **FAST)
    assert canonical_view_for(loc.matcher, loc.model_name, prior(30.0), "pinhole") == CanonicalView()
    res = localize(model, write_raster(tmp_path / "a.tif"), 30.0)
    assert res.window.image.shape == (504, 504, 3)
    assert torch.equal(model.aerial_seen, to_input(res.window.image))


def test_registry_names_select_the_kitti_checkpoints(files, monkeypatch):
    model = load_model("loc2-kitti-known", weights=files["weights"], backbone=files["meta"])
    assert (model.orientation, model.variant.name) == ("known", "loc2-kitti-known")
    assert load_model("loc2-kitti", weights=files["weights"], backbone=files["meta"]).orientation == "unknown"
    monkeypatch.delenv("LOC2_MODELS", raising=False)
    with pytest.raises(ModelError, match="ori_noise10/model.pt") as err:
        build_kitti(orientation="known")
    assert "loc2-kitti-known.pt" in str(err.value)
    with pytest.raises(ModelError, match="ori_noise180/model.pt"):
        build_kitti()
