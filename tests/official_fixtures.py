"""Shared by the official-model tests: random weights in the official formats (nothing can be downloaded here).

A tiny DINOv2 (hidden 1024 so that the full-size official heads fit, 1 layer) saved in Meta's and
transformers' formats, and the 163 official matcher tensors, random; a random GeoTIFF; and the KITTI ground
tokens written out from docs/method.md (z-depth scenes, their range maps, and the official lifted points).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from loc2_engine.cameras import PinholeCamera
from loc2_engine.models.dinov2 import hf_to_meta
from loc2_engine.models.official import OfficialHeads, build_vigor

transformers = pytest.importorskip("transformers")

KITTI_CAM = PinholeCamera(1242, 375, 721.5377, 721.5377, 609.5593, 172.854)  # KITTI P_rect_02


def tiny_dinov2(layers: int = 1, hidden: int = 1024, seed: int = 0):
    """A random transformers Dinov2Model with DINOv2's 37×37 position grid and 64-d heads."""
    torch.manual_seed(seed)
    cfg = transformers.Dinov2Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
                                    intermediate_size=64, patch_size=14, image_size=518, layerscale_value=1.0)
    model = transformers.Dinov2Model(cfg).eval()
    with torch.no_grad():  # every tensor distinct, scales O(1) where they multiply, so that a wrong mapping shows
        for name, p in model.named_parameters():
            if "layer_scale" in name or ("norm" in name and name.endswith("weight")):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0, 0.05)
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Meta-format backbone .pth, transformers backbone folder, and official-format VIGOR checkpoint."""
    d = tmp_path_factory.mktemp("official")
    vit = tiny_dinov2()
    torch.save(hf_to_meta(vit.state_dict()), d / "dinov2_vitl14_pretrain.pth")
    vit.save_pretrained(d / "dinov2-large")
    torch.manual_seed(1)
    state = {}
    for k, v in OfficialHeads().state_dict().items():
        if k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            state[k] = torch.rand_like(v) + 0.5
        else:
            state[k] = torch.randn_like(v) * 0.05
    torch.save(state, d / "model.pt")
    return {"dir": d, "meta": str(d / "dinov2_vitl14_pretrain.pth"), "folder": str(d / "dinov2-large"),
            "weights": str(d / "model.pt"), "state": state, "vit": vit}


@pytest.fixture(scope="module")
def vigor(files):
    return build_vigor(weights=files["weights"], backbone=files["meta"])


def write_raster(path, size_px: int = 600, gsd: float = 0.25, seed: int = 0) -> str:
    """A random RGB GeoTIFF in UTM 33N with its north-west corner at (500000, 5000000); returns its path."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    with rasterio.open(path, "w", driver="GTiff", width=size_px, height=size_px, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(500000, 5000000, gsd, gsd)) as dst:
        dst.write(rng.integers(0, 255, (3, size_px, size_px), dtype=np.uint8))
    return str(path)


def ray_length(camera) -> np.ndarray:
    """|(x, y, 1)| (H, W) float64 of every pixel's ray (centres at integers) with z = 1: range = z-depth · it."""
    v, u = np.mgrid[0:camera.height, 0:camera.width].astype(np.float64)
    x, y = (u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy
    return np.sqrt(x * x + y * y + 1)


def ground_plane_z(camera, height_m: float = 1.65) -> np.ndarray:
    """z-depth (H, W) float64 of a flat ground seen by a level pinhole at height_m; NaN above the horizon."""
    v = np.mgrid[0:camera.height, 0:camera.width][0].astype(np.float64)
    y = (v - camera.cy) / camera.fy
    with np.errstate(divide="ignore"):
        return np.where(y > 0, height_m / y, np.nan)


def wall_z(camera, at_m: float = 40.0, slope: float = 0.03) -> np.ndarray:
    """z-depth (H, W) float64 of a vertical wall at ``at_m`` on the optical axis, turned so that z = at_m /
    (1 + slope · x) with x = (u - c_x) / f_x: for KITTI and slope 0.03 it runs from about 41 m (left) to
    39 m (right), across the 40 m clip."""
    u = np.mgrid[0:camera.height, 0:camera.width][1].astype(np.float64)
    return at_m / (1.0 + slope * (u - camera.cx) / camera.fx)


def ground_plane_range(camera, height_m: float = 1.65) -> np.ndarray:
    """Range (H, W) float32 of a flat ground seen by a level pinhole at height_m; NaN above the horizon."""
    return (ground_plane_z(camera, height_m) * ray_length(camera)).astype(np.float32)


def official_kitti_tokens(z_map: np.ndarray):
    """The official KITTI tokens of a 375×1242 **z-depth** map (as Depth Anything's), written out from
    docs/method.md §1.2 / §3.

    Depth: nearest to 364×1232, then nearest to 26×88 (pixel (14r, 14c)); intrinsics scaled to 1232×364 and
    divided by 14; u_c = linspace(0, 88, 88); masked at the 40 m z clip; point (-z, (u_c - c_x) z / f_x) in
    (down, right) = (x right, y forward) ((u_c - c_x) z / f_x, z) in the project's BEV. Returns xy (2288, 2)
    float64 and valid (2288,) bool.
    """
    z = torch.from_numpy(np.asarray(z_map, np.float64))[None, None]
    z = F.interpolate(F.interpolate(z, size=(364, 1232), mode="nearest"), size=(26, 88), mode="nearest")[0, 0]
    fx, cx = KITTI_CAM.fx * 1232 / 1242 / 14, KITTI_CAM.cx * 1232 / 1242 / 14
    u = torch.linspace(0, 88, 88).double().expand(26, 88)
    x = (u - cx) / fx
    valid = torch.isfinite(z) & (z > 0) & (z < 40.0)
    return torch.stack([x * z, z], -1).reshape(-1, 2), valid.flatten()
