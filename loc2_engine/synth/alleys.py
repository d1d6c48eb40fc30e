"""Kind of place "alleys": a dense East-Asian district of narrow lanes (places.py builds it through ``build``).

- **Alleys**: a lattice of nodes, ``params.block`` apart one way and 1.3-2 times that the other (long
  superblocks), jittered by up to 12 % of the spacing and rotated by ``params.grid_angle``, joined by alleys of
  ``params.road_width`` (2.5-6 m, facade to facade) that run from node to node, 12 % of the links along the
  blocks and 30 % across them missing (dead ends, T-junctions). No kerbs and no sidewalks: worn asphalt or
  concrete pavers, per town white edge lines, a green or red-brown pedestrian strip along one side, or nothing.
- **Through streets**: one (and in 60 % of towns a second, crossing it) lattice line becomes a street of
  9-16 m with kerbs, sidewalks of ``params.sidewalk``, the town's road markings (Japanese ones unless the
  preset draws others), lamps, street trees and parked cars (town.py's street painting and furniture).
- **Buildings** stand 0.3-0.9 m apart (not sharing walls) on lots of 4-12 m frontage, 7-14 m deep, set back
  0-1.5 m from an alley, and rear buildings fill the blocks' insides: houses of 2-3 storeys with low gable
  or hip roofs of grey, blue or brown tiles (or flat), shops with flats above (``params.height``: 3-6
  storeys, flat roofs) and along the streets mid-rise apartment blocks of 6-10 storeys. Flat roofs carry
  water tanks on stands, stair houses and units.
- **Street life**: vertical signboards sticking out of shop facades and fascia boards over shopfronts,
  vending machines, scooters, air-conditioner units and potted plants by the walls, a few coin parking lots
  (3-6 painted bays, cars, a pay machine) and pocket parks with trees.
- **Overhead wires**: concrete utility poles (9-12 m, a cross-arm, some with a transformer) every
  ``params.tree_spacing`` metres along one side of each alley and street, three to five wires strung between
  consecutive poles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
from shapely.geometry import LineString, Point, Polygon, box
from shapely.geometry.polygon import orient
from shapely.ops import unary_union
from shapely.prepared import prep

from . import places as P
from . import town as T

WALLS = [(0.86, 0.84, 0.78), (0.74, 0.72, 0.68), (0.80, 0.76, 0.66), (0.62, 0.62, 0.64), (0.88, 0.86, 0.84),
         (0.70, 0.64, 0.56), (0.58, 0.60, 0.58), (0.82, 0.74, 0.70), (0.66, 0.70, 0.74)]
TILES = [(0.30, 0.32, 0.36), (0.22, 0.28, 0.38), (0.42, 0.30, 0.24), (0.36, 0.36, 0.36), (0.55, 0.34, 0.24)]
FLAT = [(0.58, 0.58, 0.56), (0.50, 0.52, 0.52), (0.66, 0.64, 0.60), (0.44, 0.48, 0.46)]
SIGNS = [(0.85, 0.15, 0.12), (0.95, 0.85, 0.20), (0.15, 0.35, 0.75), (0.95, 0.95, 0.92), (0.10, 0.55, 0.30),
         (0.95, 0.50, 0.10), (0.12, 0.12, 0.14)]
VENDING = [(0.80, 0.12, 0.12), (0.15, 0.30, 0.70), (0.92, 0.92, 0.90), (0.15, 0.15, 0.16)]
CONCRETE_POLE = (0.58, 0.58, 0.55)
WIRE = (0.07, 0.07, 0.08)


@dataclass
class Materials:
    """Colours and surfaces of one district (drawn per town)."""
    alley: T.Tuple
    pavers: bool                    # concrete pavers instead of asphalt in the alleys
    edge_lines: bool                # white edge lines along the alleys
    strip: Optional[T.Tuple]        # a coloured pedestrian strip along one side of the wider alleys, or None
    walls: List[T.Tuple]
    tiles: List[T.Tuple]
    flat: List[T.Tuple]
    pitched_share: float            # fraction of houses with a pitched roof
    yard: T.Tuple


def _materials(rng, shift: float) -> Materials:
    """The district's palette: one alley surface, its markings, a few wall colours, tiles and roof decks."""
    strip = P.tone(rng, P.pick(rng, [(0.25, 0.50, 0.32), (0.55, 0.30, 0.24)]), 0.03) if rng.random() < 0.35 else None
    return Materials(
        alley=P.tone(rng, P.pick(rng, [(0.30, 0.30, 0.31), (0.38, 0.38, 0.37), (0.46, 0.45, 0.43)]), 0.03),
        pavers=bool(rng.random() < 0.2), edge_lines=bool(strip is None and rng.random() < 0.7), strip=strip,
        walls=[P.tone(rng, WALLS[i], 0.04, shift) for i in rng.choice(len(WALLS), 6, replace=False)],
        tiles=[P.tone(rng, TILES[i], 0.03) for i in rng.choice(len(TILES), 3, replace=False)],
        flat=[P.tone(rng, c, 0.03) for c in FLAT], pitched_share=T._u(rng, (0.25, 0.6)),
        yard=P.tone(rng, (0.52, 0.51, 0.48), 0.04))


