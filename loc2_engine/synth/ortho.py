"""True orthophoto of a Town (vertical rays, so roofs do not lean) written as a georeferenced GeoTIFF.

Pixel (row, col) centre of the orthophoto is at local x = -half + (col + 0.5) * gsd, y = half - (row + 0.5) *
gsd (row 0 = north), i.e. UTM easting = origin_x + x, northing = origin_y + y. The GeoTIFF is tiled 256 x 256,
DEFLATE-compressed, with overviews 2, 4, 8, 16, in ``town.crs``.
"""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import Affine

from .render import Renderer

CAMERA_Z = 500.0   # start height of the vertical rays (above every object)


def ortho_transform(town, gsd: float) -> Affine:
    """Affine of the orthophoto in ``town.crs`` (UTM metres): top-left corner, ``gsd`` m square pixels."""
    half = town.size_m / 2
    return Affine(gsd, 0.0, town.origin_xy[0] - half, 0.0, -gsd, town.origin_xy[1] + half)


def render_ortho(renderer: Renderer, gsd: float, rows_per_chunk: int = 256) -> np.ndarray:
    """(H, W, 3) uint8 top-down image of the whole town, H = W = size_m / gsd."""
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
        o = np.stack([X, Y, np.full_like(X, CAMERA_Z)], -1).reshape(-1, 3).astype(np.float32)
        d = np.broadcast_to(np.array([0, 0, -1], np.float32), o.shape)
        t, prim = renderer.cast(o, d)
        rgb = renderer.shade(o, d, t, prim, ground=ground, fine=False)
        # aerial survey look: slightly hazy, lower contrast, cooler than the street photos
        rgb = 0.06 + 0.9 * rgb * np.array([0.97, 1.0, 1.03], np.float32)
        out[r0:r0 + len(ys)] = np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8).reshape(len(ys), n, 3)
    return out


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
