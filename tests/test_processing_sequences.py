"""The Processing algorithm's captures (SEQUENCES): the engine's sequence pass over the run's results, the
seq_* fields of Camera poses, the Trajectory output (styled when loaded, rows replaced in an existing
GeoPackage) and the poses of photos an earlier run wrote; and the in-memory pass reading the same records
as the GeoPackage pass."""

from __future__ import annotations

import math

import numpy as np
import piexif
import pytest
from osgeo import ogr
from qgis.core import QgsProcessingFeedback, QgsProject, QgsVectorLayer
from qgis.PyQt.QtGui import QColor

from batch_fixtures import CRS, OFFSET_M, write_photo, write_raster
from loc2_engine import pipeline
from loc2_engine.gpkg import SEQUENCE_FIELDS, GeoPackageWriter, layer_rows, rival_rows
from loc2_engine.sequences import PhotoTiming, pose_record, run_sequence_pass, smooth_captures
import test_processing
from test_processing import ALG, Warnings
from test_sequences import WrongFourth, manifest_rows, pose

provider = test_processing.provider  # the fixture that registers the Loc² provider

SEQ = [name for name, _ in SEQUENCE_FIELDS]
#: the capture: 8 photos 4 m apart going east, 2 s apart; s03.jpg is localized 20 m off by `WrongFourth`
STREET = {f"s{k:02d}.jpg": ((500_040.0 + 4.0 * k, 5_000_100.0), f"2024:06:01 10:00:{2 * k:02d}") for k in range(8)}


def capture_folder(root):
    """photos/ with the STREET capture (EXIF GPS and time) and one photo ten minutes later; aerial.tif."""
    folder = root / "photos"
    folder.mkdir()
    shots = dict(STREET, **{"later.jpg": ((500_120.0, 5_000_060.0), "2024:06:01 10:10:00")})
    for k, (name, (xy, when)) in enumerate(shots.items()):
        path = write_photo(folder / name, xy, seed=k)
        exif = piexif.load(path)
        exif["Exif"][piexif.ExifIFD.DateTimeOriginal] = when.encode()
        piexif.insert(piexif.dump(exif), path)
    return folder, write_raster(root / "aerial.tif")


@pytest.fixture
def wrong_fourth(monkeypatch):
    monkeypatch.setattr(pipeline, "Localizer", lambda **kw: WrongFourth())


def by_photo(layer):
    return {f["photo"].split("/")[-1]: f for f in layer.getFeatures()}


class CancelAfter(QgsProcessingFeedback):
    """Cancels once ``n`` of ``total`` photos are done."""

    def __init__(self, n: int, total: int):
        super().__init__()
        self.n, self.total = n, total

    def setProgress(self, progress):
        super().setProgress(progress)
        if progress >= self.n * 100 / self.total - 1e-6:
            self.cancel()


@pytest.mark.inqgis
def test_sequences_fill_the_seq_fields_and_the_trajectory(provider, wrong_fourth, tmp_path):
    import processing

    folder, raster = capture_folder(tmp_path)
    params = {"FOLDER": str(folder), "AERIAL": raster, "CAMERA_POSES": "TEMPORARY_OUTPUT",
              "TRAJECTORY": "TEMPORARY_OUTPUT", "SEQUENCES": True}
    result = processing.run(ALG, params)
    assert (result["OK_COUNT"], result["CAPTURE_COUNT"], result["OVERRULED_COUNT"]) == (9, 1, 1)
    poses = by_photo(result["CAMERA_POSES"])
    assert set(SEQ) <= set(result["CAMERA_POSES"].fields().names())
    wrong = poses["s03.jpg"]
    assert wrong["seq_overruled"] == 1 and wrong["sequence"] == "s00"
    # the capture took its rival, the right pose; its own pose stays as the photo gave it
    assert math.hypot(wrong["seq_x"] - (wrong["x"] - 20.0), wrong["seq_y"] - wrong["y"]) < 1.0
    assert wrong.geometry().asPoint().x() == pytest.approx(wrong["x"])
    for name, (xy, _) in STREET.items():
        if name != "s03.jpg":
            assert poses[name]["seq_overruled"] == 0, name
            assert math.hypot(poses[name]["seq_x"] - xy[0] - OFFSET_M[0],
                              poses[name]["seq_y"] - xy[1] - OFFSET_M[1]) < 0.5, name
    later = poses["later.jpg"]  # ten minutes later: a capture of its own, its own pose
    assert later["sequence"] == "later" and later["seq_x"] == pytest.approx(later["x"])
    lines = list(result["TRAJECTORY"].getFeatures())
    assert len(lines) == 1 and result["TRAJECTORY"].crs().authid() == CRS
    assert (lines[0]["sequence"], lines[0]["photos"], lines[0]["overruled"]) == ("s00", 8, 1)
    assert lines[0]["length_m"] == pytest.approx(28.0, abs=1.0)
    assert len(lines[0].geometry().asPolyline()) == 8

    plain = processing.run(ALG, dict(params, SEQUENCES=False))  # without: no trajectory, no seq_* fields
    assert "TRAJECTORY" not in plain and "seq_x" not in plain["CAMERA_POSES"].fields().names()


