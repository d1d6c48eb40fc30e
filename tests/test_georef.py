"""LocalFrame against pyproj: metric, true-north local frame; convergence sign and value; headings."""

import math
import threading

import numpy as np
import pyproj
import pytest

from loc2_engine import georef
from loc2_engine.errors import AerialError
from loc2_engine.georef import LocalFrame, transform_points

GEOD = pyproj.Geod(ellps="WGS84")

# (crs, origin in crs units): UTM east of the central meridian, geographic, web mercator near 70° N, US feet
CASES = [
    ("EPSG:32632", (700000.0, 5200000.0)),
    ("EPSG:4326", (8.0, 47.0)),
    ("EPSG:3857", (1.0e6, 11.0e6)),
    ("EPSG:2263", (1.0e6, 2.0e5)),
]


@pytest.mark.parametrize("crs,origin", CASES)
def test_local_frame_is_metric_and_true_north(crs, origin):
    frame = LocalFrame(crs, origin)
    rng = np.random.default_rng(0)
    xy_local = rng.uniform(-300, 300, size=(20, 2))
    lonlat = frame.local_to_lonlat(xy_local)
    lon0, lat0 = frame.origin_lonlat
    az, _, dist = GEOD.inv(np.full(20, lon0), np.full(20, lat0), lonlat[:, 0], lonlat[:, 1])
    # azimuthal equidistant: distance and azimuth from the origin are the geodesic ones
    np.testing.assert_allclose(np.hypot(xy_local[:, 0], xy_local[:, 1]), dist, atol=1e-6)
    az_local = np.degrees(np.arctan2(xy_local[:, 0], xy_local[:, 1]))
    np.testing.assert_allclose((az_local - az + 180) % 360 - 180, 0.0, atol=1e-7)
    # the crs route agrees with pyproj directly and round-trips
    xy_crs = frame.from_local(xy_local)
    np.testing.assert_allclose(transform_points(xy_crs, crs, "EPSG:4326"), lonlat, atol=1e-9)
    np.testing.assert_allclose(frame.to_local(xy_crs), xy_local, atol=1e-6)
    np.testing.assert_allclose(frame.to_local(np.asarray(origin)), [[0.0, 0.0]], atol=1e-6)


@pytest.mark.parametrize("crs,origin", CASES + [("EPSG:25832", (690000.0, 5335000.0))])
def test_local_frame_equals_proj_between_the_two_crss(crs, origin):
    """The frame goes through longitude/latitude; PROJ's own operation between the raster CRS and the local
    azimuthal-equidistant CRS (a datum change included, ETRS89 here) gives the same metres."""
    frame = LocalFrame(crs, origin)
    direct = pyproj.Transformer.from_crs(frame.crs, frame.local_crs, always_xy=True)
    unit = 1e-5 if frame.crs.is_geographic else 1.0
    xy_crs = np.asarray(origin) + np.random.default_rng(1).uniform(-400, 400, size=(30, 2)) * unit
    expected = np.stack(direct.transform(xy_crs[:, 0], xy_crs[:, 1]), axis=-1)
    np.testing.assert_allclose(frame.to_local(xy_crs), expected, atol=1e-6)
    back = np.stack(direct.transform(expected[:, 0], expected[:, 1], direction="INVERSE"), axis=-1)
    np.testing.assert_allclose(frame.from_local(expected), back, atol=1e-6 * unit)


def test_transformers_are_made_once_per_pair_and_work_from_another_thread():
    src, dst = pyproj.CRS.from_epsg(32632), pyproj.CRS.from_epsg(4326)
    first = georef._transformer(src, dst)
    assert georef._transformer(pyproj.CRS.from_epsg(32632), dst) is first
    other = []
    thread = threading.Thread(target=lambda: other.append(georef._transformer(src, dst).transform(700000.0, 5200000.0)))
    thread.start()
    thread.join()
    assert other == [first.transform(700000.0, 5200000.0)]


def test_origin_lonlat_matches_pyproj():
    frame = LocalFrame("EPSG:32632", (700000.0, 5200000.0))
    lon, lat = pyproj.Transformer.from_crs(32632, 4326, always_xy=True).transform(700000.0, 5200000.0)
    assert frame.origin_lonlat == pytest.approx((lon, lat), abs=1e-12)


