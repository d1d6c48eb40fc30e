"""Terrain of a town: a smooth height field, triangulated on a grid, that the ground and every object stand on.

Real towns climb: historic centres sit on hills, villages on slopes, streets have grades of 2-12 % (15 %
locally). The field is a sum of a few broad bumps and hollows (Gaussians of 50-250 m; the widest, centred
beyond the town, act as ramps across it), scaled to a total relief drawn from ``RELIEF_M`` over the town
square, with its steepest grade at most a value drawn from ``MAX_GRADE`` anywhere (so most streets stay under
10 %), and faded out to flat ground at z = 0 beyond the town, so the far ground and the horizon stay a plane.

The field is stored as heights on a rectilinear grid (``FINE_CELL_M`` cells over the town and
``FINE_MARGIN_M`` around it, where every object stands; ``COARSE_CELL_M`` cells across the fade; one ring of
cells out to the far ground's edge), each cell split into two triangles along its (0, 0)-(1, 1) diagonal.
`Terrain.height` interpolates on those very triangles, so an object or a camera placed with it stands exactly
on the ground that is rendered.

Frame: the town's local grid metres (x east, y north, z up).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Tuple

import numpy as np

#: total relief (max - min height, metres) over the town square, drawn per town
RELIEF_M = (0.0, 25.0)
#: the steepest grade (rise over run) anywhere, drawn per town: the field is scaled down to keep under it
MAX_GRADE = (0.08, 0.15)
#: number of bumps and hollows, and their Gaussian widths (metres)
N_BUMPS = (2, 5)
BUMP_SIGMA_M = (50.0, 250.0)
#: cells where objects stand (metres), how far beyond the town square they reach, then the fade to flat
FINE_CELL_M = 2.0
FINE_MARGIN_M = 100.0
COARSE_CELL_M = 10.0
FADE_M = 400.0
#: half side of the ground (metres): far enough that the horizon is ground, not void
GROUND_HALF_M = 3000.0
#: the stream of the terrain's draws: the town seed plus this, so no other draw of the town shifts
SEED_OFFSET = 606


@dataclass(frozen=True)
class Terrain:
    """Heights ``z`` (Ny, Nx) metres at the nodes ``xs`` (Nx,), ``ys`` (Ny,) (increasing, metres); zero on the
    grid's outer edge, which lies at the far ground's edge."""

    xs: np.ndarray
    ys: np.ndarray
    z: np.ndarray

    def height(self, x, y) -> np.ndarray:
        """Ground height (metres) under local points x, y (any equal shapes), on the rendered triangles; 0
        outside the grid."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        j = np.clip(np.searchsorted(self.xs, x, side="right") - 1, 0, len(self.xs) - 2)
        i = np.clip(np.searchsorted(self.ys, y, side="right") - 1, 0, len(self.ys) - 2)
        fx = np.clip((x - self.xs[j]) / (self.xs[j + 1] - self.xs[j]), 0.0, 1.0)
        fy = np.clip((y - self.ys[i]) / (self.ys[i + 1] - self.ys[i]), 0.0, 1.0)
        z00, z01, z10, z11 = self.z[i, j], self.z[i, j + 1], self.z[i + 1, j], self.z[i + 1, j + 1]
        # lower triangle (fx >= fy): corners (0,0), (1,0), (1,1); upper: (0,0), (1,1), (0,1)
        h = np.where(fx >= fy, z00 + fx * (z01 - z00) + fy * (z11 - z01),
                     z00 + fy * (z10 - z00) + fx * (z11 - z10))
        outside = (x < self.xs[0]) | (x > self.xs[-1]) | (y < self.ys[0]) | (y > self.ys[-1])
        return np.where(outside, 0.0, h)

    def triangles(self) -> Tuple[np.ndarray, np.ndarray]:
        """(vertices (Ny * Nx, 3) metres, faces (2 (Ny - 1) (Nx - 1), 3) int64), wound counter-clockwise seen
        from above (normals up)."""
        X, Y = np.meshgrid(self.xs, self.ys)
        verts = np.stack([X, Y, self.z], -1).reshape(-1, 3)
        nx = len(self.xs)
        v00 = (np.arange(len(self.ys) - 1)[:, None] * nx + np.arange(nx - 1)[None, :]).ravel()
        v01, v10, v11 = v00 + 1, v00 + nx, v00 + nx + 1
        faces = np.concatenate([np.stack([v00, v01, v11], -1), np.stack([v00, v11, v10], -1)])
        return verts, faces

    def extremes(self, rects: Sequence[Tuple[float, float, float, float, float]]) -> Tuple[float, float]:
        """(lowest, highest) ground height (metres) over the union of oriented rectangles (cx, cy, length,
        depth, angle_deg), sampled at most a quarter of a fine cell apart (within 2 cm of exact at 15 %)."""
        step = FINE_CELL_M / 4
        zs = []
        for cx, cy, length, depth, angle in rects:
            u = np.linspace(-length / 2, length / 2, int(np.ceil(length / step)) + 1)
            v = np.linspace(-depth / 2, depth / 2, int(np.ceil(depth / step)) + 1)
            U, V = np.meshgrid(u, v)
            a = np.radians(angle)
            zs.append(self.height(cx + U * np.cos(a) - V * np.sin(a), cy + U * np.sin(a) + V * np.cos(a)).ravel())
        z = np.concatenate(zs)
        return float(z.min()), float(z.max())


