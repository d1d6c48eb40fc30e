"""Kinds of place beyond the three street styles (``town.PLACE_STYLES``): dispatch and shared pieces.

Two are training kinds (``town.TRAIN_PLACE_STYLES``: park.py, campus.py), three are held out of training
(``town.HELDOUT_STYLES``: oldtown.py, village.py, retail.py) and one more out of the heldout preset too
(``town.UNSEEN_STYLES``: alleys.py). Each kind has a module of its own whose
``build(town, rng)`` lays out,
paints and furnishes the town from the town's random stream and returns the open ground where a camera may
stand (lanes, squares, yards, parking lots); ``build_place`` then keeps the cameras clear of obstacles.
Geometry is in the town's local grid metres (x east, y north, z up), as in town.py; materials (ground,
walls, roofs) are drawn per town, so two towns of one kind differ in colour as well as in layout.
"""

from __future__ import annotations

import importlib
import math
from typing import Optional, Sequence, Tuple

import numpy as np
from shapely.geometry import Point
from shapely.ops import unary_union

from . import town as T

RGB = Tuple[float, float, float]


def build_place(town: T.Town, rng) -> None:
    """Fill ``town`` (a kind of place in ``T.PLACE_STYLES``) and set its walkable area."""
    module = importlib.import_module(f".{town.style}", __package__)  # park.py, campus.py, oldtown.py, ...
    open_ground = module.build(town, rng)
    town.walkable = open_ground.difference(town.obstacles().buffer(0.8))


def pick(rng, options: Sequence, weights: Optional[Sequence[float]] = None):
    """One element of ``options`` (optionally weighted)."""
    if weights is None:
        return options[int(rng.integers(len(options)))]
    w = np.asarray(weights, float)
    return options[int(rng.choice(len(options), p=w / w.sum()))]


def tone(rng, rgb: RGB, amount: float = 0.04, shift: float = 0.0) -> RGB:
    """``rgb`` with a random jitter of +-``amount`` per channel (and the variant's palette shift)."""
    return T._jitter_rgb(rng, rgb, amount, shift)


def paint(town: T.Town, geom, rgb: RGB, amp: float, pattern: Optional[T.Pattern] = None) -> None:
    """Append a ground polygon (drawn over what is already painted), optionally with a pattern."""
    if geom is None or geom.is_empty:
        return
    town.paint.append((geom, rgb, amp) if pattern is None else (geom, rgb, amp, pattern))


def frame_point(origin, t, n, a: float, b: float) -> Tuple[float, float]:
    """Point ``a`` metres along the unit vector ``t`` and ``b`` along ``n`` from ``origin`` (2-vectors)."""
    return float(origin[0] + t[0] * a + n[0] * b), float(origin[1] + t[1] * a + n[1] * b)


def pitched(cx, cy, length, depth, angle, eave, pitch_deg, wall: RGB, roof: RGB, floor_h, bay_w,
            shopfront=False, windows=True, shape: str = "gable") -> T.Building:
    """A pitched-roofed building (``shape`` "gable" or "hip"): ridge along ``length``, roof slopes of
    ``pitch_deg`` (rise = depth/2 tan). A hip roof needs ``length >= depth`` (its ridge would vanish)."""
    if shape == "hip" and length < depth:
        raise ValueError(f"a hip roof needs length >= depth, got {length:.1f} < {depth:.1f} m")
    rise = depth / 2 * math.tan(math.radians(pitch_deg))
    return T.Building([(float(cx), float(cy), float(length), float(depth), float(angle))], round(float(eave), 2),
                      shape, float(rise), wall, roof, float(floor_h), float(bay_w), shopfront, windows)


def flat(cx, cy, length, depth, angle, eave, wall: RGB, roof: RGB, floor_h, bay_w, shopfront=True,
         windows=True) -> T.Building:
    """A flat-roofed box building."""
    return T.Building([(float(cx), float(cy), float(length), float(depth), float(angle))], round(float(eave), 2),
                      "flat", 0.0, wall, roof, float(floor_h), float(bay_w), shopfront, windows)


def post(town: T.Town, x, y, height, rgb: RGB, head: Optional[tuple] = None, thick: float = 0.18) -> None:
    """A grounded pole; ``head`` = (z0, length, width, height, angle, rgb) a part on it (lamp, sign, arm)."""
    g = len(town.blocks)
    town.blocks.append(T.Block(float(x), float(y), 0.0, thick, thick, float(height), 0.0, T.POLE, rgb, g))
    if head is not None:
        z0, length, width, h, ang, hrgb = head
        town.blocks.append(T.Block(float(x), float(y), float(z0), length, width, h, float(ang), T.POLE, hrgb, g))


def lamp(town: T.Town, rng, x, y) -> None:
    """Street lamp: 5-8 m pole with a head."""
    h = T._u(rng, (5, 8))
    post(town, x, y, h, (0.3, 0.3, 0.32), (h - 0.3, 0.9, 0.35, 0.3, rng.uniform(0, 180), (0.2, 0.2, 0.22)))


def sign(town: T.Town, rng, x, y) -> None:
    """Road sign: 2.6 m post with a coloured plate."""
    post(town, x, y, 2.6, (0.55, 0.55, 0.57),
         (2.0, 0.7, 0.06, 0.6, rng.uniform(0, 180), pick(rng, [(0.8, 0.1, 0.1), (0.1, 0.3, 0.7), (0.9, 0.9, 0.9)])),
         thick=0.08)


