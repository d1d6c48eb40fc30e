"""Generator settings of the synthetic world for real optics: building lean in the orthophoto, lens distortion
in the pinholes; both off in every preset but train-places, and drawn from streams of their own."""

import dataclasses
import math

import numpy as np
import pytest

from loc2_engine.synth import town as T
from loc2_engine.synth.albedo import make_albedo
from loc2_engine.synth.mesh import build_mesh
from loc2_engine.synth.ortho import MAX_LEAN, AerialCamera, draw_aerial_camera, render_ortho
from loc2_engine.synth.lens import Lens, draw_lens
from loc2_engine.synth.presets import PRESETS
from loc2_engine.synth.render import Renderer, pinhole_rays

from test_synth import _digest, _tiny

ORIGIN = (465000.0, 5245000.0)   # UTM 32N
GSD = 0.2


def _box_town(cx, cy, w, d, height, size_m=80.0):
    """Empty flat town with one flat-roofed box (grey walls, red roof) centred at (cx, cy), w x d m."""
    town = T.Town("t", "downtown", 1, "EPSG:32632", ORIGIN, size_m, sun_az_deg=180.0, sun_el_deg=45.0,
                  params=T.default_style("downtown"))
    town.buildings.append(T.Building([(cx, cy, w, d, 0.0)], height, "flat", 0.0, (0.7, 0.7, 0.7),
                                     (0.9, 0.05, 0.05), 3.0, 2.5))
    town.base_rgb = (0.3, 0.5, 0.2)
    return town, Renderer(town, build_mesh(town), make_albedo(town, gsd=0.2))


def _centre(i, half):
    """Local coordinate of the centre of ortho column (or, negated, row) ``i``."""
    return -half + (i + 0.5) * GSD


def test_a_tall_box_leans_away_from_the_nadir_point_and_keeps_its_footprint():
    """Box x 17..23, y 7..13, 30 m high; camera 800 m over (-100, -50): the roof is drawn scaled by H / (H - h)
    about the nadir point (h r / H at the drawn distance r: 5 m here), the wall meets the ground in place."""
    town, r = _box_town(20.0, 10.0, 6.0, 6.0, 30.0)
    half = town.size_m / 2
    aerial = AerialCamera((-100.0, -50.0), 800.0)
    img = render_ortho(r, GSD, aerial=aerial).astype(int)
    red = (img[..., 0] > 2 * img[..., 1] + 40)
    rows, cols = np.nonzero(red)
    scale = 800.0 / (800.0 - 30.0)
    nx, ny = aerial.nadir_xy
    # the first and last pixel centres inside the drawn roof lie within a pixel of its expected edges
    for got, lo, hi, n in ((_centre(cols, half), 17.0, 23.0, nx), (-_centre(rows, half), 7.0, 13.0, ny)):
        want = n + (np.array([lo, hi]) - n) * scale
        assert abs(got.min() - want[0]) <= GSD and abs(got.max() - want[1]) <= GSD, (got.min(), got.max(), want)
    assert cols.min() * GSD - half > 21.0  # the roof really moved (true ortho: from 17 m)

    def is_ground(x, y):
        c = img[int((half - y) / GSD), int((x + half) / GSD)]
        return c[1] > 1.3 * c[0] and c[1] > 1.3 * c[2]

    # the walls facing the nadir point (west, south) stand on the footprint: ground outside, facade inside
    for x, y in ((17.0, 10.0), (20.0, 7.0)):
        outwards = np.sign(np.array([x - 20.0, y - 10.0]))
        assert is_ground(x + 0.3 * outwards[0], y + 0.3 * outwards[1]), (x, y)
        assert not is_ground(x - 0.3 * outwards[0], y - 0.3 * outwards[1]), (x, y)
    # true orthophoto of the same town: the roof covers the footprint
    true_red = render_ortho(r, GSD)
    true_cols = np.nonzero(true_red[..., 0].astype(int) > 2 * true_red[..., 1].astype(int) + 40)[1]
    assert abs(_centre(true_cols, half).min() - 17.0) <= GSD


def test_the_aerial_camera_is_drawn_within_the_lean_budget():
    town = T.Town("t", "downtown", 1, "EPSG:32632", ORIGIN, 256.0, 180.0, 45.0, T.default_style("downtown"))
    rng = np.random.default_rng(0)
    cams = [draw_aerial_camera(town, rng, (800.0, 3000.0)) for _ in range(200)]
    heights = np.array([c.flying_height_m for c in cams])
    far_lean = np.array([(math.hypot(*c.nadir_xy) + 128.0) / c.flying_height_m for c in cams])
    assert 800 <= heights.min() and heights.max() <= 3000
    assert far_lean.max() <= max(MAX_LEAN, 128.0 / 800.0) + 1e-9
    assert max(math.hypot(*c.nadir_xy) for c in cams) > 200.0   # some nadir points off the town
    with pytest.raises(ValueError, match="flying height"):
        draw_aerial_camera(town, rng, (300.0, 3000.0))


