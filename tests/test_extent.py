"""Search within an extent (`extent.cover`, `extent.best_of`, `Localizer.localize_in_extent`, `--extent`).

The oracle of test_pipeline.py, taught where its window is: the aerial source records each window's frame
on the matcher, and P links each ground token to the cell under its true position (known in the raster's
CRS) wherever the window lies, so a search over the extent finds the truth only in the windows that see it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from loc2_engine.aerial import AerialWindow
from loc2_engine.confidence import UNINFORMED_PRIOR_OFFSET
from loc2_engine.errors import PriorError
from loc2_engine.extent import MIN_VISIBLE_RANGE_M, best_of, cover
from loc2_engine.georef import LocalFrame, transform_points
from loc2_engine.models.base import grid_centres_uv
from loc2_engine.pipeline import Localizer
from loc2_engine.result import Result
from test_pipeline import CRS, ORIGIN, OracleMatcher, _ground_range, _pano_rays, _scene

TRUTH = (ORIGIN[0] + 103.0, ORIGIN[1] - 96.0)      # the panorama's true position (test_pipeline._scene)
SECOND = (ORIGIN[0] + 53.0, ORIGIN[1] - 96.0)      # a second place that looks the same, 50 m west
#: 80 m x 80 m around both places: 3 x 3 windows of the oracle (64 m, search radius 22 m)
EXTENT = (ORIGIN[0] + 40.0, ORIGIN[1] - 140.0, ORIGIN[0] + 120.0, ORIGIN[1] - 60.0)


class PlacedOracle(OracleMatcher):
    """The oracle with its ground tokens' true positions in the raster's CRS (``places``: a list of (Ng, 2)
    arrays, one per place the photo fits), put into the frame of the last window the aerial source cut."""

    def __init__(self):
        super().__init__()
        self.places = []
        self.frame = None

    def match(self, a, g, ground_valid=None, aerial_valid=None):
        P = torch.zeros(1, len(self.cells), g.desc.shape[-1] * g.desc.shape[-2])
        for place in self.places:
            self.token_xy = torch.from_numpy(self.frame.to_local(place))
            P = torch.maximum(P, super().match(a, g, ground_valid, aerial_valid))
        return P


def _aerial_source(raster, matcher):
    """An aerial source (a callable, `aerial.window_around`) that tells ``matcher`` which window it cut."""
    def window(center_xy, center_crs, size_m, gsd):
        cut = AerialWindow.from_raster(raster, center_xy, center_crs, size_m, gsd)
        matcher.frame = cut.frame
        return cut
    return window


def _token_positions(matcher, scene, camera_xy):
    """(Ng, 2) raster-CRS positions of the ground seen by the panorama's tokens from ``camera_xy``."""
    H, W = matcher.ground_input_size_for("pano")
    uv = grid_centres_uv(*matcher.token_grid("pano"), matcher.token_stride).double().numpy()
    az, el = _pano_rays(H, W, uv)
    dist = _ground_range(el) * np.cos(el)
    bearing = np.radians(scene["heading"]) + az
    local = np.stack([dist * np.sin(bearing), dist * np.cos(bearing)], -1)
    return LocalFrame(CRS, camera_xy).from_local(local)  # NaN where no ground stays NaN


@pytest.fixture
def placed(tmp_path):
    """(scene, matcher, localizer, aerial source) for the panorama of test_pipeline._scene, truth at TRUTH."""
    scene = _scene(tmp_path, "pano")
    assert np.allclose(scene["true_xy"], TRUTH)
    matcher = PlacedOracle()
    matcher.places = [_token_positions(matcher, scene, TRUTH)]
    loc = Localizer(model=matcher, depth="truth", device="cpu")
    return scene, matcher, loc, _aerial_source(scene["raster"], matcher)


