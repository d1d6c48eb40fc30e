"""scripts/reframe_dataset.py (the phone-framing rows of `make bench`): pinhole photos cropped upright to another
aspect, with their depth maps, HFOV and EXIF following; panoramas left out."""

import argparse
import csv
import math

import numpy as np
import piexif
import pytest
from PIL import Image, ImageOps

from loc2_engine.exif import read_exif
from loc2_engine.ground import GroundImage
from script_modules import load_script

FIELDS = ["photo", "aerial", "camera", "hfov_deg", "depth", "exif_orientation", "true_x", "true_y"]


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "src"
    (root / "photos").mkdir(parents=True)
    (root / "depth").mkdir()
    gps = {piexif.GPSIFD.GPSLatitudeRef: b"N", piexif.GPSIFD.GPSLatitude: ((45, 1), (7, 1), (0, 1)),
           piexif.GPSIFD.GPSLongitudeRef: b"E", piexif.GPSIFD.GPSLongitude: ((9, 1), (0, 1), (0, 1))}
    # stored 80 x 60 with Orientation 6: upright it is a 60 x 80 portrait
    exif = piexif.dump({"0th": {piexif.ImageIFD.Orientation: 6},
                        "Exif": {piexif.ExifIFD.FocalLengthIn35mmFilm: 28}, "GPS": gps})
    v, u = np.mgrid[0:60, 0:80]  # smooth, so that JPEG keeps it and an offset crop shows
    ramp = np.stack([3 * u, 4 * v, np.full_like(u, 128)], -1).astype(np.uint8)
    Image.fromarray(ramp).save(root / "photos" / "p.jpg", exif=exif, quality=100)
    np.save(root / "depth" / "p.npy", np.arange(80 * 60, dtype=np.float32).reshape(80, 60))  # upright size
    exif = piexif.dump({"0th": {piexif.ImageIFD.Orientation: 1}, "Exif": {piexif.ExifIFD.FocalLengthIn35mmFilm: 28}})
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(root / "photos" / "l.jpg", exif=exif,
                                                                             quality=100)
    np.save(root / "depth" / "l.npy", np.arange(120 * 160, dtype=np.float32).reshape(120, 160))  # twice the size
    Image.fromarray(np.zeros((40, 80, 3), np.uint8)).save(root / "photos" / "pano.jpg")
    with open(root / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(FIELDS)
        w.writerow(["photos/p.jpg", "aerial/t.tif", "pinhole", "50.0", "depth/p.npy", "6", "1", "2"])
        w.writerow(["photos/l.jpg", "aerial/t.tif", "pinhole", "70.0", "depth/l.npy", "1", "1", "2"])
        w.writerow(["photos/pano.jpg", "aerial/t.tif", "pano", "", "", "1", "1", "2"])
    return root


def _rows(path):
    with open(path / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_wider_aspect_crops_rows_and_keeps_the_hfov(dataset, tmp_path):
    out = tmp_path / "wide"
    load_script("reframe_dataset").reframe_dataset(str(dataset), str(out), 16 / 9)
    rows = _rows(out)
    assert [r["photo"] for r in rows] == ["photos/p.jpg", "photos/l.jpg"]  # no panorama
    assert [float(r["hfov_deg"]) for r in rows] == [50.0, 70.0] and rows[0]["exif_orientation"] == "1"
    with Image.open(dataset / "photos" / "p.jpg") as src, Image.open(out / "photos" / "p.jpg") as dst:
        upright = np.asarray(ImageOps.exif_transpose(src), int)
        assert dst.size == (60, 34)  # 60 / (16 / 9) = 33.75 rows around the middle of 80
        errors = [np.abs(np.asarray(dst, int) - upright[top:top + 34]).mean() for top in (22, 23, 24)]
        assert errors[1] < 0.5 * min(errors[0], errors[2]), errors
    assert np.array_equal(np.load(out / "depth" / "p.npy"), np.load(dataset / "depth" / "p.npy")[23:57])
    assert np.load(out / "depth" / "l.npy").shape == (90, 160)  # a half-resolution photo's map, cropped alike
    exif = read_exif(out / "photos" / "p.jpg")
    assert exif.orientation == 1 and exif.lonlat == pytest.approx((9.0, 45.0 + 7 / 60))
    # the 35 mm-equivalent focal length grows with the smaller diagonal: the EXIF HFOV stays the photo's (up to
    # the tag's whole millimetres)
    full = GroundImage.load(dataset / "photos" / "l.jpg").hfov_deg
    assert GroundImage.load(out / "photos" / "l.jpg").hfov_deg == pytest.approx(full, abs=1.0)


def test_narrower_aspect_crops_columns_and_narrows_the_hfov(dataset, tmp_path):
    out = tmp_path / "portrait"
    load_script("reframe_dataset").reframe_dataset(str(dataset), str(out), 3 / 4)
    rows = _rows(out)
    with Image.open(out / "photos" / "l.jpg") as dst:
        assert dst.size == (45, 60)
    want = math.degrees(2 * math.atan(math.tan(math.radians(35.0)) * 45 / 80))
    assert float(rows[1]["hfov_deg"]) == pytest.approx(want, abs=1e-3)
    from_exif = GroundImage.load(dataset / "photos" / "l.jpg").hfov_deg  # 63.4°: EXIF and manifest disagree here
    narrower = math.degrees(2 * math.atan(math.tan(math.radians(from_exif / 2)) * 45 / 80))
    assert GroundImage.load(out / "photos" / "l.jpg").hfov_deg == pytest.approx(narrower, abs=1.0)
    assert np.load(out / "depth" / "l.npy").shape == (120, 90)
    assert float(rows[0]["hfov_deg"]) == 50.0  # the upright portrait is 3:4 already


def test_bad_aspect_and_no_pinholes_are_refused(dataset, tmp_path):
    script = load_script("reframe_dataset")
    with pytest.raises(argparse.ArgumentTypeError, match="W:H"):
        script.parse_aspect("wide")
    (tmp_path / "panos").mkdir()
    (tmp_path / "panos" / "manifest.csv").write_text("photo,camera\nphotos/pano.jpg,pano\n")
    with pytest.raises(SystemExit, match="no pinhole"):
        script.reframe_dataset(str(tmp_path / "panos"), str(tmp_path / "x"), 16 / 9)
