"""Orthophoto of a Town written as a georeferenced GeoTIFF: a true orthophoto (vertical rays, roofs do not
lean) or an ordinary one (the view of an aerial camera resampled onto the ground, roofs lean outwards).

Pixel (row, col) centre of the orthophoto is at local x = -half + (col + 0.5) * gsd, y = half - (row + 0.5) *
gsd (row 0 = north), i.e. UTM easting = origin_x + x, northing = origin_y + y. The GeoTIFF is tiled 256 x 256,
DEFLATE-compressed, with overviews 2, 4, 8, 16, in ``town.crs``.

An ordinary orthophoto is a central projection from the aerial camera (flying height H over the nadir point),
resampled onto the ground (z = 0, or the terrain, as orthorectification onto a terrain model does): each pixel
shows the first surface on the ray from the camera through the pixel's ground point. The ground stays in place;
a point h above it is drawn displaced away from the nadir point by h r / H, r the distance from the nadir point
of where it is drawn (h r0 / (H - h) with r0 its own), so roofs lean outwards and the facades facing the nadir
point show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import Affine

from .render import Renderer

CAMERA_Z = 500.0   # start height of the rays (above every object): the haze of every orthophoto is 500 m deep
MAX_LEAN = 0.15    # ordinary orthophotos: at most this lean (m per m of height) at the town's far side


@dataclass(frozen=True)
class AerialCamera:
    """Projection centre of an ordinary orthophoto: ``nadir_xy`` (local grid metres) and ``flying_height_m``
    over the ground (> CAMERA_Z)."""
    nadir_xy: Tuple[float, float]
    flying_height_m: float

    def __post_init__(self):
        if not self.flying_height_m > CAMERA_Z:
            raise ValueError(f"aerial camera flying height {self.flying_height_m} m: it must exceed the "
                             f"{CAMERA_Z:.0f} m where the orthophoto's rays start")


def draw_aerial_camera(town, rng: np.random.Generator, flying_height_m: Tuple[float, float]) -> AerialCamera:
    """Flying height uniform in ``flying_height_m``; the nadir point in a uniform direction from the town
    centre, at a distance uniform in [0, MAX_LEAN H - size_m / 2] (0 when that is negative), so the lean at the
    far edge, (distance + size_m / 2) / H, is at most MAX_LEAN where H allows (size_m / 2 / H otherwise)."""
    if not min(flying_height_m) > CAMERA_Z:
        raise ValueError(f"flying heights {flying_height_m} m: they must exceed the {CAMERA_Z:.0f} m where the "
                         "orthophoto's rays start")
    height = float(rng.uniform(*flying_height_m))
    dist = float(rng.uniform(0.0, max(0.0, MAX_LEAN * height - town.size_m / 2)))
    ang = float(rng.uniform(0.0, 2 * math.pi))
    return AerialCamera((dist * math.cos(ang), dist * math.sin(ang)), height)


def ortho_transform(town, gsd: float) -> Affine:
    """Affine of the orthophoto in ``town.crs`` (UTM metres): top-left corner, ``gsd`` m square pixels."""
    half = town.size_m / 2
    return Affine(gsd, 0.0, town.origin_xy[0] - half, 0.0, -gsd, town.origin_xy[1] + half)


def render_ortho(renderer: Renderer, gsd: float, rows_per_chunk: int = 256,
                 aerial: Optional[AerialCamera] = None) -> np.ndarray:
    """(H, W, 3) uint8 top-down image of the whole town, H = W = size_m / gsd: true (vertical rays) without
    ``aerial``, else as seen from that aerial camera (module docstring)."""
    town = renderer.town
    half = town.size_m / 2
    n = int(round(town.size_m / gsd))
    factor = max(1, int(round(gsd / renderer.albedo.gsd)))
    ground = renderer.albedo.downsampled(factor) if factor > 1 else renderer.albedo
    xs = -half + (np.arange(n) + 0.5) * gsd
    out = np.empty((n, n, 3), np.uint8)
    for r0 in range(0, n, rows_per_chunk):
        ys = half - (np.arange(r0, min(n, r0 + rows_per_chunk)) + 0.5) * gsd
        X, Y = np.meshgrid(xs, ys)
        if aerial is None:
            o = np.stack([X, Y, np.full_like(X, CAMERA_Z)], -1).reshape(-1, 3).astype(np.float32)
            d = np.broadcast_to(np.array([0, 0, -1], np.float32), o.shape)
        else:
            o, d = _aerial_rays(aerial, X.ravel(), Y.ravel(), town.ground_height(X, Y).ravel())
        t, prim = renderer.cast(o, d)
        rgb = renderer.shade(o, d, t, prim, ground=ground, fine=False)
        # aerial survey look: slightly hazy, lower contrast, cooler than the street photos
        rgb = 0.06 + 0.9 * rgb * np.array([0.97, 1.0, 1.03], np.float32)
        out[r0:r0 + len(ys)] = np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8).reshape(len(ys), n, 3)
    return out


def _aerial_rays(aerial: AerialCamera, x: np.ndarray, y: np.ndarray, z: np.ndarray):
    """Ground points (x, y, z) (N,) each -> (origins, unit dirs) (N, 3) float32 of the rays from the aerial
    camera through them, started where they cross z = CAMERA_Z (nothing stands higher, and the haze stays that
    of the true orthophoto's 500 m of air)."""
    cam = np.array([*aerial.nadir_xy, aerial.flying_height_m])
    ground = np.stack([x, y, z], -1)
    d = ground - cam
    o = ground - d * ((CAMERA_Z - z) / (aerial.flying_height_m - z))[:, None]
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return o.astype(np.float32), d.astype(np.float32)


def write_geotiff(path, image: np.ndarray, transform: Affine, crs: str) -> None:
    """Write (H, W, 3) uint8 as a tiled DEFLATE GeoTIFF with internal overviews."""
    H, W = image.shape[:2]
    profile = dict(driver="GTiff", width=W, height=H, count=3, dtype="uint8", crs=crs, transform=transform,
                   tiled=True, blockxsize=256, blockysize=256, compress="deflate", predictor=2,
                   photometric="RGB", interleave="pixel")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.moveaxis(image, -1, 0))
        levels = [f for f in (2, 4, 8, 16) if min(H, W) // f >= 64]
        dst.build_overviews(levels, Resampling.average)
        dst.update_tags(ns="rio_overview", resampling="average")
