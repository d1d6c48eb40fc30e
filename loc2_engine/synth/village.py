"""Kind of place "village": open country with a few farmsteads (places.py builds it through ``build``).

- **Roads**: a winding main road through the middle and a second road crossing it (or ending at it),
  ``params.road_width`` (4-7 m) of asphalt with no kerbs or markings, grass verges of ``params.sidewalk`` on
  both sides, in some towns a gravel shoulder and a ditch; 1-3 unpaved tracks (2.5-3.5 m, a grass strip
  between the wheel ruts) lead off into the fields.
- **Farmsteads** (2-4) beside the roads: a yard of gravel, concrete or earth with a farmhouse (gable roof,
  no shop windows), a large barn (18-32 m, blank walls, large gable roof) and often a shed; hay bales, cars.
  **Houses** (2-5) in gardens along the roads. Building density is a fraction of a town's.
- **Fields** everywhere else: a patchwork on a rotated grid of ``params.block`` (45-110 m) with one land use
  each: crops (drill rows or tramlines), ploughed soil (furrows), meadow (sometimes mown in stripes),
  orchards (small trees in rows) or fallow; the season drawn per town sets the crop colours.
- **Hedgerows** with trees along some field edges, **tree lines** along some road sides, utility poles
  along the main road.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List

import numpy as np
from shapely import affinity
from shapely.geometry import LineString, Point, box
from shapely.ops import split, unary_union
from shapely.prepared import prep

from . import places as P
from . import town as T

HOUSE_WALLS = [(0.90, 0.88, 0.84), (0.86, 0.80, 0.64), (0.55, 0.17, 0.13), (0.82, 0.70, 0.45), (0.62, 0.60, 0.56),
               (0.60, 0.33, 0.25)]
HOUSE_ROOFS = [(0.58, 0.27, 0.19), (0.28, 0.28, 0.30), (0.45, 0.30, 0.22), (0.18, 0.18, 0.20)]
BARN_WALLS = [(0.55, 0.17, 0.13), (0.46, 0.38, 0.30), (0.62, 0.62, 0.60), (0.32, 0.42, 0.33)]
BARN_ROOFS = [(0.56, 0.57, 0.57), (0.50, 0.22, 0.16), (0.26, 0.26, 0.28), (0.27, 0.36, 0.29)]
# crop colours by season: (field colour, row colour) pairs
CROPS = {"spring": [((0.42, 0.56, 0.26), (0.36, 0.33, 0.24)), ((0.50, 0.62, 0.30), (0.44, 0.52, 0.26)),
                    ((0.84, 0.80, 0.26), (0.62, 0.66, 0.26))],
         "summer": [((0.78, 0.70, 0.45), (0.66, 0.58, 0.36)), ((0.70, 0.68, 0.42), (0.60, 0.56, 0.34)),
                    ((0.36, 0.50, 0.20), (0.30, 0.42, 0.18))],
         "autumn": [((0.74, 0.66, 0.46), (0.60, 0.52, 0.36)), ((0.46, 0.40, 0.28), (0.36, 0.30, 0.22)),
                    ((0.38, 0.50, 0.24), (0.44, 0.40, 0.28))]}
SOIL = (0.44, 0.34, 0.24)
STRAW = (0.80, 0.72, 0.45)


@dataclass
class Materials:
    """Colours of one village (drawn per town)."""
    season: str
    grass: T.Tuple
    verge: T.Tuple
    road: T.Tuple
    shoulder: bool
    ditch: bool
    dirt: T.Tuple
    yard: T.Tuple
    house_walls: List[T.Tuple]
    house_roofs: List[T.Tuple]
    barn_walls: List[T.Tuple]
    barn_roofs: List[T.Tuple]


def _materials(rng, shift: float) -> Materials:
    """A season (crop colours), grass and verge greens, road and yard surfaces, wall and roof palettes."""
    def some(options, k):
        return [P.tone(rng, options[i], 0.04, shift) for i in rng.choice(len(options), k, replace=False)]

    return Materials(
        season=str(P.pick(rng, list(CROPS))), grass=P.tone(rng, (0.32, 0.44, 0.20), 0.04),
        verge=P.tone(rng, (0.38, 0.48, 0.25), 0.04),
        road=P.tone(rng, P.pick(rng, [(0.26, 0.26, 0.27), (0.36, 0.35, 0.33)]), 0.03),
        shoulder=bool(rng.random() < 0.5), ditch=bool(rng.random() < 0.5), dirt=P.tone(rng, (0.52, 0.45, 0.34), 0.04),
        yard=P.tone(rng, P.pick(rng, [(0.58, 0.55, 0.48), (0.60, 0.60, 0.58), (0.50, 0.44, 0.35)]), 0.03),
        house_walls=some(HOUSE_WALLS, 3), house_roofs=some(HOUSE_ROOFS, 2), barn_walls=some(BARN_WALLS, 2),
        barn_roofs=some(BARN_ROOFS, 2))


def build(town: T.Town, rng):
    """Lay out, paint and furnish a village; returns the open ground where cameras may stand."""
    p, half = town.params, town.size_m / 2
    mat = _materials(rng, p.palette_shift)
    town.base_rgb = mat.grass
    roads = _roads(rng, p, half)
    tracks = _tracks(rng, roads, half)
    town.roads = roads + tracks
    corridor = unary_union([r.line.buffer(r.width / 2 + r.sidewalk + 1.0) for r in roads]
                           + [r.line.buffer(r.width / 2 + 1.0) for r in tracks])
    lots = _homesteads(town, rng, mat, roads, corridor, half)
    taken = unary_union([corridor] + [lot.buffer(2.0) for lot, _, _ in lots])
    n_fields = _fields(town, rng, mat, half, taken)
    for lot, drive, kind in lots:
        P.paint(town, lot, mat.yard if kind == "farm" else P.tone(rng, (0.36, 0.50, 0.24), 0.03), 0.13)
        P.paint(town, drive, mat.yard, 0.12)
    _paint_roads(town, mat, roads, tracks)
    _tree_lines(town, rng, roads, unary_union([lot for lot, _, _ in lots]).buffer(1.0), half)
    _poles(town, rng, roads[0])
    P.drop_objects_in(town, unary_union([r.line.buffer(r.width / 2 + 0.3) for r in town.roads]
                                        + [P.footprints(town).buffer(0.5)]))
    town.features.update(farms=sum(k == "farm" for _, _, k in lots), houses=sum(k == "house" for _, _, k in lots),
                         fields=n_fields, tracks=len(tracks))
    walk = [r.line.buffer(r.width / 2 + r.sidewalk - 0.3) for r in roads] + [r.line.buffer(r.width / 2) for r in tracks]
    return unary_union(walk + [lot for lot, _, _ in lots] + [drive for _, drive, _ in lots])


# ------------------------------------------------------------------------------------------------ layout
def _wavy(rng, ext: float, offset: float, amp, wavelength) -> LineString:
    """A gently winding line along x from -ext to ext around y = offset (m)."""
    xs = np.linspace(-ext, ext, 120)
    a, wl, ph = T._u(rng, amp), T._u(rng, wavelength), rng.uniform(0, 2 * np.pi)
    return LineString(np.c_[xs, offset + a * np.sin(2 * np.pi * xs / wl + ph)])


def _roads(rng, p: T.StyleParams, half: float) -> List[T.Road]:
    """Main road near the centre and a second road crossing it at 55-125 degrees (half the time ending at
    it: a T junction)."""
    ext = half * 1.6
    ang = rng.uniform(0, 180)
    main = affinity.rotate(_wavy(rng, ext, rng.uniform(-20, 20), (4, 20), (180, 420)), ang, origin=(0, 0))
    other = affinity.rotate(_wavy(rng, ext, rng.uniform(-30, 30), (3, 15), (150, 350)),
                            ang + rng.uniform(55, 125), origin=(0, 0))
    if rng.random() < 0.5:
        pieces = list(split(other, main).geoms)
        if len(pieces) > 1:
            other = pieces[int(rng.integers(len(pieces)))]
    return [T.Road(line, round(T._u(rng, p.road_width), 1), round(T._u(rng, p.sidewalk), 1), False, "road")
            for line in (main, other)]


def _tracks(rng, roads: List[T.Road], half: float) -> List[T.Road]:
    """1-3 unpaved tracks leaving a road at 65-115 degrees into the fields, 60-160 m long."""
    tracks = []
    for _ in range(int(rng.integers(1, 4))):
        r = roads[int(rng.integers(len(roads)))]
        for _ in range(10):
            s = rng.uniform(0, r.line.length)
            c = r.line.interpolate(s)
            if max(abs(c.x), abs(c.y)) < half - 20:
                break
        a, b = r.line.interpolate(max(s - 1, 0)), r.line.interpolate(min(s + 1, r.line.length))
        heading = math.atan2(b.y - a.y, b.x - a.x) + math.radians(rng.uniform(65, 115)) * (1 if rng.random() < 0.5 else -1)
        length, bend = rng.uniform(60, 160), rng.normal(0, 0.08)
        d = np.array([math.cos(heading), math.sin(heading)])
        start = np.array([c.x, c.y]) + d * r.width / 2
        end = start + d * length
        mid = (start + end) / 2 + np.array([-d[1], d[0]]) * bend * length
        tracks.append(T.Road(LineString([start, mid, end]), round(rng.uniform(2.5, 3.5), 1), 0.0, False, "track"))
    return tracks


def _homesteads(town: T.Town, rng, mat: Materials, roads: List[T.Road], corridor, half: float):
    """2-4 farmsteads and 2-5 houses beside the roads; returns [(lot polygon, drive polygon, kind)]."""
    kinds = ["farm"] * int(rng.integers(2, 5)) + ["house"] * int(rng.integers(2, 6))
    lots = []
    for kind in kinds:
        for _ in range(15):
            r = roads[0] if rng.random() < 0.65 else roads[-1]
            s = rng.uniform(0, r.line.length)
            c = r.line.interpolate(s)
            a, b = r.line.interpolate(max(s - 1, 0)), r.line.interpolate(min(s + 1, r.line.length))
            t = np.array([b.x - a.x, b.y - a.y])
            t /= max(np.linalg.norm(t), 1e-9)
            side = 1 if rng.random() < 0.5 else -1
            n = np.array([-t[1], t[0]]) * side
            farm = kind == "farm"
            Ly, Dy = T._u(rng, (36, 55) if farm else (18, 28)), T._u(rng, (30, 45) if farm else (18, 26))
            setback = r.width / 2 + r.sidewalk + T._u(rng, (2, 6))
            ang = math.degrees(math.atan2(t[1], t[0]))
            lot = T._rect(*P.frame_point((c.x, c.y), t, n, 0, setback + Dy / 2), Ly, Dy, ang)
            if max(abs(c.x), abs(c.y)) > half - 15 or lot.intersects(corridor) \
                    or any(lot.buffer(4.0).intersects(q) for q, _, _ in lots):
                continue
            origin = np.array(P.frame_point((c.x, c.y), t, n, 0, setback))  # middle of the lot's road side
            drive = LineString([P.frame_point((c.x, c.y), t, n, 0, r.width / 2), tuple(origin + n * 1.0)]).buffer(
                2.0 if kind == "farm" else 1.4, cap_style=2)
            (_farm if kind == "farm" else _cottage)(town, rng, mat, origin, t, n, Ly, Dy, ang)
            lots.append((lot, drive, kind))
            break
    return lots


def _fits(town: T.Town, fp, lot, start: int) -> bool:
    """``fp`` lies inside ``lot`` (1 m in) and clear of the buildings added since index ``start``."""
    return lot.buffer(-1.0).contains(fp) and not any(b.footprint().buffer(2.0).intersects(fp)
                                                     for b in town.buildings[start:])


def _farm(town: T.Town, rng, mat: Materials, origin, t, n, Ly, Dy, ang) -> None:
    """Farmhouse at a front corner, barn at the back, often a shed at the other front corner; hay bales and
    cars in the yard. ``origin``: middle of the lot's road side; ``t`` along the road, ``n`` into the lot."""
    p = town.params
    lot = T._rect(*P.frame_point(origin, t, n, 0, Dy / 2), Ly, Dy, ang)
    start = len(town.buildings)
    corner = 1 if rng.random() < 0.5 else -1
    L, D = T._u(rng, (10, 15)), T._u(rng, (8, 11))
    eave = T._u(rng, p.height)
    hx, hy = P.frame_point(origin, t, n, corner * (Ly / 2 - L / 2 - 2), D / 2 + 2)
    town.buildings.append(P.pitched(hx, hy, L, D, ang, eave, T._u(rng, (35, 50)), P.pick(rng, mat.house_walls),
                                    P.pick(rng, mat.house_roofs), eave / 2, T._u(rng, (2.4, 3.2))))
    BL, BD = min(T._u(rng, (18, 32)), Ly - 4), min(T._u(rng, (11, 16)), Dy - D - 8)
    if BD > 7:
        bx, by = P.frame_point(origin, t, n, rng.uniform(-1, 1) * max(Ly / 2 - BL / 2 - 2, 0), Dy - BD / 2 - 2)
        barn = P.pitched(bx, by, BL, BD, ang, T._u(rng, (4.0, 6.5)), T._u(rng, (28, 42)), P.pick(rng, mat.barn_walls),
                         P.pick(rng, mat.barn_roofs), 3.0, 3.0, windows=False)
        if _fits(town, barn.footprint(), lot, start):
            town.buildings.append(barn)
            for k in range(int(rng.integers(0, 7))):  # round bales in a row beside the barn
                x, y = P.frame_point((bx, by), t, n, -BL / 2 + 1.5 + 2.0 * k, -BD / 2 - 1.8)
                town.blocks.append(T.Block(x, y, 0.0, 1.5, 1.5, 1.3, ang, T.HEDGE, P.tone(rng, STRAW, 0.04)))
    if rng.random() < 0.7:
        SL, SD = T._u(rng, (7, 12)), T._u(rng, (5, 8))
        sx, sy = P.frame_point(origin, t, n, -corner * (Ly / 2 - SL / 2 - 2), SD / 2 + 2)
        shed = P.pitched(sx, sy, SL, SD, ang, T._u(rng, (2.8, 3.6)), T._u(rng, (20, 30)), P.pick(rng, mat.barn_walls),
                         P.pick(rng, mat.barn_roofs), 3.0, 3.0, windows=False)
        if _fits(town, shed.footprint(), lot, start):
            town.buildings.append(shed)
    built = unary_union([b.footprint() for b in town.buildings[start:]]).buffer(1.5)
    for _ in range(int(rng.integers(0, 3))):
        x, y = P.frame_point(origin, t, n, rng.uniform(-Ly / 2 + 4, Ly / 2 - 4), rng.uniform(4, Dy - 4))
        if not built.contains(Point(x, y)) and not built.intersects(Point(x, y).buffer(3.0)):
            T._add_car(town, rng, x, y, ang + 90 + rng.uniform(-20, 20))
    if rng.random() < 0.7:
        x, y = P.frame_point(origin, t, n, corner * (Ly / 2 - 3), 1.5)
        T._add_tree(town, rng, x, y)


