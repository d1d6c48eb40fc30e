"""Kind of place "park": a city park and the streets around it (places.py builds it through ``build``).

- **Park**: a rotated rectangle of ``params.block`` (110-165 m a side, at most 70 % of the town) near the
  centre. Main paths (3.5-5 m, asphalt or gravel) curve from entrances on its sides to a hub near the middle,
  a narrower gravel loop (2.5-3.5 m) circles the hub, sometimes another path rings the pond.
- **Water**: a pond (an irregular blob of 10-22 m radius) and/or a fountain (a round paved plaza with a
  basin, its rim and a column) at the hub; at least one of the two.
- **Lawns** everywhere else, half of them mown in stripes; **tree groups** of one species each (broadleaf
  crowns: oak, lime, birch, copper beech, maple; conifers: spruce, pine; columnar poplars; one group per
  900 m² of lawn) and solitary trees, sizes drawn per tree, an avenue along one main path in some parks.
- **Playground**: a fenced sand or rubber surface of 14-24 x 10-16 m with swings, a slide tower, a
  climbing frame, spring riders.
- A **hedge** along the park's edge (gaps at the entrances) in most parks; benches and 3.5-4.5 m lamps
  along the paths.
- **Streets** on all four sides (``params.road_width``, sidewalks of ``params.sidewalk``, the street markings,
  lamps, signs, street trees and parked cars of town.py) and a street grid of 45-70 m blocks beyond; the
  blocks have rows of mixed buildings (flat, gable and hip roofs; ``params.height`` to the eaves, pitched
  ones at most 14 m) along their streets with gaps between some, and gardens with trees behind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
from shapely import affinity
from shapely.geometry import LineString, Point, Polygon, box
from shapely.ops import unary_union

from . import places as P
from . import town as T

GRAVEL = [(0.70, 0.66, 0.58), (0.62, 0.58, 0.50), (0.76, 0.70, 0.60), (0.58, 0.56, 0.54)]
WATER = [(0.16, 0.24, 0.24), (0.20, 0.30, 0.28), (0.14, 0.22, 0.30), (0.24, 0.30, 0.22)]
PLAY_SURFACES = [(0.80, 0.72, 0.54), (0.62, 0.26, 0.20), (0.26, 0.46, 0.32), (0.30, 0.42, 0.60)]
PLAY_COLOURS = [(0.85, 0.15, 0.10), (0.95, 0.75, 0.10), (0.10, 0.45, 0.75), (0.20, 0.60, 0.25), (0.60, 0.45, 0.30)]


@dataclass
class Materials:
    """Colours of one park and its streets (drawn per town)."""
    lawn: T.Tuple
    stripes: bool                       # lawns mown in stripes (some of them)
    main_path: T.Tuple
    loop_path: T.Tuple
    plaza: T.Tuple
    water: T.Tuple
    play: T.Tuple
    yard: T.Tuple
    hedge: T.Tuple
    bench: T.Tuple
    walls: List[T.Tuple]
    pitched_roofs: List[T.Tuple]
    flat_roofs: List[T.Tuple]
    species: List[str]                  # the park's tree species


def _materials(rng, shift: float) -> Materials:
    """Lawn green, path surfaces (asphalt or gravel), pond water, playground surface, walls and roofs of the
    buildings around, and the 4-6 tree species the park is planted with."""
    walls = [P.tone(rng, T.WALL_COLOURS[i], 0.05, shift) for i in rng.choice(len(T.WALL_COLOURS), 5, replace=False)]
    gravel = P.tone(rng, P.pick(rng, GRAVEL), 0.03)
    return Materials(
        lawn=P.tone(rng, (0.32, 0.46, 0.20), 0.04), stripes=bool(rng.random() < 0.6),
        main_path=P.tone(rng, T.ASPHALT, 0.03) if rng.random() < 0.5 else gravel, loop_path=gravel,
        plaza=P.tone(rng, T.PAVING, 0.05), water=P.tone(rng, P.pick(rng, WATER), 0.03),
        play=P.tone(rng, P.pick(rng, PLAY_SURFACES), 0.03), yard=P.tone(rng, (0.50, 0.49, 0.45), 0.05),
        hedge=P.tone(rng, (0.15, 0.29, 0.11), 0.03), bench=P.tone(rng, P.pick(rng, [(0.45, 0.32, 0.20),
                                                                                  (0.20, 0.30, 0.22)]), 0.03),
        walls=walls, pitched_roofs=[P.tone(rng, c, 0.04) for c in T.PITCHED_ROOFS],
        flat_roofs=[P.tone(rng, c, 0.03) for c in T.FLAT_ROOFS],
        species=[str(s) for s in rng.choice(list(P.SPECIES), int(rng.integers(4, 7)), replace=False)])


@dataclass
class Frame:
    """The park's frame: local (u, v) metres along and across it, rotated by ``angle`` about the town's
    origin and shifted to ``centre``."""
    angle: float
    centre: Tuple[float, float]

    def geom(self, g):
        return affinity.translate(affinity.rotate(g, self.angle, origin=(0, 0)), *self.centre)

    def local(self, g):
        return affinity.rotate(affinity.translate(g, -self.centre[0], -self.centre[1]), -self.angle, origin=(0, 0))

    def xy(self, u, v) -> Tuple[float, float]:
        x, y = T._rot(u, v, self.angle)
        return x + self.centre[0], y + self.centre[1]


def build(town: T.Town, rng):
    """Lay out, paint and furnish a park and its streets; returns the open ground where cameras may stand."""
    p, half = town.params, town.size_m / 2
    mat = _materials(rng, p.palette_shift)
    town.base_rgb = mat.yard
    fr = Frame(T._u(rng, p.grid_angle), tuple(float(v) for v in rng.uniform(-10, 10, 2)))
    L = min(T._u(rng, p.block), 0.7 * town.size_m)
    D = L * T._u(rng, (0.75, 1.0))
    town.roads = _streets(rng, p, fr, L, D, half)
    streets = unary_union([r.line.buffer(r.width / 2 + r.sidewalk) for r in town.roads])
    park = fr.geom(box(-L / 2, -D / 2, L / 2, D / 2))
    area = box(-half - 30, -half - 30, half + 30, half + 30).difference(streets).difference(park.buffer(1.0))
    for blk in getattr(area, "geoms", [area]):
        if blk.area > 200:
            _frontage(town, rng, mat, blk, fr)
    open_ground = _park(town, rng, mat, fr, L, D)
    T._paint_roads(town, rng)
    T._street_furniture(town, rng)
    walk = [r.line.buffer(r.width / 2 + r.sidewalk - 0.3) for r in town.roads]
    return unary_union(walk + [open_ground])


# ------------------------------------------------------------------------------------------------ layout
def _streets(rng, p: T.StyleParams, fr: Frame, L: float, D: float, half: float) -> List[T.Road]:
    """A street along each side of the park, and more beyond, 45-70 m apart, out past the town's edge."""
    ext = half * 1.8
    roads = []
    for axis, size in ((0, L), (1, D)):
        for sgn in (-1, 1):
            width, walk = round(T._u(rng, p.road_width), 1), round(T._u(rng, p.sidewalk), 1)
            pos = sgn * (size / 2 + walk + width / 2)
            while abs(pos) < ext:
                a, b = ((pos, -ext), (pos, ext)) if axis == 0 else ((-ext, pos), (ext, pos))
                roads.append(T.Road(fr.geom(LineString([a, b])), width, walk))
                pos += sgn * T._u(rng, (45.0, 70.0))
                width, walk = round(T._u(rng, p.road_width), 1), round(T._u(rng, p.sidewalk), 1)
    return roads


