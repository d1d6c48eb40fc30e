"""Kinds of place (training: park, campus; held out: oldtown, village, retail; unseen: alleys), the heldout,
unseen and train-places presets: content, determinism, rendering (small)."""

import dataclasses
import math
import os

import numpy as np
import pytest
from PIL import Image, ImageOps
from shapely.geometry import Point, box
from shapely.ops import unary_union
from shapely.prepared import prep

from loc2_engine.manifest import read_manifest
from loc2_engine.synth import places as P
from loc2_engine.synth import town as T
from loc2_engine.synth.albedo import make_albedo
from loc2_engine.synth.dataset import generate, town_origin, utm_crs
from loc2_engine.synth.photos import camera_response, photometric
from loc2_engine.synth.presets import PRESETS, get_preset
from loc2_engine.synth.render import Renderer
from test_synth import _digest  # the same file hashes as the determinism tests there

ORIGIN = (465000.0, 5245000.0)   # UTM 32N


def _town(style, seed=4, size_m=200.0, variant="heldout"):
    return T.make_town("p", style, seed, "EPSG:32632", ORIGIN, size_m, T.default_style(style, variant))


@pytest.fixture(scope="module")
def towns():
    """One town of each held-out and unseen kind of place, 200 m square, seed 4."""
    return {style: _town(style) for style in T.HELDOUT_STYLES + T.UNSEEN_STYLES}


@pytest.fixture(scope="module")
def training_towns():
    """One town of each training kind of place (train parameters), 200 m square, seed 4."""
    return {style: _town(style, variant="train") for style in T.TRAIN_PLACE_STYLES}


def _signature(town):
    """Everything a town is made of, as comparable values."""
    return (repr(town.buildings), repr(town.trees), repr(town.blocks),
            [(r.line.wkb, r.width, r.sidewalk, r.kind) for r in town.roads],
            [(e[0].wkb,) + tuple(e[1:]) for e in town.paint], town.walkable.wkb, town.sun_az_deg)


@pytest.mark.parametrize("style", T.HELDOUT_STYLES + T.UNSEEN_STYLES)
def test_a_kind_of_place_is_built_again_identically_from_its_seed(style, towns):
    assert _signature(_town(style)) == _signature(towns[style])
    other = _town(style, seed=5)
    assert repr(other.buildings) != repr(towns[style].buildings)
    assert not towns[style].walkable.intersection(box(-40, -40, 40, 40)).is_empty  # cameras find a place


def test_oldtown_has_narrow_lanes_a_square_a_church_and_terraced_houses(towns):
    town = towns["oldtown"]
    lanes = [r for r in town.roads if r.kind == "lane"]
    streets = [r for r in town.roads if r.kind == "street"]
    assert len(lanes) >= 30 and all(3.0 <= r.width < 8.0 and r.sidewalk == 0 for r in lanes)
    assert streets and all(10.0 <= r.width + 2 * r.sidewalk <= 14.0 for r in streets)  # the few wider streets
    assert not any(len(e) > 1 and e[1] == T.WHITE for e in town.paint)  # no markings
    square = town.features["square"]
    assert not square.buffer(-20.0).is_empty and town.features["square_m"] >= 40.0  # 40 m of open ground across
    assert sum(b.footprint().intersection(square).area for b in town.buildings) < 0.1  # facades line it
    assert any(len(e) > 3 and e[0].equals(square) and e[3].kind == "joints" for e in town.paint)  # paving
    tower = max(town.buildings, key=lambda b: b.height + b.roof_rise)
    assert tower.height >= 24.0 and tower.roof == "hip" and tower.roof_rise >= 8.0
    # terraced houses (the sheds and rear wings in the courtyards stay under 7 m)
    houses = [b for b in town.buildings if b.roof == "gable" and b.height > 7.0 and b is not tower]
    assert len(houses) >= 100
    assert all(b.height <= 17.0 and b.roof_rise / (min(b.rects[0][2:4]) / 2) >= math.tan(math.radians(39))
               for b in houses)  # 2-5 storeys, steep roofs
    frontages = [min(b.rects[0][2:4]) for b in houses]
    assert 4.5 <= np.median(frontages) <= 10.0
    rows = unary_union([b.footprint().buffer(0.1) for b in houses])
    assert len(getattr(rows, "geoms", [rows])) < 0.5 * len(houses)  # terraced: houses share walls in rows


