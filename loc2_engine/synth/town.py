"""Procedural town: one scene description (roads, buildings, trees, street objects) in local grid metres.

Frame: x = grid east, y = grid north (metres, UTM grid of ``Town.crs``), z up, origin at ``Town.origin_xy``
(the UTM position of the town centre), so float32 ray casting stays precise. Heights in this description
(``Block.z0``, building and tree heights) are above the ground under the object (``Town.ground_height``:
flat at z = 0, or the town's ``terrain``); mesh.py stands each object on it. The town covers
``[-size_m/2, size_m/2]`` in x and y. Both the orthophoto (ortho.py) and the ground views (render.py) are
rendered from the triangle mesh built from this description (mesh.py), so they agree exactly.

Three styles (``STYLES``): "downtown" (rotated street grid, tall flat-roofed blocks flush with the sidewalk),
"suburb" (curved streets, detached houses with gable/hip roofs, gardens, hedges) and "industrial" (wide
streets, large halls, parking lots with bays and cars). ``StyleParams`` holds the ranges a style draws from,
so the bench preset can use parameters that the train preset never sees.

Five kinds of place more (``PLACE_STYLES``, built in places.py and its modules). Two are for training
(``TRAIN_PLACE_STYLES``, the train-places preset): "park" (a city park: curving paths, lawns, tree groups, a
pond or fountain, a playground, perimeter streets lined with mixed buildings) and "campus" (large institutional
buildings around paved plazas with tree grids, lawn quads, bike racks). Three are held out of training
(``HELDOUT_STYLES``): "oldtown" (a historic centre: irregular lanes, terraced houses, a market square and a
church), "village" (rural roads, farmsteads, striped fields, orchards, hedgerows, tracks) and "retail" (a
commercial district: parking lots with painted bays, big stores with skylights, a plaza, a roundabout). No
training preset uses them; the heldout preset uses only them. One more is kept out of both (``UNSEEN_STYLES``,
the unseen preset): "alleys" (a dense East-Asian district: narrow lanes without sidewalks, buildings a
hand's width apart, signboards, vending machines, utility poles and overhead wires).

Road markings (``Markings``): one white default everywhere, or per town the style of a country, worn paint or
none (``MARKING_STYLES``, ``draw_markings``; the train-places preset).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
from shapely.geometry import LineString, MultiLineString, Point, Polygon, box
from shapely.ops import unary_union
from shapely import affinity

from .terrain import Terrain, make_terrain

STYLES = ("downtown", "suburb", "industrial")
#: kinds of place built by places.py for training (the train-places preset)
TRAIN_PLACE_STYLES = ("park", "campus")
#: kinds of place kept out of every training preset (the heldout preset uses only these)
HELDOUT_STYLES = ("oldtown", "village", "retail")
#: kinds of place kept out of every training preset and out of heldout (the unseen preset uses only these)
UNSEEN_STYLES = ("alleys",)
#: every kind of place built by places.py (one module each)
PLACE_STYLES = TRAIN_PLACE_STYLES + HELDOUT_STYLES + UNSEEN_STYLES
ALL_STYLES = STYLES + PLACE_STYLES

# materials of the mesh faces (mesh.py) and of the per-hit shading (shading.py)
GROUND, WALL, ROOF, CANOPY, TRUNK, CAR, POLE, HEDGE, GLASS_BOX, CABIN = range(10)


@dataclass(frozen=True)
class StyleParams:
    """Ranges (lo, hi) a style draws from; metres unless stated."""
    style: str
    block: Tuple[float, float]            # street spacing (downtown / industrial) or lot spacing (suburb)
    road_width: Tuple[float, float]       # kerb to kerb
    sidewalk: Tuple[float, float]
    height: Tuple[float, float]           # building eave height
    grid_angle: Tuple[float, float]       # rotation of the street grid, degrees
    tree_spacing: Tuple[float, float]     # street trees along sidewalks
    palette_shift: float = 0.0            # hue-ish shift of wall/roof colours (bench uses unseen shifts)


def default_style(style: str, variant: str = "train") -> StyleParams:
    """Style ranges; ``variant="bench"`` shifts every range so bench towns are never seen in training, and
    ``variant="heldout"`` shifts them the other way (cooler palette, other spacings) for the heldout preset.

    The kinds of place read the fields as: oldtown: ``block`` = spacing of the lane network's nodes,
    ``road_width`` = lane width (facade to facade), ``sidewalk`` = sidewalks of the few wider streets,
    ``tree_spacing`` = spacing of wall lamps; village: ``block`` = field size, ``sidewalk`` = verge width,
    ``grid_angle`` = orientation of the field pattern, ``tree_spacing`` = trees in tree lines; retail: as
    downtown; park: ``block`` = side of the park, ``height`` = eaves of the buildings around it,
    ``tree_spacing`` = lamps and street trees along its streets; campus: ``block`` = spacing of the walks
    between buildings, ``height`` = eaves of its buildings. All in metres or degrees."""
    if style not in ALL_STYLES:
        raise ValueError(f"unknown town style {style!r}; choose one of {', '.join(ALL_STYLES)}")
    p = {
        "downtown": StyleParams("downtown", (48, 70), (10, 14), (2.5, 4.0), (10, 32), (0, 35), (9, 14)),
        "suburb": StyleParams("suburb", (13, 19), (6, 8), (1.5, 2.5), (3, 6.5), (0, 90), (14, 24)),
        "industrial": StyleParams("industrial", (80, 110), (11, 16), (1.5, 2.5), (6, 13), (0, 45), (20, 35)),
        "oldtown": StyleParams("oldtown", (30, 46), (3, 8), (1.75, 2.5), (6.5, 16), (0, 90), (16, 26)),
        "village": StyleParams("village", (45, 110), (4, 7), (1.5, 4.0), (4, 7), (0, 180), (7, 12)),
        "retail": StyleParams("retail", (115, 160), (11, 16), (2.0, 3.5), (6, 12), (8, 82), (10, 16)),
        "park": StyleParams("park", (110, 165), (8, 12), (2.5, 4.0), (7, 20), (0, 90), (12, 20)),
        "campus": StyleParams("campus", (48, 72), (7, 10), (2.0, 3.5), (9, 22), (0, 90), (14, 22)),
        "alleys": StyleParams("alleys", (22, 36), (2.5, 6.0), (2.0, 3.5), (9, 19), (0, 90), (24, 36)),
    }[style]
    if variant == "heldout":
        def sh(r, k):
            return (r[0] * k, r[1] * k)
        # road widths stay: an oldtown lane is 3-8 m whatever the variant
        p = dataclasses.replace(p, block=sh(p.block, 1.06), height=sh(p.height, 1.05),
                                grid_angle=(p.grid_angle[0] + 3, p.grid_angle[1] + 7), palette_shift=-0.5)
    if variant == "bench":
        def sh(r, k):
            return (r[0] * k, r[1] * k)
        p = dataclasses.replace(p, block=sh(p.block, 1.12), road_width=sh(p.road_width, 0.93),
                                height=sh(p.height, 1.1), grid_angle=(p.grid_angle[0] + 5, p.grid_angle[1] + 10),
                                palette_shift=0.5)
    return p


@dataclass
class Road:
    line: LineString
    width: float            # kerb to kerb, metres
    sidewalk: float         # each side, metres (a village road's verge)
    centre_dashed: bool = True
    kind: str = "street"    # street (kerbs, markings) | lane (unmarked, no kerb) | road (rural) | track (unpaved)


@dataclass(frozen=True)
class Pattern:
    """A procedural pattern painted inside one ground polygon (albedo.py), in local metres.

    kind "joints": stones of ``length`` x ``width`` m along ``angle_deg`` (counter-clockwise from +x), every
    other row shifted by ``offset`` stones (0.5: running bond, 0: square grid), joints ``line_m`` wide in
    ``rgb``; each stone's tone varies by up to +-``stone_var`` (cobbles, setts, flagstones, pavers).
    kind "stripes": bands of period ``length`` m across ``angle_deg``, the fraction ``width`` of each band
    in ``rgb`` (crop rows, furrows, mown grass)."""
    kind: str
    angle_deg: float
    length: float
    width: float
    rgb: Tuple[float, float, float]
    line_m: float = 0.1
    offset: float = 0.5
    stone_var: float = 0.0


@dataclass
class Building:
    """Footprint = union of ``rects`` (each cx, cy, length, depth, angle_deg); roof on the first rect only
    when it is gable/hip (those buildings have a single rect)."""
    rects: List[Tuple[float, float, float, float, float]]
    height: float           # eave height
    roof: str               # flat | gable | hip
    roof_rise: float        # ridge above eave (0 for flat)
    wall_rgb: Tuple[float, float, float]
    roof_rgb: Tuple[float, float, float]
    floor_h: float          # storey height (window rows)
    bay_w: float            # window spacing along the facade
    shopfront: bool = True  # shop windows on the ground floor; False: the upper storeys' windows there too
    windows: bool = True    # False: blank walls (barns, warehouses, towers)

    def footprint(self) -> Polygon:
        return unary_union([_rect(*r) for r in self.rects])


@dataclass
class Tree:
    x: float
    y: float
    trunk_h: float          # height of the canopy bottom
    radius: float           # canopy horizontal radius
    crown_h: float          # canopy vertical extent
    rgb: Tuple[float, float, float]


@dataclass
class Block:
    """An oriented box: cars, hedges, poles, lamp heads, signs, roof furniture."""
    cx: float
    cy: float
    z0: float               # above the ground under it; roof furniture, wall lamps: above its building's floor
    length: float           # along ``angle``
    width: float
    height: float
    angle: float            # degrees, counter-clockwise from +x
    material: int
    rgb: Tuple[float, float, float]
    group: int = -1         # parts of one object (car body + cabin, pole + lamp head) share a group id


@dataclass
class Town:
    name: str
    style: str
    seed: int
    crs: str                         # e.g. "EPSG:32632"
    origin_xy: Tuple[float, float]   # UTM position of local (0, 0)
    size_m: float
    sun_az_deg: float                # grid azimuth of the sun, clockwise from grid north
    sun_el_deg: float
    params: StyleParams
    sun_strength: float = 1.0        # direct sunlight, 1 = clear sky; overcast skies keep a fraction of it
    roads: List[Road] = field(default_factory=list)
    buildings: List[Building] = field(default_factory=list)
    trees: List[Tree] = field(default_factory=list)
    blocks: List[Block] = field(default_factory=list)
    # painted ground: (polygon, colour, noise amplitude[, Pattern]), drawn in order (later on top), see albedo.py
    paint: List[tuple] = field(default_factory=list)
    base_rgb: Tuple[float, float, float] = (0.35, 0.45, 0.25)
    walkable: Optional[object] = None  # shapely geometry where cameras may stand
    # what makes a kind of place (places.py): named areas (shapely) and counts, e.g. "square", "parking_bays"
    features: dict = field(default_factory=dict)
    # hills and slopes (terrain.py); None: flat ground at z = 0. Everything above stands on it (mesh.py)
    terrain: Optional[Terrain] = None
    # the road markings of one country (`draw_markings`); None: `DEFAULT_MARKINGS`
    markings: Optional[Markings] = None

    def ground_height(self, x, y) -> np.ndarray:
        """Height (metres) of the rendered ground under local points x, y (any equal shapes)."""
        if self.terrain is None:
            return np.zeros(np.broadcast(np.asarray(x), np.asarray(y)).shape)
        return self.terrain.height(x, y)

    @property
    def sun_dir(self) -> np.ndarray:
        """(3,) unit vector towards the sun in the local grid frame."""
        a, e = math.radians(self.sun_az_deg), math.radians(self.sun_el_deg)
        return np.array([math.sin(a) * math.cos(e), math.cos(a) * math.cos(e), math.sin(e)])

    def obstacles(self) -> object:
        """Footprints cameras must keep out of (buildings, trunks, cars, poles, hedges)."""
        geoms = [b.footprint() for b in self.buildings]
        geoms += [Point(t.x, t.y).buffer(0.5) for t in self.trees]
        geoms += [_rect(k.cx, k.cy, k.length, k.width, k.angle) for k in self.blocks if k.z0 < 2.6]
        return unary_union(geoms)


def _rect(cx, cy, length, depth, angle_deg) -> Polygon:
    r = box(-length / 2, -depth / 2, length / 2, depth / 2)
    return affinity.translate(affinity.rotate(r, angle_deg, origin=(0, 0)), cx, cy)


def _u(rng, r) -> float:
    return float(rng.uniform(r[0], r[1]))


def _jitter_rgb(rng, rgb, amount=0.06, shift=0.0):
    c = np.asarray(rgb) + rng.uniform(-amount, amount, 3)
    if shift:
        c = c + shift * np.array([0.06, -0.03, -0.05])  # warmer palette for unseen (bench) styles
    return tuple(float(v) for v in np.clip(c, 0.02, 0.98))


WALL_COLOURS = [(0.78, 0.74, 0.66), (0.70, 0.55, 0.45), (0.85, 0.83, 0.78), (0.60, 0.60, 0.62),
                (0.75, 0.65, 0.50), (0.55, 0.40, 0.33), (0.90, 0.88, 0.80), (0.66, 0.70, 0.72)]
FLAT_ROOFS = [(0.45, 0.45, 0.46), (0.55, 0.54, 0.52), (0.35, 0.36, 0.38), (0.62, 0.62, 0.60)]
PITCHED_ROOFS = [(0.55, 0.25, 0.18), (0.40, 0.22, 0.18), (0.30, 0.30, 0.33), (0.62, 0.38, 0.25)]
CAR_COLOURS = [(0.8, 0.8, 0.82), (0.1, 0.1, 0.12), (0.6, 0.1, 0.1), (0.15, 0.25, 0.5), (0.5, 0.52, 0.55),
               (0.9, 0.9, 0.9), (0.3, 0.35, 0.3)]
ASPHALT, PAVING, KERB, WHITE, GRASS, CONCRETE = (
    (0.22, 0.22, 0.23), (0.58, 0.56, 0.53), (0.72, 0.71, 0.68), (0.88, 0.88, 0.86), (0.30, 0.42, 0.20),
    (0.55, 0.54, 0.50))
#: road paint of the marking styles: traffic yellow, and white and yellow worn thin (the asphalt shows through)
YELLOW, WORN_WHITE, WORN_YELLOW = (0.84, 0.64, 0.12), (0.56, 0.56, 0.54), (0.50, 0.44, 0.22)


#: elevation range of the sun above the horizon, degrees
SUN_ELEVATION_DEG = (28.0, 62.0)
#: default grid azimuth range of the sun, degrees clockwise from grid north: the southern sky
SOUTHERN_SKY_AZIMUTH_DEG = (100.0, 260.0)
#: the direct sunlight an overcast sky lets through, as a fraction of a clear sky's: soft or no shadows
OVERCAST_SUN_STRENGTH = (0.0, 0.35)


def draw_sun_strength(rng, overcast: float) -> float:
    """1.0 (clear sky), or with probability ``overcast`` a strength drawn from `OVERCAST_SUN_STRENGTH`."""
    return float(rng.uniform(*OVERCAST_SUN_STRENGTH)) if rng.random() < overcast else 1.0


def make_town(name: str, style: str, seed: int, crs: str, origin_xy, size_m: float = 256.0,
              params: Optional[StyleParams] = None,
              sun_azimuth_deg: Tuple[float, float] = SOUTHERN_SKY_AZIMUTH_DEG,
              sun_elevation_deg: Tuple[float, float] = SUN_ELEVATION_DEG, terrain: bool = False,
              marking_styles: Tuple[str, ...] = ()) -> Town:
    """Build a town deterministically from ``seed``; see the module docstring for the frame.

    sun_azimuth_deg, sun_elevation_deg: (min, max) grid azimuth (degrees clockwise from grid north) and
    elevation the sun is drawn from; the defaults keep it in the southern sky, 28-62° high; other ranges
    draw the same towns under another sun (one draw each from the town's stream, whatever the range).
    terrain: hills and slopes (terrain.py) from a stream of their own, so the layout stays that of the seed;
    False: flat ground at z = 0.
    marking_styles: road marking styles (`MARKING_STYLES`), one drawn per town from a stream of its own
    (`marking_streams`), so the rest of the town stays that of the seed; (): `DEFAULT_MARKINGS`."""
    rng = np.random.default_rng(seed)
    params = params or default_style(style)
    town = Town(name=name, style=style, seed=seed, crs=crs, origin_xy=(float(origin_xy[0]), float(origin_xy[1])),
                size_m=float(size_m), sun_az_deg=float(rng.uniform(*sun_azimuth_deg)) % 360.0,
                sun_el_deg=float(rng.uniform(*sun_elevation_deg)), params=params,
                terrain=make_terrain(seed, size_m) if terrain else None,
                markings=draw_markings(marking_styles, marking_streams(seed)[0]) if marking_styles else None)
    if style in PLACE_STYLES:
        from .places import build_place  # the kinds of place build on this module's pieces
        build_place(town, rng)
        return town
    if style == "suburb":
        _suburb(town, rng)
    else:
        _grid_town(town, rng)
    _paint_roads(town, rng)
    _street_furniture(town, rng)
    walk = unary_union([r.line.buffer(r.width / 2 + r.sidewalk - 0.3) for r in town.roads])
    town.walkable = walk.difference(town.obstacles().buffer(0.8))
    return town


# ----------------------------------------------------------------------------------------------- layouts
def _grid_lines(rng, half, spacing_range, angle_deg):
    """Street centre lines of a rotated grid covering the square [-half, half]^2 (plus a margin)."""
    ext = half * 1.6
    lines = []
    for axis in (0, 1):
        pos = -ext + _u(rng, spacing_range) * rng.uniform(0.2, 1.0)
        while pos < ext:
            seg = [(pos, -ext), (pos, ext)] if axis == 0 else [(-ext, pos), (ext, pos)]
            lines.append(affinity.rotate(LineString(seg), angle_deg, origin=(0, 0)))
            pos += _u(rng, spacing_range)
    return lines


def _grid_town(town: Town, rng) -> None:
    p, half = town.params, town.size_m / 2
    angle = _u(rng, p.grid_angle)
    industrial = town.style == "industrial"
    town.base_rgb = CONCRETE if industrial else PAVING
    for line in _grid_lines(rng, half, p.block, angle):
        town.roads.append(Road(line, round(_u(rng, p.road_width), 1), round(_u(rng, p.sidewalk), 1)))
    streets = unary_union([r.line.buffer(r.width / 2 + r.sidewalk) for r in town.roads])
    area = box(-half - 40, -half - 40, half + 40, half + 40).difference(streets)
    blocks = list(getattr(area, "geoms", [area]))
    for blk in blocks:
        if blk.area < 100:
            continue
        if industrial:
            _industrial_block(town, rng, blk, angle)
        else:
            _downtown_block(town, rng, blk, angle)


def _downtown_block(town: Town, rng, blk: Polygon, angle: float) -> None:
    """Perimeter buildings flush with the sidewalk, a courtyard with trees in the middle."""
    p = town.params
    town.paint.append((blk, PAVING, 0.05))
    local = affinity.rotate(blk, -angle, origin=(0, 0))
    x0, y0, x1, y1 = local.bounds
    depth = min(_u(rng, (12, 18)), (y1 - y0) / 2 - 1, (x1 - x0) / 2 - 1)
    if depth < 6:
        return
    edges = [("s", x0, x1), ("n", x0, x1), ("w", y0 + depth, y1 - depth), ("e", y0 + depth, y1 - depth)]
    for side, a, b in edges:
        pos = a
        while pos < b - 5:
            w = min(_u(rng, (9, 22)), b - pos)
            if b - pos - w < 6:
                w = b - pos
            c = pos + w / 2
            if side == "s":
                cx, cy, L, D = c, y0 + depth / 2, w, depth
            elif side == "n":
                cx, cy, L, D = c, y1 - depth / 2, w, depth
            elif side == "w":
                cx, cy, L, D = x0 + depth / 2, c, depth, w
            else:
                cx, cy, L, D = x1 - depth / 2, c, depth, w
            gx, gy = _rot(cx, cy, angle)
            rect = (gx, gy, L - 0.05, D - 0.05, angle)
            if blk.contains(_rect(*rect).buffer(-0.1)):
                h = _u(rng, p.height)
                town.buildings.append(Building(
                    [rect], round(h, 1), "flat", 0.0, _jitter_rgb(rng, WALL_COLOURS[rng.integers(8)], shift=p.palette_shift),
                    _jitter_rgb(rng, FLAT_ROOFS[rng.integers(4)], 0.03), _u(rng, (3.0, 3.6)), _u(rng, (2.2, 3.4))))
                _roof_furniture(town, rng, rect, h)
            pos += w
    inner = local.buffer(-depth - 2)
    if not inner.is_empty and inner.area > 30:
        town.paint.append((affinity.rotate(inner, angle, origin=(0, 0)), GRASS, 0.1))
        for _ in range(int(inner.area / 120)):
            x, y = rng.uniform(*inner.bounds[0::2]), rng.uniform(*inner.bounds[1::2])
            if inner.contains(Point(x, y).buffer(2.5)):
                _add_tree(town, rng, *_rot(x, y, angle))


def _industrial_block(town: Town, rng, blk: Polygon, angle: float) -> None:
    """One or two large halls, the rest a parking lot with bays and cars."""
    p = town.params
    town.paint.append((blk, CONCRETE, 0.08))
    local = affinity.rotate(blk, -angle, origin=(0, 0))
    x0, y0, x1, y1 = local.bounds
    W, H = x1 - x0, y1 - y0
    if W < 20 or H < 20:
        return
    hall_w = W * rng.uniform(0.45, 0.65)
    left = rng.random() < 0.5
    hx0 = x0 + 4 if left else x1 - 4 - hall_w
    halls = [(hx0 + hall_w / 2, y0 + 4 + (H - 8) / 2, hall_w, H - 8)]
    if H > 60 and rng.random() < 0.6:
        d1 = (H - 12) * rng.uniform(0.4, 0.6)
        halls = [(hx0 + hall_w / 2, y0 + 4 + d1 / 2, hall_w, d1),
                 (hx0 + hall_w / 2, y1 - 4 - (H - 12 - d1) / 2, hall_w, H - 12 - d1)]
    for cx, cy, L, D in halls:
        gx, gy = _rot(cx, cy, angle)
        rect = [(gx, gy, L, D, angle)]
        if rng.random() < 0.35:  # an office annex: L-shaped footprint
            ax = cx + (L / 2 - 6) * (1 if rng.random() < 0.5 else -1)
            rect.append((*_rot(ax, cy - D / 2 - 4, angle), 12, 8.2, angle))
        h = _u(rng, p.height)
        b = Building(rect, round(h, 1), "flat", 0.0, _jitter_rgb(rng, WALL_COLOURS[rng.integers(8)], shift=p.palette_shift),
                     _jitter_rgb(rng, FLAT_ROOFS[rng.integers(4)], 0.03), _u(rng, (4.0, 6.0)), _u(rng, (4.0, 8.0)))
        if all(blk.contains(_rect(*r).buffer(-0.1)) for r in rect):
            town.buildings.append(b)
            _roof_furniture(town, rng, rect[0], h)
    # parking lot on the other side: asphalt, bays of 2.5 x 5 m in rows, cars in some bays
    lx0, lx1 = (hx0 + hall_w + 4, x1 - 3) if left else (x0 + 3, hx0 - 4)
    if lx1 - lx0 < 12:
        return
    lot = box(lx0, y0 + 3, lx1, y1 - 3)
    town.paint.append((affinity.rotate(lot, angle, origin=(0, 0)), ASPHALT, 0.1))
    y = y0 + 4
    while y + 5 < y1 - 3:
        x = lx0 + 1
        while x + 2.5 < lx1 - 1:
            bay = LineString([(x, y), (x, y + 5)]).buffer(0.06, cap_style=2)
            town.paint.append((affinity.rotate(bay, angle, origin=(0, 0)), WHITE, 0.03))
            if rng.random() < 0.55:
                _add_car(town, rng, *_rot(x + 1.25, y + 2.5, angle), angle + 90 + rng.uniform(-3, 3))
            x += 2.5
        y += 5 + (6.5 if ((y - y0 - 4) // 5) % 2 == 1 else 0.0)  # aisle after every second row


def _suburb(town: Town, rng) -> None:
    """Curved streets (sinusoids) in two directions, houses on both sides facing the street."""
    p, half = town.params, town.size_m / 2
    town.base_rgb = GRASS
    angle = _u(rng, p.grid_angle)
    ext = half * 1.6
    xs = np.linspace(-ext, ext, 160)
    roads = []
    pos = -ext + rng.uniform(20, 60)
    while pos < ext:  # east-west-ish curved streets
        amp, wl, ph = rng.uniform(6, 18), rng.uniform(120, 260), rng.uniform(0, 2 * np.pi)
        ys = pos + amp * np.sin(2 * np.pi * xs / wl + ph)
        roads.append(LineString(np.c_[xs, ys]))
        pos += rng.uniform(60, 85)
    pos = -ext + rng.uniform(30, 90)
    while pos < ext:  # connectors
        amp, wl, ph = rng.uniform(3, 12), rng.uniform(150, 300), rng.uniform(0, 2 * np.pi)
        roads.append(LineString(np.c_[pos + amp * np.sin(2 * np.pi * xs / wl + ph), xs]))
        pos += rng.uniform(110, 170)
    for line in roads:
        town.roads.append(Road(affinity.rotate(line, angle, origin=(0, 0)), round(_u(rng, p.road_width), 1),
                               round(_u(rng, p.sidewalk), 1)))
    streets = unary_union([r.line.buffer(r.width / 2 + r.sidewalk + 0.5) for r in town.roads])
    taken = [streets]
    for road in town.roads:
        line = road.line
        s = rng.uniform(0, 10)
        while s < line.length:
            s += _u(rng, p.block)
            for side in (-1, 1):
                _try_house(town, rng, road, s, side, taken)


def _try_house(town: Town, rng, road: Road, s: float, side: int, taken: list) -> None:
    line, p = road.line, town.params
    a, b = line.interpolate(max(s - 1, 0)), line.interpolate(min(s + 1, line.length))
    tx, ty = b.x - a.x, b.y - a.y
    n = math.hypot(tx, ty)
    if n < 1e-6:
        return
    tx, ty = tx / n, ty / n
    nx, ny = -ty * side, tx * side
    L, D = _u(rng, (8, 13)), _u(rng, (8, 11))
    setback = road.width / 2 + road.sidewalk + _u(rng, (4, 9))
    c = line.interpolate(s)
    cx, cy = c.x + nx * (setback + D / 2), c.y + ny * (setback + D / 2)
    ang = math.degrees(math.atan2(ty, tx))
    fp = _rect(cx, cy, L, D, ang)
    if any(g.intersects(fp.buffer(2.0)) for g in taken):
        return
    taken.append(fp.buffer(1.5))
    roof = "gable" if rng.random() < 0.6 else "hip"
    town.buildings.append(Building(
        [(cx, cy, L, D, ang)], round(_u(rng, p.height), 1), roof, _u(rng, (2.0, 4.0)),
        _jitter_rgb(rng, WALL_COLOURS[rng.integers(8)], shift=p.palette_shift),
        _jitter_rgb(rng, PITCHED_ROOFS[rng.integers(4)], 0.04), _u(rng, (2.7, 3.0)), _u(rng, (2.4, 3.2))))
    # driveway from the sidewalk to the house, a hedge along the front of the lot, garden trees
    dx0 = road.width / 2 + road.sidewalk
    off = rng.uniform(-L / 2 + 2, L / 2 - 2)
    p0 = (c.x + nx * dx0 + tx * off, c.y + ny * dx0 + ty * off)
    p1 = (c.x + nx * setback + tx * off, c.y + ny * setback + ty * off)
    town.paint.append((LineString([p0, p1]).buffer(1.4, cap_style=2), CONCRETE, 0.06))
    if rng.random() < 0.6:
        hd = dx0 + 0.8
        for sgn in (-1, 1):  # two hedge pieces, leaving the driveway open
            e0 = off + sgn * 2.0
            e1 = sgn * (L / 2 + 2)
            if abs(e1 - e0) > 1.0:
                m = (e0 + e1) / 2
                town.blocks.append(Block(c.x + nx * hd + tx * m, c.y + ny * hd + ty * m, 0.0, abs(e1 - e0), 0.7,
                                         _u(rng, (0.8, 1.5)), ang, HEDGE, _jitter_rgb(rng, (0.16, 0.30, 0.12), 0.04)))
    for _ in range(rng.integers(0, 3)):
        gx = cx + nx * (D / 2 + rng.uniform(3, 7)) + tx * rng.uniform(-L / 2, L / 2)
        gy = cy + ny * (D / 2 + rng.uniform(3, 7)) + ty * rng.uniform(-L / 2, L / 2)
        if not any(g.contains(Point(gx, gy)) for g in taken[:1]):
            _add_tree(town, rng, gx, gy)
    if rng.random() < 0.4:
        _add_car(town, rng, (p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2, ang + 90)


def _roof_furniture(town: Town, rng, rect, h) -> None:
    cx, cy, L, D, ang = rect
    for _ in range(rng.integers(0, 4)):
        if L < 4 or D < 4:  # too narrow to draw a spot 2 m inside the walls (the stream of wider roofs is kept)
            return
        u, v = rng.uniform(-L / 2 + 2, L / 2 - 2), rng.uniform(-D / 2 + 2, D / 2 - 2)
        if L < 5 or D < 5:
            return
        x, y = cx + u * math.cos(math.radians(ang)) - v * math.sin(math.radians(ang)), \
            cy + u * math.sin(math.radians(ang)) + v * math.cos(math.radians(ang))
        town.blocks.append(Block(x, y, h, _u(rng, (1, 3.5)), _u(rng, (1, 2.5)), _u(rng, (0.6, 2.0)), ang,
                                 GLASS_BOX if rng.random() < 0.15 else POLE, _jitter_rgb(rng, (0.6, 0.6, 0.6), 0.1)))


def _rot(x, y, angle_deg):
    a = math.radians(angle_deg)
    return x * math.cos(a) - y * math.sin(a), x * math.sin(a) + y * math.cos(a)


def _add_tree(town: Town, rng, x, y) -> None:
    r = _u(rng, (1.8, 4.0))
    town.trees.append(Tree(float(x), float(y), _u(rng, (2.8, 4.0)), r, r * _u(rng, (1.2, 2.0)),
                           _jitter_rgb(rng, (0.20, 0.33, 0.12), 0.05)))


def _add_car(town: Town, rng, x, y, ang) -> None:
    """Body box plus a shorter cabin box (glass sides), set slightly back from the body's centre."""
    L, W = _u(rng, (4.0, 4.8)), _u(rng, (1.7, 1.9))
    rgb = _jitter_rgb(rng, CAR_COLOURS[rng.integers(7)], 0.04)
    a = math.radians(ang)
    back = -0.1 * L
    g = len(town.blocks)
    town.blocks.append(Block(float(x), float(y), 0.15, L, W, 0.75, float(ang), CAR, rgb, g))
    town.blocks.append(Block(float(x + back * math.cos(a)), float(y + back * math.sin(a)), 0.9, L * 0.55, W * 0.92,
                             _u(rng, (0.45, 0.65)), float(ang), CABIN, rgb, g))


# ----------------------------------------------------------------------------------------- ground paint
@dataclass(frozen=True)
class Markings:
    """The road markings of one town: a country's convention with its per-town choices made (`draw_markings`).

    Widths and lengths in metres. Dash and gap lengths are multiples of 0.5 m (dashes are chords between points
    0.5 m apart along the centre line). The defaults are `DEFAULT_MARKINGS`, the markings of every preset but
    train-places."""
    style: str = ""                # the name drawn from `MARKING_STYLES`; "": the defaults
    rgb: Tuple[float, float, float] = WHITE         # edge lines, crossings, stop and give-way lines
    centre_rgb: Tuple[float, float, float] = WHITE  # centre lines
    centre_w: float = 0.14         # width of a centre line
    dash: float = 3.0              # centre line: dash length ...
    gap: float = 3.0               # ... and gap length; 0: a solid line
    centre_from: float = 7.5       # roads this wide (kerb to kerb) or wider carry a centre line ...
    double_from: float = math.inf  # ... and from this width a solid double one (two lines ``centre_w`` apart)
    edge_w: float = 0.12           # edge lines, 0.35 m inside the kerb; 0: none
    crossing: str = "bars"         # bars (zebra, continental) | lines (two transverse lines) | ladder (both)
    crossing_len: float = 3.0      # along the road: the walking width of a crossing
    bar_w: float = 0.5             # bars along the road ...
    bar_gap: float = 0.5           # ... this far apart ...
    bar_inset: float = 0.6         # ... the first one's centre this far from the kerb
    line_w: float = 0.3            # transverse crossing lines, one each side of the walking width
    stop: str = ""                 # "stop": a solid bar across the approach lane, ``stop_setback`` before the
                                   # crossing; "give_way": two broken lines (0.6 m marks, 0.3 m gaps, 0.3 m
                                   # apart) at the junction mouth of the narrower road; "": none
    stop_w: float = 0.45
    stop_setback: float = 1.2
    left_hand: bool = False        # traffic keeps left: the approach lane lies left of the centre line
    keep: float = 1.0              # worn paint: the fraction of marks (dashes, bars, 2 m of solid line) left
    bare_below: float = 0.0        # roads narrower than this carry no markings at all


#: the markings of every preset without ``marking_styles``: white 0.12 m edge lines, a white 0.14 m centre line
#: of 3 m dashes and 3 m gaps on roads from 7.5 m, zebra crossings of 0.5 m bars, 3 m wide
DEFAULT_MARKINGS = Markings()
#: conventions of real countries, then worn paint (one of them faded and patchy) and no markings at all
MARKING_CONVENTIONS = ("europe", "uk", "north_america", "japan")
MARKING_STYLES = MARKING_CONVENTIONS + ("worn", "unmarked")


def draw_markings(styles: Tuple[str, ...], rng) -> Markings:
    """One town's markings: a style drawn uniformly from ``styles`` (names of `MARKING_STYLES`; repeat a name
    to weight it), then its choices (dash pattern, edge lines, kind of crossing, crossing width)."""
    unknown = sorted(set(styles) - set(MARKING_STYLES))
    if unknown or not styles:
        raise ValueError(f"unknown road marking styles {unknown or styles!r}; choose among {', '.join(MARKING_STYLES)}")
    style = styles[rng.integers(len(styles))]
    if style == "unmarked":
        return Markings("unmarked", bare_below=math.inf)
    if style == "worn":  # residential streets (under 9 m) bare, the rest faded and patchy
        base = _convention(MARKING_CONVENTIONS[rng.integers(len(MARKING_CONVENTIONS))], rng)
        return dataclasses.replace(base, style="worn", rgb=WORN_WHITE,
                                   centre_rgb=WORN_YELLOW if base.centre_rgb == YELLOW else WORN_WHITE,
                                   keep=round(_u(rng, (0.45, 0.8)), 2), bare_below=9.0)
    return _convention(style, rng)


def _convention(name: str, rng) -> Markings:
    """A country's markings with the choices its streets vary in, drawn from ``rng``."""
    if name == "europe":  # e.g. German RMS in towns: 3 m / 6 m (6 m / 12 m outside), 0.5 m zebra bars
        dash, gap = ((3.0, 6.0), (6.0, 12.0))[rng.integers(2)]
        return Markings(name, WHITE, WHITE, 0.12, dash, gap, centre_from=6.0,
                        edge_w=0.12 if rng.random() < 0.5 else 0.0, crossing="bars",
                        crossing_len=round(_u(rng, (3.0, 4.0)), 1), bar_w=0.5, bar_gap=0.5, bar_inset=0.6)
    if name == "uk":  # UK 2 m / 4 m (diagram 1008), Australia 3 m / 9 m; give-way lines; 0.6 m zebra stripes
        dash, gap = ((2.0, 4.0), (3.0, 9.0))[rng.integers(2)]
        return Markings(name, WHITE, WHITE, 0.10, dash, gap, centre_from=5.5,
                        edge_w=0.10 if rng.random() < 0.3 else 0.0, crossing="bars",
                        crossing_len=round(_u(rng, (2.4, 4.0)), 1), bar_w=0.6, bar_gap=0.6, bar_inset=0.7,
                        stop="give_way", stop_w=0.2, left_hand=True)
    if name == "north_america":  # MUTCD: yellow centre 10 ft / 30 ft or double solid, 4-6 in lines, stop bars
        crossing = ("lines", "bars", "ladder")[rng.integers(3)]
        return Markings(name, WHITE, YELLOW, 0.10, 3.0, 9.0, centre_from=7.5, double_from=9.0,
                        edge_w=0.15 if rng.random() < 0.5 else 0.0, crossing=crossing, crossing_len=3.0,
                        bar_w=0.6, bar_gap=0.6, bar_inset=0.7, line_w=0.3, stop="stop", stop_w=0.45,
                        stop_setback=1.2)
    if name == "japan":  # white 0.15 m lines (solid centre in towns, 5 m / 5 m where passing is allowed),
        dash, gap = ((5.0, 0.0), (5.0, 5.0))[rng.integers(2)]  # 0.45 m bars of a 4 m crossing, stop bar
        return Markings(name, WHITE, WHITE, 0.15, dash, gap, centre_from=5.5, edge_w=0.15, crossing="bars",
                        crossing_len=4.0, bar_w=0.45, bar_gap=0.45, bar_inset=0.6, stop="stop", stop_w=0.45,
                        stop_setback=2.0, left_hand=True)
    raise ValueError(f"unknown road marking convention {name!r}; choose one of {', '.join(MARKING_CONVENTIONS)}")


def marking_streams(seed: int):
    """(style draw, wear) generators of a town's markings: one stream of their own (town seed + 808), split
    in two, so that neither the town's other draws nor the choice of style move with the number of marks."""
    return tuple(np.random.default_rng(s) for s in np.random.SeedSequence(seed + 808).spawn(2))


def _chords(line: LineString, dash: float, gap: float, step: float = 0.5) -> List[LineString]:
    """Dashes of ``dash`` m starting every ``dash + gap`` m from the start of ``line``: chords between its points
    ``step`` m apart (``gap`` = 0: consecutive pieces of ``dash`` m). Lengths are multiples of ``step``."""
    pts = [line.interpolate(s) for s in np.arange(0, line.length, step)]
    n, period = round(dash / step), round((dash + gap) / step)
    return [LineString([pts[k], pts[k + n]]) for k in range(0, len(pts) - n, period)]


def _paint_lines(town: Town, lines: list, width: float, rgb, solid: bool, junctions, m: Markings, wear) -> None:
    """Paint lines (or dashes) ``width`` m wide outside the junctions; worn paint (``wear``, a generator, or
    None) keeps each dash or 2 m piece of solid line with probability ``m.keep``."""
    if wear is not None:
        pieces = [c for g in lines for part in getattr(g, "geoms", [g])
                  for c in (_chords(part, 2.0, 0.0, step=2.0) if solid else [part])]
        kept = [c for c in pieces if wear.random() < m.keep]
        if not kept:
            return
        geom = MultiLineString(kept).buffer(width / 2, cap_style=2)  # one buffer for thousands of pieces
    elif not lines:
        return
    elif solid and len(lines) == 1:
        geom = lines[0].buffer(width / 2)
    else:
        geom = unary_union([g.buffer(width / 2, cap_style=1 if solid else 2) for g in lines])
    geom = geom.difference(junctions)
    if not geom.is_empty:
        town.paint.append((geom, rgb, 0.05))


def _frame(line: LineString, s: float):
    """(c, t, nrm): the point ``s`` m along ``line`` (2,), the unit tangent there (2,) and its left normal (2,),
    metres; None where the line ends in a point."""
    c, c2 = line.interpolate(s), line.interpolate(min(s + 0.5, line.length))
    t = np.array([c2.x - c.x, c2.y - c.y])
    if np.linalg.norm(t) < 1e-6:
        return None
    t /= np.linalg.norm(t)
    return np.array([c.x, c.y]), t, np.array([-t[1], t[0]])


def _crossing(road: Road, m: Markings, c, t, nrm) -> List[Polygon]:
    """The bars and lines of a pedestrian crossing centred at ``c`` across ``road`` (``t``, ``nrm``: `_frame`)."""
    half = m.crossing_len / 2
    marks = []
    if m.crossing in ("bars", "ladder"):
        for q in np.arange(-road.width / 2 + m.bar_inset, road.width / 2 - 0.4, m.bar_w + m.bar_gap):
            a = c + nrm * q
            marks.append(LineString([a - t * half, a + t * half]).buffer(m.bar_w / 2, cap_style=2))
    if m.crossing in ("lines", "ladder"):
        for e in (-1, 1):
            a = c + t * e * (half + m.line_w / 2)
            marks.append(LineString([a - nrm * (road.width / 2 - 0.2), a + nrm * (road.width / 2 - 0.2)])
                         .buffer(m.line_w / 2, cap_style=2))
    return marks


def _approach_line(road: Road, m: Markings, s: float, sgn: int, mark: float, gap: float) -> List[Polygon]:
    """A line ``m.stop_w`` wide across the approach lane of ``road`` at ``s`` m along it, on the side where
    ``sgn`` (+-1) points along the road away from the junction: solid (``gap`` = 0) or broken."""
    frame = _frame(road.line, s) if 0 < s < road.line.length else None
    if frame is None:
        return []
    c, t, nrm = frame
    side = -sgn if m.left_hand else sgn  # traffic on this side approaches the junction against ``sgn``
    q0, q1 = 0.15, road.width / 2 - 0.1
    pieces = [(q0, q1)] if gap == 0 else [(q, min(q + mark, q1)) for q in np.arange(q0, q1, mark + gap)]
    return [LineString([c + nrm * side * a, c + nrm * side * b]).buffer(m.stop_w / 2, cap_style=2)
            for a, b in pieces]


def _paint_roads(town: Town, rng) -> None:
    """Sidewalks, kerbs, asphalt, then the town's markings (`Town.markings`): lane markings, pedestrian
    crossings near junctions, stop or give-way lines. ``rng`` (the town's stream) picks the approaches that
    get a crossing, whatever the markings; worn paint draws from the markings' stream (`marking_streams`)."""
    m = town.markings or DEFAULT_MARKINGS
    wear = marking_streams(town.seed)[1] if m.keep < 1 else None
    roads = town.roads
    sidewalks = unary_union([r.line.buffer(r.width / 2 + r.sidewalk, cap_style=2) for r in roads])
    asphalt = unary_union([r.line.buffer(r.width / 2, cap_style=2) for r in roads])
    kerbs = unary_union([r.line.buffer(r.width / 2 + 0.25, cap_style=2) for r in roads]).difference(asphalt)
    town.paint += [(sidewalks, PAVING, 0.07), (kerbs, KERB, 0.04), (asphalt, ASPHALT, 0.12)]
    crossings = []
    for i, r in enumerate(roads):
        for j, o in enumerate(roads):
            if j <= i:
                continue
            x = r.line.intersection(o.line)
            for pt in getattr(x, "geoms", [x]):
                if isinstance(pt, Point):
                    crossings.append((pt, r, o))
    # intersection areas carry no lane markings
    junctions = unary_union([pt.buffer(max(r.width, o.width) / 2 + 1.0) for pt, r, o in crossings]) \
        if crossings else Polygon()
    for r in roads:
        if r.width < m.bare_below:
            continue
        if m.edge_w > 0:
            for side in (-1, 1):
                edge = r.line.parallel_offset(r.width / 2 - 0.35, "left" if side > 0 else "right")
                _paint_lines(town, [edge], m.edge_w, m.rgb, True, junctions, m, wear)
        if r.width >= m.centre_from and r.centre_dashed:
            if r.width >= m.double_from:
                pair = [side_line(r.line, m.centre_w, side) for side in (-1, 1)]
                _paint_lines(town, [g for g in pair if g is not None], m.centre_w, m.centre_rgb, True, junctions,
                             m, wear)
            elif m.gap == 0:
                _paint_lines(town, [r.line], m.centre_w, m.centre_rgb, True, junctions, m, wear)
            else:
                _paint_lines(town, _chords(r.line, m.dash, m.gap), m.centre_w, m.centre_rgb, False, junctions,
                             m, wear)
    for pt, r, o in crossings:
        for road, other in ((r, o), (o, r)):
            s0 = road.line.project(pt)
            minor = road.width < other.width or (road.width == other.width and road is o)
            for sgn in (-1, 1):
                s = s0 + sgn * (other.width / 2 + other.sidewalk + 2.0)
                if not (0 < s < road.line.length) or rng.random() < 0.25 or road.width < m.bare_below:
                    continue
                frame = _frame(road.line, s)
                if frame is None:
                    continue
                marks = _crossing(road, m, *frame)
                if m.stop == "stop":
                    far = m.crossing_len / 2 + (m.line_w if m.crossing != "bars" else 0.0) + m.stop_setback
                    marks += _approach_line(road, m, s + sgn * (far + m.stop_w / 2), sgn, 0.0, 0.0)
                elif m.stop == "give_way" and minor:
                    mouth = s0 + sgn * (other.width / 2 + 0.3 + m.stop_w / 2)
                    for k in range(2):
                        marks += _approach_line(road, m, mouth + sgn * k * (0.3 + m.stop_w), sgn, 0.6, 0.3)
                if wear is not None:
                    marks = [g for g in marks if wear.random() < m.keep]
                if marks:
                    town.paint.append((unary_union(marks), m.rgb, 0.05))


def side_line(line: LineString, offset_m: float, side: int) -> Optional[LineString]:
    """The line ``offset_m`` to the left (side > 0) or right of ``line``; None where the offset has no single
    line (a bend tighter than the offset)."""
    try:
        edge = line.parallel_offset(offset_m, "left" if side > 0 else "right")
    except ValueError:
        return None
    return None if edge.is_empty or edge.geom_type != "LineString" else edge


def _street_furniture(town: Town, rng) -> None:
    """Lamp posts and signs at the kerb, street trees, cars parked along the kerb."""
    p = town.params
    half = town.size_m / 2
    for r in town.roads:
        for side in (-1, 1):
            edge = side_line(r.line, r.width / 2 + 0.6, side)
            if edge is None:
                continue
            s = rng.uniform(0, 10)
            while s < edge.length:
                pt = edge.interpolate(s)
                if abs(pt.x) < half + 20 and abs(pt.y) < half + 20:
                    kind = rng.random()
                    g = len(town.blocks)
                    if kind < 0.45:  # lamp: pole + head
                        h = _u(rng, (5, 8))
                        town.blocks.append(Block(pt.x, pt.y, 0, 0.18, 0.18, h, 0, POLE, (0.3, 0.3, 0.32), g))
                        town.blocks.append(Block(pt.x, pt.y, h - 0.3, 0.9, 0.35, 0.3, rng.uniform(0, 180), POLE,
                                                 (0.2, 0.2, 0.22), g))
                    elif kind < 0.6:  # sign: post + plate
                        town.blocks.append(Block(pt.x, pt.y, 0, 0.08, 0.08, 2.6, 0, POLE, (0.55, 0.55, 0.57), g))
                        town.blocks.append(Block(pt.x, pt.y, 2.0, 0.7, 0.06, 0.6, rng.uniform(0, 180), POLE,
                                                 [(0.8, 0.1, 0.1), (0.1, 0.3, 0.7), (0.9, 0.9, 0.9)][rng.integers(3)],
                                                 g))
                    elif (town.style != "industrial" or kind < 0.7) and r.sidewalk > 2.0:
                        _add_tree(town, rng, pt.x, pt.y)  # street tree at the kerb side of the sidewalk
                s += _u(rng, p.tree_spacing)
            # parked cars along the kerb, inside the road
            if r.width >= 9 or town.style == "suburb":
                lane = side_line(r.line, r.width / 2 - 1.2, side)
                if lane is None:
                    continue
                s = rng.uniform(0, 15)
                while s < lane.length - 5:
                    if rng.random() < 0.35:
                        a, b = lane.interpolate(s), lane.interpolate(s + 1)
                        if abs(a.x) < half + 10 and abs(a.y) < half + 10:
                            _add_car(town, rng, a.x, a.y, math.degrees(math.atan2(b.y - a.y, b.x - a.x)))
                    s += _u(rng, (5.5, 7.0))
    # objects on junctions would block traffic: drop those inside other roads' asphalt
    asphalt_cross = []
    for i, r in enumerate(town.roads):
        others = [o.line.buffer(o.width / 2 + 2) for j, o in enumerate(town.roads) if j != i]
        asphalt_cross.append(unary_union(others).intersection(r.line.buffer(r.width / 2 + 2)) if others else Polygon())
    bad = unary_union(asphalt_cross + [b.footprint().buffer(0.5) for b in town.buildings])
    # a grounded part in a bad place removes its whole object, so no lamp head or car cabin is left floating
    dropped = [k.z0 < 0.5 and bad.contains(Point(k.cx, k.cy)) for k in town.blocks]
    bad_groups = {k.group for k, d in zip(town.blocks, dropped) if d and k.group >= 0}
    town.blocks = [k for k, d in zip(town.blocks, dropped)
                   if not d and (k.group < 0 or k.group not in bad_groups)]
    town.trees = [t for t in town.trees if not bad.contains(Point(t.x, t.y))]