def _frontage(town: T.Town, rng, mat: Materials, blk: Polygon, fr: Frame) -> None:
    """Rows of mixed buildings along the streets of one block (in the park's frame), gardens behind."""
    P.paint(town, blk, mat.yard, 0.08)
    u0, v0, u1, v1 = fr.local(blk).bounds
    dmax = min(15.0, (v1 - v0) / 2 - 1, (u1 - u0) / 2 - 1)
    if dmax < 8.0:
        return
    inside = blk.buffer(0.05)
    # (start, end, fixed coordinate, inward sign, along u?): south and north rows run the whole side
    rows = [(u0, u1, v0, 1, True), (u0, u1, v1, -1, True), (v0 + dmax, v1 - dmax, u0, 1, False),
            (v0 + dmax, v1 - dmax, u1, -1, False)]
    for a, b, fixed, sgn, along_u in rows:
        pos = a + rng.uniform(0, 3)
        while pos < b - 8:
            w = min(T._u(rng, (9.0, 22.0)), b - pos)
            d = T._u(rng, (8.0, dmax))
            back = fixed + sgn * (T._u(rng, (0.0, 3.0)) + d / 2)
            cu, cv = (pos + w / 2, back) if along_u else (back, pos + w / 2)
            ang = fr.angle if along_u else fr.angle + 90
            b_ = _building(rng, mat, town.params, *fr.xy(cu, cv), w, d, ang)
            if w >= 8 and inside.contains(b_.footprint()):
                town.buildings.append(b_)
            pos += w + (T._u(rng, (2.0, 7.0)) if rng.random() < 0.35 else 0.05)
    garden = fr.geom(box(u0, v0, u1, v1).buffer(-dmax - 4)).intersection(blk)
    if not garden.is_empty and garden.area > 40:
        P.paint(town, garden, P.tone(rng, mat.lawn, 0.03), 0.12)
        for _ in range(int(garden.area / 150)):
            x0, y0, x1, y1 = garden.bounds
            q = Point(rng.uniform(x0, x1), rng.uniform(y0, y1))
            if garden.buffer(-2.5).contains(q):
                P.plant(town, rng, q.x, q.y, P.pick(rng, mat.species), T._u(rng, (0.6, 1.0)))