def test_retail_has_a_parking_lot_with_painted_bays_stores_with_skylights_a_plaza_and_a_roundabout(towns):
    town = towns["retail"]
    assert town.features["parking_bays"] >= 50
    cars = [k for k in town.blocks if k.material == T.CAR]
    assert len(cars) >= 25
    skylights = [k for k in town.blocks if k.material == T.GLASS_BOX and k.z0 > 5.0]
    assert len(skylights) >= 10
    assert any(not b.windows and b.roof == "flat" for b in town.buildings)
    plaza = town.features["plaza"]
    assert sum(plaza.contains(Point(t.x, t.y)) for t in town.trees) >= 2
    assert any(len(e) > 3 and e[0].equals(plaza) for e in town.paint)  # pavers
    ring = town.features["roundabout"]
    assert 14.0 <= math.sqrt(ring.area / math.pi) <= 19.5 and ring.centroid.distance(Point(0, 0)) < 120
    angles = {round(math.degrees(math.atan2(r.line.coords[-1][1] - r.line.coords[0][1],
                                            r.line.coords[-1][0] - r.line.coords[0][0])) % 90.0, 3) for r in town.roads}
    assert len(angles) == 1 and 1.0 < angles.pop() < 89.0  # a rotated grid


def test_village_is_open_country_with_fields_farms_and_unmarked_roads(towns):
    town = towns["village"]
    downtown = T.make_town("d", "downtown", 4, "EPSG:32632", ORIGIN, 200.0)
    square = box(-100, -100, 100, 100)

    def density(t):
        return sum(b.footprint().intersection(square).area for b in t.buildings) / square.area

    assert density(town) < 0.2 * density(downtown)
    assert town.features["farms"] >= 2 and town.features["fields"] >= 5
    roads = [r for r in town.roads if r.kind == "road"]
    assert roads and all(4.0 <= r.width <= 7.0 and r.sidewalk >= 1.4 for r in roads)
    assert any(r.kind == "track" for r in town.roads)
    assert not any(len(e) > 1 and e[1] in (T.WHITE, T.KERB) for e in town.paint)  # no markings, no kerbs
    assert sum(len(e) > 3 and e[3].kind == "stripes" for e in town.paint) >= 3  # crop rows, furrows, mowing
    assert sum(k.material == T.HEDGE and k.length > 6 for k in town.blocks) >= 3  # hedgerows
    barns = [b for b in town.buildings if not b.windows and b.roof == "gable"]
    assert barns and max(b.rects[0][2] for b in barns) >= 18.0


def test_alleys_are_narrow_lanes_between_detached_buildings_under_overhead_wires(towns):
    town = towns["alleys"]
    alleys = [r for r in town.roads if r.kind == "lane"]
    streets = [r for r in town.roads if r.kind == "street"]
    assert len(alleys) >= 15 and all(2.5 <= r.width <= 6.0 and r.sidewalk == 0 for r in alleys)
    assert 1 <= len(streets) <= 2 and all(9.0 <= r.width <= 16.0 and r.sidewalk >= 2.0 for r in streets)
    assert town.markings is not None and town.markings.style == "japan"  # the region's, when the preset draws none
    houses = town.buildings
    assert len(houses) >= 150
    square = box(-80, -80, 80, 80)
    ways = unary_union([r.line.buffer(r.width / 2 + r.sidewalk) for r in town.roads]).intersection(square)
    built = P.footprints(town).intersection(square).area
    assert built > 0.5 * (square.area - ways.area)  # dense: roofs cover most of the blocks
    rows = unary_union([b.footprint() for b in houses])
    assert len(getattr(rows, "geoms", [rows])) > 0.9 * len(houses)  # detached: a gap between neighbours
    assert {b.roof for b in houses} >= {"flat", "gable"} and max(b.height for b in houses) >= 15.0
    wires = [k for k in town.blocks if k.width < 0.05 and k.length > 10.0]
    poles = [k for k in town.blocks if k.material == T.POLE and k.z0 == 0.0 and k.height >= 9.0]
    assert town.features["poles"] == len(poles) >= 50 and len(wires) >= 2 * len(poles)
    assert all(6.5 <= k.z0 <= 11.5 for k in wires)  # above the lorries, below the cross-arms
    signs = [k for k in town.blocks if k.z0 >= 3.0 and k.height >= 1.5 and k.width == 0.25]
    vending = [k for k in town.blocks if k.height > 1.5 and k.length == 1.0 and k.z0 == 0.0]
    assert len(signs) >= 20 and len(vending) >= 3
    assert town.features["coin_parking"] >= 1 and sum(k.material == T.CAR for k in town.blocks) >= 20
    lanes = unary_union([r.line.buffer(r.width / 2) for r in alleys])
    assert town.walkable.intersection(lanes).area > 0.2 * town.walkable.area  # cameras stand in the alleys too


