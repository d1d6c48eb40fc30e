"""Kind of place "oldtown": a European historic centre (places.py builds it through ``build``).

- **Lanes**: a lattice of nodes (spacing ``params.block``) jittered by up to 28 % of the spacing, joined by
  lanes bent at their middle, 22 % of the links missing and a few diagonals, so blocks are irregular; lanes
  are ``params.road_width`` (3-8 m) from facade to facade, cobbled (setts) or asphalt, with no kerbs and no
  markings, sometimes a gutter of another stone down the middle.
- **Wider streets**: one or two lattice lines become streets of 10-14 m (a 6.5-9 m carriageway and
  sidewalks of ``params.sidewalk``, kerbs, lamps and parked cars, still no markings).
- **Market square**: an irregular quadrilateral 50-110 m by 50-110 m near the centre (at least 40 m of open
  ground across; towns smaller than 256 m get a smaller one), flagstones in a running bond or grid, a border
  band and bands (grid, diagonal or rings) of another stone, a fountain or monument, a row of trees, some
  parasols.
- **Church**: beside the square in its yard: a nave (gable roof of 48-56 degrees) and a west tower 24-40 m
  to the eaves with a pyramid spire.
- **Terraced houses** line every block: 5-10 m frontages sharing walls, 8-14 m deep, 2-5 storeys,
  steep gable roofs (40-56 degrees; most ridges along the lane, a quarter gable-fronted), clay tile or
  slate; shop windows on the square and the wider streets; inside, rear wings and sheds (1-2 storeys)
  and small courtyards, some gardens with a tree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
from shapely import affinity
from shapely.geometry import LineString, Point, Polygon, box
from shapely.geometry.polygon import orient
from shapely.ops import polylabel, unary_union
from shapely.prepared import prep

from . import places as P
from . import town as T

FACADES = [(0.86, 0.80, 0.62), (0.84, 0.66, 0.52), (0.90, 0.87, 0.78), (0.78, 0.72, 0.55), (0.70, 0.74, 0.66),
           (0.80, 0.55, 0.42), (0.88, 0.78, 0.50), (0.66, 0.64, 0.62), (0.75, 0.60, 0.58), (0.62, 0.68, 0.74)]
TILE_ROOFS = [(0.62, 0.30, 0.20), (0.55, 0.26, 0.18), (0.68, 0.38, 0.24), (0.48, 0.24, 0.19), (0.58, 0.34, 0.26)]
SLATE_ROOFS = [(0.26, 0.27, 0.30), (0.33, 0.33, 0.36), (0.30, 0.31, 0.35)]
STONES = [(0.50, 0.50, 0.50), (0.35, 0.35, 0.36), (0.62, 0.55, 0.45), (0.72, 0.69, 0.62), (0.48, 0.37, 0.34)]
ASPHALT = (0.25, 0.25, 0.26)
PARASOLS = [(0.92, 0.90, 0.84), (0.70, 0.12, 0.12), (0.15, 0.40, 0.25), (0.16, 0.24, 0.48)]


@dataclass
class Materials:
    """Colours and stone sizes of one old town (drawn per town)."""
    lane: T.Tuple
    lane_setts: Tuple[float, float]     # sett length, width (m); (0, 0) = asphalt lanes
    gutter: bool
    street: T.Tuple
    walk: T.Tuple
    square: T.Tuple
    flagstone: Tuple[float, float]      # flagstone length, width (m)
    accent: T.Tuple
    court: T.Tuple
    walls: List[T.Tuple]
    roofs: List[T.Tuple]
    slate_share: float                  # fraction of slate roofs (the rest clay tile)
    church_wall: T.Tuple
    church_roof: T.Tuple
    spire: T.Tuple


def _materials(rng, shift: float) -> Materials:
    """The town's palette: one stone for lanes, one for the square, another for its bands; a few facade
    colours; a share of slate roofs (0-60 %) among the clay tiles."""
    setts = rng.random() < 0.75
    lane = P.tone(rng, P.pick(rng, STONES) if setts else ASPHALT, 0.04)
    square = P.tone(rng, P.pick(rng, STONES[2:] + STONES[:1]), 0.04)
    walls = [P.tone(rng, FACADES[i], 0.04, shift) for i in rng.choice(len(FACADES), 5, replace=False)]
    roofs = [P.tone(rng, c, 0.03) for c in TILE_ROOFS + SLATE_ROOFS]
    return Materials(
        lane=lane, lane_setts=(T._u(rng, (0.45, 0.7)), T._u(rng, (0.3, 0.45))) if setts else (0.0, 0.0),
        gutter=bool(rng.random() < 0.5), street=P.tone(rng, P.pick(rng, [ASPHALT, STONES[0], STONES[1]]), 0.03),
        walk=P.tone(rng, (0.64, 0.62, 0.58), 0.05), square=square,
        flagstone=(T._u(rng, (0.8, 1.6)), T._u(rng, (0.6, 1.2))), accent=P.tone(rng, P.pick(rng, STONES), 0.05),
        court=P.tone(rng, (0.50, 0.47, 0.42), 0.05), walls=walls, roofs=roofs, slate_share=T._u(rng, (0.0, 0.6)),
        church_wall=P.tone(rng, P.pick(rng, [(0.72, 0.68, 0.60), (0.60, 0.58, 0.56), (0.78, 0.66, 0.50)]), 0.04),
        church_roof=P.tone(rng, P.pick(rng, SLATE_ROOFS + TILE_ROOFS[:2]), 0.03),
        spire=P.tone(rng, P.pick(rng, [(0.36, 0.56, 0.46), (0.28, 0.29, 0.32), (0.55, 0.28, 0.20)]), 0.03))


def build(town: T.Town, rng):
    """Lay out, paint and furnish an old town; returns the open ground where cameras may stand."""
    p, half = town.params, town.size_m / 2
    mat = _materials(rng, p.palette_shift)
    town.base_rgb = mat.court
    square, square_angle = _square(rng, half)
    yard, church = _church_site(rng, square)
    streets, lanes = _network(rng, p, half, yard.buffer(1.0))
    town.roads = streets + lanes
    ways = unary_union([r.line.buffer(r.width / 2 + r.sidewalk, join_style=2) for r in town.roads])
    area = box(-half - 30, -half - 30, half + 30, half + 30).difference(ways).difference(square).difference(yard)
    blocks = [g for g in getattr(area, "geoms", [area]) if g.area > 80]
    _paint_lanes(town, mat, lanes)
    _paint_streets(town, mat, streets)
    _paint_square(town, rng, mat, square, square_angle)
    _church(town, rng, mat, yard, church, square)
    shops = unary_union([square.buffer(3.0)] + [r.line.buffer(r.width / 2 + r.sidewalk + 3.0) for r in streets])
    for blk in blocks:
        _terrace(town, rng, mat, blk, prep(shops))
    _street_furniture(town, rng, streets, lanes)
    P.drop_objects_in(town, unary_union([square, yard]))
    _square_furniture(town, rng, mat, square, square_angle)
    _wall_lamps(town, rng, lanes)
    centre = polylabel(square, 0.5)
    town.features.update(square=square, churchyard=yard, square_m=round(2 * square.exterior.distance(centre), 1),
                         lanes=len(lanes), streets=len(streets), houses=len(town.buildings) - 2)
    walk = [r.line.buffer(max(r.width / 2 - 0.3, 0.3)) for r in lanes]
    walk += [r.line.buffer(r.width / 2 + r.sidewalk - 0.3) for r in streets]
    return unary_union(walk + [square, yard])


# ------------------------------------------------------------------------------------------------ layout
def _square(rng, half: float):
    """Market square: an irregular quadrilateral near the centre, 50-110 m a side (corners jittered by up to
    7 % of the short side, so at least 43 m across). Returns (polygon, rotation in degrees)."""
    longest = max(min(110.0, 0.84 * half), 56.0)
    a = T._u(rng, (55.0, longest))
    b = T._u(rng, (50.0, a))
    jit = 0.07 * b
    corners = [(sx * a / 2 + rng.uniform(-jit, jit), sy * b / 2 + rng.uniform(-jit, jit))
               for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    angle = float(rng.uniform(0, 90))
    c = rng.uniform(-12, 12, 2)
    return affinity.translate(affinity.rotate(Polygon(corners), angle, origin=(0, 0)), *c), angle


def _church_site(rng, square: Polygon):
    """Church yard beside one side of the square; the church faces east (its tower at the west end) within
    12 degrees. Returns (yard polygon, (cx, cy, angle, nave length, nave width, tower side))."""
    Ln, Dn, t = T._u(rng, (26, 40)), T._u(rng, (11, 15)), T._u(rng, (6.5, 9))
    ang = float(rng.uniform(-12, 12))
    Ly, Dy = Ln + t + 2 * T._u(rng, (4, 9)), Dn + 2 * T._u(rng, (4, 8))
    ring = np.asarray(square.exterior.coords)[:-1]
    k = int(rng.integers(len(ring)))
    a, b = ring[k], ring[(k + 1) % len(ring)]
    mid = (a + b) / 2
    n = np.array([b[1] - a[1], a[0] - b[0]])
    n /= np.linalg.norm(n)
    if np.dot(n, mid - np.asarray(square.centroid.coords[0])) < 0:
        n = -n  # outward
    u = np.array([math.cos(math.radians(ang)), math.sin(math.radians(ang))])
    reach = abs(np.dot(n, u)) * Ly / 2 + abs(n[0] * -u[1] + n[1] * u[0]) * Dy / 2
    gap = 1.0
    while True:
        c = mid + n * (reach + gap)
        yard = T._rect(c[0], c[1], Ly, Dy, ang)
        if yard.intersection(square).area < 1.0:
            return yard, (float(c[0]), float(c[1]), ang, Ln, Dn, t)
        gap += 2.0


def _network(rng, p: T.StyleParams, half: float, avoid) -> Tuple[List[T.Road], List[T.Road]]:
    """(wider streets, lanes) over a jittered, rotated lattice of nodes covering the town plus 40 m."""
    s = T._u(rng, p.block)
    ang = T._u(rng, p.grid_angle)
    k = int(math.ceil((half + 40) / s)) + 1
    idx = np.arange(-k, k + 1)
    n = len(idx)
    jit = rng.uniform(-0.28 * s, 0.28 * s, (n, n, 2))
    nodes = np.array([[T._rot(idx[i] * s + jit[i, j, 0], idx[j] * s + jit[i, j, 1], ang) for j in range(n)]
                      for i in range(n)])
    # the wider streets: the lattice row (and, 60 % of towns, column) nearest the centre that misses the yard
    main_row = _through_line(rng, [LineString(nodes[:, j]) for j in range(n)], k, avoid)
    main_col = _through_line(rng, [LineString(nodes[i, :]) for i in range(n)], k, avoid) \
        if rng.random() < 0.6 else None
    streets = [T.Road(line, round(T._u(rng, (6.5, 9.0)), 1), round(T._u(rng, p.sidewalk), 2), False, "street")
               for line in (main_row[1] if main_row else None, main_col[1] if main_col else None) if line is not None]
    lanes = []
    for i in range(n):
        for j in range(n):
            for di, dj, keep in ((1, 0, 0.78), (0, 1, 0.78), (1, 1, 0.1)):
                if i + di >= n or j + dj >= n:
                    continue
                on_street = (main_row and dj == 0 and di == 1 and j == main_row[0]) or \
                            (main_col and di == 0 and dj == 1 and i == main_col[0])
                draw, bend, width = rng.random(), rng.normal(0, 0.1), T._u(rng, p.road_width)
                if on_street or draw > keep:
                    continue
                a, b = nodes[i, j], nodes[i + di, j + dj]
                d = b - a
                mid = (a + b) / 2 + np.array([-d[1], d[0]]) * bend
                line = LineString([a, mid, b])
                if not line.intersects(avoid) and line.distance(Point(0, 0)) < half * 1.5:
                    lanes.append(T.Road(line, round(width, 1), 0.0, False, "lane"))
    return streets, lanes


def _through_line(rng, lines: List[LineString], k: int, avoid):
    """(index, line) of the lattice line nearest the centre (of those within 2 of it) that misses ``avoid``."""
    near = [k, k + 1, k - 1]
    rng.shuffle(near)
    order = near + [k + 2, k - 2]
    for i in order:
        if not lines[i].intersects(avoid):
            return i, lines[i]
    return None


# --------------------------------------------------------------------------------------------- buildings
def _terrace(town: T.Town, rng, mat: Materials, blk: Polygon, shops) -> None:
    """Terraced houses along the block's edges (interior on their left), sharing walls; a garden or court
    in what is left."""
    blk = orient(blk.simplify(0.4), 1.0)
    if blk.geom_type != "Polygon" or blk.is_empty:
        return
    inside = prep(blk.buffer(0.05))
    ring = np.asarray(blk.exterior.coords)
    depth = T._u(rng, (8.0, 14.0))
    placed: List[Polygon] = []
    for a, t, nrm, L, edge_ang in P.block_edges(ring, 5.0):
        pos = 0.0
        while pos < L - 4.5:
            w = min(T._u(rng, (5.0, 10.0)), L - pos)
            if L - pos - w < 4.5 and L - pos <= 11.0:
                w = L - pos  # the last house takes the rest of the edge
            d = depth + rng.uniform(-1.5, 1.5)
            cx, cy = P.frame_point(a, t, nrm, pos + w / 2, d / 2)
            fp = T._rect(cx, cy, w - 0.05, d, edge_ang)
            if w >= 4.5 and inside.contains(fp) and not any(fp.intersection(q).area > 0.3 for q in placed):
                placed.append(fp)
                town.buildings.append(_house(rng, mat, town.params.height, cx, cy, w - 0.05, d, edge_ang,
                                             shops.contains(Point(*P.frame_point(a, t, nrm, pos + w / 2, -0.5)))))
                pos += w
            else:
                pos += 1.0  # a corner or a short edge: slide along until a house fits
    rest = blk.buffer(-0.5).difference(unary_union(placed).buffer(0.3)) if placed else blk.buffer(-0.5)
    placed += _back_buildings(town, rng, mat, rest, P.main_angle(ring))
    rest = blk.buffer(-0.5).difference(unary_union(placed).buffer(0.3)) if placed else blk.buffer(-0.5)
    for court in getattr(rest, "geoms", [rest]):
        if court.area > 40 and rng.random() < 0.4:
            P.paint(town, court, P.tone(rng, T.GRASS, 0.04), 0.12)
            spot = court.buffer(-2.5)
            if not spot.is_empty:
                q = spot.representative_point()
                T._add_tree(town, rng, q.x, q.y)


def _back_buildings(town: T.Town, rng, mat: Materials, court, angle: float) -> List[Polygon]:
    """Sheds, workshops and rear wings (4-11 m, 1-2 storeys) in a block's courtyard, so the roofs cover most
    of the block as in a dense historic centre; returns their footprints."""
    if court.is_empty or court.area < 30:
        return []
    placed: List[Polygon] = []
    for x, y, L, D in P.scatter_rects(rng, court.buffer(-0.3), court.bounds, int(court.area / 25), (4.5, 11.0),
                                      (4.0, 8.0), angle, 1.0):
        placed.append(T._rect(x, y, L, D, angle))
        eave = T._u(rng, (3.2, 7.0))
        wall = T._jitter_rgb(rng, mat.walls[int(rng.integers(len(mat.walls)))], 0.05)
        roof = mat.roofs[int(rng.integers(len(mat.roofs)))]
        if rng.random() < 0.3:  # flat-roofed workshop or garage
            town.buildings.append(P.flat(x, y, L, D, angle, eave, wall, T._jitter_rgb(rng, T.FLAT_ROOFS[0], 0.04),
                                         3.0, 2.5, False))
        else:
            town.buildings.append(P.pitched(x, y, L, D, angle, eave, T._u(rng, (30.0, 45.0)), wall, roof, 3.0, 2.5))
    return placed


def _house(rng, mat: Materials, height, cx, cy, w, d, edge_ang, shop: bool) -> T.Building:
    """One terraced house, frontage ``w`` along the edge, depth ``d`` (m): its eave drawn from ``height``
    (m) in 2-5 storeys, a steep gable roof of clay tile or slate; shop windows only where ``shop``."""
    eave = T._u(rng, height)
    floor_h = eave / int(np.clip(round(eave / 3.1), 2, 5))
    pitch = T._u(rng, (40.0, 56.0))
    slate = rng.random() < mat.slate_share
    roof = mat.roofs[int(rng.integers(len(TILE_ROOFS), len(mat.roofs)))] if slate \
        else mat.roofs[int(rng.integers(len(TILE_ROOFS)))]
    wall = T._jitter_rgb(rng, mat.walls[int(rng.integers(len(mat.walls)))], 0.04)
    bay = T._u(rng, (1.9, 2.9))
    shopfront = shop and rng.random() < 0.7
    if rng.random() < 0.25:  # gable-fronted: the ridge runs into the block
        return P.pitched(cx, cy, d, w, edge_ang + 90, eave, pitch, wall, roof, floor_h, bay, shopfront)
    return P.pitched(cx, cy, w, d, edge_ang, eave, pitch, wall, roof, floor_h, bay, shopfront)


def _church(town: T.Town, rng, mat: Materials, yard: Polygon, church, square: Polygon) -> None:
    """Nave with a steep gable roof and a west tower with a pyramid spire, in a gravel or grass yard with a
    path to the square and a few trees."""
    cx, cy, ang, Ln, Dn, t = church
    u = np.array([math.cos(math.radians(ang)), math.sin(math.radians(ang))])
    span = Ln + t - 0.8
    tower = np.array([cx, cy]) + u * (-span / 2 + t / 2)
    nave = np.array([cx, cy]) + u * ((t - 0.8) / 2)
    P.paint(town, yard, P.tone(rng, T.GRASS if rng.random() < 0.5 else (0.60, 0.57, 0.50), 0.04), 0.1)
    door = Point(*(tower - u * (t / 2 + 0.5)))
    near = square.exterior.interpolate(square.exterior.project(door))
    P.paint(town, LineString([door, near]).buffer(1.5), mat.walk, 0.06)
    eave = T._u(rng, (11.0, 16.0))
    town.buildings.append(P.pitched(nave[0], nave[1], Ln, Dn, ang, eave, T._u(rng, (48.0, 56.0)), mat.church_wall,
                                    mat.church_roof, eave / 2, T._u(rng, (4.5, 6.0))))
    town.buildings.append(T.Building([(float(tower[0]), float(tower[1]), t, t, ang)], round(T._u(rng, (24.0, 40.0)), 1),
                                     "hip", T._u(rng, (8.0, 18.0)), mat.church_wall, mat.spire, T._u(rng, (5.0, 7.0)),
                                     t / 2, False, True))
    church_fp = unary_union([T._rect(*nave, Ln, Dn, ang), T._rect(*tower, t, t, ang)]).buffer(3.0)
    spots = yard.buffer(-2.5).difference(church_fp)
    for _ in range(int(rng.integers(2, 7))):
        if spots.is_empty:
            break
        x0, y0, x1, y1 = spots.bounds
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        if spots.contains(Point(x, y)):
            T._add_tree(town, rng, x, y)


# ----------------------------------------------------------------------------------------------- ground
def _paint_lanes(town: T.Town, mat: Materials, lanes: List[T.Road]) -> None:
    """Each lane in setts laid across it (or asphalt), and a gutter of another stone down the middle."""
    joint = tuple(0.7 * c for c in mat.lane)
    for r in lanes:
        a, b = r.line.coords[0], r.line.coords[-1]
        along = math.degrees(math.atan2(b[1] - a[1], b[0] - a[0]))
        pattern = T.Pattern("joints", along + 90, mat.lane_setts[0], mat.lane_setts[1], joint, 0.1, 0.5, 0.12) \
            if mat.lane_setts[0] else None
        P.paint(town, r.line.buffer(r.width / 2, join_style=2), mat.lane, 0.1, pattern)
    if mat.gutter and lanes:
        P.paint(town, unary_union([r.line.buffer(0.25) for r in lanes]), mat.accent, 0.08)


def _paint_streets(town: T.Town, mat: Materials, streets: List[T.Road]) -> None:
    """Wider streets: slab sidewalks, a granite kerb, an unmarked carriageway."""
    for r in streets:
        P.paint(town, r.line.buffer(r.width / 2 + r.sidewalk, join_style=2), mat.walk, 0.06,
                T.Pattern("joints", 0.0, 0.6, 0.6, tuple(0.8 * c for c in mat.walk), 0.08, 0.0, 0.05))
        P.paint(town, r.line.buffer(r.width / 2 + 0.2, join_style=2), T.KERB, 0.04)
        P.paint(town, r.line.buffer(r.width / 2, join_style=2), mat.street, 0.1)


def _paint_square(town: T.Town, rng, mat: Materials, square: Polygon, angle: float) -> None:
    """Flagstones, a border band and bands of an accent stone (grid, diagonals or rings)."""
    P.paint(town, square, mat.square, 0.06,
            T.Pattern("joints", angle, mat.flagstone[0], mat.flagstone[1], tuple(0.72 * c for c in mat.square), 0.1,
                      float(P.pick(rng, [0.0, 0.5])), 0.08))
    border = T._u(rng, (1.2, 3.0))
    inner = square.buffer(-border)
    P.paint(town, square.difference(inner), mat.accent, 0.08,
            T.Pattern("joints", angle, 0.5, 0.5, tuple(0.7 * c for c in mat.accent), 0.1, 0.5, 0.1))
    kind = P.pick(rng, ["grid", "diagonal", "rings"])
    c = square.centroid
    bands = []
    if kind == "rings":
        step = T._u(rng, (6.0, 10.0))
        for r in np.arange(step, 80.0, step):
            bands.append(c.buffer(r + 0.3).difference(c.buffer(r - 0.3)))
    else:
        step = T._u(rng, (8.0, 14.0))
        for k in np.arange(-8, 9):
            for turn in (0.0, 90.0):
                line = LineString([(k * step, -90.0), (k * step, 90.0)])
                line = affinity.rotate(line, angle + turn + (45.0 if kind == "diagonal" else 0.0), origin=(0, 0))
                bands.append(affinity.translate(line, c.x, c.y).buffer(0.3, cap_style=2))
    P.paint(town, unary_union(bands).intersection(inner), mat.accent, 0.06)


# -------------------------------------------------------------------------------------------- furniture
def _along(line: LineString, s: float, offset: float):
    """(x, y, heading in degrees counter-clockwise from +x) at arc length ``s`` shifted ``offset`` m left."""
    a, b = line.interpolate(max(s - 0.5, 0.0)), line.interpolate(min(s + 0.5, line.length))
    t = np.array([b.x - a.x, b.y - a.y])
    t /= max(np.linalg.norm(t), 1e-9)
    c = line.interpolate(s)
    return c.x - t[1] * offset, c.y + t[0] * offset, math.degrees(math.atan2(t[1], t[0]))


def _street_furniture(town: T.Town, rng, streets: List[T.Road], lanes: List[T.Road]) -> None:
    """Lamps and signs along the wider streets, cars parked on one side where the carriageway is 7 m or
    more; nothing left standing in a lane's mouth."""
    for r in streets:
        for side in (-1, 1):
            s = rng.uniform(0, 10)
            while s < r.line.length:
                x, y, _ = _along(r.line, s, side * (r.width / 2 + 0.5))
                (P.lamp if rng.random() < 0.75 else P.sign)(town, rng, x, y)
                s += T._u(rng, (22.0, 34.0))
        if r.width >= 7.0:
            side = 1 if rng.random() < 0.5 else -1
            s = rng.uniform(0, 8)
            while s < r.line.length - 5:
                if rng.random() < 0.55:
                    x, y, h = _along(r.line, s, side * (r.width / 2 - 1.2))
                    T._add_car(town, rng, x, y, h)
                s += T._u(rng, (5.5, 7.0))
    P.drop_objects_in(town, unary_union([r.line.buffer(r.width / 2 + 1.0) for r in lanes]))