@pytest.mark.inqgis
def test_a_resumed_geopackage_smooths_every_photo_and_replaces_its_trajectory(provider, wrong_fourth, tmp_path):
    """The first run is cancelled after 5 photos (later.jpg, and s00-s03: its capture); the second appends the
    others and smooths the whole capture, s03 read back from the file (its own pose, no rival: an outlier
    placed by its neighbours), replacing the first run's line of the same capture."""
    import processing

    folder, raster = capture_folder(tmp_path)
    gpkg = str(tmp_path / "out.gpkg")
    params = {"FOLDER": str(folder), "AERIAL": raster, "CAMERA_POSES": gpkg, "TRAJECTORY": gpkg, "SEQUENCES": True}
    first = processing.run(ALG, params, feedback=CancelAfter(5, 9))
    assert first["OK_COUNT"] == 5 and first["CAPTURE_COUNT"] == 1
    assert [f["photos"] for f in QgsVectorLayer(f"{gpkg}|layername=trajectory").getFeatures()] == [4]
    second = processing.run(ALG, params)
    assert second["SKIPPED_COUNT"] == 5 and second["OK_COUNT"] == 4 and second["CAPTURE_COUNT"] == 1
    assert second["OVERRULED_COUNT"] == 1
    poses = by_photo(QgsVectorLayer(f"{gpkg}|layername=camera_poses"))
    assert len(poses) == 9 and all(poses[name]["sequence"] == "s00" for name in STREET)
    wrong = poses["s03.jpg"]
    assert wrong["seq_overruled"] == 1
    assert math.hypot(wrong["seq_x"] - (wrong["x"] - 20.0), wrong["seq_y"] - wrong["y"]) < 1.5
    lines = [(f["sequence"], f["photos"]) for f in QgsVectorLayer(f"{gpkg}|layername=trajectory").getFeatures()]
    assert lines == [("s00", 8)]
    ds = ogr.Open(gpkg)
    styles = [f["f_table_name"] for f in ds.GetLayerByName("layer_styles")]
    assert styles.count("trajectory") == 1 and styles.count("camera_poses") == 1


@pytest.mark.inqgis
def test_the_loaded_trajectory_has_the_loc2_style(provider, wrong_fourth, tmp_path, qgis_new_project):
    import processing

    folder, raster = capture_folder(tmp_path)
    processing.runAndLoadResults(ALG, {"FOLDER": str(folder), "AERIAL": raster, "CAMERA_POSES": "TEMPORARY_OUTPUT",
                                       "TRAJECTORY": "TEMPORARY_OUTPUT", "SEQUENCES": True})
    layers = {layer.name(): layer for layer in QgsProject.instance().mapLayers().values()}
    trajectory = layers["Trajectory (with the joint localization of captures)"]
    assert trajectory.featureCount() == 1
    symbol = trajectory.renderer().symbol()
    assert symbol.symbolLayerCount() >= 2 and symbol.symbolLayer(1).color() == QColor(214, 39, 140)
    assert layers["Camera poses"].fields().lookupField("seq_overruled") >= 0  # the loaded layer has them
    QgsProject.instance().removeAllMapLayers()


