"""Terrain in the synthetic world: sloping ground that cameras, buildings and street objects stand on, exact
depth on it, only train-places on hills, and flat towns that render as before (small scenes, fast)."""

import base64
import dataclasses
import zlib

import numpy as np
import pytest
from shapely.geometry import box

from loc2_engine.manifest import read_manifest
from loc2_engine.synth import terrain as TR
from loc2_engine.synth import town as T
from loc2_engine.synth.albedo import make_albedo
from loc2_engine.synth.dataset import build_town, generate
from loc2_engine.synth.mesh import _corners, build_mesh
from loc2_engine.synth.presets import PRESETS
from loc2_engine.synth.render import Renderer, pano_rays, pinhole_rays

from test_synth import _tiny

ORIGIN = (465000.0, 5245000.0)   # UTM 32N


def _ramp(grade=0.12, half=60.0) -> TR.Terrain:
    """A plane rising ``grade`` towards +x on 2 m cells over [-half, half]^2 (no ground beyond)."""
    xs = np.arange(-half, half + 1e-9, 2.0)
    return TR.Terrain(xs, xs, np.tile(grade * xs, (len(xs), 1)))


def _slope_town(*buildings):
    town = T.Town("s", "suburb", 1, "EPSG:32632", ORIGIN, 100.0, sun_az_deg=180.0, sun_el_deg=45.0,
                  params=T.default_style("suburb"), terrain=_ramp())
    town.buildings += buildings
    return town


def _house(cx, cy, length, depth, angle, roof="gable", height=6.0):
    return T.Building([(cx, cy, length, depth, angle)], height, roof, 3.0 if roof != "flat" else 0.0,
                      (0.8, 0.7, 0.6), (0.6, 0.3, 0.2), 3.0, 2.5)


def test_terrain_is_the_rendered_ground_with_the_drawn_relief_and_grades():
    """`Terrain.height` is the height of the triangles that are rendered (vertical rays land on it); towns get
    0-25 m of relief, no grade over 15 %, and flat ground at z = 0 far out."""
    for seed in range(6):
        terrain = TR.make_terrain(seed, 256.0)
        town = T.Town("t", "downtown", seed, "EPSG:32632", ORIGIN, 256.0, 180.0, 45.0, T.default_style("downtown"),
                      terrain=terrain)
        xs = terrain.xs[np.abs(terrain.xs) <= 128.0]
        z = terrain.z[np.ix_(np.abs(terrain.ys) <= 128.0, np.abs(terrain.xs) <= 128.0)]
        assert 0.0 <= z.max() - z.min() <= TR.RELIEF_M[1] + 1e-9
        assert TR._max_grade(terrain.xs, terrain.ys, terrain.z) <= TR.MAX_GRADE[1] + 1e-9
        assert np.all(terrain.z[[0, -1], :] == 0.0) and np.all(terrain.z[:, [0, -1]] == 0.0)
        assert len(xs) == 129  # 2 m cells over the town
    # the last terrain: the ground of a mesh, against vertical rays at points off the grid's nodes
    r = Renderer(town, build_mesh(town), make_albedo(town, gsd=1.0))
    xy = np.random.default_rng(0).uniform(-300.0, 300.0, (500, 2))
    t, prim = r.cast(np.c_[xy, np.full(len(xy), 100.0)], np.tile([0.0, 0.0, -1.0], (len(xy), 1)))
    assert np.all(r.mesh.material[prim] == T.GROUND)
    np.testing.assert_allclose(100.0 - t, town.ground_height(xy[:, 0], xy[:, 1]), atol=2e-4)
    assert np.ptp(100.0 - t) > 1.0


