"""The Processing algorithm loc2:georeferencephotos: sinks, counts, failed rows, cancel, point-layer input
(from native:importphotos, with its `direction` as heading prior), and the same poses from qgis_process.bin,
processing.run and `loc2 batch` on the same inputs."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from osgeo import ogr
from qgis.core import QgsApplication, QgsProcessingFeedback, QgsSymbolLayer, QgsVectorLayer

from batch_fixtures import CRS, GOOD, OFFSET_M, FakeLocalizer, make_folder, write_photo, write_raster
from loc2_engine import pipeline
from loc2_engine.result import POSE_FIELDS
from loc2_qgis.provider import Loc2Provider

REPO = Path(__file__).resolve().parents[1]
QGIS_PROCESS = "/usr/bin/qgis_process.bin"
ALG = "loc2:georeferencephotos"
DEFAULT_WEIGHTS = REPO / "resources" / "models" / "default.safetensors"


@pytest.fixture
def provider(qgis_processing):
    provider = Loc2Provider()
    QgsApplication.processingRegistry().addProvider(provider)
    yield provider
    QgsApplication.processingRegistry().removeProvider(provider)


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(pipeline, "Localizer", lambda **kw: FakeLocalizer())


def features(layer_or_path):
    layer = layer_or_path if isinstance(layer_or_path, QgsVectorLayer) else QgsVectorLayer(str(layer_or_path))
    # a sink writes "no geometry" as an empty point (NaN coordinates in a GeoPackage)
    return [(f.attributes(), f.hasGeometry() and not f.geometry().isEmpty(), f) for f in layer.getFeatures()], \
        layer.fields().names()


@pytest.mark.inqgis
def test_provider_and_parameters(provider):
    alg = QgsApplication.processingRegistry().algorithmById(ALG)
    assert alg is not None and provider.name() == "Loc²"
    names = {p.name() for p in alg.parameterDefinitions()}
    assert {"FOLDER", "RECURSIVE", "POINTS", "PHOTO_FIELD", "HEADING_FIELD", "AERIAL", "RADIUS", "CAMERA", "HFOV",
            "HEADING_MODE", "HEADING", "MODEL", "DEPTH", "CAMERA_POSES", "VIEW_FRUSTUMS", "INLIERS"} <= names
    assert {o.name() for o in alg.outputDefinitions()} >= {"OK_COUNT", "LOW_CONFIDENCE_COUNT", "FAILED_COUNT"}


@pytest.mark.inqgis
def test_folder_gives_sinks_counts_and_failed_rows(provider, fake, tmp_path):
    import processing

    folder, raster, expected = make_folder(tmp_path)
    result = processing.run(ALG, {"FOLDER": str(folder), "AERIAL": raster, "RADIUS": 10,
                                  "CAMERA_POSES": str(tmp_path / "poses.gpkg"),
                                  "VIEW_FRUSTUMS": "TEMPORARY_OUTPUT", "INLIERS": "TEMPORARY_OUTPUT"})
    assert (result["OK_COUNT"], result["LOW_CONFIDENCE_COUNT"], result["FAILED_COUNT"]) == (3, 0, 5)
    poses, names = features(result["CAMERA_POSES"])
    assert names == ["fid"] + list(POSE_FIELDS)  # the GeoPackage driver adds fid
    by_photo = {Path(a[names.index("photo")]).name: (a, g) for a, g, _ in poses}
    assert set(by_photo) == set(GOOD) | set(expected)
    for name, fragment in expected.items():
        attrs, has_geometry = by_photo[name]
        assert attrs[names.index("status")] == "failed" and not has_geometry
        assert fragment in attrs[names.index("error")]
    attrs, has_geometry = by_photo["p01.jpg"]
    assert has_geometry and attrs[names.index("x")] == pytest.approx(GOOD["p01.jpg"][0] + OFFSET_M[0], abs=0.05)
    assert result["INLIERS"].featureCount() == 3 * 6 and result["VIEW_FRUSTUMS"].featureCount() == 3
    assert result["INLIERS"].crs().authid() == CRS


@pytest.mark.inqgis
def test_cancel_stops_between_photos(provider, fake, tmp_path):
    import processing

    class CancelAfterTwo(QgsProcessingFeedback):
        def setProgress(self, progress):
            super().setProgress(progress)
            if progress >= 2 * 100 / 8 - 1e-6:
                self.cancel()

    folder, raster, _ = make_folder(tmp_path)
    result = processing.run(ALG, {"FOLDER": str(folder), "AERIAL": raster,
                                  "CAMERA_POSES": str(tmp_path / "poses.gpkg")}, feedback=CancelAfterTwo())
    assert result["OK_COUNT"] + result["FAILED_COUNT"] == 2
    assert len(features(result["CAMERA_POSES"])[0]) == 2


@pytest.mark.inqgis
def test_points_from_import_photos_with_direction_as_heading(provider, fake, tmp_path):
    import processing

    raster = write_raster(tmp_path / "aerial.tif")
    folder = tmp_path / "photos"
    folder.mkdir()
    write_photo(folder / "a.jpg", (500_050.0, 5_000_050.0), heading=123.5)
    write_photo(folder / "b.jpg", (500_120.0, 5_000_140.0), heading=300.0)
    points = processing.run("native:importphotos", {"FOLDER": str(folder), "RECURSIVE": False,
                                                    "OUTPUT": "TEMPORARY_OUTPUT"})["OUTPUT"]
    assert points.featureCount() == 2
    result = processing.run(ALG, {"POINTS": points, "PHOTO_FIELD": "photo", "HEADING_FIELD": "direction",
                                  "HEADING_MODE": 1, "AERIAL": raster, "CAMERA_POSES": "TEMPORARY_OUTPUT"})
    poses = {Path(f["photo"]).name: f for f in result["CAMERA_POSES"].getFeatures()}
    assert poses["a.jpg"]["heading_deg"] == pytest.approx(123.5, abs=0.01)
    assert poses["b.jpg"]["heading_deg"] == pytest.approx(300.0, abs=0.01)
    assert poses["b.jpg"]["x"] == pytest.approx(500_120.0 + OFFSET_M[0], abs=0.05)


@pytest.mark.inqgis
def test_non_file_raster_and_missing_inputs_are_clear_errors(provider, fake, tmp_path):
    import processing
    from qgis.core import QgsProcessingException, QgsRasterLayer

    folder, raster, _ = make_folder(tmp_path)
    with pytest.raises(QgsProcessingException, match="either a folder of photos"):
        processing.run(ALG, {"AERIAL": raster, "CAMERA_POSES": "TEMPORARY_OUTPUT"})  # no FOLDER, no POINTS
    xyz = QgsRasterLayer("type=xyz&url=http://127.0.0.1:9/{z}/{x}/{y}.png&zmax=19&zmin=0", "xyz", "wms")
    with pytest.raises(QgsProcessingException, match="is not a raster file"):
        processing.run(ALG, {"FOLDER": str(folder), "AERIAL": xyz, "CAMERA_POSES": "TEMPORARY_OUTPUT"})
    del xyz


# -- the same poses from the three entry points, with the real Localizer ------------------------------------

@pytest.fixture(scope="module")
def synth_scene(tmp_path_factory):
    """Two synthetic panoramas + one pinhole of one town, and the shipped default model."""
    from loc2_engine.synth.dataset import generate
    from loc2_engine.synth.presets import get_preset

    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip(f"{DEFAULT_WEIGHTS} is not there yet (loc2 train)")
    root = tmp_path_factory.mktemp("scene")
    generate(str(root), dataclasses.replace(get_preset("demo"), n_pano=2, n_pinhole=1), seed=3, towns=1)
    return root / "photos", next((root / "aerial").glob("*.tif")), str(DEFAULT_WEIGHTS)


def pose_table(path):
    ds = ogr.Open(str(path))
    layer = ds.GetLayer(0) if ds.GetLayerByName("camera_poses") is None else ds.GetLayerByName("camera_poses")
    return {Path(f["photo"]).name: (f["status"], f["x"], f["y"], f["heading_deg"], f["confidence"], f["error"])
            for f in layer}


@pytest.mark.slow
@pytest.mark.inqgis
@pytest.mark.skipif(not Path(QGIS_PROCESS).exists(), reason="qgis_process.bin not installed")
def test_qgis_process_processing_run_and_cli_give_the_same_poses(provider, synth_scene, tmp_path):
    import processing

    from loc2_engine import cli

    photos, raster, model = synth_scene
    common = {"FOLDER": str(photos), "AERIAL": str(raster), "MODEL": model, "DEPTH": "plane", "RADIUS": 25}

    cli_out = tmp_path / "cli.gpkg"
    assert cli.main(["batch", str(photos), "--aerial", str(raster), "--out", str(cli_out), "--model", model,
                     "--depth", "plane", "--radius", "25"]) == 0

    run_out = tmp_path / "run.gpkg"
    processing.run(ALG, dict(common, CAMERA_POSES=str(run_out)))

    home = tmp_path / "home"
    home.mkdir()
    site = next((REPO / ".venv" / "lib").glob("python3*/site-packages"))
    env = dict(os.environ, HOME=str(home), QT_QPA_PLATFORM="offscreen", QGIS_PLUGINPATH=str(REPO),
               PYTHONPATH=str(site), PROJ_DATA=os.environ.get("PROJ_DATA", "/usr/share/proj"))
    env.pop("LD_PRELOAD", None)
    enable = subprocess.run([QGIS_PROCESS, "plugins", "enable", "loc2_qgis"], env=env, capture_output=True,
                            text=True, timeout=120)
    # rc 1 with "already enabled" when the QGIS settings of this test process already enable it
    assert enable.returncode == 0 or "already enabled" in enable.stdout + enable.stderr, enable.stderr
    qp_out = tmp_path / "qp.gpkg"
    ran = subprocess.run([QGIS_PROCESS, "--json", "run", ALG, "--"]
                         + [f"{k}={v}" for k, v in common.items()] + [f"CAMERA_POSES={qp_out}"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    counts = json.loads(ran.stdout)["results"]
    assert counts["OK_COUNT"] + counts["LOW_CONFIDENCE_COUNT"] + counts["FAILED_COUNT"] == 3

    cli, run, qp = pose_table(cli_out), pose_table(run_out), pose_table(qp_out)
    assert len(cli) == 3 and set(cli) == set(run) == set(qp)
    for name, row in cli.items():
        for other in (run[name], qp[name]):
            assert (other[0], other[-1]) == (row[0], row[-1]), name  # status, error
            if row[0] == "failed":
                assert other == row
            else:
                # float32 torch ops in three processes: equal to ~1e-5 m / degrees, not bit for bit
                assert other[1:-1] == pytest.approx(row[1:-1], abs=1e-3), name


@pytest.mark.inqgis
def test_loaded_outputs_are_styled(provider, fake, tmp_path, qgis_new_project):
    import processing
    from qgis.core import QgsProject

    folder, raster, _ = make_folder(tmp_path)
    processing.runAndLoadResults(ALG, {"FOLDER": str(folder), "AERIAL": raster, "CAMERA_POSES": "TEMPORARY_OUTPUT",
                                       "VIEW_FRUSTUMS": "TEMPORARY_OUTPUT", "INLIERS": "TEMPORARY_OUTPUT"})
    layers = {layer.name(): layer for layer in QgsProject.instance().mapLayers().values()}
    poses = layers["Camera poses"]
    assert poses.renderer().type() == "categorizedSymbol" and poses.labelsEnabled()
    assert "weight" in layers["Inliers"].renderer().symbol().symbolLayer(0).dataDefinedProperties().property(
        QgsSymbolLayer.PropertyFillColor).expressionString()
    QgsProject.instance().removeAllMapLayers()


@pytest.mark.inqgis
def test_missing_torch_is_a_clear_error(provider, monkeypatch, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    from loc2_qgis import deps

    monkeypatch.setattr(deps, "missing", lambda requirements=None: [r for r in deps.REQUIREMENTS
                                                                     if r.module == "torch"])
    folder, raster, _ = make_folder(tmp_path)
    with pytest.raises(QgsProcessingException, match="Loc² needs Python packages.*torch"):
        processing.run(ALG, {"FOLDER": str(folder), "AERIAL": raster, "CAMERA_POSES": "TEMPORARY_OUTPUT"})