def test_a_ground_pattern_draws_joints_and_stripes():
    town = T.Town("g", "oldtown", 1, "EPSG:32632", ORIGIN, 20.0, 180.0, 45.0, T.default_style("oldtown"))
    grey, dark = (0.6, 0.6, 0.6), (0.1, 0.1, 0.1)
    town.paint.append((box(-10, 0, 10, 10), grey, 0.0, T.Pattern("joints", 0.0, 1.0, 1.0, dark, 0.2, 0.0)))
    town.paint.append((box(-10, -10, 10, 0), grey, 0.0, T.Pattern("stripes", 0.0, 2.0, 0.5, dark)))
    a = make_albedo(town, gsd=0.1)

    def at(x, y):
        return a.lookup(np.array([x]), np.array([y]))[0, 0]

    assert at(3.05, 5.5) < 0.2 and at(3.55, 5.5) > 0.5 and at(3.55, 5.05) < 0.2   # joints every metre
    assert at(0.0, -1.55) < 0.2 and at(0.0, -0.55) > 0.5                         # 1 m dark band in 2 m


def test_blank_walls_and_plain_ground_floors_have_no_shop_windows():
    p = np.array([[0.5, 0.0, 1.5], [1.5, 0.0, 1.5], [2.5, 0.0, 4.5]], np.float32)
    base = np.full((3, 3), 0.7, np.float32)

    def shade(floor_h, bay):
        fac = np.tile(np.array([0, 0, 1, 0, floor_h, bay, 0], np.float32), (3, 1))
        return Renderer._facade(p, fac, base.copy())

    shop, plain, blank = shade(3.0, 2.0), shade(-3.0, 2.0), shade(3.0, 0.0)
    assert shop[0].mean() < 0.4                   # ground floor: a shop window at 1.5 m
    assert plain[0].mean() > 0.5                  # residential: wall below the sill of the upper storeys' window
    assert np.all(blank > 0.55) and np.all(blank < 0.85)  # no window, no frame anywhere


def test_heldout_preset_holds_out_kinds_of_place_zones_and_camera():
    held, train, bench = get_preset("heldout"), get_preset("train"), get_preset("bench")
    styles = [t.style for t in held.towns]
    assert set(styles) == set(T.HELDOUT_STYLES) and all(styles.count(s) == 2 for s in T.HELDOUT_STYLES)
    assert set(T.HELDOUT_STYLES) <= set(T.PLACE_STYLES) and not set(T.HELDOUT_STYLES) & set(T.TRAIN_PLACE_STYLES)
    for p in PRESETS.values():  # every other preset trains or benchmarks on kinds the model may learn
        if p.name not in ("heldout", "heldout-hills"):
            assert not {t.style for t in p.towns} & set(T.HELDOUT_STYLES), p.name
        if p.name != "unseen":
            assert not {t.style for t in p.towns} & set(T.UNSEEN_STYLES), p.name
    seen = {town_origin(t) for p in (train, bench, get_preset("demo")) for t in p.towns}
    zones = {town_origin(t)[0] for t in train.towns + bench.towns}
    for t in held.towns:
        crs, xy = town_origin(t)
        assert (crs, xy) not in seen and crs not in zones
    assert any(t.lat < 0 for t in held.towns) and any(t.lat > 60 for t in held.towns)
    own_streams = [p for p in PRESETS.values() if p.name != "heldout-hills"]  # heldout's towns on hills
    assert len({p.seed_offset for p in own_streams}) == len(own_streams) and held.variant == "heldout"
    assert held.photo_sun == "independent" and held.sun_azimuth_deg == (0.0, 360.0) and 0 < held.overcast < 1
    assert held.phone_camera and held.camera_height_m == (1.2, 3.0) and held.pitch_deg <= 3 and held.roll_deg <= 2
    assert 80 <= held.jpeg_quality[0] and held.jpeg_quality[1] <= 93 and held.hfov_deg == (55.0, 95.0)
    assert 90 <= len(held.towns) * (held.n_pano + held.n_pinhole) <= 110
    for name in ("demo", "train", "bench"):  # the other presets keep their camera
        p = get_preset(name)
        assert not p.phone_camera and p.camera_height_m == (1.4, 2.5) and p.jpeg_quality == (72, 96)


