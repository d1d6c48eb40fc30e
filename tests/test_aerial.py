"""AerialWindow: a bright square at known map coordinates lands at the right local pixel, north-up, in every CRS.

Expected local positions are computed independently of georef.py: the local frame is azimuthal
equidistant, so a point at geodesic distance d and azimuth az from the prior sits at (d sin az, d cos az).
"""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyproj
import pytest
import rasterio
from rasterio.enums import ColorInterp
from rasterio.transform import from_origin

from loc2_engine.aerial import AerialWindow, raster_info
from loc2_engine.errors import AerialError

GEOD = pyproj.Geod(ellps="WGS84")


def _expected_local(prior_xy, point_xy, crs):
    tr = pyproj.Transformer.from_crs(crs, 4326, always_xy=True)
    (lon0, lon1), (lat0, lat1) = tr.transform([prior_xy[0], point_xy[0]], [prior_xy[1], point_xy[1]])
    az, _, dist = GEOD.inv(lon0, lat0, lon1, lat1)
    return np.array([dist * math.sin(math.radians(az)), dist * math.cos(math.radians(az))])


def _write(path, bands, crs, transform, nodata=None, colorinterp=None, overviews=None):
    count, h, w = bands.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=count, dtype=bands.dtype,
                       crs=crs, transform=transform, nodata=nodata, tiled=True, blockxsize=256,
                       blockysize=256) as dst:
        dst.write(bands)
        if colorinterp:
            dst.colorinterp = colorinterp
        if overviews:
            dst.build_overviews(overviews)
    return path


def _square_raster(tmp_path, crs, origin, px, n=200, square=(100, 60, 6), dtype=np.uint8, name="r.tif",
                   **kw):
    """n x n raster of grey 50 with a bright `square` (row, col, side) in px; returns path and its map centre."""
    row, col, side = square
    bands = np.full((3, n, n), 50, dtype)
    bands[:, row:row + side, col:col + side] = 255 if dtype == np.uint8 else 4000
    transform = from_origin(origin[0], origin[1], px[0], px[1])
    centre = transform * (col + side / 2.0, row + side / 2.0)
    return _write(tmp_path / name, bands, crs, transform, **kw), centre


def _bright_centroid(window):
    rows, cols = np.nonzero(window.image[..., 0] > 150)
    assert rows.size, "bright square not found in the window"
    return np.array([rows.mean(), cols.mean()])


def _check(window, prior, centre, crs):
    expected = window.local_to_pixel(_expected_local(prior, centre, crs))
    assert np.abs(_bright_centroid(window) - expected).max() < 1.0


def test_utm_square_lands_at_its_local_pixel(tmp_path):
    path, centre = _square_raster(tmp_path, "EPSG:32633", (500000, 5000100), (0.5, 0.5))
    prior = (500050.0, 5000050.0)
    win = AerialWindow.from_raster(path, prior, "EPSG:32633", 64.0, 0.5)
    assert win.image.shape == (128, 128, 3) and win.image.dtype == np.uint8 and win.valid.all()
    assert win.frame.crs.to_epsg() == 32633
    _check(win, prior, centre, "EPSG:32633")
    assert AerialWindow.from_raster(path, prior, None, 64.0, 0.5).key == win.key  # None = the raster's CRS


def test_prior_given_in_another_crs(tmp_path):
    path, centre = _square_raster(tmp_path, "EPSG:32633", (500000, 5000100), (0.5, 0.5))
    prior_utm = (500050.0, 5000050.0)
    lonlat = pyproj.Transformer.from_crs(32633, 4326, always_xy=True).transform(*prior_utm)
    win = AerialWindow.from_raster(path, lonlat, "EPSG:4326", 64.0, 0.5)
    _check(win, prior_utm, centre, "EPSG:32633")


def test_web_mercator_at_70_north_is_resampled_to_true_metres(tmp_path):
    # at 70 N one EPSG:3857 unit is cos(70) = 0.34 true metres: a 20-unit square is ~6.8 m wide
    x0, y0 = pyproj.Transformer.from_crs(4326, 3857, always_xy=True).transform(25.0, 70.0)
    path, centre = _square_raster(tmp_path, "EPSG:3857", (x0, y0), (1.0, 1.0), square=(100, 130, 20))
    prior = (x0 + 100.0, y0 - 100.0)
    win = AerialWindow.from_raster(path, prior, "EPSG:3857", 60.0, 0.25)
    _check(win, prior, centre, "EPSG:3857")
    width_px = (win.image[..., 0] > 150).any(axis=0).sum()
    assert width_px * 0.25 == pytest.approx(20 * math.cos(math.radians(70.0)), abs=0.6)


