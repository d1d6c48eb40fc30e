"""`loc2 exif write`: the GeoPackage's poses written into the photos with exiftool, read back by exiftool, by
the engine's own EXIF reader and by QGIS's "Import geotagged photos"; other metadata kept, copies by default."""

from __future__ import annotations

import json
import math
import shutil
import struct
import subprocess
from pathlib import Path

import piexif
import pytest
from PIL import Image, ImageCms

from loc2_engine.cli import main
from loc2_engine.exif import read_exif
from loc2_engine.confidence import RADIUS_68
from loc2_engine.exif_write import positioning_error_m, tag_arguments, Pose
from loc2_engine.gpkg import GeoPackageWriter
from loc2_engine.result import Result

pytestmark = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed (make setup)")

CRS = "EPSG:4326"
MAKER_NOTE = b"LOC2TESTMAKERNOTE\x00\x01\x02\x03"
XMP_MARK = "loc2-test-keeps-this-packet"
ORIGINAL_LONLAT = (15.5, 45.25)
#: photo -> (status, lon, lat, heading, sigma_m); the southern/western ones check the refs
POSES = {
    "ok_a.jpg": ("ok", 15.5012345, 45.2512345, 123.45, 2.0),
    "ok_b.jpg": ("ok", -70.6543219, -33.4412347, 359.99, 0.7),
    "low.jpg": ("low_confidence", 2.3456789, 48.8765432, 10.0, 5.0),
    "failed.jpg": ("failed", math.nan, math.nan, math.nan, math.nan),
}


def _rational(value: float, den: int = 10000):
    return (int(round(value * den)), den)


def _dms(value: float):
    deg = int(value)
    minutes = int((value - deg) * 60)
    return ((deg, 1), (minutes, 1), _rational((value - deg - minutes / 60) * 3600, 1000))


def _xmp_segment() -> bytes:
    packet = ('<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
              '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
              f'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag><rdf:li>{XMP_MARK}</rdf:li>'
              '</rdf:Bag></dc:subject></rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>').encode()
    body = b"http://ns.adobe.com/xap/1.0/\x00" + packet
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def write_photo(path, icc: bytes) -> None:
    """A 64×48 JPEG with an ICC profile, Orientation 6, a MakerNote, an XMP packet and a camera GPS fix."""
    lon, lat = ORIGINAL_LONLAT
    exif = {"0th": {piexif.ImageIFD.Orientation: 6, piexif.ImageIFD.Make: b"TestCam"},
            "Exif": {piexif.ExifIFD.MakerNote: MAKER_NOTE, piexif.ExifIFD.FocalLength: (50, 10)},
            "GPS": {piexif.GPSIFD.GPSLatitudeRef: b"N", piexif.GPSIFD.GPSLatitude: _dms(lat),
                    piexif.GPSIFD.GPSLongitudeRef: b"E", piexif.GPSIFD.GPSLongitude: _dms(lon),
                    piexif.GPSIFD.GPSImgDirectionRef: b"M", piexif.GPSIFD.GPSImgDirection: (9000, 100)}}
    Image.new("RGB", (64, 48), (90, 140, 200)).save(path, "JPEG", exif=piexif.dump(exif), icc_profile=icc,
                                                    quality=90)
    data = path.read_bytes()
    path.write_bytes(data[:2] + _xmp_segment() + data[2:])  # right after SOI; PIL 9 cannot write XMP


@pytest.fixture
def icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture
def scene(tmp_path, icc):
    """photos/ with the photos of POSES (relative paths in the GeoPackage), and poses.gpkg next to them."""
    photos = tmp_path / "photos"
    photos.mkdir()
    gpkg = tmp_path / "poses.gpkg"
    with GeoPackageWriter(gpkg, CRS) as writer:
        for name, (status, lon, lat, heading, sigma) in POSES.items():
            write_photo(photos / name, icc)
            writer.write(Result(photo=name, status=status, crs=CRS, x=lon, y=lat, lon=lon, lat=lat,
                                heading_deg=heading, heading_grid_deg=heading, confidence=0.8, sigma_m=sigma,
                                model="fake", error="" if status != "failed" else "no match"))
    return tmp_path, photos, gpkg