def _uncovered(priors, extent, crs, step_m=1.0):
    """Points of the extent (a grid ``step_m`` apart in a local frame, and its corners) farther than every
    prior's radius from its centre: (K, 2) local metres."""
    frame = LocalFrame(crs, ((extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2))
    t = np.linspace(0.0, 1.0, 201)
    gx, gy = np.meshgrid(extent[0] + t * (extent[2] - extent[0]), extent[1] + t * (extent[3] - extent[1]))
    points = frame.to_local(np.stack([gx.ravel(), gy.ravel()], -1))
    centres = frame.to_local(np.array([[p.x, p.y] for p in priors]))
    radius = np.array([p.radius_m for p in priors])
    d = np.linalg.norm(points[:, None] - centres[None], axis=-1)
    return points[(d <= radius[None] + 1e-6).sum(1) == 0]


def test_the_cover_of_an_extent_reaches_every_point_of_it_in_metres_and_in_degrees():
    matcher = OracleMatcher()
    r = 64.0 / 2 - MIN_VISIBLE_RANGE_M
    utm = (ORIGIN[0], ORIGIN[1] - 200.0, ORIGIN[0] + 200.0, ORIGIN[1])
    priors = cover(utm, CRS, matcher)
    assert all(p.radius_m == pytest.approx(r) and p.crs == CRS for p in priors)
    assert len(priors) == math.ceil(200.0 / (r * math.sqrt(2))) ** 2  # 7 x 7
    assert len(_uncovered(priors, utm, CRS)) == 0
    # the same ground in longitude/latitude (about 45° N, 15° E): one degree of longitude is ~79 km there
    corners = transform_points([[utm[0], utm[1]], [utm[2], utm[3]]], CRS, "EPSG:4326")
    lonlat = (*corners[0], *corners[1])
    priors = cover(lonlat, "EPSG:4326", matcher)
    assert 36 <= len(priors) <= 64 and priors[0].crs == "EPSG:4326"
    assert len(_uncovered(priors, lonlat, "EPSG:4326")) == 0
    # a heading prior goes to every window
    assert {p.heading_deg for p in cover(utm, CRS, matcher, heading_deg=70.0)} == {70.0}


def test_too_large_an_extent_is_refused_naming_the_largest(placed):
    with pytest.raises(PriorError, match=r"largest it searches is 400 windows, about \d+ m x \d+ m"):
        cover((0.0, 0.0, 10000.0, 10000.0), CRS, OracleMatcher())
    scene, matcher, loc, aerial = placed
    matcher.encode_aerial = lambda x: pytest.fail("the matcher ran for an extent it refuses")
    res = loc.localize_in_extent(scene["ground"], aerial, (0.0, 0.0, 10000.0, 10000.0), CRS,
                                 depth_map=scene["depth"])
    assert res.status == "failed" and res.error_code == "prior" and "largest" in res.error
    res = loc.localize_in_extent(scene["ground"], aerial, (1.0, 0.0, 0.0, 1.0), CRS, depth_map=scene["depth"])
    assert res.status == "failed" and res.error_code == "prior" and "empty" in res.error


def test_the_truth_somewhere_in_the_extent_is_found_without_a_prior(placed):
    scene, matcher, loc, aerial = placed
    res = loc.localize_in_extent(scene["ground"], aerial, EXTENT, CRS, depth_map=scene["depth"])
    assert res.status == "ok", res.error
    assert math.hypot(res.x - TRUTH[0], res.y - TRUTH[1]) < 0.3, res
    assert abs((res.heading_deg - scene["heading"] + 180) % 360 - 180) < 1.5
    assert res.quality_features["extent_windows"] == 9
    # a window's centre is no estimate of where the camera is: the prior's offset takes its uninformed value
    assert res.quality_features["prior_offset"] == UNINFORMED_PRIOR_OFFSET
    assert res.quality_features["extent_runner_up"] == 0.0  # overlapping windows found the same place
    assert res.runtime_s > 0
    # the extent's CRS defaults to the raster's, and a heading prior is honoured in every window
    res = loc.localize_in_extent(scene["ground"], scene["raster"], EXTENT, heading_deg=250.0,
                                 heading_tolerance_deg=10.0, depth_map=scene["depth"])
    assert res.status == "failed" and res.error_code == "localization" and "9 windows" in res.error


def test_a_pose_outside_the_extent_is_not_accepted(placed):
    scene, matcher, loc, aerial = placed
    west_of_truth = (EXTENT[0], EXTENT[1], TRUTH[0] - 5.0, EXTENT[3])
    found = [loc.localize(scene["ground"], aerial, prior, scene["depth"]) for prior in cover(west_of_truth, CRS, matcher)]
    assert any(r.ok and math.hypot(r.x - TRUTH[0], r.y - TRUTH[1]) < 0.3 for r in found)  # a window reaches it
    res = loc.localize_in_extent(scene["ground"], aerial, west_of_truth, CRS, depth_map=scene["depth"])
    assert res.status == "failed" and "inside the extent" in res.error, res


def test_two_places_that_fit_equally_are_ambiguous(placed):
    scene, matcher, loc, aerial = placed
    matcher.places.append(_token_positions(matcher, scene, SECOND))
    res = loc.localize_in_extent(scene["ground"], aerial, EXTENT, CRS, depth_map=scene["depth"])
    assert res.status == "low_confidence", res
    found = min(math.hypot(res.x - p[0], res.y - p[1]) for p in (TRUTH, SECOND))
    assert found < 0.3
    runner_up = res.quality_features["extent_runner_up"]
    assert runner_up > 0.8 and res.confidence == pytest.approx(runner_up / 2, rel=0.2)
    assert res.quality_features["extent_runner_up_m"] == pytest.approx(50.0, abs=1.0)


def _pose(confidence, x, inliers=50, photo="p.jpg"):
    """A Result of a pose at (x, 0) in a UTM frame at 45° N with that confidence and inliers."""
    lon, lat = transform_points([[ORIGIN[0] + x, ORIGIN[1]]], CRS, "EPSG:4326")[0]
    return Result(photo=photo, status="ok", crs=CRS, x=ORIGIN[0] + x, y=ORIGIN[1], lon=lon, lat=lat,
                  confidence=confidence, inliers=inliers, runtime_s=1.0)


def test_best_of_ranks_by_confidence_then_inliers_and_keeps_the_same_place_unambiguous():
    failed = Result.failure("p.jpg", PriorError("no"), runtime_s=1.0)
    res = best_of([failed, _pose(0.95, 0.0, 40), _pose(0.95, 3.0, 60), _pose(0.3, 200.0)])
    assert res.x == ORIGIN[0] + 3.0 and res.status == "ok" and res.confidence == 0.95
    assert res.quality_features["extent_windows"] == 4 and res.runtime_s == 4.0
    assert res.quality_features["extent_runner_up"] == 0.3  # a place far less likely: no doubt cast
    res = best_of([_pose(0.95, 0.0), _pose(0.8, 30.0)])  # within 0.1 of the best: ambiguous
    assert res.status == "low_confidence" and res.confidence == pytest.approx(0.95 * (1 - 0.8 / 1.75))
    res = best_of([failed, failed])
    assert res.status == "failed" and "2 windows" in res.error and "no" in res.error


def test_the_cli_refuses_a_bad_extent_before_loading_the_model(tmp_path, monkeypatch, capsys):
    import loc2_engine.pipeline as pipeline
    from loc2_engine.cli import main

    monkeypatch.setattr(pipeline, "Localizer", lambda *a, **k: pytest.fail("the model loaded"))
    base = ["localize", str(tmp_path / "p.jpg"), "--aerial", str(tmp_path / "a.tif")]
    for extra, words in ((["--extent", "0", "0", "nan", "1"], "finite"),
                         (["--extent", "5", "0", "1", "1"], "XMIN < XMAX"),
                         (["--extent", "0", "3", "1", "3"], "YMIN < YMAX"),
                         (["--extent", "0", "0", "1", "1", "--prior", "0", "0"], "exclude each other"),
                         (["--extent", "0", "0", "1", "1", "--radius", "10"], "exclude each other"),
                         (["--extent-crs", "EPSG:4326"], "needs --extent")):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err