@pytest.mark.inqgis
def test_a_shapefile_keeps_its_rows_and_the_log_says_why_it_has_no_seq_fields(provider, wrong_fourth, tmp_path):
    import processing

    folder, raster = capture_folder(tmp_path)
    feedback = Warnings()
    result = processing.run(ALG, {"FOLDER": str(folder), "AERIAL": raster, "CAMERA_POSES": str(tmp_path / "poses.shp"),
                                  "TRAJECTORY": str(tmp_path / "trajectory.shp"), "SEQUENCES": True},
                            feedback=feedback)
    poses = QgsVectorLayer(result["CAMERA_POSES"])
    assert poses.featureCount() == 9 and not [n for n in poses.fields().names() if n.startswith("seq")]
    assert any("cuts field names" in w for w in feedback.warnings), feedback.warnings
    assert QgsVectorLayer(result["TRAJECTORY"]).featureCount() == 1


def test_records_of_results_are_those_the_geopackage_reads_back(tmp_path):
    """`pose_record` of a run's rows (Processing, in memory) equals `pose_evidence` (the GeoPackage pass), and
    the in-memory pass gives what the GeoPackage pass stores."""
    results = [pose(f"p{k}.jpg", (k * 5.0, 0.0), 90.0, [(k * 5.0 - 15, 8.0, 270.0, -1.0)]) for k in range(6)]
    results[3] = pose("p3.jpg", (35.0, -12.0), 200.0, [(15.0, 0.2, 91.0, -0.4)], confidence=0.7)
    path = tmp_path / "out.gpkg"
    with GeoPackageWriter(path, CRS) as writer:
        for result in results:
            writer.write(result)
        stored = writer.pose_evidence()
        photos = [r.photo for r in results]
        rows = manifest_rows([(p, 2.0 * k) for k, p in enumerate(photos)])
        run_sequence_pass(writer, photos, rows)
    records = {r.photo: pose_record(layer_rows(r, CRS)["camera_poses"][0][1], rival_rows(r, CRS)) for r in results}
    for photo, record in records.items():
        assert record.keys() == stored[photo].keys()
        np.testing.assert_allclose(record["rivals"], stored[photo]["rivals"])
        assert record["status"] == stored[photo]["status"]
        numbers = ("x", "y", "heading_deg", "sigma_m", "confidence")
        assert [record[k] for k in numbers] == pytest.approx([stored[photo][k] for k in numbers])
    timings = [PhotoTiming(p, 2.0 * k, sequence="s1") for k, p in enumerate(photos)]
    found = smooth_captures(records, CRS, timings)
    ds = ogr.Open(str(path))
    written = {f["photo"]: {name: f[name] for name in SEQ} for f in ds.GetLayerByName("camera_poses")}
    assert found.poses.keys() == written.keys() and found.poses["p3.jpg"]["seq_overruled"] == 1
    for photo, values in found.poses.items():
        assert values["sequence"] == written[photo]["sequence"] == "s1"
        assert [values[k] for k in SEQ[1:]] == pytest.approx([written[photo][k] for k in SEQ[1:]])
    assert [attrs for _, attrs in found.lines] == [f.items() for f in ds.GetLayerByName("trajectory")]


def test_a_job_with_a_point_is_grouped_by_its_point_not_its_exif_gps(tmp_path):
    from loc2_engine.batch import PhotoJob
    from loc2_engine.georef import transform_points
    from loc2_engine.pipeline import Prior
    from loc2_engine.sequences import job_timing

    xy, point = STREET["s00.jpg"][0], (500_150.0, 5_000_050.0)
    folder, _ = capture_folder(tmp_path)
    photo = str(folder / "s00.jpg")
    with_point = job_timing(PhotoJob(photo=photo, prior=Prior(x=point[0], y=point[1], crs=CRS)))
    without = job_timing(PhotoJob(photo=photo, prior=Prior()))
    assert with_point.time_s == without.time_s is not None
    np.testing.assert_allclose(with_point.lonlat, transform_points([point], CRS, "EPSG:4326")[0], atol=1e-9)
    np.testing.assert_allclose(without.lonlat, transform_points([xy], CRS, "EPSG:4326")[0], atol=1e-6)