def _cottage(town: T.Town, rng, mat: Materials, origin, t, n, Ly, Dy, ang) -> None:
    """A house in a garden: gable roof, a hedge along the front (half of them), garden trees, maybe a car."""
    p = town.params
    L, D = T._u(rng, (9, 13)), T._u(rng, (7.5, 10))
    eave = T._u(rng, p.height)
    hx, hy = P.frame_point(origin, t, n, rng.uniform(-1, 1) * (Ly / 2 - L / 2 - 2), Dy / 2)
    town.buildings.append(P.pitched(hx, hy, L, D, ang, eave, T._u(rng, (35, 50)), P.pick(rng, mat.house_walls),
                                    P.pick(rng, mat.house_roofs), eave / 2, T._u(rng, (2.4, 3.2))))
    if rng.random() < 0.5:
        for sgn in (-1, 1):  # two hedge pieces leaving the drive open
            x, y = P.frame_point(origin, t, n, sgn * (Ly / 4 + 1.0), 0.6)
            town.blocks.append(T.Block(x, y, 0.0, Ly / 2 - 2.0, 0.7, T._u(rng, (0.9, 1.6)), ang, T.HEDGE,
                                       P.tone(rng, (0.16, 0.30, 0.12), 0.04)))
    for _ in range(int(rng.integers(1, 4))):
        x, y = P.frame_point(origin, t, n, rng.uniform(-Ly / 2 + 2, Ly / 2 - 2), rng.uniform(Dy / 2 + D / 2 + 2, Dy - 1.5))
        T._add_tree(town, rng, x, y)
    if rng.random() < 0.5:
        x, y = P.frame_point(origin, t, n, 0, 4.0)
        T._add_car(town, rng, x, y, ang + 90)


