"""Kind of place "campus": a university or institutional campus (places.py builds it through ``build``).

- **Roads**: a rotated grid of 140-200 m (town.py's grid lines), ``params.road_width`` carriageways with
  kerbs, markings, sidewalks, lamps, street trees and parked cars.
- **Walks**: each block between the roads is cut by paved pedestrian walks of 5-9 m into cells of
  ``params.block`` (48-72 m); a lawn strip of 2-5 m along the sidewalks.
- **Cells**: the one nearest the centre is the central **plaza**, the next a **lawn quad**, the others
  mostly **buildings**, some more plazas and quads:
  - buildings: large, flat-roofed, 3-6 storeys (``params.height`` to the eaves) with regular windows and
    roof units: a slab, an L, a U, a courtyard block or two parallel slabs; some low-pitched hip-roofed
    halls (a gym, an auditorium); a paved forecourt with bike racks, lawn with a few trees around;
  - plazas: pavers of a per-town size, a grid of young trees (7-10 m) in dark grates (one species),
    benches, lamps, bike racks along an edge, sometimes a sculpture;
  - quads: lawn (mown in stripes in some), crossed by diagonal or cross paths, rows of trees along edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List

import numpy as np
from shapely import affinity
from shapely.geometry import LineString, Point, Polygon, box
from shapely.ops import unary_union

from . import places as P
from . import town as T

WALLS = [(0.82, 0.80, 0.74), (0.62, 0.36, 0.28), (0.74, 0.66, 0.52), (0.55, 0.60, 0.66), (0.88, 0.88, 0.86),
         (0.50, 0.48, 0.46), (0.70, 0.48, 0.36)]
PAVERS = [(0.66, 0.64, 0.60), (0.58, 0.56, 0.54), (0.70, 0.58, 0.48), (0.52, 0.50, 0.50), (0.76, 0.72, 0.64)]
BIKES = [(0.10, 0.10, 0.12), (0.70, 0.10, 0.10), (0.15, 0.30, 0.60), (0.85, 0.85, 0.85), (0.25, 0.45, 0.25)]


@dataclass
class Materials:
    """Colours and paving sizes of one campus (drawn per town)."""
    lawn: T.Tuple
    stripes: bool
    walk: T.Tuple
    plaza: T.Tuple
    paver: tuple                        # paver length, width (m)
    walls: List[T.Tuple]
    roofs: List[T.Tuple]
    hall_roof: T.Tuple
    species: List[str]


def _materials(rng, shift: float) -> Materials:
    """Lawn, walk and plaza pavers, 3 facade colours (concrete, brick, sandstone, glass grey...), roof
    membranes, the roof of the halls and 3-5 tree species."""
    walk = P.tone(rng, P.pick(rng, PAVERS), 0.03)
    return Materials(
        lawn=P.tone(rng, (0.33, 0.47, 0.21), 0.04), stripes=bool(rng.random() < 0.5), walk=walk,
        plaza=P.tone(rng, P.pick(rng, PAVERS), 0.04), paver=(T._u(rng, (0.3, 1.2)), T._u(rng, (0.2, 0.6))),
        walls=[P.tone(rng, WALLS[i], 0.04, shift) for i in rng.choice(len(WALLS), 3, replace=False)],
        roofs=[P.tone(rng, c, 0.03) for c in T.FLAT_ROOFS], hall_roof=P.tone(rng, P.pick(rng, T.PITCHED_ROOFS
                                                                                         + [(0.40, 0.50, 0.45)]), 0.03),
        species=[str(s) for s in rng.choice(list(P.SPECIES), int(rng.integers(3, 6)), replace=False)])


def build(town: T.Town, rng):
    """Lay out, paint and furnish a campus; returns the open ground where cameras may stand."""
    p, half = town.params, town.size_m / 2
    mat = _materials(rng, p.palette_shift)
    town.base_rgb = mat.lawn
    angle = T._u(rng, p.grid_angle)
    for line in T._grid_lines(rng, half, (140.0, 200.0), angle):
        town.roads.append(T.Road(line, round(T._u(rng, p.road_width), 1), round(T._u(rng, p.sidewalk), 1)))
    streets = unary_union([r.line.buffer(r.width / 2 + r.sidewalk) for r in town.roads])
    area = box(-half - 30, -half - 30, half + 30, half + 30).difference(streets)
    cells = []
    walks = []
    for blk in getattr(area, "geoms", [area]):
        if blk.area > 600:
            P.paint(town, blk, mat.lawn, 0.12)
            w, c = _cells(rng, p, blk, angle)
            walks.append(w)
            cells += c
    walk = unary_union(walks)
    P.paint(town, walk, mat.walk, 0.06, T.Pattern("joints", angle, 0.6, 0.3, tuple(0.8 * c for c in mat.walk),
                                                  0.05, 0.5, 0.05))
    cells.sort(key=lambda g: g.centroid.distance(Point(0, 0)))
    open_ground = [walk]
    uses = {"plaza": 0, "quad": 0, "building": 0}
    for k, cell in enumerate(cells):
        use = ("plaza", "quad")[k] if k < 2 else P.pick(rng, ["building", "plaza", "quad"], [0.65, 0.15, 0.2])
        if use == "building" and cell.area < 900:
            use = "quad"
        uses[use] += 1
        open_ground.append({"plaza": _plaza, "quad": _quad, "building": _institute}[use](town, rng, mat, cell, angle))
    _walk_lamps(town, rng, walk, angle)
    T._paint_roads(town, rng)
    T._street_furniture(town, rng)
    town.features.update(plaza=cells[0] if cells else Polygon(), plazas=uses["plaza"], quads=uses["quad"],
                         institutes=uses["building"])
    roads = [r.line.buffer(r.width / 2 + r.sidewalk - 0.3) for r in town.roads]
    return unary_union(roads + open_ground)


# ------------------------------------------------------------------------------------------------ layout
def _cuts(rng, lo: float, hi: float, spacing) -> List[tuple]:
    """Intervals (a, b) of cells between ``lo`` and ``hi``, separated by walks of 5-9 m."""
    out, pos = [], lo
    while pos < hi - 20:
        w = min(T._u(rng, spacing), hi - pos)
        if hi - pos - w < 25:
            w = hi - pos
        out.append((pos, pos + w))
        pos += w + T._u(rng, (5.0, 9.0))
    return out


def _cells(rng, p: T.StyleParams, blk: Polygon, angle: float):
    """(walks, cells) of one block: a lawn strip of 2-5 m along its streets, then cells of ``params.block``
    between walks, in the grid's frame."""
    local = affinity.rotate(blk, -angle, origin=(0, 0))
    inner = local.buffer(-T._u(rng, (2.0, 5.0)), join_style=2)
    if inner.is_empty:
        return Polygon(), []
    x0, y0, x1, y1 = inner.bounds
    cells = []
    for a, b in _cuts(rng, x0, x1, p.block):
        for c, d in _cuts(rng, y0, y1, p.block):
            cell = box(a, c, b, d).intersection(inner)
            if cell.geom_type == "Polygon" and cell.area > 200:
                cells.append(cell)
    walk = inner.difference(unary_union(cells).buffer(0.01)).buffer(0) if cells else inner  # no slivers
    return affinity.rotate(walk, angle, origin=(0, 0)), [affinity.rotate(c, angle, origin=(0, 0)) for c in cells]