def _building(rng, mat: Materials, p: T.StyleParams, x, y, w, d, ang) -> T.Building:
    """One building of a row, frontage ``w`` along ``ang``, depth ``d``: flat roof (40 %), gable or hip."""
    shape = P.pick(rng, ["flat", "gable", "hip"], [0.4, 0.3, 0.3])
    eave = T._u(rng, p.height)
    wall = T._jitter_rgb(rng, P.pick(rng, mat.walls), 0.04)
    bay = T._u(rng, (2.2, 3.4))
    if shape == "flat":
        return P.flat(x, y, w, d, ang, eave, wall, P.pick(rng, mat.flat_roofs), eave / max(round(eave / 3.2), 1), bay,
                      rng.random() < 0.5)
    eave = min(eave, 14.0)
    floor_h = eave / max(round(eave / 3.0), 1)
    if w < d:  # the ridge runs along the longer side
        w, d, ang = d, w, ang + 90
    return P.pitched(x, y, w, d, ang, eave, T._u(rng, (25.0, 45.0)), wall, P.pick(rng, mat.pitched_roofs), floor_h,
                     bay, rng.random() < 0.3, shape=shape)


def _curve(a, b, bend: float, n: int = 24) -> LineString:
    """A quadratic curve from ``a`` to ``b`` (2-vectors) bowed sideways by ``bend`` x their distance."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = b - a
    c = (a + b) / 2 + np.array([-d[1], d[0]]) * bend
    t = np.linspace(0, 1, n)[:, None]
    return LineString((1 - t) ** 2 * a + 2 * t * (1 - t) * c + t ** 2 * b)


def _blob(rng, centre, radius: float, n: int = 48) -> Polygon:
    """An irregular round shape: ``radius`` (m) modulated by three low harmonics."""
    th = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.full(n, radius)
    for k in (2, 3, 4):
        r *= 1 + rng.uniform(0.03, 0.16) * np.cos(k * th + rng.uniform(0, 2 * np.pi))
    return Polygon(np.c_[centre[0] + r * np.cos(th), centre[1] + r * np.sin(th)])


def _entrances(rng, L: float, D: float) -> List[Tuple[float, float]]:
    """1-2 entrances on each side of the park (local frame), at least four in all."""
    out = []
    for axis, sgn in ((0, -1), (0, 1), (1, -1), (1, 1)):
        for _ in range(1 + int(rng.random() < 0.4)):
            s = rng.uniform(-0.35, 0.35)
            out.append((sgn * L / 2, s * D) if axis == 0 else (s * L, sgn * D / 2))
    return out


def _park(town: T.Town, rng, mat: Materials, fr: Frame, L: float, D: float):
    """Paths, water, playground, lawns, trees, hedge, benches and lamps; returns the paths and plazas."""
    inner = box(-L / 2, -D / 2, L / 2, D / 2)
    hub = rng.uniform(-0.12, 0.12, 2) * (L, D)
    pond = Polygon()
    if rng.random() < 0.65:
        ang = rng.uniform(0, 2 * np.pi)
        c = hub + 0.28 * np.array([L * math.cos(ang), D * math.sin(ang)])
        pond = _blob(rng, c, T._u(rng, (10.0, min(22.0, 0.17 * min(L, D))))).intersection(inner.buffer(-10))
    fountain = pond.is_empty or rng.random() < 0.5
    plaza = Point(*hub).buffer(T._u(rng, (7.0, 12.0))) if fountain else Polygon()
    entrances = _entrances(rng, L, D)
    main = [_curve(e, hub, rng.uniform(0.08, 0.3) * P.pick(rng, [-1, 1])) for e in entrances]
    loop = _blob(rng, hub, 0.33 * min(L, D)).exterior
    w_main, w_loop = T._u(rng, (3.5, 5.0)), T._u(rng, (2.5, 3.5))
    lines = [(m, w_main, mat.main_path) for m in main] + [(loop, w_loop, mat.loop_path)]
    if not pond.is_empty and rng.random() < 0.6:
        lines.append((pond.buffer(T._u(rng, (3.0, 5.0))).exterior, w_loop, mat.loop_path))
    keep_out = pond.buffer(1.0)
    paths = [(g.difference(keep_out).intersection(inner), w, rgb) for g, w, rgb in lines]
    path_area = unary_union([g.buffer(w / 2) for g, w, _ in paths]).intersection(inner).difference(keep_out)
    playground = _playground_site(rng, L, D, unary_union([path_area, pond, plaza]))
    lawn = inner.difference(path_area).difference(pond).difference(plaza).difference(playground)

    P.paint(town, fr.geom(inner), mat.lawn, 0.12)
    _mow(town, rng, mat, fr, lawn)
    for g, w, rgb in paths:
        P.paint(town, fr.geom(g.buffer(w / 2).intersection(inner)), rgb, 0.1)
    P.paint(town, fr.geom(pond), mat.water, 0.03)
    P.paint(town, fr.geom(pond.exterior.buffer(0.4)) if not pond.is_empty else None, T.KERB, 0.05)
    if fountain:
        _fountain(town, rng, mat, fr, hub, plaza)
    if not playground.is_empty:
        _playground(town, rng, mat, fr, playground)
    _trees(town, rng, mat, fr, lawn, main if rng.random() < 0.4 else [])
    if rng.random() < 0.7:
        _edge_hedge(town, rng, mat, fr, L, D, entrances)
    _path_furniture(town, rng, mat, fr, paths, unary_union([pond.buffer(1.0), playground.buffer(0.5), plaza]))
    walk = fr.geom(unary_union([path_area, plaza]))
    town.features.update(park=fr.geom(inner), park_m2=round(L * D), paths=len(paths), pond=int(not pond.is_empty),
                         fountain=int(fountain), playground_m2=round(playground.area), species=len(mat.species))
    return walk


def _playground_site(rng, L: float, D: float, taken) -> Polygon:
    """A 14-24 x 10-16 m rectangle in a lawn, 3.5 m inside the park's edge (clear of its hedge), 2 m clear
    of paths and water and within 12 m of a path (or, after 40 tries, anywhere in a lawn); empty if none fits."""
    for k in range(160):
        w, h = T._u(rng, (14.0, 24.0)), T._u(rng, (10.0, 16.0))
        u = rng.uniform(-L / 2 + 3.5 + w / 2, L / 2 - 3.5 - w / 2)
        v = rng.uniform(-D / 2 + 3.5 + h / 2, D / 2 - 3.5 - h / 2)
        site = box(u - w / 2, v - h / 2, u + w / 2, v + h / 2)
        if not site.buffer(2.0).intersects(taken) and (k >= 40 or site.distance(taken) < 12.0):
            return site
    return Polygon()


# -------------------------------------------------------------------------------------------- planting
def _mow(town: T.Town, rng, mat: Materials, fr: Frame, lawn) -> None:
    """Mowing stripes (2-5 m, light and dark) on about half of the larger lawns of a striped park."""
    if not mat.stripes:
        return
    for piece in getattr(lawn, "geoms", [lawn]):
        if piece.area > 300 and rng.random() < 0.5:
            dark = tuple(0.86 * c for c in mat.lawn)
            P.paint(town, fr.geom(piece), mat.lawn, 0.08,
                    T.Pattern("stripes", fr.angle + float(P.pick(rng, [0.0, 90.0, 45.0])), T._u(rng, (2.0, 5.0)),
                              0.5, dark))


def _trees(town: T.Town, rng, mat: Materials, fr: Frame, lawn, avenue: List[LineString]) -> None:
    """Tree groups of one species (3-9 trees, 6-14 m across; one group per 900 m² of lawn), 4-11 solitary
    trees, an avenue along one main path."""
    room = lawn.buffer(-2.5)
    if room.is_empty:
        return
    x0, y0, x1, y1 = room.bounds
    planted: List[Tuple[float, float]] = []

    def put(u, v, species, size):
        if room.contains(Point(u, v)) and all(math.hypot(u - a, v - b) > 3.0 for a, b in planted):
            planted.append((u, v))
            P.plant(town, rng, *fr.xy(u, v), species, size)

    for _ in range(max(3, int(lawn.area / 900))):
        c = (rng.uniform(x0, x1), rng.uniform(y0, y1))
        species, spread = P.pick(rng, mat.species), T._u(rng, (6.0, 14.0))
        for _ in range(int(rng.integers(3, 10))):
            put(c[0] + rng.normal(0, spread / 2), c[1] + rng.normal(0, spread / 2), species, T._u(rng, (0.6, 1.1)))
    for _ in range(int(rng.integers(4, 12))):
        put(rng.uniform(x0, x1), rng.uniform(y0, y1), P.pick(rng, ["oak", "copper beech", "lime"]), T._u(rng, (1.0, 1.25)))
    for line in avenue[:1]:
        species, step = P.pick(rng, ["lime", "oak", "maple", "poplar"]), T._u(rng, (8.0, 12.0))
        for side in (-1, 1):
            edge = T.side_line(line, 4.5, side)
            for s in np.arange(4.0, edge.length - 4.0, step) if edge is not None else []:
                q = edge.interpolate(s)
                put(q.x, q.y, species, 1.0)


def _edge_hedge(town: T.Town, rng, mat: Materials, fr: Frame, L: float, D: float, entrances) -> None:
    """A hedge 1.5 m inside the park's edge, open for 7 m at each entrance and at the corners."""
    wide, high = T._u(rng, (0.8, 1.3)), T._u(rng, (0.9, 1.8))
    for axis, sgn in ((0, -1), (0, 1), (1, -1), (1, 1)):
        size = D if axis == 0 else L
        fixed = sgn * ((L if axis == 0 else D) / 2 - 1.5)
        gaps = sorted(e[1 - axis] for e in entrances if abs(e[axis] - sgn * (L if axis == 0 else D) / 2) < 1e-6)
        cuts = [-size / 2 + 3.0] + [g for g in gaps for _ in (0, 1)] + [size / 2 - 3.0]
        for a, b in zip(cuts[0::2], cuts[1::2]):
            a, b = a + (3.5 if a in gaps else 0.0), b - (3.5 if b in gaps else 0.0)
            if b - a > 2.0:
                m = (a + b) / 2
                u, v = (fixed, m) if axis == 0 else (m, fixed)
                town.blocks.append(T.Block(*fr.xy(u, v), 0.0, b - a, wide, high,
                                           fr.angle + (90.0 if axis == 0 else 0.0), T.HEDGE, mat.hedge))


