"""Ground albedo raster of a Town: painted polygons (asphalt, paving, markings, grass...) plus texture noise.

The raster covers the town square ``[-size_m/2, size_m/2]^2`` at ``gsd`` m/px, row 0 = north; pixel
(row, col) centre is at x = -size/2 + (col + 0.5) * gsd, y = size/2 - (row + 0.5) * gsd. Outside the town the
shader uses ``town.base_rgb``. The same raster textures the ground in the orthophoto and in ground views.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rasterio import features
from rasterio.transform import Affine
from scipy import ndimage

from .town import Town


@dataclass
class GroundAlbedo:
    rgb: np.ndarray        # (H, W, 3) float32 albedo in [0, 1]
    gsd: float             # metres per pixel
    half: float            # the raster spans [-half, half] in x and y

    def lookup(self, x: np.ndarray, y: np.ndarray, outside=(0.3, 0.4, 0.22)) -> np.ndarray:
        """Bilinear albedo at local points x, y (N,) metres -> (N, 3); ``outside`` beyond the raster."""
        H, W = self.rgb.shape[:2]
        c = (x + self.half) / self.gsd - 0.5
        r = (self.half - y) / self.gsd - 0.5
        inside = (c >= 0) & (c <= W - 1) & (r >= 0) & (r <= H - 1)
        c = np.clip(c, 0, W - 1.001)
        r = np.clip(r, 0, H - 1.001)
        c0, r0 = c.astype(np.int64), r.astype(np.int64)
        fc, fr = (c - c0)[:, None], (r - r0)[:, None]
        a = self.rgb
        out = (a[r0, c0] * (1 - fc) * (1 - fr) + a[r0, c0 + 1] * fc * (1 - fr)
               + a[r0 + 1, c0] * (1 - fc) * fr + a[r0 + 1, c0 + 1] * fc * fr)
        out[~inside] = np.asarray(outside, np.float32)
        return out

    def downsampled(self, factor: int) -> "GroundAlbedo":
        """Box-filtered copy (for the orthophoto, so thin markings do not alias)."""
        H, W = self.rgb.shape[:2]
        h, w = H // factor, W // factor
        a = self.rgb[: h * factor, : w * factor].reshape(h, factor, w, factor, 3).mean(axis=(1, 3))
        return GroundAlbedo(a.astype(np.float32), self.gsd * factor, self.half)


def _smooth_noise(rng, shape, sigma_px) -> np.ndarray:
    """Zero-mean, unit-std smooth noise (H, W) with correlation length ~ sigma_px."""
    n = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_px)
    return n / max(float(n.std()), 1e-6)


def make_albedo(town: Town, gsd: float = 0.1) -> GroundAlbedo:
    """Rasterize ``town.paint`` in order (later on top) with per-polygon colour and texture noise."""
    half = town.size_m / 2
    n = int(round(town.size_m / gsd))
    rng = np.random.default_rng(town.seed + 11)
    transform = Affine(gsd, 0, -half, 0, -gsd, half)
    shapes = [(geom, i + 1) for i, (geom, _, _) in enumerate(town.paint) if not geom.is_empty]
    label = features.rasterize(shapes, out_shape=(n, n), transform=transform, fill=0, dtype="int32") \
        if shapes else np.zeros((n, n), np.int32)
    colours = np.array([town.base_rgb] + [c for _, c, _ in town.paint], np.float32)
    amp = np.array([0.12] + [a for _, _, a in town.paint], np.float32)
    # two noise scales: patches (~3 m) and grain (~0.3 m); a coarse tint varies colour across the town
    coarse = _smooth_noise(rng, (n // 8, n // 8), 4)
    coarse = ndimage.zoom(coarse, n / coarse.shape[0], order=1)[:n, :n]
    fine = _smooth_noise(rng, (n, n), 1.5)
    tint = 1.0 + amp[label] * (0.8 * coarse + 0.6 * fine)
    # a 0.6 px blur anti-aliases the rasterized edges (markings are only 1-2 px wide at 0.1 m)
    base = ndimage.gaussian_filter(colours[label], (0.6, 0.6, 0))
    rgb = base * tint[..., None]
    return GroundAlbedo(np.clip(rgb, 0, 1).astype(np.float32), gsd, half)