def _nodes(size_m: float, far_m: float) -> np.ndarray:
    """(N,) increasing node coordinates of one axis: fine cells, then coarse ones, then the far edge."""
    fine = size_m / 2 + FINE_MARGIN_M
    inner = np.arange(0.0, fine + 1e-9, FINE_CELL_M)
    outer = np.arange(inner[-1] + COARSE_CELL_M, fine + FADE_M + 1e-9, COARSE_CELL_M)
    half = np.concatenate([inner, outer, [far_m]])
    return np.concatenate([-half[:0:-1], half])


def _fade(xs: np.ndarray, ys: np.ndarray, start_m: float, end_m: float) -> np.ndarray:
    """(Ny, Nx) weight 1 inside the square of half side ``start_m``, 0 beyond ``end_m``, smoothstep between."""
    d = np.maximum(np.abs(xs)[None, :], np.abs(ys)[:, None])
    t = np.clip((d - start_m) / (end_m - start_m), 0.0, 1.0)
    return 1.0 - t * t * (3.0 - 2.0 * t)


def _max_grade(xs: np.ndarray, ys: np.ndarray, z: np.ndarray) -> float:
    """Steepest slope (rise over run) of the grid's triangles."""
    dzx = np.diff(z, axis=1) / np.diff(xs)[None, :]
    dzy = np.diff(z, axis=0) / np.diff(ys)[:, None]
    # a triangle's gradient pairs one x step with one y step of the same cell
    g1 = np.hypot(dzx[:-1], dzy[:, 1:])   # lower triangle: bottom edge in x, right edge in y
    g2 = np.hypot(dzx[1:], dzy[:, :-1])   # upper triangle: top edge in x, left edge in y
    return float(max(g1.max(), g2.max()))


def make_terrain(seed: int, size_m: float) -> Terrain:
    """The terrain of a town of side ``size_m`` (metres) with the town's ``seed`` (the terrain draws from
    ``seed + SEED_OFFSET``); the grid reaches the far ground's edge, ``GROUND_HALF_M``."""
    rng = np.random.default_rng(seed + SEED_OFFSET)
    relief, max_grade = float(rng.uniform(*RELIEF_M)), float(rng.uniform(*MAX_GRADE))
    n = int(rng.integers(N_BUMPS[0], N_BUMPS[1] + 1))
    reach = size_m / 2 + FINE_MARGIN_M
    centres = rng.uniform(-reach, reach, (n, 2))
    sigmas = rng.uniform(*BUMP_SIGMA_M, n)
    amps = rng.uniform(0.3, 1.0, n) * rng.choice([-1.0, 1.0], n)
    xs = ys = _nodes(size_m, GROUND_HALF_M)
    X, Y = np.meshgrid(xs, ys)
    z = np.zeros_like(X)
    for (cx, cy), s, a in zip(centres, sigmas, amps):
        z += a * np.exp(-((X - cx) ** 2 + (Y - cy) ** 2) / (2 * s * s))
    town = (np.abs(X) <= size_m / 2) & (np.abs(Y) <= size_m / 2)
    z = (z - z[town].mean()) * _fade(xs, ys, reach, reach + FADE_M)
    span = float(z[town].max() - z[town].min())
    grade = _max_grade(xs, ys, z)
    scale = min(relief / span, max_grade / grade) if span > 0 and grade > 0 else 0.0
    return Terrain(xs, ys, z * scale)