def test_geographic_raster_in_degrees(tmp_path):
    path, centre = _square_raster(tmp_path, "EPSG:4326", (10.0, 50.0), (1e-5, 1e-5), square=(100, 60, 8))
    prior = (10.0 + 100e-5, 50.0 - 100e-5)
    win = AerialWindow.from_raster(path, prior, "EPSG:4326", 80.0, 0.5)
    _check(win, prior, centre, "EPSG:4326")


def test_state_plane_feet(tmp_path):
    path, centre = _square_raster(tmp_path, "EPSG:2263", (980000.0, 200000.0), (1.0, 1.0), square=(100, 60, 10))
    prior = (980100.0, 199900.0)
    win = AerialWindow.from_raster(path, prior, "EPSG:2263", 40.0, 0.25)
    _check(win, prior, centre, "EPSG:2263")


def test_decimated_read_of_a_fine_tiled_raster_with_overviews(tmp_path):
    # 0.1 m pixels read for a 1 m/px window: 10x decimation, served from overviews
    path, centre = _square_raster(tmp_path, "EPSG:32633", (500000, 5000100), (0.1, 0.1), n=1000,
                                  square=(400, 300, 60), overviews=[2, 4, 8])
    prior = (500050.0, 5000050.0)
    win = AerialWindow.from_raster(path, prior, "EPSG:32633", 60.0, 1.0)
    assert win.image.shape == (60, 60, 3)
    _check(win, prior, centre, "EPSG:32633")


def test_nodata_and_partial_overlap(tmp_path):
    bands = np.full((3, 100, 100), 80, np.uint8)
    bands[:, :, :50] = 0  # west half nodata
    path = _write(tmp_path / "nd.tif", bands, "EPSG:32633", from_origin(500000, 5000100, 1.0, 1.0), nodata=0)
    # window x 500040..500080 (west quarter nodata), y 5000075..5000115 (north 15 m outside the raster)
    win = AerialWindow.from_raster(path, (500060.0, 5000095.0), "EPSG:32633", 40.0, 1.0)
    assert not win.valid[:, :9].any() and not win.valid[:14].any() and win.valid[16:, 11:].all()
    assert (win.image[win.valid] == 80).all() and (win.image[~win.valid] == 0).all()


def test_alpha_band_masks(tmp_path):
    bands = np.full((4, 100, 100), 120, np.uint8)
    bands[3] = 255
    bands[3, :50] = 0  # north half transparent
    ci = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    path = _write(tmp_path / "rgba.tif", bands, "EPSG:32633", from_origin(500000, 5000100, 1.0, 1.0),
                  colorinterp=ci)
    win = AerialWindow.from_raster(path, (500050.0, 5000050.0), "EPSG:32633", 40.0, 1.0)
    assert not win.valid[:18].any() and win.valid[22:].all()
    assert (win.image[win.valid] == 120).all()


def test_single_band_16_bit_is_stretched_to_uint8(tmp_path):
    bands = np.linspace(1000, 3000, 100 * 100).reshape(1, 100, 100).astype(np.uint16)
    path = _write(tmp_path / "g16.tif", bands, "EPSG:32633", from_origin(500000, 5000100, 1.0, 1.0))
    win = AerialWindow.from_raster(path, (500050.0, 5000050.0), "EPSG:32633", 40.0, 1.0)
    img = win.image
    assert img.dtype == np.uint8 and (img[..., 0] == img[..., 2]).all()
    assert img.min() == 0 and img.max() == 255 and img[0].mean() < img[-1].mean()  # values grow southwards


def test_prior_outside_raster_names_raster_bounds_and_prior(tmp_path):
    path, _ = _square_raster(tmp_path, "EPSG:32633", (500000, 5000100), (0.5, 0.5))
    with pytest.raises(AerialError, match="outside the aerial raster") as err:
        AerialWindow.from_raster(path, (600000.0, 5000050.0), "EPSG:32633", 64.0, 0.5)
    msg = str(err.value)
    assert str(path) in msg and "EPSG:32633" in msg and "600000" in msg and "500100" in msg


