"""Ground albedo raster of a Town: painted polygons (asphalt, paving, markings, grass...) plus texture noise.

Paint entries are (polygon, rgb, noise amplitude) or (polygon, rgb, amplitude, town.Pattern): a pattern
(paving joints, crop stripes) is drawn procedurally inside its polygon, in the raster's own pixels.

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

from .town import Pattern, Town


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


def _cell_hash(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Deterministic value in [0, 1) per integer cell (i, j): one tone per stone."""
    h = i.astype(np.int64) * 73856093 ^ j.astype(np.int64) * 19349663
    h = (h ^ (h >> 13)) * 1274126177
    return ((h ^ (h >> 16)) & 0xFFFF).astype(np.float32) / 65536.0


def _pattern_colours(pattern: Pattern, x: np.ndarray, y: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """Colours (N, 3) of the points x, y (N,) metres inside a polygon of colour ``rgb`` carrying ``pattern``."""
    a = np.radians(pattern.angle_deg)
    u = x * np.cos(a) + y * np.sin(a)      # along the pattern
    v = -x * np.sin(a) + y * np.cos(a)     # across it
    out = np.tile(np.asarray(rgb, np.float32), (len(x), 1))
    if pattern.kind == "stripes":
        band = (v / pattern.length) % 1.0 < pattern.width
        out[band] = pattern.rgb
        return out
    if pattern.kind != "joints":
        raise ValueError(f"unknown ground pattern {pattern.kind!r}")
    row = np.floor(v / pattern.width)
    along = u / pattern.length + pattern.offset * (row % 2)
    col = np.floor(along)
    joint = ((along - col) * pattern.length < pattern.line_m) | ((v / pattern.width - row) * pattern.width < pattern.line_m)
    if pattern.stone_var:
        out *= (1.0 + pattern.stone_var * (2.0 * _cell_hash(col, row) - 1.0))[:, None]
    out[joint] = pattern.rgb
    return out


def _draw_patterns(town: Town, label: np.ndarray, flat: np.ndarray, gsd: float) -> None:
    """Overwrite ``flat`` (H, W, 3) where a paint entry with a Pattern won the rasterization (in place)."""
    half = town.size_m / 2
    n = label.shape[0]
    for i, entry in enumerate(town.paint):
        if len(entry) < 4 or entry[3] is None or entry[0].is_empty:
            continue
        x0, y0, x1, y1 = entry[0].bounds  # only the polygon's window of the raster
        c0, c1 = max(int((x0 + half) / gsd) - 1, 0), min(int((x1 + half) / gsd) + 2, n)
        r0, r1 = max(int((half - y1) / gsd) - 1, 0), min(int((half - y0) / gsd) + 2, n)
        if c1 <= c0 or r1 <= r0:
            continue
        rows, cols = np.nonzero(label[r0:r1, c0:c1] == i + 1)
        rows, cols = rows + r0, cols + c0
        x = -half + (cols + 0.5) * gsd
        y = half - (rows + 0.5) * gsd
        flat[rows, cols] = _pattern_colours(entry[3], x, y, entry[1])


def make_albedo(town: Town, gsd: float = 0.1) -> GroundAlbedo:
    """Rasterize ``town.paint`` in order (later on top) with per-polygon colour, pattern and texture noise."""
    half = town.size_m / 2
    n = int(round(town.size_m / gsd))
    rng = np.random.default_rng(town.seed + 11)
    transform = Affine(gsd, 0, -half, 0, -gsd, half)
    shapes = [(entry[0], i + 1) for i, entry in enumerate(town.paint) if not entry[0].is_empty]
    label = features.rasterize(shapes, out_shape=(n, n), transform=transform, fill=0, dtype="int32") \
        if shapes else np.zeros((n, n), np.int32)
    colours = np.array([town.base_rgb] + [entry[1] for entry in town.paint], np.float32)
    amp = np.array([0.12] + [entry[2] for entry in town.paint], np.float32)
    # two noise scales: patches (~3 m) and grain (~0.3 m); a coarse tint varies colour across the town
    coarse = _smooth_noise(rng, (n // 8, n // 8), 4)
    coarse = ndimage.zoom(coarse, n / coarse.shape[0], order=1)[:n, :n]
    fine = _smooth_noise(rng, (n, n), 1.5)
    tint = 1.0 + amp[label] * (0.8 * coarse + 0.6 * fine)
    flat = colours[label]
    if any(len(entry) > 3 and entry[3] is not None for entry in town.paint):
        _draw_patterns(town, label, flat, gsd)
    # a 0.6 px blur anti-aliases the rasterized edges (markings are only 1-2 px wide at 0.1 m)
    base = ndimage.gaussian_filter(flat, (0.6, 0.6, 0))
    rgb = base * tint[..., None]
    return GroundAlbedo(np.clip(rgb, 0, 1).astype(np.float32), gsd, half)