def test_a_building_on_a_slope_shows_no_gap_under_it():
    """A 20 x 12 m house, turned 30 degrees, on a 12 % slope (2.8 m between its lowest and highest corner):
    rays from a camera downhill to the foot of its walls hit the wall or the ground, never pass under the house;
    and rays 5 cm over the ground from just outside every wall hit that wall."""
    house = _house(0.0, 0.0, 20.0, 12.0, 30.0)
    town = _slope_town(house)
    r = Renderer(town, build_mesh(town), make_albedo(town, gsd=0.5))
    c = _corners(0.0, 0.0, 20.0, 12.0, 30.0)
    feet, outside, inward = [], [], []
    for i in range(4):
        p, q = c[i], c[(i + 1) % 4]
        along = (q - p) / np.linalg.norm(q - p)
        out = np.array([along[1], -along[0]])   # the ring is counter-clockwise: outward is to the right
        for s in np.arange(0.3, np.linalg.norm(q - p) - 0.3, 0.5):
            feet.append(p + along * s)
            outside.append(p + along * s + out * 0.4)
            inward.append(-out)
    feet, outside, inward = np.array(feet), np.array(outside), np.array(inward)
    lo, hi = town.terrain.extremes(house.rects)
    assert hi - lo > 2.5

    cam = np.array([-20.0, -3.0, float(town.ground_height(-20.0, -3.0)) + 1.7])
    target = np.c_[feet, town.ground_height(feet[:, 0], feet[:, 1])]
    d = target - cam
    dist = np.linalg.norm(d, axis=1)
    t, prim = r.cast(np.broadcast_to(cam, d.shape), d / dist[:, None])
    assert np.all(prim >= 0) and np.all(t <= dist + 0.02)
    assert np.mean(r.mesh.material[prim] == T.WALL) > 0.3     # it sees the downhill walls' plinth

    o = np.c_[outside, town.ground_height(outside[:, 0], outside[:, 1]) + 0.05]
    t, prim = r.cast(o, np.c_[inward, np.zeros(len(inward))])
    assert np.all(r.mesh.material[prim] == T.WALL)
    np.testing.assert_allclose(t, 0.4, atol=0.01)


def test_trees_cars_and_roof_units_stand_on_their_ground():
    """Trunks and car bodies follow the ground under each corner; a roof unit sits on its building's roof, the
    floor of which lies between the lowest and highest ground under the building."""
    hall = _house(10.0, 10.0, 16.0, 10.0, 0.0, roof="flat", height=9.0)
    town = _slope_town(hall)
    town.blocks.append(T.Block(10.0, 10.0, 9.0, 2.0, 2.0, 1.0, 0.0, T.GLASS_BOX, (0.5, 0.5, 0.5)))
    T._add_car(town, np.random.default_rng(0), -10.0, -5.0, 20.0)
    town.trees.append(T.Tree(-20.0, 15.0, 3.0, 2.0, 3.0, (0.2, 0.3, 0.1)))
    mesh = build_mesh(town)

    def corners(material):
        v = mesh.vertices[mesh.faces[mesh.material == material].ravel()]
        return np.unique(v, axis=0)

    trunk = corners(T.TRUNK)
    foot = trunk[trunk[:, 2] < trunk[:, 2].max()]
    np.testing.assert_allclose(foot[:, 2], town.ground_height(foot[:, 0], foot[:, 1]), atol=1e-9)
    body = corners(T.CAR)
    bottom = body[body[:, 2] < town.ground_height(body[:, 0], body[:, 1]) + 0.5]
    assert len(bottom) == 4
    np.testing.assert_allclose(bottom[:, 2], town.ground_height(bottom[:, 0], bottom[:, 1]) + 0.15, atol=1e-9)
    roof = corners(T.ROOF)[:, 2]
    unit = corners(T.GLASS_BOX)[:, 2]
    lo, hi = town.terrain.extremes(hall.rects)
    assert np.ptp(roof) < 1e-9 and unit.min() == pytest.approx(roof[0]) and roof[0] - 9.0 == pytest.approx((lo + hi) / 2)


def test_terrain_draws_from_a_stream_of_its_own():
    """Turning terrain on changes the ground only: the same seed builds the same streets, houses, objects,
    paint and sun."""
    flat = T.make_town("g", "suburb", 5, "EPSG:32632", ORIGIN, 130.0)
    hills = T.make_town("g", "suburb", 5, "EPSG:32632", ORIGIN, 130.0, terrain=True)
    assert flat.terrain is None and hills.terrain is not None
    assert (flat.roads, flat.buildings, flat.trees, flat.blocks) == (hills.roads, hills.buildings, hills.trees,
                                                                     hills.blocks)
    assert [p[0].wkb for p in flat.paint] == [p[0].wkb for p in hills.paint]
    assert (flat.sun_az_deg, flat.sun_el_deg) == (hills.sun_az_deg, hills.sun_el_deg)


