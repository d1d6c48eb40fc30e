"""Shared by tests/test_batch.py and tests/test_processing.py: real photos and rasters in a folder, and a
`FakeLocalizer` with `pipeline.Localizer`'s interface for use before a trained model exists.

The fake does the real input handling (GroundImage.load, prior from EXIF GPS, the aerial window from a raster
file or any source `aerial.window_around` takes, e.g. the plugin's layer renderer), so
broken photos, missing priors and priors outside the raster fail with the engine's own errors; only the
pose is made up: the prior moved ``OFFSET_M`` in the local frame, heading 42° (or the heading prior).
"""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import numpy as np
import piexif
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from loc2_engine.aerial import window_around
from loc2_engine.errors import Loc2Error, PriorError
from loc2_engine.georef import transform_points
from loc2_engine.ground import GroundImage
from loc2_engine.result import Result
from loc2_engine.search_area import Prior

CRS = "EPSG:32633"
#: raster: 200 x 200 px at 1 m, top-left corner
ORIGIN = (500_000.0, 5_000_200.0)
OFFSET_M = np.array([3.0, -2.0])
#: photo name -> position in the raster (x, y) or None (no EXIF)
GOOD = {"p01.jpg": (500_050.0, 5_000_150.0), "p02.JPG": (500_100.0, 5_000_100.0),
        "p03.png": (500_150.0, 5_000_050.0)}


def _dms(value):
    d = int(value)
    m = int((value - d) * 60)
    s = round(((value - d) * 60 - m) * 60 * 1000)
    return ((d, 1), (m, 1), (s, 1000))


def write_photo(path, xy=None, heading=None, heading_ref=b"T", size=(96, 64), seed=0):
    """A small RGB photo; EXIF GPS at ``xy`` (raster CRS) when given, GPSImgDirection when ``heading``."""
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    exif = None
    if xy is not None:
        lon, lat = transform_points([xy], CRS, "EPSG:4326")[0]
        gps = {piexif.GPSIFD.GPSLatitudeRef: b"N", piexif.GPSIFD.GPSLatitude: _dms(lat),
               piexif.GPSIFD.GPSLongitudeRef: b"E", piexif.GPSIFD.GPSLongitude: _dms(lon)}
        if heading is not None:
            gps[piexif.GPSIFD.GPSImgDirectionRef] = heading_ref
            gps[piexif.GPSIFD.GPSImgDirection] = (int(heading * 100), 100)
        exif = piexif.dump({"0th": {}, "Exif": {piexif.ExifIFD.FocalLengthIn35mmFilm: 28}, "GPS": gps})
    fmt = "PNG" if str(path).lower().endswith(".png") else "JPEG"
    if exif is not None:
        img.save(path, fmt, exif=exif)
    else:
        img.save(path, fmt)
    return str(path)


def write_raster(path, n=200):
    data = np.random.default_rng(1).integers(0, 255, (3, n, n), dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=3, dtype="uint8", crs=CRS,
                       transform=from_origin(ORIGIN[0], ORIGIN[1], 1.0, 1.0)) as dst:
        dst.write(data)
    return str(path)