# ----------------------------------------------------------------------------------------------- cells
def _frame(cell: Polygon, angle: float):
    """Local bounds (u0, v0, u1, v1) of a cell in the grid's frame, and a function (u, v) -> (x, y)."""
    return affinity.rotate(cell, -angle, origin=(0, 0)).bounds, lambda u, v: T._rot(u, v, angle)


def _institute(town: T.Town, rng, mat: Materials, cell: Polygon, angle: float):
    """A large building in its cell (slab, L, U, courtyard block, twin slabs or a hip-roofed hall), a
    forecourt with bike racks towards one walk, lawn with trees around. Returns the forecourt."""
    (u0, v0, u1, v1), xy = _frame(cell, angle)
    m = T._u(rng, (3.0, 6.0))
    fore = T._u(rng, (6.0, 10.0))
    a0, b0, a1, b1 = u0 + m, v0 + m + fore, u1 - m, v1 - m  # the forecourt lies along v0
    W, H = a1 - a0, b1 - b0
    wing = min(T._u(rng, (12.0, 18.0)), W / 2.5, H / 2.5)
    cu, cv = (a0 + a1) / 2, (b0 + b1) / 2
    shape = P.pick(rng, ["slab", "L", "U", "court", "twin", "hall"], [0.25, 0.2, 0.2, 0.15, 0.1, 0.1])
    if shape == "slab" or wing < 9.0:
        rects = [(cu, cv, W, min(H, T._u(rng, (14.0, 22.0))))]
    elif shape == "L":
        rects = [(cu, b0 + wing / 2, W, wing), (a0 + wing / 2, (b0 + wing + b1) / 2, wing, H - wing)]
    elif shape == "U":
        rects = [(cu, b1 - wing / 2, W, wing), (a0 + wing / 2, (b0 + b1 - wing) / 2, wing, H - wing),
                 (a1 - wing / 2, (b0 + b1 - wing) / 2, wing, H - wing)]
    elif shape == "court":
        rects = [(cu, b0 + wing / 2, W, wing), (cu, b1 - wing / 2, W, wing),
                 (a0 + wing / 2, cv, wing, H - 2 * wing), (a1 - wing / 2, cv, wing, H - 2 * wing)]
    elif shape == "twin":
        rects = [(cu, b0 + wing / 2, W, wing), (cu, b1 - wing / 2, W, wing)]
    else:
        rects = []
    P.paint(town, cell, mat.lawn, 0.12)
    forecourt = affinity.rotate(box(u0 + m, v0 + 0.5, u1 - m, v0 + m + fore), angle, origin=(0, 0))
    P.paint(town, forecourt, mat.plaza, 0.06)
    wall = T._jitter_rgb(rng, P.pick(rng, mat.walls), 0.03)
    if rects:
        eave = T._u(rng, town.params.height)
        world = [(*xy(u, v), L, D, angle) for u, v, L, D in rects]
        town.buildings.append(T.Building(world, round(eave, 1), "flat", 0.0, wall, P.pick(rng, mat.roofs),
                                         eave / max(round(eave / T._u(rng, (3.6, 4.3))), 1), T._u(rng, (2.6, 4.0)),
                                         False, True))
        T._roof_furniture(town, rng, world[0], eave)
    else:  # a hall: low-pitched hip roof, tall blank or sparse windows
        L, D = max(W, H), min(W, H, T._u(rng, (24.0, 36.0)))
        ang = angle if W >= H else angle + 90
        town.buildings.append(P.pitched(*xy(cu, cv), L, D, ang, T._u(rng, (8.0, 12.0)), T._u(rng, (12.0, 22.0)), wall,
                                        mat.hall_roof, 4.5, T._u(rng, (4.0, 7.0)), windows=rng.random() < 0.5,
                                        shape="hip"))
    for k in range(int(rng.integers(1, 4))):  # bike racks along the forecourt
        _bike_rack(town, rng, *xy(a0 + 3 + k * (W - 6) / 3 + 1, v0 + m + fore / 2), angle)
    fp = town.buildings[-1].footprint().buffer(3.0)
    lawn = cell.difference(fp).difference(forecourt).buffer(-2.0)
    for q in P.points_inside(rng, lawn, int(rng.integers(1, 6))):
        P.plant(town, rng, q.x, q.y, P.pick(rng, mat.species), T._u(rng, (0.7, 1.1)))
    return forecourt