def _fields(town: T.Town, rng, mat: Materials, half: float, taken) -> int:
    """Patchwork of fields on a rotated grid: columns of ``params.block`` width, each cut into fields of its
    own lengths; one land use per field, hedgerows on some edges. Returns the number of fields."""
    p = town.params
    g = T._u(rng, p.grid_angle)
    ext, R = half + 30, (half + 30) * 1.5
    clip = box(-ext, -ext, ext, ext)
    uses = ["crop", "ploughed", "meadow", "orchard", "fallow"]
    weights = {"spring": [0.45, 0.15, 0.22, 0.12, 0.06], "summer": [0.5, 0.05, 0.25, 0.14, 0.06],
               "autumn": [0.3, 0.35, 0.2, 0.1, 0.05]}[mat.season]
    count, orchard_trees = 0, 0
    x = -R
    while x < R:
        w = T._u(rng, p.block)
        y = -R
        while y < R:
            h = T._u(rng, p.block) * rng.uniform(0.5, 1.4)
            cell = affinity.rotate(box(x, y, x + w, y + h), g, origin=(0, 0))
            use = P.pick(rng, uses, weights)
            along = g if w < h else g + 90  # rows run along the field's long side
            field = cell.buffer(-0.8, join_style=2).difference(taken).intersection(clip)
            if field.area > 50:
                count += 1
                orchard_trees += _field(town, rng, mat, field, use, along, g, orchard_trees)
            for a, b in (((x, y), (x, y + h)), ((x, y), (x + w, y))):  # west and south edges: each edge once
                if rng.random() < 0.3:
                    _hedgerow(town, rng, affinity.rotate(LineString([a, b]), g, origin=(0, 0)), taken, clip)
            y += h
        x += w
    return count