def test_the_phone_camera_exposes_for_the_scene_and_darkens_the_corners():
    rng = np.random.default_rng
    dark = np.full((48, 64, 3), 0.12, np.float32)
    phone = camera_response(dark, rng(0), pano=False)
    assert phone.dtype == np.uint8 and phone.shape == (48, 64, 3)
    assert phone.mean() > photometric(dark, rng(0), pano=False).mean() + 20  # auto exposure
    assert phone[20:28, 28:36].mean() > phone[:6, :6].mean() + 5             # vignetting
    assert np.array_equal(phone, camera_response(dark, rng(0), pano=False))
    assert not np.array_equal(phone, camera_response(dark, rng(1), pano=False))


def _tiny_heldout(towns, preset="heldout"):
    held = get_preset(preset)
    return dataclasses.replace(held, towns=towns, size_m=140.0, camera_margin_m=35.0, n_pano=1, n_pinhole=1,
                               pano_hw=(32, 64), pinhole_hw=(24, 32))


def test_each_kind_of_place_renders_an_orthophoto_and_photos(tmp_path):
    """One heldout town of each kind (Porvoo 35N, Hahndorf 54S, Curitiba 22S), tiny: orthophoto, a panorama and
    a pinhole each, truth in the town's own UTM zone, the camera's pose within the heldout ranges."""
    preset = _tiny_heldout(get_preset("heldout").towns[::2])
    rows = generate(str(tmp_path / "a"), preset, seed=0)
    assert len(rows) == 6
    for spec in preset.towns:
        assert os.path.isfile(tmp_path / "a" / "aerial" / f"{spec.name}.tif")
    for r in read_manifest(tmp_path / "a" / "manifest.csv"):
        spec = next(t for t in preset.towns if t.name == r.extra["town"])
        assert r.crs == utm_crs(spec.lon, spec.lat) and r.extra["style"] == spec.style
        upright = ImageOps.exif_transpose(Image.open(r.photo))
        depth = np.load(r.depth)
        assert depth.shape == (upright.height, upright.width) and np.nanmin(depth) > 0.3
        assert 1.2 <= float(r.extra["camera_height_m"]) <= 3.0
        assert abs(float(r.extra["pitch_deg"])) <= 3.0 and abs(float(r.extra["roll_deg"])) <= 2.0
    assert {r.crs for r in read_manifest(tmp_path / "a" / "manifest.csv")} == {"EPSG:32635", "EPSG:32754", "EPSG:32722"}
    one = dataclasses.replace(preset, towns=preset.towns[2:])  # the same seed again: the same files
    generate(str(tmp_path / "b"), one, seed=0)
    generate(str(tmp_path / "c"), one, seed=0)
    assert _digest(tmp_path / "b") == _digest(tmp_path / "c")