def _plaza(town: T.Town, rng, mat: Materials, cell: Polygon, angle: float):
    """Pavers, a grid of young trees in dark grates (one species, 7-10 m), benches, lamps, bike racks along one
    edge, sometimes a sculpture in the middle. Returns the plaza."""
    (u0, v0, u1, v1), xy = _frame(cell, angle)
    P.paint(town, cell, mat.plaza, 0.06, T.Pattern("joints", angle + float(P.pick(rng, [0.0, 45.0])), mat.paver[0],
                                                   mat.paver[1], tuple(0.78 * c for c in mat.plaza), 0.05,
                                                   float(P.pick(rng, [0.0, 0.5])), 0.08))
    species, step = P.pick(rng, mat.species), T._u(rng, (7.0, 10.0))
    keep = rng.uniform(0.5, 0.9)
    inner = cell.buffer(-4.0)
    grates = []
    open_middle = Point(*xy((u0 + u1) / 2, (v0 + v1) / 2)).buffer(T._u(rng, (8.0, 14.0)))
    for u in np.arange(u0 + 5.0, u1 - 4.0, step):
        for v in np.arange(v0 + 5.0, v1 - 4.0, step):
            x, y = xy(u, v)
            if inner.contains(Point(x, y)) and not open_middle.contains(Point(x, y)) and rng.random() < keep:
                grates.append(T._rect(x, y, 1.6, 1.6, angle))
                P.plant(town, rng, x, y, species, T._u(rng, (0.45, 0.65)))  # young, pruned trees
                if rng.random() < 0.3:
                    P.bench(town, *xy(u + step / 2, v), angle, P.tone(rng, (0.40, 0.30, 0.22), 0.03))
    P.paint(town, unary_union(grates) if grates else None, (0.20, 0.19, 0.18), 0.04)
    c = open_middle.centroid
    if rng.random() < 0.4:  # sculpture on a plinth
        g = len(town.blocks)
        town.blocks.append(T.Block(c.x, c.y, 0.0, 2.0, 2.0, 0.8, angle, T.POLE, P.tone(rng, (0.70, 0.68, 0.64)), g))
        town.blocks.append(T.Block(c.x, c.y, 0.8, 1.0, 0.6, T._u(rng, (1.5, 3.5)), angle + rng.uniform(0, 90), T.POLE,
                                   P.tone(rng, P.pick(rng, [(0.35, 0.30, 0.25), (0.75, 0.30, 0.15), (0.8, 0.8, 0.8)])), g))
    for k in range(int(rng.integers(1, 4))):
        _bike_rack(town, rng, *xy(u0 + 3 + k * 9.0, v1 - 2.5), angle)
    return cell