def build(town: T.Town, rng):
    """Lay out, paint and furnish an alley district; returns the open ground where cameras may stand."""
    p, half = town.params, town.size_m / 2
    mat = _materials(rng, p.palette_shift)
    town.base_rgb = mat.yard
    if town.markings is None:  # the region's own markings unless the preset draws a style per town
        town.markings = T.draw_markings(("japan",), T.marking_streams(town.seed)[0])
    streets, alleys = _network(rng, p, half)
    lanes = unary_union([r.line.buffer(r.width / 2, cap_style=2) for r in alleys])
    ways = unary_union([lanes] + [r.line.buffer(r.width / 2 + r.sidewalk, cap_style=2) for r in streets])
    area = box(-half - 30, -half - 30, half + 30, half + 30).difference(ways)
    blocks = [g for g in getattr(area, "geoms", [area]) if g.area > 60]
    _paint_alleys(town, mat, alleys)
    town.roads = streets  # town.py paints and furnishes the streets only; the alleys are this module's
    T._paint_roads(town, rng)
    on_street = prep(unary_union([r.line.buffer(r.width / 2 + r.sidewalk + 3.0) for r in streets]))
    open_lots = []
    for blk in blocks:
        open_lots += _block(town, rng, mat, blk, on_street)
    T._street_furniture(town, rng)
    P.drop_objects_in(town, lanes.difference(unary_union([r.line.buffer(r.width / 2 + r.sidewalk)
                                                          for r in streets])))
    town.roads = streets + alleys
    walls = P.footprints(town)
    near_wall, in_wall = prep(walls.buffer(0.9)), prep(walls.buffer(0.3))
    for r in alleys:
        _wall_clutter(town, rng, r, near_wall)
    poles = sum(_poles_and_wires(town, rng, r, in_wall) for r in town.roads)
    town.features.update(alleys=len(alleys), streets=len(streets), poles=poles,
                         coin_parking=sum(1 for kind, _ in open_lots if kind == "parking"),
                         pocket_parks=sum(1 for kind, _ in open_lots if kind == "park"))
    walk = [r.line.buffer(max(r.width / 2 - 0.3, 0.3)) for r in alleys]
    walk += [r.line.buffer(r.width / 2 + r.sidewalk - 0.3) for r in streets]
    return unary_union(walk + [g for _, g in open_lots])