# ------------------------------------------------------------------------------------------- furniture
def _fountain(town: T.Town, rng, mat: Materials, fr: Frame, hub, plaza: Polygon) -> None:
    """A round paved plaza with a basin of water, a stone rim of 12 low blocks and a column in the middle."""
    P.paint(town, fr.geom(plaza), mat.plaza, 0.06, T.Pattern("joints", fr.angle, 0.6, 0.6,
                                                             tuple(0.8 * c for c in mat.plaza), 0.06, 0.5, 0.06))
    r = T._u(rng, (3.0, 5.0))
    P.paint(town, fr.geom(Point(*hub).buffer(r)), mat.water, 0.03)
    stone = P.tone(rng, (0.70, 0.68, 0.64), 0.04)
    g = len(town.blocks)
    for k in range(12):
        a = 2 * math.pi * k / 12
        x, y = fr.xy(hub[0] + r * math.cos(a), hub[1] + r * math.sin(a))
        town.blocks.append(T.Block(x, y, 0.0, 2 * math.pi * r / 12 + 0.1, 0.45, 0.55,
                                   fr.angle + math.degrees(a) + 90, T.POLE, stone, g))
    town.blocks.append(T.Block(*fr.xy(*hub), 0.0, 0.7, 0.7, T._u(rng, (1.5, 3.5)), fr.angle, T.POLE, stone, g))