def test_web_mercator_at_70_degrees_is_rescaled():
    frame = LocalFrame("EPSG:3857", (1.0e6, 11.0e6))
    lat = frame.origin_lonlat[1]
    assert 69 < lat < 71
    # spherical mercator of ellipsoidal latitudes: 1 m along the meridian spans a / (M cos(lat)) units
    # (M = meridian radius of curvature), ≈ 2.9 here; the local frame must undo that
    a, e2, phi = 6378137.0, 0.00669437999014, math.radians(lat)
    meridian_radius = a * (1 - e2) / (1 - e2 * math.sin(phi) ** 2) ** 1.5
    d_crs = np.diff(frame.from_local([[0.0, -5.0], [0.0, 5.0]]), axis=0)[0]
    assert d_crs[0] == pytest.approx(0.0, abs=1e-6)
    assert d_crs[1] == pytest.approx(10.0 * a / (meridian_radius * math.cos(phi)), rel=1e-5)


@pytest.mark.parametrize("crs,origin", CASES + [("EPSG:32632", (300000.0, 5200000.0)),
                                                ("EPSG:32733", (650000.0, 7000000.0))])
def test_convergence_matches_proj_factors(crs, origin):
    frame = LocalFrame(crs, origin)
    lon, lat = frame.origin_lonlat
    expected = pyproj.Proj(pyproj.CRS(crs)).get_factors(lon, lat).meridian_convergence
    assert frame.convergence_deg() == pytest.approx(expected, abs=1e-5)


def test_convergence_sign_utm():
    """Northern hemisphere, east of the central meridian: grid north lies east of true north (gamma > 0)."""
    east = LocalFrame("EPSG:32632", (700000.0, 5200000.0))
    west = LocalFrame("EPSG:32632", (300000.0, 5200000.0))
    lon, lat = east.origin_lonlat
    approx = (lon - 9.0) * math.sin(math.radians(lat))  # first-order gamma = dlon * sin(lat)
    assert east.convergence_deg() == pytest.approx(approx, abs=0.02)
    assert east.convergence_deg() > 1.0 and west.convergence_deg() < -1.0
    assert LocalFrame("EPSG:4326", (8.0, 47.0)).convergence_deg() == pytest.approx(0.0, abs=1e-9)
    assert LocalFrame("EPSG:3857", (1.0e6, 11.0e6)).convergence_deg() == pytest.approx(0.0, abs=1e-7)


def test_convergence_vectorised_over_points():
    frame = LocalFrame("EPSG:32632", (700000.0, 5200000.0))
    pts = np.array([[700000.0, 5200000.0], [500000.0, 5200000.0], [300000.0, 5200000.0]])
    gamma = frame.convergence_deg(pts)
    assert gamma.shape == (3,)
    assert gamma[0] == pytest.approx(frame.convergence_deg())
    assert gamma[1] == pytest.approx(0.0, abs=1e-6)
    assert gamma[2] == pytest.approx(-gamma[0], abs=1e-6)


@pytest.mark.parametrize("crs,origin", CASES)
def test_true_to_grid_heading_matches_projected_direction(crs, origin):
    """Step 1 m along a true heading; the grid bearing of that step in the CRS is the grid heading.

    Oblique headings only for conformal CRSs: EPSG:3857 is not conformal on the ellipsoid and a lon/lat
    grid has no metric bearing, so there only the cardinal directions map exactly.
    """
    frame = LocalFrame(crs, origin)
    conformal = crs in ("EPSG:32632", "EPSG:2263")
    for heading_true in (0.0, 37.0, 90.0, 200.0, 359.5) if conformal else (0.0, 90.0, 180.0, 270.0):
        h = math.radians(heading_true)
        step_local = np.array([[0.0, 0.0], [math.sin(h), math.cos(h)]])
        d = np.diff(frame.from_local(step_local), axis=0)[0]
        grid_bearing = math.degrees(math.atan2(d[0], d[1])) % 360
        got = frame.true_to_grid_heading(heading_true)
        assert isinstance(got, float) and 0 <= got < 360
        assert (got - grid_bearing + 180) % 360 - 180 == pytest.approx(0.0, abs=1e-3)
        assert frame.grid_to_true_heading(got) == pytest.approx(heading_true % 360, abs=1e-9)


def test_heading_wraps_and_vectorises():
    frame = LocalFrame("EPSG:32632", (700000.0, 5200000.0))
    gamma = frame.convergence_deg()
    assert frame.true_to_grid_heading(0.0) == pytest.approx(360.0 - gamma)
    out = frame.true_to_grid_heading(np.array([0.0, 90.0]))
    np.testing.assert_allclose(out, [360.0 - gamma, 90.0 - gamma])


def test_bad_crs_is_a_specific_error():
    with pytest.raises(AerialError, match="not understood"):
        LocalFrame("EPSG:99999999", (0.0, 0.0))
    with pytest.raises(AerialError, match="finite"):
        LocalFrame("EPSG:32632", (float("nan"), 0.0))