def _field(town: T.Town, rng, mat: Materials, field, use: str, along: float, grid: float, trees: int) -> int:
    """Paint one field for its land use; returns the number of orchard trees planted."""
    if use == "crop":
        colour, rows = P.pick(rng, CROPS[mat.season])
        if rng.random() < 0.6:  # drill rows
            pattern = T.Pattern("stripes", along, T._u(rng, (0.5, 1.4)), 0.4, P.tone(rng, rows, 0.02))
        else:  # tramlines of the sprayer
            pattern = T.Pattern("stripes", along, T._u(rng, (12, 24)), 0.06, P.tone(rng, rows, 0.02))
        P.paint(town, field, P.tone(rng, colour, 0.03), 0.1, pattern)
    elif use == "ploughed":
        soil = P.tone(rng, SOIL, 0.04)
        P.paint(town, field, soil, 0.12, T.Pattern("stripes", along, T._u(rng, (0.5, 1.0)), 0.5,
                                                    tuple(0.75 * c for c in soil)))
    elif use in ("meadow", "orchard"):
        green = P.tone(rng, (0.36, 0.50, 0.22), 0.04)
        pattern = T.Pattern("stripes", along, T._u(rng, (3, 8)), 0.5, tuple(0.88 * c for c in green)) \
            if use == "meadow" and rng.random() < 0.5 else None
        P.paint(town, field, green, 0.12, pattern)
        if use == "orchard" and trees < 400:
            return _orchard(town, rng, field, grid)
    else:
        P.paint(town, field, P.tone(rng, (0.48, 0.45, 0.30), 0.04), 0.16)
    return 0