def test_only_train_places_heldout_hills_and_unseen_stand_on_hills():
    for name, preset in PRESETS.items():
        assert preset.terrain == (name in ("train-places", "heldout-hills", "unseen")), name


# a 12 x 24 panorama of a small flat suburb (`_flat_panorama`) as the renderer drew it before terrain existed:
# uint8 colour (12, 24, 3), then uint16 range in centimetres (12, 24) with 0 for sky, zlib'd and base64'd
FLAT_PANORAMA = (
    "eNqlUF1IU2EY3ndy52c/be60zf0YkVZGf5atqft3Z9uZm6lpFNVFUUEXWZhFeBNpQUFFF6VRQSFlWA1MJfTCi34oKUFGhU2zUVRYBBFdZTfr"
    "2U5EmRSj8z685z3P+7zP+31nz7mxPRLaEw3tzxvanu/+gdF/IS2DvqE9gdnLD1JXh1Ntg99auyYPXprYfyHRdCExf4XBOE/TlKn/grxCrYpn"
    "eavqRM/n+JfUq1Sqfyx1uvdDa+dEy5UXSg3DKOSskubNKrWOa7kyPiOUWibXrDQWaBSz6cv3poaGhgYGBuLx+I277872JAFORXNqWqNXqHJZ"
    "iZkR2KXmWVZFw+31+y/JZHJycvL+0w+9D9/G7r2RgMNo5ihwMJAQ/OQlVLkjEVe40iFutBfotUqJHBn/+PDZe6AlvMjmdOTyBtTHmzdL5NJi"
    "O7JawyI3B7xHa9yrFhWuWbxwddECYHnJGjOvLizhfUusxRwXi113Oj0Mw9EMp9Bz5bVF4s6V2lw9nWFOHjvscLhtNnvHxTMaI7PjhF+tZ7QW"
    "TjdXoTawCyz8zlPCun12r9dfXV0Hn/Jyl0JXBFgs1kBA1PA8zbIWS77PJzQ27otGq10ub16eyetxBSo8ZXZbSPA5y+3XOs739992ujwYgbKz"
    "8yoMKyoCghDy+4Nutw81MrrIfn8owwRNJovZbDEYjFZrvslkDgYrw+EqSQO9KEaQ+/p6BCEIN9jCLRgMQ4BPHCMSWQsGBVqhUCX0dXUbsE4S"
    "2GyluA6sMALgJzidadTXr6+trYdeAsYB3KumJk16PBWYstvL4CzVyBIPTzhDjEUocFTsQgsZB6iqqgEfDkfRwjpRjGIWLVxBujvGIZb915Ok"
    "llEzd3xUgoyS3zmOmiJfiY6K/THzmBwgx8jQNP1G6jZ5RMgMG6bIMOkmnWQ6H6AilHua3sh8kj+Ta9mRX9TbVbuYZbRMdodPf5WyMlmIkclM"
    "s9sUJbQgf5nzJOcW3U3WqQ8px2YZ5Ab5GNlKxEx1n0RIF0lX6aBzDPIz1DZqC3WE6s6wg0SKvcSWeQtkExn8SxizjFFZdjGQZdzMMr4DWOq3"
    "VA==")


def _flat_panorama():
    town = T.make_town("g", "suburb", 5, "EPSG:32632", ORIGIN, 130.0)
    spot = town.walkable.intersection(box(-20, -20, 20, 20)).representative_point()
    return Renderer(town, build_mesh(town), make_albedo(town)).panorama((spot.x, spot.y, 1.7), 30.0, 12, 24)


