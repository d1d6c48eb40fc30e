"""Manifest (docs/manifest.md): typed rows, paths relative to the folder, extras kept, bad rows named by line."""

import os

import pytest

from loc2_engine.manifest import MANIFEST_COLUMNS, ManifestError, ManifestRow, read_manifest, write_manifest

HEADER = ",".join(MANIFEST_COLUMNS) + ",town\n"
GOOD = ("photos/a.jpg,aerial/t.tif,pano,,EPSG:32633,500010.5,5000020,25,,,500011,5000021.25,91.5,"
        "depth/a.npy,alpha\n"
        "photos/b.jpg,aerial/t.tif,pinhole,62.5,EPSG:32633,,,25,180,20,,,,,beta\n")


def _manifest(tmp_path, body, header=HEADER):
    path = tmp_path / "manifest.csv"
    path.write_text(header + body, encoding="utf-8")
    return path


def test_read_typed_rows(tmp_path):
    a, b = read_manifest(_manifest(tmp_path, GOOD))
    assert a.photo == os.path.join(str(tmp_path), "photos", "a.jpg") and a.depth.endswith("depth/a.npy")
    assert a.camera == "pano" and a.hfov_deg is None and a.crs == "EPSG:32633"
    assert a.prior_xy == (500010.5, 5000020.0) and a.true_xy == (500011.0, 5000021.25)
    assert a.true_heading_deg == 91.5 and a.radius_m == 25.0 and a.extra == {"town": "alpha"} and a.line == 2
    assert b.prior_xy is None and b.true_xy is None and b.depth is None
    assert (b.hfov_deg, b.heading_prior_deg, b.heading_tolerance_deg) == (62.5, 180.0, 20.0) and b.line == 3


def test_round_trip_keeps_values_relative_paths_and_extras(tmp_path):
    rows = read_manifest(_manifest(tmp_path, GOOD))
    out = tmp_path / "copy.csv"
    write_manifest(out, rows)
    text = out.read_text(encoding="utf-8")
    assert text.splitlines()[0] == HEADER.strip() and "photos/a.jpg" in text and str(tmp_path) not in text
    again = read_manifest(out)
    assert [(r.__dict__ | {"line": 0}) for r in again] == [(r.__dict__ | {"line": 0}) for r in rows]


def test_write_accepts_dicts_and_rows(tmp_path):
    out = tmp_path / "m.csv"
    write_manifest(out, [{"photo": "p/x.jpg", "camera": "pano", "crs": "EPSG:4326", "prior_x": "10.5",
                          "prior_y": "50.25", "note": "hello, world"},
                         ManifestRow(photo=str(tmp_path / "p" / "y.jpg"), hfov_deg=0.1 + 0.2)])
    x, y = read_manifest(out)
    assert x.prior_xy == (10.5, 50.25) and x.extra == {"note": "hello, world"}
    assert y.photo == str(tmp_path / "p" / "y.jpg") and y.hfov_deg == 0.1 + 0.2 and y.extra == {"note": ""}


def test_minimal_header_and_bom(tmp_path):
    path = tmp_path / "manifest.csv"
    path.write_bytes("\ufeffphoto\nimg.jpg\n".encode("utf-8"))
    (row,) = read_manifest(path)
    assert row.photo == os.path.join(str(tmp_path), "img.jpg") and row.aerial is None and row.camera is None


@pytest.mark.parametrize("body,match", [
    ("photos/a.jpg,,pano,,EPSG:32633,12 345,5000020,,,,,,,,\n", r"line 2: prior_x '12 345' is not a number"),
    (",aerial/t.tif,pano,,,,,,,,,,,,\n", r"line 2 has an empty 'photo'"),
    ("a.jpg,,fisheye,,,,,,,,,,,,\n", r"line 2: camera 'fisheye'"),
    ("a.jpg,,,,EPSG:32633,1,,,,,,,,,\n", r"prior_x and prior_y must both"),
    ("a.jpg,,,,,1,2,,,,,,,,\n", r"empty 'crs' cell"),
    ("a.jpg,,,,EPSG:999999,1,2,,,,,,,,\n", r"crs 'EPSG:999999' is not a CRS"),
    ("a.jpg,,,190,,,,,,,,,,,\n", r"hfov_deg 190 must be between"),
    ("a.jpg,,,,,,,-5,,,,,,,\n", r"radius_m -5 must be a positive"),
    ("a.jpg,,,,,,,,,30,,,,,\n", r"heading_tolerance_deg but no heading_prior_deg"),
    ("a.jpg,,,,,,,,,,,,,,,x,y\n", r"more cells than the header"),
    ("a.jpg,,,,,,,,nan,,,,,,\n", r"not a finite number"),
])
def test_bad_rows_name_file_line_and_column(tmp_path, body, match):
    path = _manifest(tmp_path, body)
    with pytest.raises(ManifestError, match=match) as err:
        read_manifest(path)
    assert str(path) in str(err.value) and err.value.code == "manifest"


def test_bad_row_after_good_rows_reports_its_own_line(tmp_path):
    body = GOOD + "c.jpg,,pano,,,,,,,,,,,,\n" + "x.jpg,,,,,1,2,,,,,,,,\n"
    with pytest.raises(ManifestError, match="line 5 has coordinates"):
        read_manifest(_manifest(tmp_path, body))


def test_missing_file_and_missing_photo_column(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "nope.csv")
    with pytest.raises(ManifestError, match="no 'photo' column"):
        read_manifest(_manifest(tmp_path, "a.jpg\n", header="image\n"))
