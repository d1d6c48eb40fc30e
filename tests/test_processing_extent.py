"""loc2:georeferencephotos with a search extent and with corrected copies of the photos: a photo without any
prior position is searched for in the EXTENT (in the aerial layer's CRS, clipped to it) while the others keep
their priors, an extent too large for the model is refused before the run, and WRITE_EXIF writes the ok poses
into copies (exiftool; skipped cleanly without it) and never touches the originals."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyproj
import pytest
from qgis.core import QgsProcessingException

from batch_fixtures import CRS, OFFSET_M, ExtentFake, make_folder, write_photo, write_raster
from loc2_engine import pipeline
from test_processing import ALG, features, provider  # noqa: F401 (fixture)

needs_exiftool = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed (make setup)")


@pytest.fixture
def extent_fake(monkeypatch):
    fake = ExtentFake()
    monkeypatch.setattr(pipeline, "Localizer", lambda **kw: fake)
    return fake


def _rows(layer):
    rows, names = features(layer)
    return {Path(a[names.index("photo")]).name: dict(zip(names, a)) for a, _, _ in rows}


@pytest.mark.inqgis
def test_photos_without_a_prior_are_searched_in_the_extent_the_others_around_their_prior(provider, extent_fake,
                                                                                        tmp_path):
    import processing

    folder, raster, _ = make_folder(tmp_path)
    # in WGS84 degrees, reaching beyond the raster's east edge (500 000 .. 500 200 m of UTM 33N)
    to_lonlat = pyproj.Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    (lon0, lat0), (lon1, lat1) = to_lonlat.transform(500_080.0, 5_000_060.0), to_lonlat.transform(500_400.0,
                                                                                                   5_000_140.0)
    result = processing.run(ALG, {"FOLDER": str(folder), "AERIAL": raster, "HEADING_MODE": 2, "HEADING": 90.0,
                                  "EXTENT": f"{lon0},{lon1},{lat0},{lat1} [EPSG:4326]",
                                  "CAMERA_POSES": "TEMPORARY_OUTPUT"})
    # noexif.jpg has no GPS: searched in the extent instead of failing; the broken photos still fail
    assert [call[0] for call in extent_fake.extent_calls] == ["noexif.jpg"]
    _name, extent, crs, heading = extent_fake.extent_calls[0]
    assert crs == CRS and heading == 90.0
    # the extent in the raster's CRS (its bounding box there), clipped at the raster's east edge
    assert extent[2] == pytest.approx(500_200.0, abs=1e-6)
    assert extent[0] == pytest.approx(500_080.0, abs=1.0) and extent[1] == pytest.approx(5_000_060.0, abs=1.0)
    assert extent[3] == pytest.approx(5_000_140.0, abs=1.0)
    rows = _rows(result["CAMERA_POSES"])
    centre = ((extent[0] + extent[2]) / 2 + OFFSET_M[0], (extent[1] + extent[3]) / 2 + OFFSET_M[1])
    assert rows["noexif.jpg"]["status"] == "ok"
    assert (rows["noexif.jpg"]["x"], rows["noexif.jpg"]["y"]) == pytest.approx(centre, abs=0.05)
    assert rows["p01.jpg"]["x"] == pytest.approx(500_050.0 + OFFSET_M[0], abs=0.05)  # around its EXIF GPS
    assert rows["zero.jpg"]["status"] == "failed" and rows["outside.jpg"]["status"] == "failed"
    assert (result["OK_COUNT"], result["FAILED_COUNT"], result["EXIF_WRITTEN_COUNT"]) == (4, 4, 0)


@pytest.mark.inqgis
def test_a_point_without_geometry_uses_the_extent_and_one_with_geometry_its_point(provider, extent_fake, tmp_path):
    import processing
    from qgis.core import QgsFeature, QgsGeometry, QgsPointXY, QgsVectorLayer

    raster = write_raster(tmp_path / "aerial.tif")
    placed, unplaced = write_photo(tmp_path / "placed.jpg"), write_photo(tmp_path / "unplaced.jpg", seed=1)
    points = QgsVectorLayer(f"Point?crs={CRS}&field=photo:string", "photos", "memory")
    for photo, xy in ((placed, (500_120.0, 5_000_140.0)), (unplaced, None)):
        feature = QgsFeature(points.fields())
        feature["photo"] = photo
        if xy is not None:
            feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(*xy)))
        points.dataProvider().addFeature(feature)
    result = processing.run(ALG, {"POINTS": points, "AERIAL": raster, "CAMERA_POSES": "TEMPORARY_OUTPUT",
                                  "EXTENT": "500010,500060,5000010,5000060"})  # no CRS: the project's / raster's
    assert [call[0] for call in extent_fake.extent_calls] == ["unplaced.jpg"]
    assert extent_fake.extent_calls[0][1] == pytest.approx((500_010.0, 5_000_010.0, 500_060.0, 5_000_060.0))
    rows = _rows(result["CAMERA_POSES"])
    assert rows["placed.jpg"]["x"] == pytest.approx(500_120.0 + OFFSET_M[0], abs=0.05)
    assert rows["unplaced.jpg"]["x"] == pytest.approx(500_035.0 + OFFSET_M[0], abs=0.05)


@pytest.mark.inqgis
@pytest.mark.parametrize("extent, words", [
    ("400000,401000,4000000,4001000", "does not overlap the aerial layer"),
    # 700 m x 700 m of 64 m windows (22 m radius): 23 x 23 windows
    ("500000,500700,4999500,5000200", "would need 529 windows .* the largest it searches is 400 windows"),
])
def test_an_unusable_extent_is_refused_before_the_run(provider, extent_fake, tmp_path, extent, words):
    import processing

    photos = tmp_path / "photos"
    photos.mkdir()
    write_photo(photos / "a.jpg")
    raster = write_raster(tmp_path / "aerial.tif", n=700)
    with pytest.raises(QgsProcessingException, match=words):
        processing.run(ALG, {"FOLDER": str(photos), "AERIAL": raster, "EXTENT": f"{extent} [{CRS}]",
                             "CAMERA_POSES": str(tmp_path / "poses.gpkg")})
    assert not extent_fake.extent_calls and not (tmp_path / "poses.gpkg").exists()


@pytest.mark.inqgis
def test_writing_copies_needs_a_folder(provider, tmp_path):
    from qgis.core import QgsApplication, QgsProcessingContext

    alg = QgsApplication.processingRegistry().createAlgorithmById(ALG)
    folder, raster, _ = make_folder(tmp_path)
    ok, message = alg.checkParameterValues({"FOLDER": str(folder), "AERIAL": raster, "WRITE_EXIF": True,
                                            "CAMERA_POSES": "TEMPORARY_OUTPUT"}, QgsProcessingContext())
    assert not ok and "'Folder for the corrected copies'" in message


@pytest.mark.inqgis
@needs_exiftool
def test_ok_poses_are_written_into_copies_and_the_originals_stay(provider, extent_fake, tmp_path):
    import processing

    from loc2_engine.exif import read_exif

    folder, raster, _ = make_folder(tmp_path)
    originals = {p.name: p.read_bytes() for p in folder.iterdir()}
    copies = tmp_path / "corrected"
    result = processing.run(ALG, {"FOLDER": str(folder), "AERIAL": raster, "CAMERA_POSES": "TEMPORARY_OUTPUT",
                                  "WRITE_EXIF": True, "EXIF_FOLDER": str(copies)})
    rows = _rows(result["CAMERA_POSES"])
    ok = sorted(name for name, row in rows.items() if row["status"] == "ok")
    assert ok == ["p01.jpg", "p02.JPG", "p03.png"] and result["EXIF_WRITTEN_COUNT"] == 3
    assert result["EXIF_FOLDER"] == str(copies) and sorted(p.name for p in copies.iterdir()) == ok
    for name in ok:
        assert read_exif(copies / name).lonlat == pytest.approx((rows[name]["lon"], rows[name]["lat"]), abs=1e-6)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == originals  # nothing written in place