def test_unseen_is_heldout_hills_in_a_kind_of_place_and_zones_no_other_preset_has(tmp_path):
    unseen, hills = get_preset("unseen"), get_preset("heldout-hills")
    assert {t.style for t in unseen.towns} == set(T.UNSEEN_STYLES) and len(unseen.towns) == 4
    others = {town_origin(t)[0] for p in PRESETS.values() if p is not unseen for t in p.towns}
    zones = {town_origin(t)[0] for t in unseen.towns}
    assert len(zones) == 4 and not zones & others
    same = ("variant", "sun_azimuth_deg", "sun_elevation_deg", "overcast", "photo_sun", "camera_height_m", "pitch_deg",
            "roll_deg", "jpeg_quality", "phone_camera", "terrain", "ortho_flying_height_m", "lens_k1_range",
            "pano_hw", "pinhole_hw", "hfov_deg")
    assert all(getattr(unseen, f) == getattr(hills, f) for f in same)
    assert 90 <= len(unseen.towns) * (unseen.n_pano + unseen.n_pinhole) <= 110
    rows = generate(str(tmp_path / "u"), _tiny_heldout(unseen.towns[:1], "unseen"), seed=0)
    assert len(rows) == 2
    for r in read_manifest(tmp_path / "u" / "manifest.csv"):
        assert r.crs == "EPSG:32651" and r.extra["style"] == "alleys"
        assert np.nanmin(np.load(r.depth)) > 0.3


def test_synth_command_keeps_the_heldout_light_unless_told_otherwise(monkeypatch, tmp_path):
    from loc2_engine.cli import main
    from loc2_engine.synth import dataset

    seen = []
    monkeypatch.setattr(dataset, "generate", lambda out, preset, **kw: seen.append(preset) or [])
    assert main(["synth", str(tmp_path / "h"), "--preset", "heldout", "--views", "4"]) == 0
    assert seen[-1].photo_sun == "independent" and seen[-1].overcast == 0.3 and seen[-1].n_pano == 2
    assert main(["synth", str(tmp_path / "h"), "--preset", "heldout", "--photo-sun", "same", "--overcast", "0"]) == 0
    assert seen[-1].photo_sun == "same" and seen[-1].overcast == 0.0
    assert main(["synth", str(tmp_path / "d"), "--preset", "bench"]) == 0
    assert seen[-1].photo_sun == "same" and seen[-1].overcast == 0.0


# ----------------------------------------------------------------------------- training kinds of place
@pytest.mark.parametrize("style", T.TRAIN_PLACE_STYLES)
def test_a_training_kind_of_place_is_deterministic_and_leaves_cameras_room_clear_of_obstacles(style, training_towns):
    town = training_towns[style]
    assert _signature(_town(style, variant="train")) == _signature(town)
    assert repr(_town(style, seed=5, variant="train").buildings) != repr(town.buildings)
    centre = town.walkable.intersection(box(-40, -40, 40, 40))
    assert centre.area > 500.0  # cameras find room in the middle, not one sliver
    assert town.walkable.intersection(town.obstacles()).area < 1e-6
    assert town.walkable.distance(P.footprints(town)) >= 0.79  # 0.8 m from every wall
    rng = np.random.default_rng(0)
    x0, y0, x1, y1 = centre.bounds
    pts = [Point(x, y) for x, y in rng.uniform((x0, y0), (x1, y1), (400, 2))]
    standing = [q for q in pts if centre.contains(q)]
    near = prep(town.obstacles().buffer(0.5))
    assert len(standing) >= 20 and not any(near.contains(q) for q in standing)


def test_park_has_paths_lawns_tree_groups_water_a_playground_and_mixed_buildings_around(training_towns):
    town = training_towns["park"]
    park = town.features["park"]
    assert town.features["pond"] or town.features["fountain"]
    assert town.features["playground_m2"] >= 14 * 10 and town.features["paths"] >= 5
    inside = [t for t in town.trees if park.contains(Point(t.x, t.y))]
    assert len(inside) >= 30
    shapes = {round(t.crown_h / t.radius, 1) for t in inside}
    assert max(shapes) / min(shapes) > 1.8  # broad crowns and narrow ones (conifers, poplars), not one kind
    assert len({t.rgb for t in inside}) == len(inside)  # each tree its own tone
    assert not any(b.footprint().intersects(park) for b in town.buildings)
    assert {b.roof for b in town.buildings} == {"flat", "gable", "hip"} and len(town.buildings) >= 40
    assert 0.05 * park.area < town.walkable.intersection(park).area < 0.4 * park.area  # paths, not the lawns
    assert sum(k.material == T.POLE and k.length == 1.8 for k in town.blocks) >= 3  # benches
    streets = [r for r in town.roads if r.line.distance(park) < r.width / 2 + r.sidewalk + 0.5]
    assert len(streets) == 4 and all(r.sidewalk >= 2.5 for r in streets)  # a street on every side