def test_all_nodata_window_and_unreadable_raster(tmp_path):
    bands = np.zeros((1, 50, 50), np.uint8)
    path = _write(tmp_path / "empty.tif", bands, "EPSG:32633", from_origin(500000, 5000100, 1.0, 1.0), nodata=0)
    with pytest.raises(AerialError, match="no data"):
        AerialWindow.from_raster(path, (500025.0, 5000075.0), "EPSG:32633", 20.0, 1.0)
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a raster")
    with pytest.raises(AerialError, match="cannot be read"):
        raster_info(junk)
    with pytest.raises(AerialError, match="does not exist"):
        AerialWindow.from_raster(tmp_path / "missing.tif", (0, 0), "EPSG:32633", 20.0, 1.0)


def test_from_array_matches_from_raster(tmp_path):
    path, centre = _square_raster(tmp_path, "EPSG:32633", (500000, 5000100), (0.5, 0.5))
    prior = (500050.0, 5000050.0)
    with rasterio.open(path) as src:
        array, transform = np.moveaxis(src.read(), 0, 2), src.transform
    a = AerialWindow.from_array(array, transform, "EPSG:32633", prior, "EPSG:32633", 64.0, 0.5)
    b = AerialWindow.from_raster(path, prior, "EPSG:32633", 64.0, 0.5)
    assert np.abs(a.image.astype(int) - b.image).max() <= 1 and (a.valid == b.valid).all()
    assert a.key != b.key and a.key == AerialWindow.from_array(
        array, tuple(transform)[:6], "EPSG:32633", prior, "EPSG:32633", 64.0, 0.5).key


def test_from_array_in_local_frame_is_copied_without_resampling():
    rng = np.random.default_rng(0)
    prior = (500050.0, 5000050.0)
    probe = AerialWindow.from_array(np.zeros((4, 4, 3), np.uint8), (1, 0, 500048, 0, -1, 5000052),
                                    "EPSG:32633", prior, "EPSG:32633", 2.0, 1.0)
    local_crs = probe.frame.local_crs
    array = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)  # 20 m at 0.5 m, centred on the prior
    win = AerialWindow.from_array(array, (0.5, 0, -10.0, 0, -0.5, 10.0), local_crs, (0.0, 0.0), local_crs,
                                  10.0, 0.5)
    assert (win.image == array[10:30, 10:30]).all() and win.valid.all()


def test_pixel_local_convention_round_trip():
    win = AerialWindow(np.zeros((4, 6, 3), np.uint8), np.ones((4, 6), bool), 2.0, None, "x")
    assert np.allclose(win.pixel_to_local(np.array([0, 0])), [-5.0, 3.0])  # north-west pixel centre
    assert np.allclose(win.pixel_to_local(np.array([3.5, 5.5])), [6.0, -4.0])  # south-east corner
    xy = np.random.default_rng(1).normal(size=(5, 2))
    assert np.allclose(win.pixel_to_local(win.local_to_pixel(xy)), xy)


def test_utm_far_from_central_meridian_is_rotated_to_true_north(tmp_path):
    # near 60 N, 17.7 E in zone 33 grid north is ~2.3 deg off true north: 60 m away that is ~2.4 m (5 px)
    path, centre = _square_raster(tmp_path, "EPSG:32633", (650000, 6650100), (0.5, 0.5), n=300,
                                  square=(20, 20, 6))
    prior = (650070.0, 6650030.0)
    assert abs(_expected_local(prior, (650070.0, 6650130.0), "EPSG:32633")[0]) > 3.0  # the effect is real
    win = AerialWindow.from_raster(path, prior, "EPSG:32633", 128.0, 0.5)
    _check(win, prior, centre, "EPSG:32633")


def test_palette_raster_is_expanded_to_rgb(tmp_path):
    idx = np.zeros((1, 100, 100), np.uint8)
    idx[0, 40:60, 40:60] = 1
    path = tmp_path / "pal.tif"
    with rasterio.open(path, "w", driver="GTiff", width=100, height=100, count=1, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(500000, 5000100, 1.0, 1.0)) as dst:
        dst.write(idx)
        dst.write_colormap(1, {0: (0, 0, 255, 255), 1: (255, 255, 0, 255)})
    win = AerialWindow.from_raster(path, (500050.0, 5000050.0), "EPSG:32633", 40.0, 1.0)
    assert tuple(win.image[20, 20]) == (255, 255, 0) and tuple(win.image[2, 2]) == (0, 0, 255)


