"""Triangle mesh of a Town, with per-face material, colour and facade frame for per-hit shading.

Coordinates are the town's local grid metres (x east, y north, z up). Per-face attributes:
``material`` (F,) int (town.GROUND, WALL, ...), ``rgb`` (F, 3) float albedo in [0, 1], and ``facade``
(F, 7) float = (origin x, origin y, unit dir x, unit dir y, storey height m, window spacing m, floor z m) used
by the shader to place windows on WALL faces (zeros elsewhere); a negative storey height means no shop windows
on the ground floor, a window spacing of 0 a blank wall (``Building.shopfront``, ``Building.windows``); below
the floor a wall is blank (a plinth).

The ground is a flat quad at z = 0, or the town's terrain triangulated (terrain.py). Every object stands on
it: a building's floor lies halfway between the lowest and the highest ground under its footprint and its
walls reach below the lowest (a plinth downhill, dug in uphill), so no gap shows under it on a slope; trees,
cars, hedges and posts follow the ground under each of their corners; roof units and wall lamps stand on
their building's floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
from shapely.geometry import Point

from . import town as T
from .terrain import GROUND_HALF_M

#: how far a building's walls reach below the lowest ground under it (m): dug in, whatever the slope
BURY_M = 0.3
#: a block starting this high (m) that is no part of a grounded object stands on the building it is on or
#: by (within ``ON_BUILDING_M``): roof units, skylights, wall lamps, signs on facades
RAISED_Z0_M = 0.5
ON_BUILDING_M = 1.0


@dataclass
class SceneMesh:
    vertices: np.ndarray   # (V, 3) float64
    faces: np.ndarray      # (F, 3) int64
    material: np.ndarray   # (F,) int16
    rgb: np.ndarray        # (F, 3) float32
    facade: np.ndarray     # (F, 7) float32

    @property
    def triangles(self) -> np.ndarray:
        """(F, 3, 3) float32 corner positions, as embree wants them."""
        return self.vertices[self.faces].astype(np.float32)

    @property
    def normals(self) -> np.ndarray:
        """(F, 3) float32 unit face normals (right-hand winding)."""
        tri = self.vertices[self.faces]
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        return (n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class _Builder:
    def __init__(self):
        self.v, self.f, self.mat, self.rgb, self.fac = [], [], [], [], []
        self.nv = 0

    def tris(self, verts, faces, material, rgb, facade=(0, 0, 0, 0, 0, 0, 0)):
        verts = np.asarray(verts, np.float64)
        faces = np.asarray(faces, np.int64)
        self.v.append(verts)
        self.f.append(faces + self.nv)
        self.nv += len(verts)
        n = len(faces)
        self.mat.append(np.full(n, material, np.int16))
        self.rgb.append(np.tile(np.asarray(rgb, np.float32), (n, 1)))
        self.fac.append(np.tile(np.asarray(facade, np.float32), (n, 1)))

    def quad(self, a, b, c, d, material, rgb, facade=(0, 0, 0, 0, 0, 0, 0)):
        self.tris([a, b, c, d], [[0, 1, 2], [0, 2, 3]], material, rgb, facade)

    def build(self) -> SceneMesh:
        return SceneMesh(np.concatenate(self.v), np.concatenate(self.f), np.concatenate(self.mat),
                         np.concatenate(self.rgb), np.concatenate(self.fac))


def _corners(cx, cy, length, depth, angle_deg):
    """(4, 2) corners counter-clockwise of an oriented rectangle."""
    a = math.radians(angle_deg)
    u = np.array([math.cos(a), math.sin(a)])
    v = np.array([-math.sin(a), math.cos(a)])
    c = np.array([cx, cy])
    hl, hd = length / 2, depth / 2
    return np.array([c - u * hl - v * hd, c + u * hl - v * hd, c + u * hl + v * hd, c - u * hl + v * hd])


def _box(bld: _Builder, k: T.Block, base):
    """A block lifted by ``base``: the ground height (m) under each corner (4,), or one floor height."""
    c = _corners(k.cx, k.cy, k.length, k.width, k.angle)
    z0, z1 = k.z0 + np.broadcast_to(base, 4), k.z0 + k.height + np.broadcast_to(base, 4)
    for i in range(4):
        j = (i + 1) % 4
        p, q = c[i], c[j]
        bld.quad([*p, z0[i]], [*q, z0[j]], [*q, z1[j]], [*p, z1[i]], k.material, k.rgb)
    bld.quad(*[[*p, z] for p, z in zip(c, z1)], k.material, k.rgb)


def _window_grid(b: T.Building):
    """(storey height, window spacing) as the shader reads them: signs and zeros carry the facade kind."""
    return (b.floor_h if b.shopfront else -b.floor_h), (b.bay_w if b.windows else 0.0)


def _walls(bld: _Builder, ring: np.ndarray, z0: float, z1: float, floor: float, b: T.Building):
    """Vertical quads from ``z0`` to ``z1`` along a counter-clockwise ring (N, 2) (closed, last != first),
    windows counted from ``floor`` (all heights m)."""
    n = len(ring)
    for i in range(n):
        p, q = ring[i], ring[(i + 1) % n]
        d = q - p
        L = np.linalg.norm(d)
        if L < 1e-6:
            continue
        fac = (p[0], p[1], d[0] / L, d[1] / L, *_window_grid(b), floor)
        bld.quad([*p, z0], [*q, z0], [*q, z1], [*p, z1], T.WALL, b.wall_rgb, fac)


def _footing(town: T.Town, b: T.Building) -> Tuple[float, float]:
    """(bottom of the walls, floor) heights (m) of a building: (0, 0) on flat ground; on a slope the floor
    halfway between the lowest and highest ground under the footprint, the walls from ``BURY_M`` below the
    lowest."""
    if town.terrain is None:
        return 0.0, 0.0
    lo, hi = town.terrain.extremes(b.rects)
    return lo - BURY_M, (lo + hi) / 2


def _building(bld: _Builder, b: T.Building, bottom: float, floor: float):
    fp = b.footprint()
    polys = list(getattr(fp, "geoms", [fp]))
    for poly in polys:
        ring = np.asarray(poly.exterior.coords)[:-1, :2]
        if not poly.exterior.is_ccw:
            ring = ring[::-1]
        _walls(bld, ring, bottom, floor + b.height, floor, b)
    h = floor + b.height
    if b.roof == "flat":
        # the roof is the union of the rects; overlapping coplanar tops of the same material are harmless
        for r in b.rects:
            c = _corners(*r)
            bld.quad(*[[*p, h] for p in c], T.ROOF, b.roof_rgb)
        return
    cx, cy, L, D, ang = b.rects[0]
    c = _corners(cx, cy, L, D, ang)  # c0 c1 along the length at -depth side, c2 c3 at +depth side
    a = math.radians(ang)
    u = np.array([math.cos(a), math.sin(a)])
    top = h + b.roof_rise
    inset = D / 2 if b.roof == "hip" else 0.0
    mid0 = (c[0] + c[3]) / 2 + u * inset
    mid1 = (c[1] + c[2]) / 2 - u * inset
    r0, r1 = [*mid0, top], [*mid1, top]
    e = [[*p, h] for p in c]
    bld.quad(e[0], e[1], r1, r0, T.ROOF, b.roof_rgb)       # slope facing -depth
    bld.quad(e[2], e[3], r0, r1, T.ROOF, b.roof_rgb)       # slope facing +depth
    if b.roof == "hip":
        bld.tris([e[1], e[2], r1], [[0, 1, 2]], T.ROOF, b.roof_rgb)
        bld.tris([e[3], e[0], r0], [[0, 1, 2]], T.ROOF, b.roof_rgb)
    else:  # gable ends are wall
        for p, q, r in ((c[1], c[2], mid1), (c[3], c[0], mid0)):
            d = q - p
            fac = (p[0], p[1], d[0] / np.linalg.norm(d), d[1] / np.linalg.norm(d), *_window_grid(b), floor)
            bld.tris([[*p, h], [*q, h], [*r, top]], [[0, 1, 2]], T.WALL, b.wall_rgb, fac)


_ICO = None


def _unit_sphere():
    global _ICO
    if _ICO is None:
        import trimesh
        s = trimesh.creation.icosphere(subdivisions=2)
        _ICO = (np.asarray(s.vertices), np.asarray(s.faces))
    return _ICO


def _tree(bld: _Builder, t: T.Tree, rng, town: T.Town):
    # trunk: hexagonal prism up into the canopy, its foot on the ground under each edge
    r = 0.15 + 0.03 * t.radius
    ang = np.linspace(0, 2 * np.pi, 7)[:-1]
    ring = np.c_[t.x + r * np.cos(ang), t.y + r * np.sin(ang)]
    foot = town.ground_height(ring[:, 0], ring[:, 1])
    g = float(town.ground_height(t.x, t.y))
    top = g + t.trunk_h + t.crown_h * 0.4
    for i in range(6):
        j = (i + 1) % 6
        p, q = ring[i], ring[j]
        bld.quad([*p, foot[i]], [*q, foot[j]], [*q, top], [*p, top], T.TRUNK, (0.30, 0.22, 0.15))
    v, f = _unit_sphere()
    # lumpy ellipsoid: radial noise so the outline is not a perfect ellipse
    scale = 1.0 + rng.uniform(-0.18, 0.18, len(v))[:, None]
    verts = v * scale * np.array([t.radius, t.radius, t.crown_h / 2]) + np.array([t.x, t.y, g + t.trunk_h + t.crown_h / 2])
    bld.tris(verts, f, T.CANOPY, t.rgb)


def _block_bases(town: T.Town, floors: List[float]) -> List[Optional[float]]:
    """Per block: the floor height (m) of the building it stands on (a raised block, ``RAISED_Z0_M`` up and
    no part of a grounded object, on or by a building), or None: it stands on the ground."""
    out: List[Optional[float]] = [None] * len(town.blocks)
    if town.terrain is None or not town.buildings:
        return out
    grounded = {k.group for k in town.blocks if k.group >= 0 and k.z0 < RAISED_Z0_M}
    footprints = [b.footprint() for b in town.buildings]
    bounds = np.array([fp.bounds for fp in footprints]) + np.array([-1, -1, 1, 1]) * ON_BUILDING_M
    for n, k in enumerate(town.blocks):
        if k.z0 < RAISED_Z0_M or k.group in grounded:
            continue
        near = np.nonzero((bounds[:, 0] <= k.cx) & (k.cx <= bounds[:, 2]) & (bounds[:, 1] <= k.cy)
                          & (k.cy <= bounds[:, 3]))[0]
        at = Point(k.cx, k.cy)
        for i in near:
            if footprints[i].distance(at) <= ON_BUILDING_M:
                out[n] = floors[i]
                break
    return out


def build_mesh(town: T.Town) -> SceneMesh:
    """Mesh of the whole town on its ground: a large flat quad at z = 0, or the town's terrain."""
    bld = _Builder()
    if town.terrain is None:
        g = GROUND_HALF_M
        bld.quad([-g, -g, 0], [g, -g, 0], [g, g, 0], [-g, g, 0], T.GROUND, (1, 1, 1))
    else:
        bld.tris(*town.terrain.triangles(), T.GROUND, (1, 1, 1))
    footings = [_footing(town, b) for b in town.buildings]
    for b, (bottom, floor) in zip(town.buildings, footings):
        _building(bld, b, bottom, floor)
    rng = np.random.default_rng(town.seed + 7)
    for t in town.trees:
        _tree(bld, t, rng, town)
    for k, base in zip(town.blocks, _block_bases(town, [floor for _, floor in footings])):
        if base is None:
            c = _corners(k.cx, k.cy, k.length, k.width, k.angle)
            base = town.ground_height(c[:, 0], c[:, 1])
        _box(bld, k, base)
    return bld.build()
