"""loc2-vigor-known: VIGOR known_ori checkpoints, fed panoramas rolled to north by the heading prior
(docs/method.md §1.1).

The scene is written in the official conventions, independently of the code: the rolled ("canonical") panorama
has north at its centre column, token (r, c) looks along θ_r = rπ/50, φ_c = 2πc/101 and reads depth at pixel
(14r, 14c) of the depth map resized (nearest) to 714×1428 and rolled with the image; its official point
(d sinθ cosφ, -d sinθ sinφ) in (down, right) is mapped by the true pose onto the aerial frame. A scripted
matcher places its aerial cells exactly there, so the pipeline must return the photo's true pose and heading.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from loc2_engine.cameras import PanoramaCamera
from loc2_engine.errors import ModelError
from loc2_engine.exif import ExifInfo
from loc2_engine.ground import GroundImage
from loc2_engine.lifting import lift_tokens
from loc2_engine.models import load_model
from loc2_engine.models.base import AerialFeatures, GroundFeatures, to_input
from loc2_engine.models.official import OfficialMatcher, build_vigor, vigor_variant
from loc2_engine.orientation import CanonicalView, canonical_roll, unroll_bev
from loc2_engine.pipeline import Localizer, Prior
from loc2_engine.search_area import canonical_view_for
from images import scene_like

pytest.importorskip("transformers")

from official_fixtures import files, vigor, write_raster  # noqa: E402,F401  (fixtures)

HEADING = 100.0                      # photo's centre column, clockwise from true north
K = round(HEADING * 1428 / 360)      # 397 columns: the official round(ρ·1428), ρ = h/360
FAST = {"n_matches": 512, "hypotheses": 500}


def prior(heading_deg=HEADING) -> Prior:
    return Prior(500075, 4999925, "EPSG:32633", radius_m=5, heading_deg=heading_deg)


def canonical_token_depth(depth: np.ndarray) -> torch.Tensor:
    """(5202,) float64: the official token depth of a photo's depth map under the known-orientation roll."""
    d = F.interpolate(torch.from_numpy(depth).double()[None, None], size=(714, 1428), mode="nearest")[0, 0]
    return torch.roll(d, K, dims=1)[::14, ::14].flatten()


def official_points(depth: np.ndarray) -> torch.Tensor:
    """(5202, 2) official (down, right) points of the rolled panorama's tokens, in metres."""
    r = torch.arange(51).repeat_interleave(102).double()
    c = torch.arange(102).repeat(51).double()
    theta, phi = r * math.pi / 50, c * 2 * math.pi / 101
    d = canonical_token_depth(depth)
    return torch.stack([d * torch.sin(theta) * torch.cos(phi), -d * torch.sin(theta) * torch.sin(phi)], -1)


class Scripted(OfficialMatcher):
    """loc2-vigor-known with scripted features: aerial cell i lies exactly where token ``tokens[i]`` is seen
    (``cells`` (n, 2) local metres) and P pairs them; ``seen`` keeps the ground input the matcher received."""

    def __init__(self, base: OfficialMatcher, tokens: torch.Tensor, cells: torch.Tensor):
        super().__init__(vigor_variant(orientation="known"), base.backbone, base.heads)
        self.tokens, self.cells, self.seen = tokens, cells, None

    def encode_aerial(self, aerial):
        return AerialFeatures(torch.zeros(1, 1, len(self.cells), 1), self.cells)

    def encode_ground(self, ground, kind=None):
        self.seen = ground.clone()
        return GroundFeatures(torch.zeros(1, 1, 51, 102), torch.zeros(5202, 2), (714, 1428))

    def match(self, a, g, ground_valid=None, aerial_valid=None):
        P = torch.zeros(1, len(self.cells), 5202)
        P[0, torch.arange(len(self.cells)), self.tokens] = 0.9
        return P


def scene(vigor_model, depth: np.ndarray, t_local=(2.0, -1.5)) -> Scripted:
    """The true pose: photo heading HEADING, camera at t_local (east, north) metres from the window centre.

    The rolled panorama's centre faces ε = HEADING - K·360/1428 (the roll's rounding), i.e. official yaw -ε;
    t_off = (down, right) = (-north, east); a_off = R(yaw) g_off + t_off, and local = (right, -down).
    """
    yaw = -math.radians(HEADING - K * 360 / 1428)
    R = torch.tensor([[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]], dtype=torch.float64)
    a_off = official_points(depth) @ R.T + torch.tensor([-t_local[1], t_local[0]], dtype=torch.float64)
    local = torch.stack([a_off[:, 1], -a_off[:, 0]], -1)
    seen = torch.isfinite(local).all(1) & (local.abs() < 25).all(1) & (canonical_token_depth(depth) > 0)
    tokens = torch.nonzero(seen)[::3, 0]
    return Scripted(vigor_model, tokens, local[tokens].float())