def _playground(town: T.Town, rng, mat: Materials, fr: Frame, site: Polygon) -> None:
    """Surface, a low fence open on one side, swings, a slide tower, a climbing frame and spring riders."""
    P.paint(town, fr.geom(site), mat.play, 0.1)
    u0, v0, u1, v1 = site.bounds
    metal = P.tone(rng, (0.45, 0.45, 0.48), 0.04)
    open_side = int(rng.integers(4))
    for k, (a, b) in enumerate((((u0, v0), (u1, v0)), ((u1, v0), (u1, v1)), ((u1, v1), (u0, v1)),
                                ((u0, v1), (u0, v0)))):
        if k != open_side:
            (x, y), (x2, y2) = fr.xy(*a), fr.xy(*b)
            town.blocks.append(T.Block((x + x2) / 2, (y + y2) / 2, 0.0, math.hypot(x2 - x, y2 - y), 0.06, 0.9,
                                       math.degrees(math.atan2(y2 - y, x2 - x)), T.POLE, metal))
    cu, cv = (u0 + u1) / 2, (v0 + v1) / 2
    w, h = u1 - u0, v1 - v0
    colours = [P.pick(rng, PLAY_COLOURS) for _ in range(3)]
    g = len(town.blocks)
    for du in (-1.8, 1.8):  # swing frame: two posts and a beam, two seats
        town.blocks.append(T.Block(*fr.xy(cu - w / 4 + du, cv + h / 4), 0.0, 0.15, 0.9, 2.4, fr.angle, T.POLE, metal, g))
    town.blocks.append(T.Block(*fr.xy(cu - w / 4, cv + h / 4), 2.3, 3.8, 0.12, 0.12, fr.angle, T.POLE, metal, g))
    for du in (-0.8, 0.8):
        town.blocks.append(T.Block(*fr.xy(cu - w / 4 + du, cv + h / 4), 0.45, 0.5, 0.25, 0.05, fr.angle, T.POLE,
                                   colours[0], g))
    # slide tower with a platform and the chute as a long low box beside it
    town.blocks.append(T.Block(*fr.xy(cu + w / 4, cv + h / 4), 0.0, 1.6, 1.6, 1.5, fr.angle, T.POLE, colours[1]))
    town.blocks.append(T.Block(*fr.xy(cu + w / 4, cv + h / 4), 1.5, 1.6, 1.6, 1.4, fr.angle, T.POLE, colours[2]))
    town.blocks.append(T.Block(*fr.xy(cu + w / 4 + 2.4, cv + h / 4), 0.2, 3.2, 0.6, 0.5, fr.angle, T.POLE, colours[1]))
    town.blocks.append(T.Block(*fr.xy(cu - w / 5, cv - h / 4), 0.0, T._u(rng, (2.5, 4.0)), T._u(rng, (1.8, 2.6)),
                               T._u(rng, (1.8, 2.6)), fr.angle, T.POLE, colours[2]))
    for k in range(int(rng.integers(1, 4))):
        town.blocks.append(T.Block(*fr.xy(cu + w / 5 + 1.6 * k, cv - h / 4), 0.0, 0.9, 0.35, 0.8, fr.angle, T.POLE,
                                   P.pick(rng, PLAY_COLOURS)))