def test_campus_has_large_institutes_around_plazas_with_tree_grids_and_bike_racks(training_towns):
    town = training_towns["campus"]
    f = town.features
    assert f["institutes"] >= 3 and f["plazas"] >= 1 and f["quads"] >= 1 and f["bikes"] >= 10
    big = [b for b in town.buildings if b.footprint().area >= 600]
    assert len(big) >= 3 and all(b.height >= 8.0 and not b.shopfront for b in town.buildings)
    plaza = f["plaza"]
    grid = [t for t in town.trees if plaza.contains(Point(t.x, t.y))]
    assert any(len(e) > 3 and e[0].equals(plaza) and e[3].kind == "joints" for e in town.paint)  # pavers
    assert len(grid) >= 4
    xy = np.array([[t.x, t.y] for t in grid])
    d = np.linalg.norm(xy[:, None] - xy[None], axis=2) + np.eye(len(xy)) * 1e9
    assert d.min() >= 7.0 - 1e-6  # a grid of at least 7 m, not a clump


def test_train_places_preset_trains_on_new_kinds_in_new_zones_with_real_light_and_camera():
    tp, train, bench, held = (get_preset(n) for n in ("train-places", "train", "bench", "heldout"))
    styles = [t.style for t in tp.towns]
    assert len(styles) == 12 and all(styles.count(s) == 6 for s in T.TRAIN_PLACE_STYLES)
    assert set(styles[:2]) == set(T.TRAIN_PLACE_STYLES)  # --towns 2 renders one of each
    used = {town_origin(t)[0] for p in (train, bench, held, get_preset("demo")) for t in p.towns}
    zones = [town_origin(t)[0] for t in tp.towns]
    assert not set(zones) & used and len(set(zones)) == 12
    assert sum(t.lat < 0 for t in tp.towns) >= 3
    assert tp.variant == "train" and tp.seed_offset not in {p.seed_offset for p in PRESETS.values() if p is not tp}
    assert (tp.pano_hw, tp.pinhole_hw, tp.supersample, tp.rotated_pinholes, tp.hfov_deg) == \
        (train.pano_hw, train.pinhole_hw, 2, False, train.hfov_deg)
    assert tp.sun_azimuth_deg == (0.0, 360.0) and tp.sun_elevation_deg == (10.0, 75.0) and tp.overcast == 0.3
    assert tp.photo_sun == "independent" and tp.camera_height_m == (1.2, 3.0) and tp.phone_camera


def test_heldout_hills_is_heldout_on_hills_with_leaning_orthophotos_lenses_and_markings(tmp_path):
    """The same preset but for the four things flat true orthophotos and perfect pinholes leave out (each tested
    with train-places); a tiny render of one town records its aerial camera and each pinhole's lens, and puts
    its cameras where heldout puts them, so that the two benchmarks compare photo by photo."""
    held, hills, tp = get_preset("heldout"), get_preset("heldout-hills"), get_preset("train-places")
    rough = ("terrain", "ortho_flying_height_m", "lens_k1_range", "marking_styles")
    for f in dataclasses.fields(held):
        if f.name in rough:
            assert getattr(hills, f.name) == getattr(tp, f.name) != getattr(held, f.name), f.name
        elif f.name != "name":
            assert getattr(hills, f.name) == getattr(held, f.name), f.name
    preset = dataclasses.replace(_tiny_heldout(hills.towns[:1], "heldout-hills"), n_pinhole=2)
    generate(str(tmp_path / "h"), preset, seed=0)
    rows = read_manifest(tmp_path / "h" / "manifest.csv")
    assert os.path.isfile(tmp_path / "h" / "aerial" / f"{hills.towns[0].name}.json")  # the leaning camera
    pinholes = [r for r in rows if r.camera == "pinhole"]
    assert pinholes and all(-0.08 <= float(r.extra["lens_k1"]) <= 0.03 for r in pinholes)
    generate(str(tmp_path / "f"), dataclasses.replace(preset, **{k: getattr(held, k) for k in rough}), seed=0)
    flat = read_manifest(tmp_path / "f" / "manifest.csv")
    assert [(r.true_xy, r.camera) for r in rows] == [(r.true_xy, r.camera) for r in flat]