def test_the_lens_model_inverts_and_keeps_the_principal_point():
    lens = Lens(-0.1, 0.02, 0.001, -0.001)
    x, y = np.meshgrid(np.linspace(-0.8, 0.8, 9), np.linspace(-0.6, 0.6, 7))
    xd, yd = lens.distort(x, y)
    assert abs(math.hypot(*lens.distort(np.array(0.6), np.array(0.8))) - 1.0) > 0.05  # really distorts
    ux, uy = lens.undistort(xd, yd)
    np.testing.assert_allclose(ux, x, atol=1e-10)
    np.testing.assert_allclose(uy, y, atol=1e-10)
    # k1 + k2 is the radial distortion in the corners (r = 1)
    c = np.array(1 / math.sqrt(2))
    assert abs(math.hypot(*Lens(-0.06, 0.01).distort(c, c)) - 0.95) < 1e-12
    with pytest.raises(ValueError, match="folds the image over"):
        Lens(-0.6).undistort(np.array([0.9]), np.array([0.6]))
    k1 = [draw_lens(np.random.default_rng(s), (-0.08, 0.03)).k1 for s in range(50)]
    assert -0.08 <= min(k1) < -0.05 and 0.0 < max(k1) <= 0.03


def _edge_columns(depth):
    """Column of the first wall pixel (from the left) in each row above the horizon."""
    H = depth.shape[0]
    return np.array([np.argmax(np.isfinite(depth[v])) for v in range(H // 2)])


def test_barrel_distortion_bows_a_straight_edge_outwards_and_keeps_the_centre_ray():
    """A 60 m slab's vertical edge right of the centre: straight through a perfect pinhole, bowed outwards
    (middle further right than the top) with k1 < 0, inwards with k1 > 0; the centre pixel's ray never moves."""
    town, r = _box_town(18.0, 10.25, 20.0, 0.5, 60.0)
    cam, H, W = (0.0, 0.0, 1.6), 121, 161
    edges, depth = {}, {}
    for k1 in (0.0, -0.1, 0.08):
        lens = Lens(k1) if k1 else None
        _, depth[k1] = r.pinhole(cam, 0.0, 90.0, H, W, lens=lens)
        edges[k1] = _edge_columns(depth[k1])
        rays = pinhole_rays(0.0, 90.0, H, W, lens=lens)
        np.testing.assert_allclose(rays[H // 2, W // 2], [0.0, 1.0, 0.0], atol=1e-12)
    top, mid = 0, H // 2 - 1
    assert edges[0.0].max() - edges[0.0].min() <= 1                 # straight
    assert edges[-0.1][mid] - edges[-0.1][top] >= 2                  # barrel: the ends bend in
    assert edges[0.08][top] - edges[0.08][mid] >= 1                  # pincushion: the ends bend out
    assert np.all(np.diff(edges[-0.1]) >= 0)                         # one smooth bow, no jitter
    # depth stays the range along each pixel's own ray: wall pixels lie on the slab's front face y = 10
    lens = Lens(-0.1)
    rays = pinhole_rays(0.0, 90.0, H, W, lens=lens)
    front = np.isfinite(depth[-0.1]) & (rays[..., 2] > 0) & (rays[..., 0] / rays[..., 1] > 8.5 / 10.0)
    assert front.sum() > 100
    np.testing.assert_allclose((depth[-0.1] * rays[..., 1])[front], 10.0, atol=1e-3)


def test_only_train_places_heldout_hills_and_unseen_have_lean_and_lens():
    for name, preset in PRESETS.items():
        on = name in ("train-places", "heldout-hills", "unseen")
        assert (preset.ortho_flying_height_m is not None) == on, name
        assert (preset.lens_k1_range is not None) == on, name


def test_lean_and_lens_draw_from_streams_of_their_own(tmp_path):
    """Turning either setting on changes only what it renders: the other files stay byte-identical."""
    from loc2_engine.synth.dataset import generate

    base = _tiny()
    runs = {"off": base, "lens": dataclasses.replace(base, lens_k1_range=(-0.08, 0.03)),
            "lean": dataclasses.replace(base, ortho_flying_height_m=(800.0, 3000.0))}
    digests = {}
    for key, preset in runs.items():
        generate(str(tmp_path / key), preset, seed=3)
        digests[key] = _digest(tmp_path / key)
    off, lens, lean = digests["off"], digests["lens"], digests["lean"]
    tif = next(k for k in off if k.endswith(".tif"))
    views = [k for k in off if k.startswith(("depth/", "photos/"))]
    pano = [k for k in views if "_0000." in k]      # the first view; the other two are pinholes
    assert len(views) == 6 and len(pano) == 2
    assert lens[tif] == off[tif] and lean[tif] != off[tif]
    assert all((lens[k] == off[k]) == (k in pano) for k in views)
    assert all(lean[k] == off[k] for k in views)