def _orchard(town: T.Town, rng, field, grid: float) -> int:
    """Small fruit trees in rows 6-9 m apart inside ``field``; returns how many."""
    s = T._u(rng, (6.0, 9.0))
    inner = prep(field.buffer(-2.0))
    x0, y0, x1, y1 = field.bounds
    c = ((x0 + x1) / 2, (y0 + y1) / 2)
    r = math.hypot(x1 - x0, y1 - y0) / 2
    n = 0
    for u in np.arange(-r, r, s):
        for v in np.arange(-r, r, s):
            x, y = T._rot(u, v, grid)
            x, y = x + c[0], y + c[1]
            if inner.contains(Point(x, y)):
                radius = T._u(rng, (1.4, 2.4))
                town.trees.append(T.Tree(float(x), float(y), T._u(rng, (1.0, 1.6)), radius, radius * T._u(rng, (1.1, 1.5)),
                                         T._jitter_rgb(rng, (0.24, 0.36, 0.14), 0.04)))
                n += 1
    return n


def _hedgerow(town: T.Town, rng, line: LineString, taken, clip) -> None:
    """A hedge along ``line`` where it is clear of roads and lots, with a tree every 8-25 m (60 % of them)."""
    free = line.difference(taken.buffer(1.0)).intersection(clip)
    wide, high = T._u(rng, (1.2, 2.2)), T._u(rng, (1.4, 2.8))
    colour = P.tone(rng, (0.17, 0.30, 0.12), 0.04)
    with_trees = rng.random() < 0.6
    for piece in getattr(free, "geoms", [free]):
        if piece.is_empty or piece.geom_type != "LineString" or piece.length < 6:
            continue
        (ax, ay), (bx, by) = piece.coords[0], piece.coords[-1]
        town.blocks.append(T.Block((ax + bx) / 2, (ay + by) / 2, 0.0, piece.length, wide, high,
                                   math.degrees(math.atan2(by - ay, bx - ax)), T.HEDGE, colour))
        if with_trees:
            s = rng.uniform(2, 12)
            while s < piece.length:
                q = piece.interpolate(s)
                T._add_tree(town, rng, q.x, q.y)
                s += T._u(rng, (8, 25))


