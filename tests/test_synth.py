"""Synthetic world: exact depth, orthophoto georeference, EXIF, manifest, determinism (small scenes, fast)."""

import dataclasses
import hashlib
import math
import os

import numpy as np
import pytest
import rasterio
from PIL import Image, ImageOps

from loc2_engine.synth import town as T
from loc2_engine.synth.albedo import make_albedo
from loc2_engine.manifest import MANIFEST_COLUMNS, read_manifest
from loc2_engine.synth.dataset import generate, utm_crs
from loc2_engine.synth.mesh import build_mesh
from loc2_engine.synth.ortho import ortho_transform, render_ortho, write_geotiff
from loc2_engine.synth.photos import exif_bytes, rotate_for_orientation, save_jpeg
from loc2_engine.synth.presets import get_preset
from loc2_engine.synth.render import Renderer, pano_rays, pinhole_rays

ORIGIN = (465000.0, 5245000.0)   # UTM 32N, near Zurich


def _one_building_town(size_m=60.0):
    """Empty flat town with one flat-roofed red box: x in [-5, 5], y in [10, 16], 8 m tall."""
    town = T.Town("t", "downtown", 1, "EPSG:32632", ORIGIN, size_m, sun_az_deg=180.0, sun_el_deg=45.0,
                  params=T.default_style("downtown"))
    town.buildings.append(T.Building([(0.0, 13.0, 10.0, 6.0, 0.0)], 8.0, "flat", 0.0, (0.7, 0.7, 0.7),
                                     (0.9, 0.05, 0.05), 3.0, 2.5))
    town.base_rgb = (0.3, 0.5, 0.2)
    return town, Renderer(town, build_mesh(town), make_albedo(town, gsd=0.2))


def test_pano_depth_is_the_euclidean_range_to_a_known_wall():
    town, r = _one_building_town()
    cam = np.array([0.0, 0.0, 1.6])
    rgb, rng = r.panorama(cam, 0.0, 64, 128)
    d = pano_rays(0.0, 64, 128)
    # pixels whose ray hits the south wall (plane y = 10, |x| < 5, 0 < z < 8) away from its edges
    t = 10.0 / d[..., 1]
    hit = t * d[..., 0], cam[2] + t * d[..., 2]
    inside = (d[..., 1] > 0) & (np.abs(hit[0]) < 4.5) & (hit[1] > 0.3) & (hit[1] < 7.5)
    assert inside.sum() > 50
    np.testing.assert_allclose(rng[inside], t[inside], rtol=1e-4)
    # heading 0: the wall is in the centre column; straight behind is open ground, above is sky (NaN)
    assert abs(rng[32, 64] - 10.0) < 0.05
    assert np.isnan(rng[2, 64]) and np.isnan(rng[2, 0])
    assert rgb.shape == (64, 128, 3) and rng.dtype == np.float32


def test_pinhole_rays_follow_heading_and_range_along_the_ray():
    d = pinhole_rays(90.0, 60.0, 4, 6)
    centre = d[1:3, 2:4].mean(axis=(0, 1))
    assert centre[0] > 0.99  # heading 90 = grid east
    # rightmost column centre at heading 0: atan((u + 0.5 - cx) / fx) right of forward, fx = cx / tan(hfov / 2)
    d0 = pinhole_rays(0.0, 60.0, 2, 400)
    az = math.degrees(math.atan2(d0[0, -1, 0], d0[0, -1, 1]))
    assert abs(az - math.degrees(math.atan(199.5 / 200 * math.tan(math.radians(30))))) < 1e-6
    town, r = _one_building_town()
    _, rng = r.pinhole((0.0, 0.0, 1.6), 0.0, 60.0, 48, 64)
    dd = pinhole_rays(0.0, 60.0, 48, 64)
    np.testing.assert_allclose(rng[24, 32], 10.0 / dd[24, 32, 1], rtol=1e-4)


def test_orthophoto_georeference_puts_the_red_roof_at_its_map_coordinates(tmp_path):
    town, r = _one_building_town()
    gsd = 0.2
    path = tmp_path / "ortho.tif"
    write_geotiff(path, render_ortho(r, gsd), ortho_transform(town, gsd), town.crs)
    with rasterio.open(path) as src:
        assert src.crs.to_string() == "EPSG:32632"
        assert src.res == (gsd, gsd)
        assert src.profile["tiled"] and src.compression.name.lower() == "deflate"
        assert src.overviews(1)
        img = np.moveaxis(src.read(), 0, -1)

        def colour(x, y):
            row, col = src.index(ORIGIN[0] + x, ORIGIN[1] + y)
            return img[row, col].astype(int)

    # roof corners (inset 0.3 m) are red, 0.3 m outside them is not
    for x, y in ((-4.7, 10.3), (4.7, 15.7), (0.0, 13.0)):
        c = colour(x, y)
        assert c[0] > 2 * c[1] + 40, (x, y, c)
    for x, y in ((-5.3, 13.0), (5.3, 13.0), (0.0, 16.3)):
        c = colour(x, y)
        assert not c[0] > 2 * c[1] + 40, (x, y, c)