def _quad(town: T.Town, rng, mat: Materials, cell: Polygon, angle: float):
    """Lawn crossed by two diagonal paths (or a cross), trees in rows along two edges and a few solitary.
    Returns its paths."""
    (u0, v0, u1, v1), xy = _frame(cell, angle)
    stripes = T.Pattern("stripes", angle, T._u(rng, (2.5, 5.0)), 0.5, tuple(0.87 * c for c in mat.lawn)) \
        if mat.stripes else None
    P.paint(town, cell, mat.lawn, 0.1, stripes)
    corners = [xy(u0, v0), xy(u1, v1), xy(u1, v0), xy(u0, v1)]
    mids = [xy((u0 + u1) / 2, v0), xy((u0 + u1) / 2, v1), xy(u0, (v0 + v1) / 2), xy(u1, (v0 + v1) / 2)]
    ends = corners if rng.random() < 0.6 else mids
    w = T._u(rng, (3.0, 4.5))
    paths = unary_union([LineString(ends[0:2]).buffer(w / 2), LineString(ends[2:4]).buffer(w / 2)]).intersection(cell)
    P.paint(town, paths, mat.walk, 0.06)
    species = P.pick(rng, mat.species)
    step = T._u(rng, (7.0, 11.0))
    for edge in rng.choice(4, 2, replace=False):
        for s in np.arange(4.0, (u1 - u0 if edge < 2 else v1 - v0) - 3.0, step):
            u, v = [(u0 + s, v0 + 3.5), (u0 + s, v1 - 3.5), (u0 + 3.5, v0 + s), (u1 - 3.5, v0 + s)][edge]
            x, y = xy(u, v)
            if not paths.buffer(2.0).contains(Point(x, y)):
                P.plant(town, rng, x, y, species, 1.0)
    free = cell.buffer(-6.0).difference(paths.buffer(4.0))
    for _ in range(int(rng.integers(0, 4))):
        if free.is_empty:
            break
        x0, y0, x1, y1 = free.bounds
        q = Point(rng.uniform(x0, x1), rng.uniform(y0, y1))
        if free.contains(q):
            P.plant(town, rng, q.x, q.y, P.pick(rng, mat.species), T._u(rng, (0.9, 1.25)))
    return paths


# ------------------------------------------------------------------------------------------- furniture
def _bike_rack(town: T.Town, rng, x, y, angle: float) -> None:
    """A rail of 4-10 stands 0.8 m apart along ``angle`` with bikes (1.75 m, across it) in 30-90 % of them;
    counted in ``town.features["bikes"]``."""
    n = int(rng.integers(4, 11))
    g = len(town.blocks)
    a = math.radians(angle)
    town.blocks.append(T.Block(float(x), float(y), 0.0, 0.8 * n, 0.06, 0.75, angle, T.POLE, (0.55, 0.56, 0.58), g))
    full = T._u(rng, (0.3, 0.9))
    for k in range(n):
        s = (k - (n - 1) / 2) * 0.8
        if rng.random() < full:
            town.blocks.append(T.Block(float(x + s * math.cos(a)), float(y + s * math.sin(a)), 0.0, 1.75, 0.08, 1.0,
                                       angle + 90, T.POLE, P.tone(rng, P.pick(rng, BIKES), 0.04), g))
            town.features["bikes"] = town.features.get("bikes", 0) + 1


def _walk_lamps(town: T.Town, rng, walk, angle: float) -> None:
    """Lamps of 4-5 m every 14-20 m along the edges of the walks, 0.8 m in."""
    pole = P.tone(rng, (0.25, 0.26, 0.28), 0.03)
    edge = walk.buffer(-0.8)
    step = T._u(rng, (14.0, 20.0))
    for poly in getattr(edge, "geoms", [edge]):
        if poly.is_empty:
            continue
        for ring in [poly.exterior] + list(poly.interiors):
            for s in np.arange(rng.uniform(0, step), ring.length, step):
                q = ring.interpolate(s)
                h = T._u(rng, (4.0, 5.0))
                P.post(town, q.x, q.y, h, pole, (h - 0.3, 0.6, 0.6, 0.3, angle, (0.88, 0.88, 0.84)), 0.14)