def make_folder(root):
    """photos/ with GOOD photos and broken ones (empty, truncated, ...), plus aerial.tif; returns (folder, raster,
    {name: expected error fragment})."""
    folder = root / "photos"
    folder.mkdir()
    for i, (name, xy) in enumerate(GOOD.items()):
        write_photo(folder / name, xy, seed=i)
    (folder / "zero.jpg").write_bytes(b"")
    whole = (folder / "p01.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "random.jpg").write_bytes(np.random.default_rng(2).bytes(5000))
    write_photo(folder / "noexif.jpg", None, seed=5)
    write_photo(folder / "outside.jpg", (510_000.0, 5_010_000.0), seed=6)
    (folder / "notes.txt").write_text("not a photo")
    expected = {"zero.jpg": "empty file (0 bytes)", "truncated.jpg": "truncated",
                "random.jpg": "not an image", "noexif.jpg": "no GPS position",
                "outside.jpg": "outside the aerial raster"}
    return folder, write_raster(root / "aerial.tif"), expected


class FakeLocalizer:
    """`pipeline.Localizer` stand-in; ``delay_s`` per photo; ``crash_on``: a photo name that raises a bug."""

    model_name = "fake"

    def __init__(self, delay_s: float = 0.0, crash_on: str = None):
        self.delay_s = delay_s
        self.crash_on = crash_on

    def localize(self, photo, aerial, prior=None, depth_map=None) -> Result:
        start = time.perf_counter()
        photo_id = os.fspath(photo) if isinstance(photo, (str, os.PathLike)) else photo.path
        try:
            return self._localize(photo, aerial, prior, photo_id, start)
        except Loc2Error as exc:
            return Result.failure(photo_id, exc, runtime_s=time.perf_counter() - start, model="fake")

    def _localize(self, photo, aerial, prior, photo_id, start) -> Result:
        time.sleep(self.delay_s)  # every photo, broken or not, takes this long
        ground = GroundImage.load(photo) if isinstance(photo, (str, os.PathLike)) else photo
        if self.crash_on and os.path.basename(photo_id) == self.crash_on:
            raise ZeroDivisionError("a bug in the fake")
        if prior is not None and prior.has_position:
            xy, crs = (prior.x, prior.y), prior.crs or CRS
        elif ground.exif.lonlat is not None:
            xy, crs = ground.exif.lonlat, "EPSG:4326"
        else:
            raise PriorError(f"The photo {os.path.basename(photo_id)} has no GPS position in its EXIF and no "
                             "prior position was given.")
        window = window_around(aerial, xy, crs, 64.0, 1.0)
        frame = window.frame
        t = frame.to_local(transform_points([xy], crs, frame.crs))[0] + OFFSET_M
        heading = 42.0 if prior is None or prior.heading_deg is None else float(prior.heading_deg)
        x, y = frame.from_local(t[None])[0]
        lon, lat = frame.local_to_lonlat(t[None])[0]
        n = 6
        xy_bev = np.c_[np.linspace(-3, 3, n), np.linspace(2, 12, n)]
        from loc2_engine.solver import rotation_from_heading

        xy_aerial = xy_bev @ rotation_from_heading(heading).T + t
        return Result(
            photo=photo_id, status="ok", crs=frame.crs.to_string(), x=float(x), y=float(y), lon=float(lon),
            lat=float(lat), heading_deg=heading, heading_grid_deg=float(frame.true_to_grid_heading(heading, (x, y))),
            scale=1.0, matches=n, inliers=n, inlier_ratio=1.0, confidence=0.9, residual_m=0.0, sigma_m=0.5,
            camera=ground.camera.kind, model="fake", depth="none", runtime_s=time.perf_counter() - start,
            hfov_deg=float(ground.camera.hfov_deg), uv_ground=np.c_[np.arange(n), np.arange(n)] * 5.0,
            xy_bev=xy_bev, xy_aerial=xy_aerial, weights=np.full(n, 0.5), inlier_mask=np.ones(n, bool),
            residuals_m=np.zeros(n), layout_uv=np.zeros((3, 2)), layout_xy=t + np.zeros((3, 2)),
            window=window, frame=frame)


class ExtentFake(FakeLocalizer):
    """`FakeLocalizer` that can also search an extent: records the call and answers from the extent's centre
    (a 64 m window, as a small model's)."""

    matcher = SimpleNamespace(aerial_size_m=64.0)

    def __init__(self):
        super().__init__()
        self.extent_calls = []

    def localize_in_extent(self, photo, aerial, extent, extent_crs=None, heading_deg=None,
                           heading_tolerance_deg=None, depth_map=None):
        photo_id = os.fspath(photo) if isinstance(photo, (str, os.PathLike)) else photo.path
        self.extent_calls.append((os.path.basename(photo_id), tuple(extent), extent_crs, heading_deg))
        centre = Prior(x=(extent[0] + extent[2]) / 2, y=(extent[1] + extent[3]) / 2, crs=extent_crs,
                       heading_deg=heading_deg, heading_tolerance_deg=heading_tolerance_deg)
        return self.localize(photo, aerial, centre, depth_map)