def _tree_lines(town: T.Town, rng, roads: List[T.Road], lots, half: float) -> None:
    """Trees along some road sides (45 %), outside the verge, every ``params.tree_spacing``."""
    for r in roads:
        for side in (-1, 1):
            if rng.random() > 0.45:
                continue
            edge = T.side_line(r.line, r.width / 2 + r.sidewalk + 1.5, side)
            if edge is None:
                continue
            s = rng.uniform(0, 8)
            while s < edge.length:
                q = edge.interpolate(s)
                if abs(q.x) < half + 20 and abs(q.y) < half + 20 and not lots.contains(q):
                    T._add_tree(town, rng, q.x, q.y)
                s += T._u(rng, town.params.tree_spacing)


def _poles(town: T.Town, rng, road: T.Road) -> None:
    """Wooden utility poles with a cross-arm along one side of the main road, every 35-50 m."""
    side = "left" if rng.random() < 0.5 else "right"
    try:
        edge = road.line.parallel_offset(road.width / 2 + road.sidewalk - 0.4, side)
    except ValueError:
        return
    if edge.is_empty or edge.geom_type != "LineString":
        return
    wood = P.tone(rng, (0.36, 0.30, 0.24), 0.03)
    s = rng.uniform(0, 20)
    while s < edge.length:
        q = edge.interpolate(s)
        h = T._u(rng, (7.0, 9.0))
        P.post(town, q.x, q.y, h, wood, (h - 0.6, 1.8, 0.12, 0.12, rng.uniform(0, 180), wood), thick=0.26)
        s += T._u(rng, (35.0, 50.0))


# ----------------------------------------------------------------------------------------------- ground
def _paint_roads(town: T.Town, mat: Materials, roads: List[T.Road], tracks: List[T.Road]) -> None:
    """Verges (and ditches), gravel shoulders, asphalt without markings; tracks of earth with grass between
    the ruts."""
    for r in roads:
        outer = r.width / 2 + r.sidewalk
        P.paint(town, r.line.buffer(outer, cap_style=2), mat.verge, 0.14)
        if mat.ditch:
            P.paint(town, r.line.buffer(outer, cap_style=2).difference(r.line.buffer(outer - 0.9, cap_style=2)),
                    tuple(0.75 * c for c in mat.verge), 0.16)
    for r in roads:
        if mat.shoulder:
            P.paint(town, r.line.buffer(r.width / 2 + 0.35, cap_style=2), mat.yard, 0.12)
        P.paint(town, r.line.buffer(r.width / 2, cap_style=2), mat.road, 0.1)
    for r in tracks:
        P.paint(town, r.line.buffer(r.width / 2, cap_style=2), mat.dirt, 0.16)
        P.paint(town, r.line.buffer(0.35, cap_style=2), mat.verge, 0.16)