def _square_furniture(town: T.Town, rng, mat: Materials, square: Polygon, angle: float) -> None:
    """Fountain or monument in the middle, a row of trees along one or two sides, parasols of a cafe."""
    c = square.centroid
    g = len(town.blocks)
    basin = T._u(rng, (3.5, 6.0))
    stone = P.tone(rng, (0.66, 0.64, 0.60), 0.05)
    if rng.random() < 0.6:  # fountain: a low basin with a column
        town.blocks.append(T.Block(c.x, c.y, 0.0, basin, basin, 0.6, angle, T.POLE, stone, g))
        town.blocks.append(T.Block(c.x, c.y, 0.0, 0.8, 0.8, T._u(rng, (2.0, 4.0)), angle, T.POLE, stone, g))
    else:  # monument: plinth and statue
        town.blocks.append(T.Block(c.x, c.y, 0.0, 2.2, 2.2, 2.0, angle, T.POLE, stone, g))
        town.blocks.append(T.Block(c.x, c.y, 2.0, 0.9, 0.9, 2.2, angle, T.POLE, P.tone(rng, (0.30, 0.40, 0.34)), g))
    ring = orient(square, 1.0).exterior
    coords = np.asarray(ring.coords)
    sides = rng.choice(len(coords) - 1, int(rng.integers(1, 3)), replace=False)
    for k in sides:
        a, b = coords[k], coords[k + 1]
        L = float(np.hypot(*(b - a)))
        t = (b - a) / L
        nrm = np.array([-t[1], t[0]])
        for s in np.arange(6.0, L - 5.0, T._u(rng, (7.0, 11.0))):
            T._add_tree(town, rng, *P.frame_point(a, t, nrm, s, 4.0))
    k = int(rng.integers(len(coords) - 1))
    a, b = coords[k], coords[k + 1]
    L = float(np.hypot(*(b - a)))
    t = (b - a) / L
    nrm = np.array([-t[1], t[0]])
    colour = P.pick(rng, PARASOLS)
    for s in np.arange(8.0, min(L - 8.0, 40.0), 3.5)[: int(rng.integers(0, 7))]:
        x, y = P.frame_point(a, t, nrm, s, 9.0)
        P.post(town, x, y, 2.4, (0.4, 0.4, 0.4), (2.2, 2.6, 2.6, 0.25, angle, colour), thick=0.08)


def _wall_lamps(town: T.Town, rng, lanes: List[T.Road]) -> None:
    """Lamps fixed to the facades of the lanes (where a house stands), 3.6-4.6 m up."""
    walls = prep(P.footprints(town).buffer(0.5))
    for r in lanes:
        s = rng.uniform(2, 10)
        side = 1
        while s < r.line.length:
            x, y, h = _along(r.line, s, side * (r.width / 2 - 0.2))
            if walls.contains(Point(x, y)):
                town.blocks.append(T.Block(x, y, T._u(rng, (3.6, 4.6)), 0.35, 0.35, 0.5, h, T.POLE, (0.12, 0.12, 0.13)))
            side = -side
            s += T._u(rng, town.params.tree_spacing)