def exiftool_json(path) -> dict:
    out = subprocess.run(["exiftool", "-json", "-n", "-G1", "-a", "-b", "--", str(path)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)[0]


def loc2_record(path) -> dict:
    """The XMP-loc2 properties, read from the raw XMP (no exiftool config needed)."""
    out = subprocess.run(["exiftool", "-json", "-n", "-XMP:all", "-G1", "--", str(path)], capture_output=True,
                         text=True, check=True)
    return {k.split(":", 1)[1]: v for k, v in json.loads(out.stdout)[0].items() if k.startswith("XMP-loc2:")}


def signed(tags: dict, axis: str) -> float:
    value = tags[f"GPS:GPS{axis}"]
    ref = tags[f"GPS:GPS{axis}Ref"]
    return -value if ref in ("S", "W") else value


def test_positioning_error_is_the_68_percent_radius():
    assert positioning_error_m(2.0) == pytest.approx(3.02)
    assert positioning_error_m(0.7) == pytest.approx(1.06)  # 1.057 to the centimetre
    assert positioning_error_m(None) is None
    assert RADIUS_68 == pytest.approx(math.sqrt(-2 * math.log(0.32)), abs=0.005)


def test_no_position_is_refused_per_photo():
    from loc2_engine.exif_write import ExifWriteError

    with pytest.raises(ExifWriteError, match="no longitude/latitude"):
        tag_arguments(Pose("x.jpg", None, None, 10.0, 1.0, 0.5, "ok", "m"), None)


def test_copies_with_positions_headings_errors_and_provenance(scene, capsys):
    root, photos, gpkg = scene
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    assert main(["exif", "write", str(gpkg), "--photos-root", str(photos)]) == 0
    out_dir = root / "corrected"
    assert sorted(p.name for p in out_dir.iterdir()) == ["ok_a.jpg", "ok_b.jpg"]  # ok only by default
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before  # originals untouched
    assert "2 photo(s) written" in capsys.readouterr().out

    for name in ("ok_a.jpg", "ok_b.jpg"):
        status, lon, lat, heading, sigma = POSES[name]
        tags = exiftool_json(out_dir / name)
        assert signed(tags, "Latitude") == pytest.approx(lat, abs=2e-7)
        assert signed(tags, "Longitude") == pytest.approx(lon, abs=2e-7)
        assert tags["GPS:GPSImgDirection"] == pytest.approx(heading, abs=0.006)
        assert tags["GPS:GPSImgDirectionRef"] == "T"
        assert tags["GPS:GPSHPositioningError"] == pytest.approx(RADIUS_68 * sigma, abs=0.006)
        info = read_exif(out_dir / name)  # the engine's own reader
        assert info.lonlat == pytest.approx((lon, lat), abs=2e-7)
        assert info.gps_heading_deg == pytest.approx(heading, abs=0.006) and info.gps_heading_ref == "T"

        record = loc2_record(out_dir / name)
        assert record["Method"] == "Loc²" and record["Model"] == "fake" and record["Status"] == "ok"
        assert record["Confidence"] == pytest.approx(0.8) and record["SigmaM"] == pytest.approx(sigma)
        assert (record["OriginalLongitude"], record["OriginalLatitude"]) == pytest.approx(ORIGINAL_LONLAT,
                                                                                            abs=1e-6)
        assert record["OriginalImgDirection"] == pytest.approx(90.0) and record["OriginalImgDirectionRef"] == "M"


def test_other_metadata_is_kept(scene, icc):
    root, photos, gpkg = scene
    assert main(["exif", "write", str(gpkg), "--photos-root", str(photos)]) == 0
    copy = root / "corrected" / "ok_a.jpg"
    with Image.open(copy) as img:
        assert img.info["icc_profile"] == icc
        exif = piexif.load(img.info["exif"])
        assert img.size == (64, 48)
    assert exif["0th"][piexif.ImageIFD.Orientation] == 6
    assert exif["0th"][piexif.ImageIFD.Make] == b"TestCam"
    assert exif["Exif"][piexif.ExifIFD.MakerNote] == MAKER_NOTE
    assert exif["Exif"][piexif.ExifIFD.FocalLength] == (50, 10)
    assert exiftool_json(copy)["XMP-dc:Subject"] == XMP_MARK
    with Image.open(copy) as a, Image.open(photos / "ok_a.jpg") as b:
        assert a.tobytes() == b.tobytes()  # the image data is not re-encoded


def test_all_adds_low_confidence_but_never_failed(scene):
    root, photos, gpkg = scene
    out = root / "elsewhere"
    assert main(["exif", "write", str(gpkg), "--photos-root", str(photos), "--all", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["low.jpg", "ok_a.jpg", "ok_b.jpg"]
    assert loc2_record(out / "low.jpg")["Status"] == "low_confidence"


def test_in_place_rewrites_the_originals_and_keeps_the_first_original_position(scene):
    root, photos, gpkg = scene
    failed_before = (photos / "failed.jpg").read_bytes()
    for _ in range(2):  # a second run must not record Loc²'s own position as the original
        assert main(["exif", "write", str(gpkg), "--photos-root", str(photos), "--in-place"]) == 0
    assert not (root / "corrected").exists()
    assert not list(photos.glob("*_original"))  # -overwrite_original leaves no backups
    status, lon, lat, heading, sigma = POSES["ok_a.jpg"]
    assert read_exif(photos / "ok_a.jpg").lonlat == pytest.approx((lon, lat), abs=2e-7)
    record = loc2_record(photos / "ok_a.jpg")
    assert (record["OriginalLongitude"], record["OriginalLatitude"]) == pytest.approx(ORIGINAL_LONLAT, abs=1e-6)
    assert read_exif(photos / "low.jpg").lonlat == pytest.approx(ORIGINAL_LONLAT, abs=1e-6)
    assert (photos / "failed.jpg").read_bytes() == failed_before


def test_a_missing_photo_is_reported_and_the_others_written(scene, capsys):
    root, photos, gpkg = scene
    (photos / "ok_a.jpg").unlink()
    assert main(["exif", "write", str(gpkg), "--photos-root", str(photos)]) == 0
    captured = capsys.readouterr()
    assert "ok_a.jpg" in captured.err and "does not exist" in captured.err
    assert "1 photo(s) written" in captured.out and "1 failed" in captured.out
    assert [p.name for p in (root / "corrected").iterdir()] == ["ok_b.jpg"]


def test_a_photo_exiftool_refuses_is_reported(scene, capsys):
    root, photos, gpkg = scene
    (photos / "ok_a.jpg").write_bytes(b"\xff\xd8 this is not a jpeg any more")
    assert main(["exif", "write", str(gpkg), "--photos-root", str(photos)]) == 0
    err = capsys.readouterr().err
    assert "ok_a.jpg" in err
    assert (root / "corrected" / "ok_b.jpg").is_file()


def test_could_not_run_exits_2(tmp_path, capsys, monkeypatch):
    assert main(["exif", "write", str(tmp_path / "none.gpkg")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "x.gpkg").write_bytes(b"not a geopackage")
    assert main(["exif", "write", str(tmp_path / "x.gpkg")]) == 2
    assert "no camera_poses layer" in capsys.readouterr().err
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert main(["exif", "write", str(tmp_path / "x.gpkg")]) == 2
    assert "libimage-exiftool-perl" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["exif", "write", str(tmp_path / "x.gpkg"), "--in-place", "--out", str(tmp_path)])
    assert exc.value.code == 2


@pytest.mark.inqgis
def test_qgis_import_photos_reads_the_written_positions_and_headings(scene, qgis_processing):
    import processing

    root, photos, gpkg = scene
    assert main(["exif", "write", str(gpkg), "--photos-root", str(photos), "--all"]) == 0
    result = processing.run("native:importphotos", {"FOLDER": str(root / "corrected"), "RECURSIVE": False,
                                                    "OUTPUT": "memory:"})
    layer = result["OUTPUT"]
    got = {Path(f["photo"]).name: (f.geometry().asPoint(), f["direction"]) for f in layer.getFeatures()}
    assert sorted(got) == ["low.jpg", "ok_a.jpg", "ok_b.jpg"]
    for name, (point, direction) in got.items():
        status, lon, lat, heading, sigma = POSES[name]
        assert (point.x(), point.y()) == pytest.approx((lon, lat), abs=2e-7)
        assert direction == pytest.approx(heading, abs=0.006)
