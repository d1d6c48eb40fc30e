"""Kind of place "retail": a commercial district on a rotated street grid (places.py builds it via ``build``).

- **Streets**: a grid rotated by ``params.grid_angle``, blocks of ``params.block`` (115-160 m), 11-16 m
  carriageways with kerbs, sidewalks, edge and centre lines and crossings (town.py's street painting); the
  junction nearest the centre is a **roundabout** (kerb radius 14-19 m, a grass island of 5-9 m, sometimes
  a cobbled apron, a ring line, crossings 4 m before the ring).
- **Shopping centre** on the block nearest the centre: a big flat-roofed store at the back, a paved
  **plaza** with trees in grates, benches and planters in front of its glass entrance, and a **parking lot**
  towards the street: bays of 2.4-2.7 x 4.8-5.5 m in double rows, aisles of 6-7 m, planting islands with
  trees or lamps at the row ends, cars in 30-80 % of the bays.
- **Other blocks**: stores with their own lots, warehouses (long halls, loading aprons, lorries) or office
  buildings (3-5 storeys with windows) in grass with trees.
- Stores and warehouses have blank walls and flat roofs with a **grid of skylights** (or skylight strips)
  and a few roof units; materials (asphalt, plaza pavers, cladding, roof membranes) are drawn per town.
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

CLADDING = [(0.78, 0.78, 0.76), (0.62, 0.64, 0.66), (0.74, 0.68, 0.58), (0.45, 0.50, 0.58), (0.86, 0.84, 0.78),
            (0.55, 0.52, 0.50)]
MEMBRANES = [(0.82, 0.82, 0.80), (0.62, 0.62, 0.60), (0.40, 0.41, 0.42), (0.70, 0.66, 0.58)]
BRANDS = [(0.80, 0.12, 0.10), (0.10, 0.30, 0.70), (0.95, 0.70, 0.10), (0.10, 0.50, 0.25), (0.90, 0.40, 0.05)]
PAVERS = [(0.62, 0.60, 0.56), (0.66, 0.52, 0.44), (0.55, 0.55, 0.57), (0.72, 0.68, 0.60)]


@dataclass
class Materials:
    """Colours and sizes of one retail district (drawn per town)."""
    lot: T.Tuple
    bay: Tuple[float, float]       # bay width, depth (m)
    aisle: float                   # m
    occupancy: float               # fraction of bays with a car
    paver: T.Tuple
    cladding: List[T.Tuple]
    roofs: List[T.Tuple]
    grass: T.Tuple


def _materials(rng, shift: float) -> Materials:
    """Asphalt tone, bay size and aisle width, how full the lots are, plaza pavers, cladding and roofs."""
    return Materials(
        lot=P.tone(rng, P.pick(rng, [(0.24, 0.24, 0.25), (0.30, 0.30, 0.31), (0.36, 0.35, 0.34)]), 0.02),
        bay=(T._u(rng, (2.4, 2.7)), T._u(rng, (4.8, 5.5))), aisle=T._u(rng, (6.0, 7.0)),
        occupancy=T._u(rng, (0.3, 0.8)), paver=P.tone(rng, P.pick(rng, PAVERS), 0.04),
        cladding=[P.tone(rng, CLADDING[i], 0.04, shift) for i in rng.choice(len(CLADDING), 3, replace=False)],
        roofs=[P.tone(rng, MEMBRANES[i], 0.03) for i in rng.choice(len(MEMBRANES), 2, replace=False)],
        grass=P.tone(rng, (0.33, 0.45, 0.22), 0.04))


def build(town: T.Town, rng):
    """Lay out, paint and furnish a retail district; returns the open ground where cameras may stand."""
    p, half = town.params, town.size_m / 2
    mat = _materials(rng, p.palette_shift)
    town.base_rgb = mat.grass
    angle = T._u(rng, p.grid_angle)
    for line in T._grid_lines(rng, half, p.block, angle):
        town.roads.append(T.Road(line, round(T._u(rng, p.road_width), 1), round(T._u(rng, p.sidewalk), 1)))
    centre, R, island = _roundabout_site(town, rng)
    width = max(r.sidewalk for r in town.roads)
    streets = unary_union([r.line.buffer(r.width / 2 + r.sidewalk) for r in town.roads]
                          + [Point(*centre).buffer(R + width)])
    area = box(-half - 40, -half - 40, half + 40, half + 40).difference(streets)
    blocks = sorted((g for g in getattr(area, "geoms", [area]) if g.area > 400),
                    key=lambda g: g.centroid.distance(Point(0, 0)))
    open_ground = []
    for k, blk in enumerate(blocks):
        P.paint(town, blk, mat.grass, 0.1)
        use = "mall" if k == 0 else P.pick(rng, ["store", "warehouse", "offices"], [0.45, 0.35, 0.2])
        open_ground += _block(town, rng, mat, blk, angle, use)
    T._paint_roads(town, rng)
    T._street_furniture(town, rng)
    P.drop_objects_in(town, Point(*centre).buffer(R + 1.0))
    _paint_roundabout(town, rng, centre, R, island, width)
    town.features.update(parking_bays=town.features.get("parking_bays", 0), roundabout=Point(*centre).buffer(R))
    walk = [r.line.buffer(r.width / 2 + r.sidewalk - 0.3) for r in town.roads] + [Point(*centre).buffer(R)]
    return unary_union(walk + open_ground)


# ------------------------------------------------------------------------------------------------ layout
def _roundabout_site(town: T.Town, rng):
    """The junction nearest the centre: (centre, kerb radius R, island radius), metres."""
    best = None
    for i, r in enumerate(town.roads):
        for o in town.roads[i + 1:]:
            x = r.line.intersection(o.line)
            if isinstance(x, Point) and (best is None or x.distance(Point(0, 0)) < best.distance(Point(0, 0))):
                best = x
    R = T._u(rng, (14.0, 19.0))
    return (best.x, best.y), R, T._u(rng, (5.0, min(9.0, R - 8.0)))


def _block(town: T.Town, rng, mat: Materials, blk: Polygon, angle: float, use: str) -> List:
    """Fill one block for its use in the block's own frame (y along its long side, x across); returns its
    open ground (lots, plaza, aprons)."""
    local = affinity.rotate(blk, -angle, origin=(0, 0))
    x0, y0, x1, y1 = local.bounds
    if x1 - x0 > y1 - y0:  # lay the lot, plaza and store out along the block's long side
        angle += 90.0
        local = affinity.rotate(blk, -angle, origin=(0, 0))
        x0, y0, x1, y1 = local.bounds
    W, H = x1 - x0, y1 - y0
    if W < 40 or H < 40:
        return []
    front_low = rng.random() < 0.5  # the lot faces the street at y0 (else at y1)

    def band(a, b):
        """Local rectangle spanning the block's width between depths a and b from the lot's street."""
        lo, hi = (y0 + a, y0 + b) if front_low else (y1 - b, y1 - a)
        return box(x0 + 3, lo, x1 - 3, hi)

    def world(g):
        return affinity.rotate(g, angle, origin=(0, 0))

    inside = local.buffer(-2.0)
    open_ground = []
    if use in ("mall", "store"):
        lot_d = H * T._u(rng, (0.38, 0.5)) if use == "mall" else H * T._u(rng, (0.3, 0.45))
        plaza_d = T._u(rng, (10.0, 18.0)) if use == "mall" else 0.0
        lot = band(3.0, 3.0 + lot_d).intersection(inside)
        open_ground.append(world(lot))
        town.features["parking_bays"] = town.features.get("parking_bays", 0) + \
            _parking_lot(town, rng, mat, lot, angle, front_low)
        if plaza_d:
            plaza = band(3.0 + lot_d, 3.0 + lot_d + plaza_d).intersection(inside)
            _plaza(town, rng, mat, plaza, angle)
            open_ground.append(world(plaza))
            town.features["plaza"] = world(plaza)
        store = band(3.0 + lot_d + plaza_d + 2.0, H - 4.0).intersection(inside)
        _big_box(town, rng, mat, store, angle, front_low, entrance=True)
    elif use == "warehouse":
        hall = band(20.0, H - 5.0).intersection(inside)
        apron = band(3.0, 20.0).intersection(inside)
        P.paint(town, world(apron), P.tone(rng, T.CONCRETE, 0.03), 0.1)
        open_ground.append(world(apron))
        _big_box(town, rng, mat, hall, angle, front_low, entrance=False)
        _lorries(town, rng, apron, angle, front_low)
    else:
        _offices(town, rng, mat, inside, angle)
    return open_ground


def _parking_lot(town: T.Town, rng, mat: Materials, lot, angle: float, front_low: bool) -> int:
    """Asphalt with painted bays in rows: one row along the back, then aisle + double row repeated; a
    planting island (tree or lamp) at each end of a double row; cars in some bays. Returns the bay count."""
    if lot.is_empty or lot.geom_type != "Polygon":
        return 0
    P.paint(town, affinity.rotate(lot, angle, origin=(0, 0)), mat.lot, 0.1)
    lx0, ly0, lx1, ly1 = lot.bounds
    bw, bd = mat.bay
    lines, n_bays = [], 0
    rows = []  # (y of the row's back line, +1 bays above it / -1 below)
    y = ly0 + 1.0
    rows.append((y, 1))
    y += bd + mat.aisle
    while y + 2 * bd + 1.0 < ly1:
        rows += [(y + bd, -1), (y + bd, 1)]
        y += 2 * bd + mat.aisle
    for y_back, sense in rows:
        y_far = y_back + sense * bd
        xs = np.arange(lx0 + 3.5, lx1 - 3.5 - bw, bw)
        if len(xs) < 2:
            continue
        for end in (xs[0] - 2.5, xs[-1] + bw):  # planting islands at the row ends
            island = box(end, min(y_back, y_far), end + 2.5, max(y_back, y_far))
            if lot.contains(island):
                P.paint(town, affinity.rotate(island, angle, origin=(0, 0)), mat.grass, 0.1)
                cx, cy = T._rot(end + 1.25, (y_back + y_far) / 2, angle)
                (T._add_tree if rng.random() < 0.6 else P.lamp)(town, rng, cx, cy)
        lines.append(LineString([(xs[0], y_back), (xs[-1] + bw, y_back)]))
        for x in xs:
            bay = box(x, min(y_back, y_far), x + bw, max(y_back, y_far))
            if not lot.contains(bay):
                continue
            n_bays += 1
            lines.append(LineString([(x, y_back), (x, y_far)]))
            if rng.random() < mat.occupancy:
                cx, cy = T._rot(x + bw / 2, (y_back + y_far) / 2, angle)
                T._add_car(town, rng, cx, cy, angle + 90 + (0 if sense > 0 else 180) + rng.uniform(-3, 3))
        lines.append(LineString([(xs[-1] + bw, y_back), (xs[-1] + bw, y_far)]))
    if lines:
        paint = unary_union([ln.buffer(0.06, cap_style=2) for ln in lines])
        P.paint(town, affinity.rotate(paint, angle, origin=(0, 0)), T.WHITE, 0.03)
    return n_bays


def _plaza(town: T.Town, rng, mat: Materials, plaza, angle: float) -> None:
    """Pavers in a bond, a row of trees in grates, benches and planters between them, maybe a kiosk."""
    if plaza.is_empty or plaza.geom_type != "Polygon":
        return
    slab = (T._u(rng, (0.6, 1.2)), T._u(rng, (0.3, 0.9)))
    P.paint(town, affinity.rotate(plaza, angle, origin=(0, 0)), mat.paver, 0.06,
            T.Pattern("joints", angle, slab[0], slab[1], tuple(0.8 * c for c in mat.paver), 0.08,
                      float(P.pick(rng, [0.0, 0.5])), 0.06))
    x0, y0, x1, y1 = plaza.bounds
    ym = (y0 + y1) / 2
    step = T._u(rng, (7.0, 10.0))
    grates = []
    for x in np.arange(x0 + 5.0, x1 - 4.0, step):
        gx, gy = T._rot(x, ym, angle)
        grates.append(T._rect(gx, gy, 1.6, 1.6, angle))
        T._add_tree(town, rng, gx, gy)
        bx, by = T._rot(x + step / 2, ym, angle)
        if rng.random() < 0.6:
            town.blocks.append(T.Block(bx, by, 0.0, 1.8, 0.5, 0.45, angle, T.POLE, P.tone(rng, (0.45, 0.32, 0.22))))
        elif rng.random() < 0.5:
            town.blocks.append(T.Block(bx, by, 0.0, 2.0, 1.0, 0.6, angle, T.HEDGE, P.tone(rng, (0.20, 0.34, 0.14))))
    if grates:
        P.paint(town, unary_union(grates), (0.16, 0.16, 0.17), 0.05)
    if rng.random() < 0.4 and x1 - x0 > 30:
        kx, ky = T._rot(x1 - 6.0, ym, angle)
        town.buildings.append(P.flat(kx, ky, 4.0, 3.0, angle, 3.0, P.pick(rng, mat.cladding), P.pick(rng, mat.roofs),
                                     3.0, 2.0))


def _big_box(town: T.Town, rng, mat: Materials, site, angle: float, front_low: bool, entrance: bool) -> None:
    """A flat-roofed store or hall filling ``site`` (local frame), blank walls, skylights on the roof; a
    glass entrance with a canopy and a brand band on the front when ``entrance``."""
    if site.is_empty or site.geom_type != "Polygon":
        return
    fit = _fit_rect(rng, site)
    if fit is None:
        return
    cx, cy, L, D = fit
    y0, y1 = cy - D / 2, cy + D / 2
    h = T._u(rng, town.params.height)
    gx, gy = T._rot(cx, cy, angle)
    town.buildings.append(P.flat(gx, gy, L, D, angle, h, P.pick(rng, mat.cladding), P.pick(rng, mat.roofs), h, 0.0,
                                 windows=False))
    _skylights(town, rng, (gx, gy, L, D, angle), h)
    if entrance:
        fy = y0 - 0.25 if front_low else y1 + 0.25  # the front wall faces the lot
        out = -1 if front_low else 1
        glass = T._u(rng, (0.2, 0.45)) * L
        g = len(town.blocks)
        ex, ey = T._rot(cx, fy, angle)
        town.blocks.append(T.Block(ex, ey, 0.0, glass, 0.4, T._u(rng, (3.5, 4.5)), angle, T.GLASS_BOX, (0.2, 0.3, 0.35), g))
        cx2, cy2 = T._rot(cx, fy + out * 1.6, angle)
        town.blocks.append(T.Block(cx2, cy2, 4.6, glass + 2.0, 3.0, 0.35, angle, T.POLE, P.tone(rng, (0.8, 0.8, 0.8)), g))
        sx, sy = T._rot(cx, fy + out * 0.1, angle)
        town.blocks.append(T.Block(sx, sy, h - 2.4, min(T._u(rng, (8.0, 20.0)), L * 0.6), 0.3, 1.8, angle, T.POLE,
                                   P.pick(rng, BRANDS), g))


def _fit_rect(rng, site) -> Tuple[float, float, float, float]:
    """(cx, cy, length, depth) of a local axis-aligned rectangle inside ``site``: 70-100 % of its width at a
    random place along it, shrunk where a corner of the site is cut off (a roundabout); None below 20 x 15 m."""
    x0, y0, x1, y1 = site.bounds
    room = site.buffer(0.1)
    frac, along = T._u(rng, (0.7, 1.0)), rng.uniform(0, 1)
    for shrink in (1.0, 0.85, 0.7, 0.55):
        L = (x1 - x0) * frac * shrink
        for trim in (0.0, 0.15, 0.3):
            D = (y1 - y0) * (1 - trim)
            for a in (along, 0.0, 1.0):
                cx = x0 + (x1 - x0 - L) * a + L / 2
                for cy in ((y0 + y1) / 2, y0 + D / 2, y1 - D / 2):
                    if L >= 20 and D >= 15 and room.contains(box(cx - L / 2, cy - D / 2, cx + L / 2, cy + D / 2)):
                        return cx, cy, L, D
    return None


def _skylights(town: T.Town, rng, rect, h: float) -> None:
    """Skylights on a flat roof ``rect`` (cx, cy, length, depth, angle), ``h`` m up: a grid of domes 6-10 m x
    8-14 m apart, or strips along the length (35 %); a few roof units."""
    cx, cy, L, D, ang = rect
    a = math.radians(ang)
    t, n = np.array([math.cos(a), math.sin(a)]), np.array([-math.sin(a), math.cos(a)])
    glass = (0.2, 0.3, 0.35)
    if rng.random() < 0.35:
        sv = T._u(rng, (8.0, 14.0))
        for v in np.arange(-D / 2 + 4.0, D / 2 - 3.0, sv):
            x, y = P.frame_point((cx, cy), t, n, 0.0, v)
            town.blocks.append(T.Block(x, y, h, L - 8.0, T._u(rng, (1.5, 2.5)), 0.5, ang, T.GLASS_BOX, glass))
    else:
        su, sv = T._u(rng, (6.0, 10.0)), T._u(rng, (8.0, 14.0))
        size = (T._u(rng, (1.2, 2.4)), T._u(rng, (2.5, 5.0)))
        for u in np.arange(-L / 2 + 4.0, L / 2 - 3.0, su):
            for v in np.arange(-D / 2 + 4.0, D / 2 - 3.0, sv):
                x, y = P.frame_point((cx, cy), t, n, u, v)
                town.blocks.append(T.Block(x, y, h, size[0], size[1], T._u(rng, (0.3, 0.6)), ang, T.GLASS_BOX, glass))
    for _ in range(int(rng.integers(1, 5))):
        x, y = P.frame_point((cx, cy), t, n, rng.uniform(-L / 2 + 3, L / 2 - 3), rng.uniform(-D / 2 + 3, D / 2 - 3))
        town.blocks.append(T.Block(x, y, h, T._u(rng, (1.5, 4.0)), T._u(rng, (1.2, 2.5)), T._u(rng, (0.8, 1.8)), ang,
                                   T.POLE, P.tone(rng, (0.65, 0.65, 0.64), 0.05)))


def _lorries(town: T.Town, rng, apron, angle: float, front_low: bool) -> None:
    """0-3 lorries backed against the hall across the loading apron (local frame)."""
    if apron.is_empty:
        return
    x0, y0, x1, y1 = apron.bounds
    if x1 - x0 < 14.0:
        return
    yc = y1 - 7.0 if front_low else y0 + 7.0
    for x in rng.uniform(x0 + 6, x1 - 6, int(rng.integers(0, 4))):
        lx, ly = T._rot(x, yc, angle)
        g = len(town.blocks)
        colour = P.tone(rng, (0.85, 0.85, 0.85), 0.08)
        town.blocks.append(T.Block(lx, ly, 0.4, 2.5, 12.0, 3.4, angle, T.CAR, colour, g))
        cx, cy = T._rot(x, yc + (-7.2 if front_low else 7.2), angle)
        town.blocks.append(T.Block(cx, cy, 0.4, 2.4, 2.2, 2.6, angle, T.CABIN, P.tone(rng, (0.6, 0.1, 0.1), 0.1), g))


def _offices(town: T.Town, rng, mat: Materials, inside, angle: float) -> None:
    """1-3 office buildings of 3-5 storeys with windows, trees in the grass around them."""
    x0, y0, x1, y1 = inside.bounds
    for _ in range(int(rng.integers(1, 4))):
        L, D = T._u(rng, (20, 40)), T._u(rng, (14, 20))
        x = rng.uniform(x0 + L / 2, max(x1 - L / 2, x0 + L / 2 + 0.1))
        y = rng.uniform(y0 + D / 2, max(y1 - D / 2, y0 + D / 2 + 0.1))
        fp = box(x - L / 2, y - D / 2, x + L / 2, y + D / 2)
        gx, gy = T._rot(x, y, angle)
        if not inside.contains(fp) or any(b.footprint().buffer(6.0).intersects(T._rect(gx, gy, L, D, angle))
                                          for b in town.buildings[-3:]):
            continue
        storeys = int(rng.integers(3, 6))
        floor_h = T._u(rng, (3.3, 3.8))
        town.buildings.append(P.flat(gx, gy, L, D, angle, storeys * floor_h, P.pick(rng, mat.cladding),
                                     P.pick(rng, mat.roofs), floor_h, T._u(rng, (1.8, 3.0))))
        T._roof_furniture(town, rng, (gx, gy, L, D, angle), storeys * floor_h)
    built = P.footprints(town)
    for _ in range(int(rng.integers(3, 10))):
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        gx, gy = T._rot(x, y, angle)
        if inside.contains(Point(x, y).buffer(3.0)) and not built.intersects(Point(gx, gy).buffer(4.0)):
            T._add_tree(town, rng, gx, gy)


# ----------------------------------------------------------------------------------------------- ground
def _paint_roundabout(town: T.Town, rng, centre, R: float, island: float, sidewalk: float) -> None:
    """Over the junction: sidewalk ring, kerb, asphalt ring with its edge line, apron, grass island with
    a tree or sculpture; zebra crossings 4 m before the ring on each approach."""
    c = Point(*centre)
    P.paint(town, c.buffer(R + sidewalk), T.PAVING, 0.07)
    for r in town.roads:  # the approaches' asphalt meets the ring
        P.paint(town, r.line.buffer(r.width / 2, cap_style=2).intersection(c.buffer(R + sidewalk + 0.5)), T.ASPHALT, 0.12)
    P.paint(town, c.buffer(R + 0.25).difference(c.buffer(R)), T.KERB, 0.04)
    P.paint(town, c.buffer(R), T.ASPHALT, 0.12)
    P.paint(town, c.buffer(R - 0.3).difference(c.buffer(R - 0.45)), T.WHITE, 0.05)
    if rng.random() < 0.5:  # a cobbled apron lorries may drive over
        P.paint(town, c.buffer(island + 1.6), (0.48, 0.46, 0.44), 0.1,
                T.Pattern("joints", 0.0, 0.4, 0.3, (0.34, 0.33, 0.32), 0.08, 0.5, 0.1))
    P.paint(town, c.buffer(island + 0.25), T.KERB, 0.04)
    P.paint(town, c.buffer(island), P.tone(rng, T.GRASS, 0.03), 0.1)
    if rng.random() < 0.6:
        T._add_tree(town, rng, *centre)
    else:
        g = len(town.blocks)
        town.blocks.append(T.Block(centre[0], centre[1], 0.0, 1.2, 1.2, T._u(rng, (3.0, 6.0)), rng.uniform(0, 90),
                                   T.POLE, P.tone(rng, (0.55, 0.45, 0.35), 0.1), g))
    for r in town.roads:
        s0 = r.line.project(c)
        for sgn in (-1, 1):
            s = s0 + sgn * (R + 4.0)
            if 0 < s < r.line.length and r.line.interpolate(s0).distance(c) < 1.0:
                _zebra(town, r, s)


def _zebra(town: T.Town, road: T.Road, s: float) -> None:
    """Zebra crossing across ``road`` at arc length ``s``: 0.5 m stripes 1 m apart, 3 m long."""
    c, c2 = road.line.interpolate(s), road.line.interpolate(min(s + 0.5, road.line.length))
    t = np.array([c2.x - c.x, c2.y - c.y])
    t /= max(np.linalg.norm(t), 1e-9)
    nrm = np.array([-t[1], t[0]])
    stripes = []
    for q in np.arange(-road.width / 2 + 0.6, road.width / 2 - 0.4, 1.0):
        a = np.array([c.x, c.y]) + nrm * q
        stripes.append(LineString([a - t * 1.5, a + t * 1.5]).buffer(0.25, cap_style=2))
    P.paint(town, unary_union(stripes), T.WHITE, 0.05)