def test_exif_gps_orientation_and_optics_round_trip(tmp_path):
    from loc2_engine import exif as exif_mod
    from loc2_engine.ground import hfov_from_exif
    upright = np.zeros((30, 40, 3), np.uint8)
    upright[:5, :, 0] = 255  # red top rows mark "up"
    stored = rotate_for_orientation(upright, 6)
    path = tmp_path / "p.jpg"
    save_jpeg(path, stored, exif_bytes((8.5412345, 47.3712345), 410.0, 70.0, (40, 30), (30, 40), 6, 123.4), 95)
    info = exif_mod.read_exif(path)
    assert info.orientation == 6
    assert abs(info.lonlat[0] - 8.5412345) < 1e-7 and abs(info.lonlat[1] - 47.3712345) < 1e-7
    assert abs(info.gps_heading_deg - 123.4) < 0.01
    hfov, _ = hfov_from_exif(info, 40, 30)
    assert abs(hfov - 70.0) < 1.5
    shown = np.asarray(ImageOps.exif_transpose(Image.open(path)))
    assert shown.shape == (30, 40, 3) and shown[:5, :, 0].mean() > 200 and shown[20:, :, 0].mean() < 60


def _tiny(preset_name="bench"):
    return dataclasses.replace(get_preset(preset_name), towns=get_preset(preset_name).towns[:1], size_m=130.0,
                               camera_margin_m=45.0, n_pano=1, n_pinhole=2, pano_hw=(32, 64), pinhole_hw=(24, 32))


def _digest(folder):
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, folder)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """One small bench town (Lausanne, zone 32, ~1.7 degrees of meridian convergence), seed 3."""
    out = tmp_path_factory.mktemp("tiny")
    generate(str(out), _tiny(), seed=3)
    return out


def test_synth_manifest_round_trips_through_the_reader(tiny_dataset):
    rows = read_manifest(tiny_dataset / "manifest.csv")
    header = open(tiny_dataset / "manifest.csv", encoding="utf-8").readline().strip().split(",")
    assert header[:14] == list(MANIFEST_COLUMNS)
    assert len(rows) == 3
    for r in rows:
        assert os.path.isfile(r.photo) and os.path.isfile(r.aerial) and os.path.isfile(r.depth)
        assert r.radius_m == 25.0 and r.true_x is not None and r.true_heading_deg is not None
        assert (r.hfov_deg is None) == (r.camera == "pano")
        assert (r.heading_prior_deg is None) == (r.heading_tolerance_deg is None)
        assert r.extra["town"] == _tiny().towns[0].name


def test_true_heading_and_depth_lift_onto_the_rendered_geometry(tiny_dataset):
    """Lifting the truth depth with the manifest's TRUE heading (lifting + solver conventions) lands on the 3-D
    hits that the renderer cast with the GRID heading, expressed in the true-north LocalFrame: a wrong
    convergence sign would miss by ~2.4 m at 40 m."""
    import torch
    from loc2_engine.cameras import PanoramaCamera
    from loc2_engine.georef import LocalFrame
    from loc2_engine.lifting import lift_to_bev
    from loc2_engine.solver import rotation_from_heading

    r = [r for r in read_manifest(tiny_dataset / "manifest.csv") if r.camera == "pano"][0]
    depth = np.load(r.depth)
    H, W = depth.shape
    v, u = np.mgrid[0:H, 0:W]
    ok = np.isfinite(depth) & (depth < 60)
    uv = torch.tensor(np.stack([u[ok], v[ok]], -1), dtype=torch.float64)
    bev = lift_to_bev(PanoramaCamera(W, H), uv, torch.tensor(depth[ok], dtype=torch.float64), kind="range")
    R = rotation_from_heading(torch.tensor(r.true_heading_deg, dtype=torch.float64))
    lifted = (bev @ R.T).numpy()
    hits_grid = pano_rays(float(r.extra["grid_heading_deg"]), H, W)[ok][:, :2] * depth[ok, None]
    true_xy = np.array([r.true_x, r.true_y])
    expected = LocalFrame(r.crs, true_xy).to_local(true_xy + hits_grid)
    assert abs(r.true_heading_deg - float(r.extra["grid_heading_deg"])) > 1.0  # convergence really exercised
    np.testing.assert_allclose(lifted, expected, atol=0.05)  # UTM scale factor: < 4 cm at 60 m