def bench(town: T.Town, x, y, angle, rgb: RGB) -> None:
    """A park bench, 1.8 m along ``angle`` (degrees), seat 0.45 m high with a back rest."""
    g = len(town.blocks)
    a = math.radians(angle)
    bx, by = float(x) - 0.25 * math.sin(a), float(y) + 0.25 * math.cos(a)
    town.blocks.append(T.Block(float(x), float(y), 0.0, 1.8, 0.55, 0.45, float(angle), T.POLE, rgb, g))
    town.blocks.append(T.Block(bx, by, 0.45, 1.8, 0.08, 0.45, float(angle), T.POLE, rgb, g))


#: trees of a park or campus: name -> (trunk height, crown radius, crown height / radius, canopy colour);
#: ranges in metres; the conifers and the columnar poplar are narrow crowns low on the trunk
SPECIES = {
    "oak": ((2.5, 4.0), (3.5, 6.5), (1.0, 1.4), (0.20, 0.31, 0.11)),
    "lime": ((2.5, 3.5), (2.5, 4.5), (1.4, 1.9), (0.25, 0.37, 0.13)),
    "birch": ((2.0, 3.5), (1.5, 2.6), (1.8, 2.6), (0.33, 0.44, 0.17)),
    "copper beech": ((2.5, 3.5), (3.0, 5.5), (1.1, 1.5), (0.33, 0.17, 0.15)),
    "maple": ((2.0, 3.0), (2.0, 3.5), (1.1, 1.5), (0.30, 0.40, 0.12)),
    "spruce": ((0.4, 1.2), (1.6, 2.8), (3.2, 4.5), (0.10, 0.20, 0.12)),
    "pine": ((3.5, 6.0), (1.8, 3.0), (1.2, 1.8), (0.16, 0.24, 0.12)),
    "poplar": ((1.0, 2.0), (1.0, 1.7), (6.0, 9.0), (0.22, 0.34, 0.12)),
}


def plant(town: T.Town, rng, x, y, species: str, size: float = 1.0) -> None:
    """A tree of ``species`` (``SPECIES``) at (x, y), its crown scaled by ``size`` (young trees < 1)."""
    trunk, radius, ratio, rgb = SPECIES[species]
    r = T._u(rng, radius) * size
    town.trees.append(T.Tree(float(x), float(y), T._u(rng, trunk) * max(size, 0.6), r, r * T._u(rng, ratio),
                             tone(rng, rgb, 0.03)))


def block_edges(ring: np.ndarray, min_length: float):
    """The edges of a counter-clockwise ring (N, 2) at least ``min_length`` m long, as (a, t, nrm, L, angle):
    start point (2,), unit direction (2,), unit normal into the ring (2,), length (m), direction (degrees)."""
    for a, b in zip(ring[:-1], ring[1:]):
        L = float(np.hypot(*(b - a)))
        if L < min_length:
            continue
        t = (b - a) / L
        yield a, t, np.array([-t[1], t[0]]), L, math.degrees(math.atan2(t[1], t[0]))


def main_angle(ring: np.ndarray) -> float:
    """Direction (degrees) of the longest edge of a closed ring (N, 2)."""
    d = np.diff(ring, axis=0)
    k = int(np.argmax(np.hypot(d[:, 0], d[:, 1])))
    return math.degrees(math.atan2(d[k, 1], d[k, 0]))


def points_inside(rng, area, tries: int):
    """Points drawn uniformly in ``area``'s bounds (x then y, one pair per try), ``tries`` times; yields those
    inside ``area`` (nothing when it is empty). Callers may draw from ``rng`` between the points."""
    if area.is_empty:
        return
    x0, y0, x1, y1 = area.bounds
    for _ in range(tries):
        q = Point(rng.uniform(x0, x1), rng.uniform(y0, y1))
        if area.contains(q):
            yield q


def scatter_rects(rng, room, bounds, tries: int, length, depth, angle: float, gap: float):
    """Rectangles of ``length`` x ``depth`` (ranges, m) turned by ``angle`` (degrees), centred uniformly in
    ``bounds`` (x0, y0, x1, y1), ``tries`` times; yields (x, y, L, D) of those that lie inside ``room`` and
    more than ``gap`` m from the ones yielded before. Callers may draw from ``rng`` between them."""
    x0, y0, x1, y1 = bounds
    placed = []
    for _ in range(tries):
        L, D = T._u(rng, length), T._u(rng, depth)
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        fp = T._rect(x, y, L, D, angle)
        if not room.contains(fp) or any(fp.buffer(gap).intersects(q) for q in placed):
            continue
        placed.append(fp)
        yield x, y, L, D


def drop_objects_in(town: T.Town, area) -> None:
    """Remove objects whose grounded part stands in ``area`` (a whole lamp or car, never half) and trees."""
    if area is None or area.is_empty:
        return
    gone = [k.z0 < 0.5 and area.contains(Point(k.cx, k.cy)) for k in town.blocks]
    groups = {k.group for k, d in zip(town.blocks, gone) if d and k.group >= 0}
    town.blocks = [k for k, d in zip(town.blocks, gone) if not d and (k.group < 0 or k.group not in groups)]
    town.trees = [t for t in town.trees if not area.contains(Point(t.x, t.y))]


def footprints(town: T.Town):
    """Union of the building footprints (m)."""
    return unary_union([b.footprint() for b in town.buildings]) if town.buildings else Point(0, 0).buffer(0)