# ------------------------------------------------------------------------------------------------ layout
def _network(rng, p: T.StyleParams, half: float) -> Tuple[List[T.Road], List[T.Road]]:
    """(through streets, alleys) over a jittered, rotated lattice of nodes covering the town plus 40 m."""
    s = T._u(rng, p.block)
    stretch = T._u(rng, (1.3, 2.0))
    ang = T._u(rng, p.grid_angle)
    k = int(math.ceil((half + 40) / s)) + 1
    kx = int(math.ceil((half + 40) / (s * stretch))) + 1
    ix, iy = np.arange(-kx, kx + 1), np.arange(-k, k + 1)
    jit = rng.uniform(-0.12 * s, 0.12 * s, (len(ix), len(iy), 2))
    nodes = np.array([[T._rot(ix[i] * s * stretch + jit[i, j, 0], iy[j] * s + jit[i, j, 1], ang)
                       for j in range(len(iy))] for i in range(len(ix))])
    keep_along, keep_across = 0.88, 0.7              # links kept along and across the superblocks
    row = k + int(rng.integers(-1, 2))              # the through street along the superblocks
    col = kx + int(rng.integers(-1, 2)) if rng.random() < 0.6 else None
    # straight through the jittered nodes of their lattice line: the alleys meeting them end inside them
    streets = [T.Road(LineString([nodes[0, row], nodes[-1, row]]), round(T._u(rng, (9.0, 16.0)), 1),
                      round(T._u(rng, p.sidewalk), 1))]
    if col is not None:
        streets.append(T.Road(LineString([nodes[col, 0], nodes[col, -1]]), round(T._u(rng, (9.0, 14.0)), 1),
                              round(T._u(rng, p.sidewalk), 1)))
    alleys = []
    runs = [(nodes[:, j], keep_along, j == row) for j in range(len(iy))]
    runs += [(nodes[i, :], keep_across, col is not None and i == col) for i in range(len(ix))]
    for line_nodes, keep, on_street in runs:
        kept = rng.random(len(line_nodes) - 1) < keep
        if on_street:
            continue
        start = 0
        for m in range(len(kept) + 1):  # one alley per run of kept links, its width drawn once
            if m < len(kept) and kept[m]:
                continue
            if m > start:
                line = LineString(line_nodes[start:m + 1])
                if line.distance(Point(0, 0)) < half * 1.5:
                    alleys.append(T.Road(line, round(T._u(rng, p.road_width), 1), 0.0, False, "lane"))
            start = m + 1
    return streets, alleys


# --------------------------------------------------------------------------------------------- buildings
def _block(town: T.Town, rng, mat: Materials, blk: Polygon, on_street) -> List[Tuple[str, Polygon]]:
    """Buildings on lots along the block's edges (interior on their left), 0.3-0.9 m apart; some lots are
    coin parking or a pocket park. Returns those open lots as (kind, polygon)."""
    blk = orient(blk.simplify(0.3), 1.0)
    if blk.geom_type != "Polygon" or blk.is_empty:
        return []
    P.paint(town, blk, mat.yard, 0.08)
    inside = prep(blk.buffer(0.05))
    ring = np.asarray(blk.exterior.coords)
    placed: List[Polygon] = []
    lots: List[Tuple[str, Polygon]] = []
    for a, t, nrm, L, edge_ang in P.block_edges(ring, 5.0):
        street = on_street.contains(Point(*P.frame_point(a, t, nrm, L / 2, -1.0)))
        pos = 0.0
        while pos < L - 4.0:
            w = min(T._u(rng, (4.0, 12.0) if not street else (6.0, 18.0)), L - pos)
            gap = T._u(rng, (0.3, 0.9))
            setback = 0.0 if street else T._u(rng, (0.0, 1.5))
            d = T._u(rng, (7.0, 14.0))
            cx, cy = P.frame_point(a, t, nrm, pos + w / 2, setback + d / 2)
            fp = T._rect(cx, cy, w - gap, d, edge_ang)
            if w < 4.0 or not inside.contains(fp) or any(fp.intersection(q).area > 0.2 for q in placed):
                pos += 1.0  # a corner or a short edge: slide along until a lot fits
                continue
            use = rng.random()
            if use < 0.05 and w >= 7.5:
                lots.append(("parking", fp))
                _coin_parking(town, rng, fp, edge_ang, a, t, nrm, pos, w - gap, d)
            elif use < 0.08 and w >= 6.0:
                lots.append(("park", fp))
                _pocket_park(town, rng, fp)
            else:
                town.buildings.append(_building(town, rng, mat, cx, cy, w - gap, d, edge_ang, street))
                if street or rng.random() < 0.3:
                    _signboards(town, rng, a, t, nrm, pos, w - gap, setback, edge_ang)
            placed.append(fp)
            pos += w
    _fill_interior(town, rng, mat, blk, placed, P.main_angle(ring))
    return lots