def depth_map(h: int, w: int) -> np.ndarray:
    depth = np.random.default_rng(2).uniform(3.0, 15.0, (h, w)).astype(np.float32)
    depth[: h // 7] = np.nan  # sky
    return depth


def photo_of(h: int, w: int) -> GroundImage:
    return GroundImage("p.png", scene_like(h, w, seed=1), PanoramaCamera(w, h), ExifInfo(), "pano")


def test_canonical_roll_puts_north_at_the_centre_column():
    for h in (0.0, 0.1, 90.0, 181.3, 359.9):
        k = canonical_roll(h, 1428)
        assert 0 <= k < 1428 and abs((h - k * 360 / 1428 + 180) % 360 - 180) <= 180 / 1428 + 1e-9
    assert canonical_roll(HEADING, 1428) == K == 397
    # rolled 90° right: the rolled input's forward is the photo's left
    assert unroll_bev(torch.tensor([[0.0, 1.0]]), 357, 1428)[0].tolist() == pytest.approx([-1.0, 0.0], abs=1e-7)


def test_known_orientation_recovers_the_true_pose_from_the_rolled_panorama(vigor, tmp_path):
    photo, depth = photo_of(714, 1428), depth_map(714, 1428)
    model = scene(vigor, depth)
    res = Localizer(model=model, depth="truth", device="cpu", **FAST).localize(
        photo, write_raster(tmp_path / "a.tif"), prior(), depth_map=depth)
    assert res.status in ("ok", "low_confidence"), res.error
    assert abs((res.heading_deg - HEADING + 180) % 360 - 180) < 1e-3
    assert res.frame.to_local(np.array([[res.x, res.y]]))[0] == pytest.approx([2.0, -1.5], abs=1e-3)
    # the matcher saw the photo rolled right by exactly K columns
    x = to_input(photo.image)
    assert torch.equal(model.seen, torch.roll(x, K, dims=-1))
    assert torch.equal(model.seen[..., K:], x[..., :-K]) and torch.equal(model.seen[..., :K], x[..., -K:])
    # explanation pixels are the photo's own: token (r, c) of the rolled input is photo pixel (14c - K, 14r)
    photo_uv = {((14 * (j % 102) - K) % 1428, 14 * (j // 102)) for j in model.tokens.tolist()}
    assert len(res.uv_ground) > 100 and {tuple(uv) for uv in res.uv_ground.tolist()} <= photo_uv


def test_depth_maps_of_another_size_are_resized_then_rolled_as_the_official_loader(vigor):
    """A 2048×1024 panorama with its own-size depth: each token reads nearest-resized depth at its un-rolled
    column; the lifted point's horizontal distance is d·sinθ (the rotation back keeps lengths)."""
    photo, depth = photo_of(1024, 2048), depth_map(1024, 2048)
    loc = Localizer(model=scene(vigor, depth), depth="truth", device="cpu")
    lifted = lift_tokens(loc.matcher, loc.depth, photo.fitted(1428, 714), depth, roll=K)
    xy, valid = lifted.xy_bev, lifted.valid
    want = official_points(depth).norm(dim=1)
    assert torch.equal(valid, torch.isfinite(want) & (canonical_token_depth(depth) < 35.0))
    assert torch.allclose(xy[valid].double().norm(dim=1), want[valid], rtol=1e-5, atol=1e-5)


def test_known_orientation_without_a_heading_prior_is_a_prior_error(vigor, tmp_path):
    photo, depth = photo_of(714, 1428), depth_map(714, 1428)
    res = Localizer(model=scene(vigor, depth), depth="truth", device="cpu", **FAST).localize(
        photo, write_raster(tmp_path / "a.tif"), prior(None), depth_map=depth)
    assert res.status == "failed" and res.error_code == "prior"
    assert "known-orientation" in res.error and "heading prior" in res.error and "unknown_ori" in res.error


def test_unknown_orientation_ignores_the_heading_for_the_inputs(vigor):
    assert vigor.orientation == "unknown"
    assert canonical_view_for(vigor, "vigor", prior(), "pano") == CanonicalView()


def test_registry_name_selects_the_known_orientation_checkpoint(files, monkeypatch):
    model = load_model("loc2-vigor-known", weights=files["weights"], backbone=files["meta"])
    assert (model.orientation, model.variant.name) == ("known", "loc2-vigor-known")
    monkeypatch.delenv("LOC2_MODELS", raising=False)
    with pytest.raises(ModelError, match="known_ori/model.pt"):
        build_vigor(orientation="known")