def test_flat_towns_render_the_same_pixels_as_before_terrain():
    """Terrain off (every preset but train-places): the same colours (within one level, for the last bit of
    float arithmetic on another CPU) and ranges (1 cm) as before the ground could slope."""
    raw = zlib.decompress(base64.b64decode(FLAT_PANORAMA))
    colour = np.frombuffer(raw[:12 * 24 * 3], np.uint8).reshape(12, 24, 3).astype(int)
    range_cm = np.frombuffer(raw[12 * 24 * 3:], np.uint16).reshape(12, 24).astype(float)
    rgb, rng = _flat_panorama()
    assert np.abs(np.round(rgb * 255).astype(int) - colour).max() <= 1
    assert np.array_equal(np.isnan(rng), range_cm == 0)
    np.testing.assert_allclose(rng[range_cm > 0] * 100, range_cm[range_cm > 0], atol=1.0)


@pytest.fixture(scope="module")
def hill_dataset(tmp_path_factory):
    """One small bench town (Lausanne, downtown, seed 3) on hills: two panoramas and two pinholes."""
    out = tmp_path_factory.mktemp("hills")
    preset = dataclasses.replace(_tiny(), n_pano=2, terrain=True)
    generate(str(out), preset, seed=3)
    return preset, read_manifest(out / "manifest.csv"), build_town(preset, preset.towns[0], 3, 0)


def _local(row, town):
    return row.true_x - town.origin_xy[0], row.true_y - town.origin_xy[1]


def test_cameras_stand_their_height_above_the_sloping_ground(hill_dataset):
    """A panorama's bottom row looks almost straight down: its range is the manifest's camera_height_m, the
    height above the ground under the camera, wherever that ground lies."""
    _, rows, town = hill_dataset
    grounds = []
    for row in (r for r in rows if r.camera == "pano"):
        depth = np.load(row.depth)
        height = float(row.extra["camera_height_m"])
        assert np.median(depth[-1]) == pytest.approx(height, rel=0.01)
        grounds.append(float(town.ground_height(*_local(row, town))))
    assert max(abs(g) for g in grounds) > 0.5   # the ground under a camera is not at z = 0


def test_truth_depth_is_the_range_to_the_draped_ground(hill_dataset):
    """Where a photo sees the ground, its truth range is where the pixel's ray from the camera centre (camera
    height above the ground under it) meets the terrain, found here by marching along the ray."""
    _, rows, town = hill_dataset
    renderer = Renderer(town, build_mesh(town), make_albedo(town, gsd=1.0))
    checked = 0
    for row in rows:
        depth = np.load(row.depth)
        H, W = depth.shape
        heading = float(row.extra["grid_heading_deg"])
        rays = pano_rays(heading, H, W) if row.camera == "pano" else pinhole_rays(
            heading, row.hfov_deg, H, W, float(row.extra["pitch_deg"]), float(row.extra["roll_deg"]))
        x, y = _local(row, town)
        cam = np.array([x, y, float(town.ground_height(x, y)) + float(row.extra["camera_height_m"])])
        d = rays.reshape(-1, 3)
        _, prim = renderer.cast(np.broadcast_to(cam, d.shape), d)
        ground = (prim >= 0) & (renderer.mesh.material[np.maximum(prim, 0)] == T.GROUND) & (depth.ravel() < 60.0)
        d = d[ground]
        steps = np.arange(0.05, 90.0, 0.05)
        p = cam + d[:, None, :] * steps[None, :, None]
        below = p[..., 2] <= town.ground_height(p[..., 0], p[..., 1])
        first = np.argmax(below, axis=1)
        assert np.all(below[np.arange(len(d)), first])
        lo, hi = steps[first] - 0.05, steps[first]
        for _ in range(30):   # bisection to the crossing
            mid = (lo + hi) / 2
            q = cam + d * mid[:, None]
            under = q[:, 2] <= town.ground_height(q[:, 0], q[:, 1])
            hi, lo = np.where(under, mid, hi), np.where(under, lo, mid)
        # the manifest's camera height has 1 mm steps: on ground seen at a glancing angle that is centimetres
        # of range, so the range is compared to 0.1 % and the point it lifts to against the terrain's height
        np.testing.assert_allclose(depth.ravel()[ground], hi, rtol=1e-3)
        hit = cam + d * depth.ravel()[ground][:, None]
        np.testing.assert_allclose(hit[:, 2], town.ground_height(hit[:, 0], hit[:, 1]), atol=1.5e-3)
        checked += ground.sum()
    assert checked > 500
