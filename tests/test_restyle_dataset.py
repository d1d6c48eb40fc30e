"""scripts/restyle_dataset.py (the look-change rows of `make bench`): colours change, geometry does not — photos
keep their EXIF (orientation, GPS, focal length), rasters their georeferencing, the manifest its truth."""

import csv
import os

import numpy as np
import piexif
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from loc2_engine.exif import read_exif
from script_modules import load_script


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "src"
    for sub in ("aerial", "photos", "depth"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    with rasterio.open(root / "aerial" / "t.tif", "w", driver="GTiff", width=64, height=64, count=4,
                       dtype="uint8", crs="EPSG:32632", transform=from_origin(500_000, 5_000_000, 0.5, 0.5)) as d:
        d.write(rng.integers(30, 220, (4, 64, 64), dtype=np.uint8))
    exif = piexif.dump({"0th": {piexif.ImageIFD.Orientation: 6},
                        "Exif": {piexif.ExifIFD.FocalLengthIn35mmFilm: 28},
                        "GPS": {piexif.GPSIFD.GPSLatitudeRef: b"N", piexif.GPSIFD.GPSLatitude: ((45, 1), (7, 1), (0, 1)),
                                piexif.GPSIFD.GPSLongitudeRef: b"E",
                                piexif.GPSIFD.GPSLongitude: ((9, 1), (0, 1), (0, 1))}})
    Image.fromarray(rng.integers(30, 220, (48, 80, 3), dtype=np.uint8)).save(root / "photos" / "a.jpg", exif=exif)
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["photo", "aerial", "crs", "true_x", "true_y"])
        w.writerow(["photos/a.jpg", "aerial/t.tif", "EPSG:32632", "500010.0", "4999990.0"])
    return root


@pytest.mark.parametrize("look", ["graded", "degraded"])
def test_restyled_copy_changes_colours_and_keeps_geometry(dataset, tmp_path, look):
    out = tmp_path / look
    load_script("restyle_dataset").restyle_dataset(str(dataset), str(out), look)
    assert (out / "manifest.csv").read_text() == (dataset / "manifest.csv").read_text()
    assert os.path.islink(out / "depth")
    with rasterio.open(dataset / "aerial" / "t.tif") as a, rasterio.open(out / "aerial" / "t.tif") as b:
        assert (a.crs, a.transform, a.count) == (b.crs, b.transform, b.count)
        before, after = a.read(), b.read()
    assert np.array_equal(before[3], after[3])  # alpha untouched
    assert np.abs(before[:3].astype(int) - after[:3].astype(int)).mean() > 5
    old, new = read_exif(dataset / "photos" / "a.jpg"), read_exif(out / "photos" / "a.jpg")
    assert new.orientation == 6 and old.lonlat is not None and (new.lonlat, new.focal_35mm) == (old.lonlat, 28)
    with Image.open(dataset / "photos" / "a.jpg") as a, Image.open(out / "photos" / "a.jpg") as b:
        assert a.size == b.size
        assert np.abs(np.asarray(a, int) - np.asarray(b, int)).mean() > 5


def test_unknown_look_is_refused(dataset, tmp_path):
    with pytest.raises(SystemExit, match="unknown look"):
        load_script("restyle_dataset").restyle_dataset(str(dataset), str(tmp_path / "x"), "sepia")