def _fill_interior(town: T.Town, rng, mat: Materials, blk: Polygon, placed: List[Polygon], angle: float) -> None:
    """Rear buildings (5-14 m, houses or shops with flats, as along the alleys) in what the lots along the edges
    leave of a block, 0.6 m apart, so that roofs cover most of it as in a dense district."""
    room = blk.buffer(-0.6).difference(unary_union(placed).buffer(0.6)) if placed else blk.buffer(-0.6)
    if room.is_empty or room.area < 25:
        return
    for x, y, L, D in P.scatter_rects(rng, prep(room), room.bounds, int(room.area / 12), (5.0, 14.0), (5.0, 11.0),
                                      angle, 0.6):
        town.buildings.append(_building(town, rng, mat, x, y, L, D, angle, False))


def _building(town: T.Town, rng, mat: Materials, cx, cy, w, d, edge_ang, street: bool) -> T.Building:
    """One building on a lot of frontage ``w`` and depth ``d`` (m): an apartment block (streets, wide lots), a
    shop with flats above, or a house; flat roofs get water tanks and units."""
    wall = T._jitter_rgb(rng, mat.walls[int(rng.integers(len(mat.walls)))], 0.04)
    kind = rng.random()
    if street and w >= 10.0 and kind < 0.5:
        eave, shop = T._u(rng, (18.0, 30.0)), rng.random() < 0.5
    elif street or kind < 0.35:
        eave, shop = T._u(rng, town.params.height), True
    else:
        eave, shop = T._u(rng, (5.5, 9.0)), rng.random() < 0.15
    floor_h = eave / max(2, round(eave / 3.0))
    bay = T._u(rng, (1.6, 2.8))
    if eave < 9.5 and rng.random() < mat.pitched_share:
        roof = mat.tiles[int(rng.integers(len(mat.tiles)))]
        long_side = max(w, d)
        shape = "hip" if rng.random() < 0.4 else "gable"
        along = w >= d
        return P.pitched(cx, cy, long_side, min(w, d), edge_ang if along else edge_ang + 90, eave,
                         T._u(rng, (18.0, 30.0)), wall, roof, floor_h, bay, shop, shape=shape)
    roof = mat.flat[int(rng.integers(len(mat.flat)))]
    rect = (float(cx), float(cy), float(w), float(d), float(edge_ang))
    T._roof_furniture(town, rng, rect, round(eave, 2))
    if rng.random() < 0.6:
        _water_tank(town, rng, rect, round(eave, 2))
    return P.flat(cx, cy, w, d, edge_ang, eave, wall, roof, floor_h, bay, shop)


def _water_tank(town: T.Town, rng, rect, eave: float) -> None:
    """A tank (1.2-2 m) on a 0.8-1.5 m stand anywhere 1.5 m inside the walls of a flat roof."""
    cx, cy, L, D, ang = rect
    if L < 4.0 or D < 4.0:
        return
    size, stand = T._u(rng, (1.2, 2.0)), T._u(rng, (0.8, 1.5))
    u, v = rng.uniform(-L / 2 + 1.5, L / 2 - 1.5), rng.uniform(-D / 2 + 1.5, D / 2 - 1.5)
    x, y = T._rot(u, v, ang)
    g = len(town.blocks)
    grey = P.tone(rng, (0.55, 0.56, 0.58), 0.05)
    town.blocks.append(T.Block(cx + x, cy + y, eave, size * 0.9, size * 0.9, stand, ang, T.POLE, (0.3, 0.3, 0.3), g))
    town.blocks.append(T.Block(cx + x, cy + y, eave + stand, size, size, size, ang,
                               T.POLE, P.pick(rng, [grey, (0.80, 0.80, 0.78), (0.35, 0.45, 0.62)]), g))


def _signboards(town: T.Town, rng, a, t, nrm, pos, w, setback, edge_ang) -> None:
    """A fascia board over the shopfront and one or two vertical boards sticking out of the facade."""
    front = setback - 0.15
    x, y = P.frame_point(a, t, nrm, pos + w / 2, front)
    town.blocks.append(T.Block(x, y, T._u(rng, (2.8, 3.4)), w * T._u(rng, (0.6, 0.95)), 0.25, T._u(rng, (0.6, 1.0)),
                               edge_ang, T.POLE, P.pick(rng, SIGNS)))
    for _ in range(int(rng.integers(1, 3))):
        out = T._u(rng, (0.6, 1.1))
        x, y = P.frame_point(a, t, nrm, pos + rng.uniform(0.5, max(w - 0.5, 0.6)), setback - out / 2)
        town.blocks.append(T.Block(x, y, T._u(rng, (3.2, 5.0)), out, 0.25, T._u(rng, (1.5, 5.0)), edge_ang + 90,
                                   T.POLE, P.pick(rng, SIGNS)))


