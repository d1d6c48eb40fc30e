"""EXIF reading: round trips through piexif-written JPEGs, garbage tags, broken files, HFOV from optics."""

import numpy as np
import piexif
import pytest
from PIL import Image

from loc2_engine.errors import PhotoError
from loc2_engine.exif import ExifInfo, read_exif


def _dms(deg):
    d = int(deg)
    m = int((deg - d) * 60)
    s = round(((deg - d) * 60 - m) * 60 * 1000)
    return ((d, 1), (m, 1), (s, 1000))


def _write(path, exif_dict, size=(64, 48)):
    Image.fromarray(np.full((size[1], size[0], 3), 128, np.uint8)).save(
        path, "JPEG", exif=piexif.dump(exif_dict))
    return path


def test_round_trip_all_fields(tmp_path):
    path = _write(tmp_path / "a.jpg", {
        "0th": {piexif.ImageIFD.Orientation: 6, piexif.ImageIFD.Make: b"ACME\x00",
                piexif.ImageIFD.Model: b" Cam 1 "},
        "Exif": {piexif.ExifIFD.FocalLength: (45, 10), piexif.ExifIFD.FocalLengthIn35mmFilm: 28,
                 piexif.ExifIFD.FocalPlaneXResolution: (4000, 1),
                 piexif.ExifIFD.FocalPlaneResolutionUnit: 3, piexif.ExifIFD.PixelXDimension: 2400},
        "GPS": {piexif.GPSIFD.GPSLatitudeRef: b"S", piexif.GPSIFD.GPSLatitude: _dms(33.8568),
                piexif.GPSIFD.GPSLongitudeRef: b"W", piexif.GPSIFD.GPSLongitude: _dms(70.6693),
                piexif.GPSIFD.GPSAltitudeRef: 1, piexif.GPSIFD.GPSAltitude: (125, 10),
                piexif.GPSIFD.GPSImgDirectionRef: b"M", piexif.GPSIFD.GPSImgDirection: (2705, 10)},
    })
    info = read_exif(path)
    assert info.orientation == 6 and info.swaps_axes
    assert info.make == "ACME" and info.model == "Cam 1"
    assert info.focal_mm == pytest.approx(4.5) and info.focal_35mm == pytest.approx(28)
    assert info.sensor_width_mm == pytest.approx(2400 / 4000 * 10.0)  # PixelXDimension / res * cm
    lon, lat = info.lonlat
    assert lat == pytest.approx(-33.8568, abs=1e-6) and lon == pytest.approx(-70.6693, abs=1e-6)
    assert info.altitude == pytest.approx(-12.5)
    assert info.gps_heading_deg == pytest.approx(270.5) and info.gps_heading_ref == "M"
    assert (info.width, info.height) == (64, 48)


def test_no_exif_gives_empty_info(tmp_path):
    path = tmp_path / "plain.png"
    Image.new("RGB", (10, 20)).save(path)
    info = read_exif(path)
    assert info == ExifInfo(width=10, height=20)


def test_garbage_tags_are_none_not_errors(tmp_path):
    path = _write(tmp_path / "g.jpg", {
        "0th": {piexif.ImageIFD.Orientation: 42},
        "Exif": {piexif.ExifIFD.FocalLength: (10, 0), piexif.ExifIFD.FocalLengthIn35mmFilm: 0},
        "GPS": {piexif.GPSIFD.GPSLatitudeRef: b"Q", piexif.GPSIFD.GPSLatitude: _dms(10.0),
                piexif.GPSIFD.GPSLongitudeRef: b"E", piexif.GPSIFD.GPSLongitude: ((1, 0), (0, 1), (0, 1)),
                piexif.GPSIFD.GPSImgDirection: (4000, 1)},
    })
    info = read_exif(path)
    assert info.orientation is None and info.focal_mm is None and info.focal_35mm is None
    assert info.lonlat is None and info.gps_heading_deg is None


def test_void_fix_and_null_island_are_no_position(tmp_path):
    zero = ((0, 1), (0, 1), (0, 1))
    a = _write(tmp_path / "zero.jpg", {"GPS": {piexif.GPSIFD.GPSLatitudeRef: b"N", piexif.GPSIFD.GPSLatitude: zero,
                                               piexif.GPSIFD.GPSLongitudeRef: b"E", piexif.GPSIFD.GPSLongitude: zero}})
    b = _write(tmp_path / "void.jpg", {"GPS": {piexif.GPSIFD.GPSStatus: b"V",
                                               piexif.GPSIFD.GPSLatitudeRef: b"N", piexif.GPSIFD.GPSLatitude: _dms(48),
                                               piexif.GPSIFD.GPSLongitudeRef: b"E", piexif.GPSIFD.GPSLongitude: _dms(2)}})
    assert read_exif(a).lonlat is None and read_exif(b).lonlat is None


@pytest.mark.parametrize("content,match", [
    (None, "does not exist"), (b"", "empty file"), (b"\x13\x37" * 500, "not an image"),
])
def test_broken_files_raise_photo_error(tmp_path, content, match):
    path = tmp_path / "broken.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PhotoError, match=match) as err:
        read_exif(path)
    assert str(path) in str(err.value)