def test_same_seed_gives_identical_files_and_a_valid_dataset(tiny_dataset, tmp_path):
    preset = _tiny()
    generate(str(tmp_path / "b"), preset, seed=3)
    a, b = _digest(tiny_dataset), _digest(tmp_path / "b")
    assert a == b and "manifest.csv" in a
    rows = read_manifest(tiny_dataset / "manifest.csv")
    assert [r.camera for r in rows] == ["pano", "pinhole", "pinhole"]
    spec = preset.towns[0]
    for r in rows:
        assert r.crs == utm_crs(spec.lon, spec.lat)
        upright = ImageOps.exif_transpose(Image.open(r.photo))
        depth = np.load(r.depth)
        assert depth.dtype == np.float32 and depth.shape == (upright.height, upright.width)
        assert np.nanmin(depth) > 0.3   # cameras stand in the open, not inside objects
        dist = math.hypot(r.prior_x - r.true_x, r.prior_y - r.true_y)
        assert 5.0 - 1e-3 <= dist <= 20.0 + 1e-3
        assert 0.0 <= r.true_heading_deg < 360.0
    assert any(r.extra["exif_orientation"] in ("6", "8") for r in rows)  # readers must apply EXIF orientation
    generate(str(tmp_path / "c"), preset, seed=4)
    assert _digest(tmp_path / "c")["manifest.csv"] != a["manifest.csv"]


def test_true_heading_differs_from_grid_heading_by_the_meridian_convergence():
    from loc2_engine.georef import LocalFrame
    rows_east = LocalFrame("EPSG:32632", (700000.0, 6600000.0)).grid_to_true_heading(0.0)
    # east of the central meridian in the north, grid north points east of true north: true = grid + gamma > 0
    assert 0.5 < rows_east < 10.0


def test_rays_at_heading_zero_are_the_camera_models_rays():
    """The renderer and loc2_engine.cameras agree on pixel <-> ray (so depth truth lifts correctly)."""
    import torch
    from loc2_engine.cameras import PanoramaCamera, PinholeCamera

    for rays, cam in ((pano_rays(0.0, 16, 32), PanoramaCamera(32, 16)),
                      (pinhole_rays(0.0, 70.0, 12, 16), PinholeCamera.from_hfov(16, 12, 70.0))):
        v, u = np.mgrid[0:rays.shape[0], 0:rays.shape[1]]
        ref = cam.pixel_to_ray(torch.tensor(np.stack([u, v], -1), dtype=torch.float64)).numpy()
        np.testing.assert_allclose(rays, ref, atol=1e-9)


def test_orthophoto_shadow_falls_away_from_the_sun():
    """Sun due south at 45 degrees: the 8 m building shades the ground up to 8 m north of its north wall."""
    town, r = _one_building_town()
    img = render_ortho(r, 0.2).astype(float)
    half = town.size_m / 2

    def brightness(x, y):
        row, col = int((half - y) / 0.2), int((x + half) / 0.2)
        return img[row - 2:row + 3, col - 2:col + 3].mean()

    north, south = brightness(0.0, 16.0 + 4.0), brightness(0.0, 10.0 - 4.0)
    assert north < 0.8 * south, (north, south)  # ortho rays are 500 m long: haze lifts the shadows
    assert abs(brightness(0.0, 16.0 + 10.0) - south) < 0.15 * south  # beyond the shadow: lit again


def test_an_overcast_sky_softens_the_shadows_not_the_light():
    """--overcast: with little direct sun the building's shadow all but goes, and the ground stays about as
    bright as sunlit ground (more sky light), so an overcast orthophoto is not just a dark one."""
    town, r = _one_building_town()
    clear = render_ortho(r, 0.2).astype(float)
    town.sun_strength = 0.1
    r.light(town)
    grey = render_ortho(r, 0.2).astype(float)
    half = town.size_m / 2

    def brightness(img, x, y):
        row, col = int((half - y) / 0.2), int((x + half) / 0.2)
        return img[row - 2:row + 3, col - 2:col + 3].mean()

    shadow, lit = (0.0, 16.0 + 4.0), (0.0, 10.0 - 4.0)
    assert brightness(clear, *shadow) < 0.8 * brightness(clear, *lit)
    assert brightness(grey, *shadow) > 0.9 * brightness(grey, *lit)
    assert 0.75 < brightness(grey, *lit) / brightness(clear, *lit) < 1.05


def test_composite_objects_are_kept_or_dropped_whole():
    """No lamp head, sign plate or car cabin floats without the grounded part of its object."""
    town = T.make_town("g", "downtown", 5, "EPSG:32632", ORIGIN, 160.0)
    grounded = {k.group for k in town.blocks if k.group >= 0 and k.z0 < 0.5}
    elevated = {k.group for k in town.blocks if k.group >= 0 and k.z0 >= 0.5}
    assert elevated and elevated <= grounded


