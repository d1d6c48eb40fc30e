"""Triangle mesh of a Town, with per-face material, colour and facade frame for per-hit shading.

Coordinates are the town's local grid metres (x east, y north, z up). Per-face attributes:
``material`` (F,) int (town.GROUND, WALL, ...), ``rgb`` (F, 3) float albedo in [0, 1], and ``facade``
(F, 6) float = (origin x, origin y, unit dir x, unit dir y, storey height m, window spacing m) used by the
shader to place windows on WALL faces (zeros elsewhere); a negative storey height means no shop windows on
the ground floor, a window spacing of 0 a blank wall (``Building.shopfront``, ``Building.windows``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import town as T

#: half size of the ground quad (m): far enough that the horizon is ground, not void
GROUND_HALF = 3000.0


@dataclass
class SceneMesh:
    vertices: np.ndarray   # (V, 3) float64
    faces: np.ndarray      # (F, 3) int64
    material: np.ndarray   # (F,) int16
    rgb: np.ndarray        # (F, 3) float32
    facade: np.ndarray     # (F, 6) float32

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

    def tris(self, verts, faces, material, rgb, facade=(0, 0, 0, 0, 0, 0)):
        verts = np.asarray(verts, np.float64)
        faces = np.asarray(faces, np.int64)
        self.v.append(verts)
        self.f.append(faces + self.nv)
        self.nv += len(verts)
        n = len(faces)
        self.mat.append(np.full(n, material, np.int16))
        self.rgb.append(np.tile(np.asarray(rgb, np.float32), (n, 1)))
        self.fac.append(np.tile(np.asarray(facade, np.float32), (n, 1)))

    def quad(self, a, b, c, d, material, rgb, facade=(0, 0, 0, 0, 0, 0)):
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


def _box(bld: _Builder, k: T.Block):
    c = _corners(k.cx, k.cy, k.length, k.width, k.angle)
    z0, z1 = k.z0, k.z0 + k.height
    for i in range(4):
        p, q = c[i], c[(i + 1) % 4]
        bld.quad([*p, z0], [*q, z0], [*q, z1], [*p, z1], k.material, k.rgb)
    bld.quad(*[[*p, z1] for p in c], k.material, k.rgb)


def _window_grid(b: T.Building):
    """(storey height, window spacing) as the shader reads them: signs and zeros carry the facade kind."""
    return (b.floor_h if b.shopfront else -b.floor_h), (b.bay_w if b.windows else 0.0)


def _walls(bld: _Builder, ring: np.ndarray, z0: float, z1: float, b: T.Building):
    """Vertical quads along a counter-clockwise ring (N, 2) (closed, last != first)."""
    n = len(ring)
    for i in range(n):
        p, q = ring[i], ring[(i + 1) % n]
        d = q - p
        L = np.linalg.norm(d)
        if L < 1e-6:
            continue
        fac = (p[0], p[1], d[0] / L, d[1] / L, *_window_grid(b))
        bld.quad([*p, z0], [*q, z0], [*q, z1], [*p, z1], T.WALL, b.wall_rgb, fac)


def _building(bld: _Builder, b: T.Building):
    fp = b.footprint()
    polys = list(getattr(fp, "geoms", [fp]))
    for poly in polys:
        ring = np.asarray(poly.exterior.coords)[:-1, :2]
        if not poly.exterior.is_ccw:
            ring = ring[::-1]
        _walls(bld, ring, 0.0, b.height, b)
    h = b.height
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
            fac = (p[0], p[1], d[0] / np.linalg.norm(d), d[1] / np.linalg.norm(d), *_window_grid(b))
            bld.tris([[*p, h], [*q, h], [*r, top]], [[0, 1, 2]], T.WALL, b.wall_rgb, fac)


_ICO = None


def _unit_sphere():
    global _ICO
    if _ICO is None:
        import trimesh
        s = trimesh.creation.icosphere(subdivisions=2)
        _ICO = (np.asarray(s.vertices), np.asarray(s.faces))
    return _ICO


def _tree(bld: _Builder, t: T.Tree, rng):
    # trunk: hexagonal prism up into the canopy
    r = 0.15 + 0.03 * t.radius
    ang = np.linspace(0, 2 * np.pi, 7)[:-1]
    ring = np.c_[t.x + r * np.cos(ang), t.y + r * np.sin(ang)]
    top = t.trunk_h + t.crown_h * 0.4
    for i in range(6):
        p, q = ring[i], ring[(i + 1) % 6]
        bld.quad([*p, 0.0], [*q, 0.0], [*q, top], [*p, top], T.TRUNK, (0.30, 0.22, 0.15))
    v, f = _unit_sphere()
    # lumpy ellipsoid: radial noise so the outline is not a perfect ellipse
    scale = 1.0 + rng.uniform(-0.18, 0.18, len(v))[:, None]
    verts = v * scale * np.array([t.radius, t.radius, t.crown_h / 2]) + np.array([t.x, t.y, t.trunk_h + t.crown_h / 2])
    bld.tris(verts, f, T.CANOPY, t.rgb)


def build_mesh(town: T.Town) -> SceneMesh:
    """Mesh of the whole town plus a large flat ground quad at z = 0."""
    bld = _Builder()
    g = GROUND_HALF
    bld.quad([-g, -g, 0], [g, -g, 0], [g, g, 0], [-g, g, 0], T.GROUND, (1, 1, 1))
    for b in town.buildings:
        _building(bld, b)
    rng = np.random.default_rng(town.seed + 7)
    for t in town.trees:
        _tree(bld, t, rng)
    for k in town.blocks:
        _box(bld, k)
    return bld.build()