def _path_furniture(town: T.Town, rng, mat: Materials, fr: Frame, paths, keep_out) -> None:
    """Benches at the path's edge every 15-35 m, lamps of 3.5-4.5 m on the other side every 20-30 m."""
    pole = P.tone(rng, (0.18, 0.20, 0.20), 0.03)
    for g, w, _ in paths:
        for line in getattr(g, "geoms", [g]):
            if line.geom_type != "LineString" or line.length < 10:
                continue
            side = 1 if rng.random() < 0.5 else -1
            for s, kind in [(s, "bench") for s in np.arange(rng.uniform(5, 15), line.length - 3, T._u(rng, (15, 35)))] + \
                    [(s, "lamp") for s in np.arange(rng.uniform(3, 12), line.length - 3, T._u(rng, (20, 30)))]:
                a, b = line.interpolate(max(s - 0.5, 0)), line.interpolate(min(s + 0.5, line.length))
                t = np.array([b.x - a.x, b.y - a.y])
                t /= max(np.linalg.norm(t), 1e-9)
                off = (w / 2 + (0.5 if kind == "bench" else 0.6)) * (side if kind == "bench" else -side)
                u, v = a.x + (b.x - a.x) / 2 - t[1] * off, a.y + (b.y - a.y) / 2 + t[0] * off
                if keep_out.intersects(Point(u, v).buffer(1.2)):
                    continue
                x, y = fr.xy(u, v)
                heading = fr.angle + math.degrees(math.atan2(t[1], t[0]))
                if kind == "bench":
                    P.bench(town, x, y, heading + (180.0 if side < 0 else 0.0), mat.bench)
                else:
                    hgt = T._u(rng, (3.5, 4.5))
                    P.post(town, x, y, hgt, pole, (hgt - 0.4, 0.45, 0.45, 0.45, heading, (0.85, 0.85, 0.80)), 0.12)