def test_rotated_geotransform(tmp_path):
    # a non-north-up geotransform (rows run east, columns north): the square must still land right
    bands = np.full((3, 200, 200), 50, np.uint8)
    bands[:, 60:66, 100:106] = 255
    transform = rasterio.Affine(0.0, 0.5, 500000.0, 0.5, 0.0, 5000000.0)  # x = 500000 + 0.5 row
    path = _write(tmp_path / "rot.tif", bands, "EPSG:32633", transform)
    centre = transform * (103.0, 63.0)
    prior = (500050.0, 5000050.0)
    win = AerialWindow.from_raster(path, prior, "EPSG:32633", 64.0, 0.5)
    _check(win, prior, centre, "EPSG:32633")


def test_from_array_errors_name_the_problem():
    array = np.full((10, 10, 3), 9, np.uint8)
    transform = (1.0, 0, 500000.0, 0, -1.0, 5000010.0)
    with pytest.raises(AerialError, match="does not overlap"):
        AerialWindow.from_array(array, transform, "EPSG:32633", (600000.0, 0.0), "EPSG:32633", 20.0, 1.0)
    with pytest.raises(AerialError, match="not understood"):
        AerialWindow.from_array(array, transform, "EPSG:nonsense", (500005.0, 5000005.0), None, 20.0, 1.0)
    with pytest.raises(AerialError, match="px wide"):
        AerialWindow.from_array(array, transform, "EPSG:32633", (500005.0, 5000005.0), None, 1e6, 0.01)


_WITHOUT_RASTERIO = r'''
import sys

class Blocker:  # a QGIS whose Python has no rasterio (nor affine)
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("rasterio", "affine"):
            raise ImportError(f"No module named {name!r} (blocked by the test)")

sys.meta_path.insert(0, Blocker())

import numpy as np

from loc2_engine import pipeline
from loc2_engine.aerial import AerialWindow
from loc2_engine.cameras import PanoramaCamera
from loc2_engine.errors import AerialError
from loc2_engine.exif import ExifInfo
from loc2_engine.georef import LocalFrame
from loc2_engine.ground import GroundImage
from loc2_engine.models.small import build

loc = pipeline.Localizer(model=build(), depth="plane", device="cpu", hypotheses=50, n_matches=64)
size_m, gsd = float(loc.matcher.aerial_size_m), float(loc.matcher.aerial_gsd)
n, half = loc.matcher.aerial_size_px, loc.matcher.aerial_size_m / 2.0
local_crs = LocalFrame("EPSG:32633", (500050.0, 5000050.0)).local_crs
image = np.random.default_rng(0).integers(0, 256, (n, n, 3), dtype=np.uint8)
window = AerialWindow.from_array(image, (gsd, 0, -half, 0, -gsd, half), local_crs, (0.0, 0.0), local_crs,
                                 size_m, gsd)
assert (window.image == image).all()
shade = np.linspace(0, 255, 128).astype(np.uint8)  # a photo with content, not a blank frame
photo = np.tile(shade[None, :, None], (64, 1, 3))
ground = GroundImage("pano.jpg", photo, PanoramaCamera(128, 64), ExifInfo(), "pano")
result = loc.localize(ground, window, pipeline.Prior(0.0, 0.0, local_crs, radius_m=10.0))
assert result.error_code != "aerial", result.error
for build_window in (lambda: AerialWindow.from_raster("aerial.tif", (0, 0), None, size_m, gsd),
                     lambda: AerialWindow.from_array(image, (gsd, 0, 0, 0, -gsd, 0), "EPSG:32633",
                                                     (1.0, -1.0), None, size_m, gsd)):
    try:
        build_window()
    except AerialError as exc:
        assert "'rasterio'" in str(exc), exc
    else:
        raise AssertionError("reading without rasterio did not fail")
assert not [m for m in sys.modules if m.split(".")[0] in ("rasterio", "affine")]
print("OK", result.status)
'''


def test_pipeline_runs_from_an_in_memory_window_without_rasterio(tmp_path):
    """The plugin's path (windows from arrays / QGIS renders) must not need rasterio; reading files says
    which package is missing."""
    (tmp_path / "aerial.tif").write_bytes(b"")  # exists, so the error is about rasterio, not the path
    repo = Path(__file__).resolve().parents[1]
    ran = subprocess.run([sys.executable, "-c", _WITHOUT_RASTERIO], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(repo)})
    assert ran.returncode == 0 and "OK" in ran.stdout, ran.stdout[-2000:] + ran.stderr[-4000:]