def _coin_parking(town: T.Town, rng, fp: Polygon, edge_ang, a, t, nrm, pos, w, d) -> None:
    """Asphalt, bays of 2.5 m across the lot with white or yellow lines, cars in most, a pay machine."""
    P.paint(town, fp, P.tone(rng, (0.26, 0.26, 0.27), 0.02), 0.1)
    line = P.pick(rng, [T.WHITE, T.YELLOW])
    bays = int(w // 2.5)
    start = pos + (w - bays * 2.5) / 2
    depth = min(d - 0.5, 5.0)
    marks = [LineString([P.frame_point(a, t, nrm, start + k * 2.5, 0.3),
                         P.frame_point(a, t, nrm, start + k * 2.5, depth)]).buffer(0.06, cap_style=2)
             for k in range(bays + 1)]
    P.paint(town, unary_union(marks), line, 0.03)
    for k in range(bays):
        if rng.random() < 0.7:
            x, y = P.frame_point(a, t, nrm, start + (k + 0.5) * 2.5, 0.3 + depth / 2)
            T._add_car(town, rng, x, y, edge_ang + 90 + rng.uniform(-3, 3))
    x, y = P.frame_point(a, t, nrm, start + bays * 2.5 + 0.3, 0.6)
    P.post(town, x, y, 1.4, (0.85, 0.80, 0.30), thick=0.45)


def _pocket_park(town: T.Town, rng, fp: Polygon) -> None:
    """Gravel or sand with up to three young trees."""
    P.paint(town, fp, P.tone(rng, P.pick(rng, [(0.66, 0.62, 0.54), (0.58, 0.56, 0.50)]), 0.04), 0.12)
    for q in P.points_inside(rng, fp.buffer(-2.0), int(rng.integers(1, 4))):
        P.plant(town, rng, q.x, q.y, P.pick(rng, ["maple", "lime", "pine"]), T._u(rng, (0.6, 1.0)))


# -------------------------------------------------------------------------------------------- the alleys
def _paint_alleys(town: T.Town, mat: Materials, alleys: List[T.Road]) -> None:
    """Asphalt or concrete pavers; white edge lines 0.3 m in, or a coloured strip along one side."""
    joint = tuple(0.75 * c for c in mat.alley)
    for r in alleys:
        a, b = r.line.coords[0], r.line.coords[-1]
        along = math.degrees(math.atan2(b[1] - a[1], b[0] - a[0]))
        pattern = T.Pattern("joints", along, 0.4, 0.2, joint, 0.04, 0.5, 0.06) if mat.pavers else None
        P.paint(town, r.line.buffer(r.width / 2, cap_style=2), mat.alley, 0.12, pattern)
    marks = []
    for r in alleys:
        if r.width < 3.5:
            continue
        if mat.edge_lines:
            marks += [e.buffer(0.075, cap_style=2) for e in (T.side_line(r.line, r.width / 2 - 0.3, s) for s in (-1, 1))
                      if e is not None]
        elif mat.strip is not None:
            e = T.side_line(r.line, r.width / 2 - 0.5, 1)
            if e is not None:
                P.paint(town, e.buffer(0.45, cap_style=2), mat.strip, 0.05)
    if marks:
        P.paint(town, unary_union(marks), T.WHITE, 0.05)


#: what stands against an alley's walls: (share, length along the wall, depth, height, z0, material, colours, how many)
CLUTTER = (
    (0.15, 1.0, 0.75, 1.85, 0.0, T.POLE, VENDING, (1, 2)),            # vending machines
    (0.20, 1.75, 0.6, 0.9, 0.2, T.CAR, T.CAR_COLOURS, (1, 3)),        # scooters, parked along the wall
    (0.30, 0.8, 0.35, 0.6, 0.0, T.POLE, [(0.82, 0.82, 0.78)], (1, 1)),  # air-conditioner units
    (0.35, 0.5, 0.5, 0.8, 0.0, T.HEDGE, [(0.22, 0.36, 0.16)], (1, 3)),  # potted plants
)


def _wall_clutter(town: T.Town, rng, r: T.Road, near_wall) -> None:
    """Vending machines, scooters, air-conditioner units and potted plants against the walls of an alley,
    every 3-9 m on either side where a building stands (``near_wall``: prepared, walls grown by 0.9 m)."""
    shares = np.cumsum([c[0] for c in CLUTTER])
    s = rng.uniform(1, 6)
    while s < r.line.length:
        side = 1 if rng.random() < 0.5 else -1
        frame = T._frame(r.line, s)
        if frame is None:
            break
        c, t, nrm = frame
        ang = math.degrees(math.atan2(t[1], t[0]))
        _, length, depth, height, z0, material, colours, count = CLUTTER[int(np.searchsorted(shares, rng.random()))]
        q = c + nrm * side * (r.width / 2 - depth / 2 - 0.05)
        walls_here = near_wall.contains(Point(*(c + nrm * side * (r.width / 2 + 0.3))))
        if walls_here:
            rgb = P.tone(rng, colours[int(rng.integers(len(colours)))], 0.04)
            for k in range(int(rng.integers(count[0], count[1] + 1))):
                x, y = q + t * k * (length + 0.1)
                town.blocks.append(T.Block(float(x), float(y), z0, length, depth, height * T._u(rng, (0.85, 1.15)),
                                           ang, material, rgb))
        s += T._u(rng, (3.0, 9.0)) if walls_here else 2.0


def _poles_and_wires(town: T.Town, rng, r: T.Road, in_wall) -> int:
    """Concrete poles along one side of ``r`` every ``params.tree_spacing`` m (none where ``in_wall``, walls
    grown by 0.3 m, prepared), a cross-arm each, a transformer on some; three to five wires between
    consecutive poles. Returns the number of poles."""
    side = 1 if rng.random() < 0.5 else -1
    edge = T.side_line(r.line, (r.width / 2 - 0.35) if r.kind == "lane" else (r.width / 2 + r.sidewalk - 0.4), side)
    if edge is None:
        return 0
    n_wires = int(rng.integers(3, 6))
    tops = []
    s = rng.uniform(2.0, 12.0)
    while s < edge.length:
        q, frame = edge.interpolate(s), T._frame(edge, s)
        s += T._u(rng, town.params.tree_spacing)
        if in_wall.contains(q):
            continue
        ang = math.degrees(math.atan2(frame[1][1], frame[1][0])) if frame is not None else 0.0
        h, g = T._u(rng, (9.0, 12.0)), len(town.blocks)
        P.post(town, q.x, q.y, h, CONCRETE_POLE, (h - 0.7, 0.12, 1.6, 0.12, ang, (0.40, 0.40, 0.40)), thick=0.32)
        if rng.random() < 0.3:
            x, y = T._rot(0.0, 0.45, ang)
            town.blocks.append(T.Block(q.x + x, q.y + y, h - 4.0, 0.6, 0.6, 1.1, ang, T.POLE, (0.60, 0.62, 0.60), g))
        tops.append((q.x, q.y, h))
    for (x0, y0, h0), (x1, y1, h1) in zip(tops[:-1], tops[1:]):
        span = math.hypot(x1 - x0, y1 - y0)
        if span > 60.0:
            continue
        along = math.degrees(math.atan2(y1 - y0, x1 - x0))
        for k in range(n_wires):
            off = (k % 2 - 0.5) * 1.2 if k < 2 else 0.0  # two on the cross-arm's ends, the rest below
            dx, dy = T._rot(0.0, off, along)
            z = min(h0, h1) - 0.7 - (0.0 if k < 2 else 0.5 * (k - 1))
            town.blocks.append(T.Block((x0 + x1) / 2 + dx, (y0 + y1) / 2 + dy, z, span, 0.04, 0.04, along,
                                       T.POLE, WIRE))
    return len(tops)