def test_bench_pools_the_runs_of_several_seeds(tiny_dataset, tmp_path):
    """`loc2 bench --seeds 2`: every photo localized once per seed, the tables over both runs (random weights:
    poses or specific failures, either way one record per photo and seed)."""
    import json

    import torch

    from loc2_engine.cli import main
    from loc2_engine.models.small import SmallMatcher
    from loc2_engine.train.trainer import export_matcher

    torch.manual_seed(0)
    export_matcher(SmallMatcher(), tmp_path / "random.safetensors", {})
    n_photos = len(read_manifest(os.path.join(tiny_dataset, "manifest.csv")))
    runs = {}
    for seeds in (1, 2):
        out = tmp_path / f"seeds{seeds}.json"
        assert main(["bench", str(tiny_dataset), "--model", str(tmp_path / "random.safetensors"), "--depth", "truth",
                     "--device", "cpu", "--seeds", str(seeds), "--json", str(out)]) == 0
        runs[seeds] = json.loads(out.read_text())
        assert runs[seeds]["config"]["seeds"] == seeds and len(runs[seeds]["photos"]) == seeds * n_photos
    # seed 0 first: the pooled records start with the single run's (same poses; runtimes differ)
    for a, b in zip(runs[2]["photos"][:n_photos], runs[1]["photos"]):
        assert (a["photo"], a["status"], a["pos_err_m"]) == (b["photo"], b["status"], b["pos_err_m"])
    assert main(["bench", str(tiny_dataset), "--seeds", "0"]) == 2


def test_another_sun_lights_the_same_town():
    """--sun-azimuth redraws only the sun: the same seed builds the same town, lit from the asked range."""
    south = T.make_town("g", "downtown", 5, "EPSG:32632", ORIGIN, 160.0)
    north = T.make_town("g", "downtown", 5, "EPSG:32632", ORIGIN, 160.0, sun_azimuth_deg=(280.0, 440.0))
    assert 100.0 <= south.sun_az_deg < 260.0
    assert north.sun_az_deg == pytest.approx((south.sun_az_deg + 180.0) % 360.0)
    assert north.sun_el_deg == south.sun_el_deg and north.blocks == south.blocks and north.roads == south.roads


def test_photos_can_have_a_sun_of_their_own():
    """--photo-sun independent: the photos' sun is drawn apart from the orthophoto's, for the same town."""
    from loc2_engine.synth.dataset import photo_sun_town

    town = T.make_town("g", "downtown", 5, "EPSG:32632", ORIGIN, 160.0)
    lit = photo_sun_town(town, dataclasses.replace(get_preset("bench"), photo_sun="independent"))
    assert lit.blocks is town.blocks and lit.buildings is town.buildings
    assert abs(lit.sun_az_deg - town.sun_az_deg) > 1.0 and 100.0 <= lit.sun_az_deg < 260.0
    assert T.SUN_ELEVATION_DEG[0] <= lit.sun_el_deg <= T.SUN_ELEVATION_DEG[1]
    with pytest.raises(ValueError, match="photo_sun"):
        generate("unused", dataclasses.replace(get_preset("bench"), photo_sun="later"))


def test_sun_height_and_overcast_are_drawn_apart_from_the_town():
    """--sun-elevation and --overcast change the light only; overcast skies are drawn per town and per photo
    sun, each from a stream of its own."""
    from loc2_engine.synth.dataset import build_town, photo_sun_town

    preset = get_preset("bench")
    plain = build_town(preset, preset.towns[0], 0, 0)
    low = dataclasses.replace(preset, sun_elevation_deg=(8.0, 12.0), overcast=1.0, photo_sun="independent")
    town = build_town(low, preset.towns[0], 0, 0)
    assert plain.sun_strength == 1.0 and plain.blocks == town.blocks and plain.sun_az_deg == town.sun_az_deg
    assert 8.0 <= town.sun_el_deg <= 12.0 and T.OVERCAST_SUN_STRENGTH[0] <= town.sun_strength <= T.OVERCAST_SUN_STRENGTH[1]
    lit = photo_sun_town(town, low)
    assert 8.0 <= lit.sun_el_deg <= 12.0 and lit.sun_strength != town.sun_strength
    overcast = [T.draw_sun_strength(np.random.default_rng(seed), 0.3) < 1.0 for seed in range(400)]
    assert 0.2 < np.mean(overcast) < 0.4  # 400 draws: about 4 standard deviations either side


@pytest.mark.parametrize("option, value", [("--sun-elevation", "40,20"), ("--sun-elevation", "0,30"),
                                           ("--sun-azimuth", "10"), ("--overcast", "1.5")])
def test_light_options_out_of_range_are_refused_before_anything_is_written(tmp_path, capsys, option, value):
    from loc2_engine.cli import main

    assert main(["synth", str(tmp_path / "out"), "--preset", "demo", option, value]) == 2
    assert option in capsys.readouterr().err and not (tmp_path / "out").exists()
