"""The Processing algorithm loc2:georeferencephotos: sinks, counts, failed rows (at their prior), cancel and
resume, point-layer input (from native:importphotos, with its `direction` as heading prior), a web (XYZ) layer
as aerial, and the same poses from qgis_process.bin, processing.run and `loc2 batch` on the same inputs."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from osgeo import ogr
from qgis.core import (NULL, QgsApplication, QgsProcessingContext, QgsProcessingFeedback,
                       QgsProcessingOutputLayerDefinition, QgsProcessingParameterDefinition, QgsProcessingUtils,
                       QgsProject, QgsSymbolLayer, QgsVectorLayer)

from batch_fixtures import CRS, GOOD, OFFSET_M, ORIGIN, FakeLocalizer, make_folder, write_photo, write_raster
from loc2_engine import defaults, pipeline
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
            "HEADING_MODE", "HEADING", "MODEL", "WEIGHTS", "BACKBONE", "DEPTH", "RESUME", "CAMERA_POSES", "CAMERA_HEIGHT",
            "VIEW_FRUSTUMS", "INLIERS"} <= names
    assert {o.name() for o in alg.outputDefinitions()} >= {"OK_COUNT", "LOW_CONFIDENCE_COUNT", "FAILED_COUNT",
                                                           "SKIPPED_COUNT"}


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
        assert attrs[names.index("status")] == "failed" and attrs[names.index("x")] in (None, NULL)
        assert fragment in attrs[names.index("error")]
        # a failed row sits at its prior (here the EXIF GPS) when there is one: the truncated photo still has
        # its EXIF (p01's), the others have none or cannot be read
        assert has_geometry == (name in ("outside.jpg", "truncated.jpg")), name
    prior = next(f for a, _, f in poses if a[names.index("photo")].endswith("outside.jpg")).geometry().asPoint()
    assert math.hypot(prior.x() - 510_000.0, prior.y() - 5_010_000.0) < 0.1  # EXIF is stored to 1 ms of arc
    attrs, has_geometry = by_photo["p01.jpg"]
    assert has_geometry and attrs[names.index("x")] == pytest.approx(GOOD["p01.jpg"][0] + OFFSET_M[0], abs=0.05)
    assert result["INLIERS"].featureCount() == 3 * 6 and result["VIEW_FRUSTUMS"].featureCount() == 3
    assert result["INLIERS"].crs().authid() == CRS


class CancelAfter(QgsProcessingFeedback):
    """Cancels once ``n`` of the 8 photos of `make_folder` are done."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def setProgress(self, progress):
        super().setProgress(progress)
        if progress >= self.n * 100 / 8 - 1e-6:
            self.cancel()


@pytest.mark.inqgis
def test_parameters_default_to_the_defaults_of_loc2_and_the_dock(provider):
    alg = QgsApplication.processingRegistry().algorithmById(ALG)
    default = {name: alg.parameterDefinition(name).defaultValue()
               for name in ("RADIUS", "HEADING_TOLERANCE", "MODEL", "CAMERA")}
    assert default["RADIUS"] == defaults.RADIUS_M
    assert default["HEADING_TOLERANCE"] == defaults.HEADING_TOLERANCE_DEG
    assert default["MODEL"] == defaults.MODEL
    from loc2_engine.depth import DEPTH_PROVIDERS
    from loc2_engine.models import MODEL_REGISTRY

    # lists of the registries, not free text; a weight file replaces the model choice
    assert alg.parameterDefinition("MODEL").options() == list(MODEL_REGISTRY)
    depths = alg.parameterDefinition("DEPTH").options()
    assert depths[0] == "model default" and set(depths[1:]) <= set(DEPTH_PROVIDERS) and "plane" in depths
    assert alg.parameterDefinition("DEPTH").defaultValue() == "model default"
    assert alg.parameterDefinition("MODEL_FILE").flags() & QgsProcessingParameterDefinition.Flag.FlagOptional
    assert alg.parameterDefinition("CAMERA").options()[default["CAMERA"]] == defaults.CAMERA
    assert f"empty: {defaults.CAMERA_HEIGHT_M:g}," in alg.parameterDefinition("CAMERA_HEIGHT").description()


@pytest.mark.inqgis
def test_a_fixed_heading_without_a_tolerance_or_radius_gets_the_defaults(provider, monkeypatch, tmp_path):
    import processing
    from loc2_engine import batch

    priors = []
    real_run_batch = batch.run_batch

    def recording_run_batch(jobs, *args, **kwargs):
        priors.extend(job.prior for job in jobs)
        return real_run_batch(jobs, *args, **kwargs)

    monkeypatch.setattr(batch, "run_batch", recording_run_batch)
    monkeypatch.setattr(pipeline, "Localizer", lambda **kw: FakeLocalizer())
    folder, raster, _ = make_folder(tmp_path)
    processing.run(ALG, {"FOLDER": str(folder), "AERIAL": raster, "HEADING_MODE": 2, "HEADING": 90.0,
                         "CAMERA_POSES": str(tmp_path / "poses.gpkg")})
    assert priors and {(p.radius_m, p.heading_deg, p.heading_tolerance_deg) for p in priors} == \
        {(defaults.RADIUS_M, 90.0, defaults.HEADING_TOLERANCE_DEG)}


@pytest.mark.inqgis
@pytest.mark.parametrize("given, expected", [({}, None), ({"CAMERA_HEIGHT": 2.5}, 2.5)])
def test_camera_height_reaches_the_localizer(provider, monkeypatch, tmp_path, given, expected):
    import processing

    built = []
    monkeypatch.setattr(pipeline, "Localizer", lambda **kw: built.append(kw) or FakeLocalizer())
    folder, raster, _ = make_folder(tmp_path)
    processing.run(ALG, {"FOLDER": str(folder), "AERIAL": raster, "RADIUS": 10,
                         "CAMERA_POSES": str(tmp_path / "poses.gpkg"), **given})
    assert len(built) == 1 and built[0]["camera_height_m"] == expected


@pytest.mark.inqgis
def test_cancel_stops_between_photos(provider, fake, tmp_path):
    import processing

    folder, raster, _ = make_folder(tmp_path)
    result = processing.run(ALG, {"FOLDER": str(folder), "AERIAL": raster,
                                  "CAMERA_POSES": str(tmp_path / "poses.gpkg")}, feedback=CancelAfter(2))
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
def test_resume_appends_and_skips_the_photos_already_written(provider, fake, tmp_path):
    """As `loc2 batch --resume`: an interrupted run finished by a second one gives one row per photo."""
    import processing

    folder, raster, _ = make_folder(tmp_path)
    out, frustums = str(tmp_path / "poses.gpkg"), str(tmp_path / "frustums.gpkg")
    params = {"FOLDER": str(folder), "AERIAL": raster, "CAMERA_POSES": out, "VIEW_FRUSTUMS": frustums}
    first = processing.run(ALG, params, feedback=CancelAfter(3))
    assert first["OK_COUNT"] + first["FAILED_COUNT"] == 3 and first["SKIPPED_COUNT"] == 0
    rest = processing.run(ALG, dict(params, RESUME=True))
    assert rest["SKIPPED_COUNT"] == 3 and rest["OK_COUNT"] + rest["FAILED_COUNT"] == 5
    photos = [f["photo"] for f in QgsVectorLayer(out).getFeatures()]
    assert len(photos) == len(set(photos)) == 8
    assert QgsVectorLayer(frustums).featureCount() == 3  # the three good photos, each once
    again = processing.run(ALG, dict(params, RESUME=True))  # nothing left to do
    assert again["SKIPPED_COUNT"] == 8 and QgsVectorLayer(out).featureCount() == 8
    # without RESUME too: an existing GeoPackage is appended to, never replaced
    again = processing.run(ALG, params)
    assert again["SKIPPED_COUNT"] == 8 and QgsVectorLayer(out).featureCount() == 8


def write_xyz_tiles(root, lonlat_min, lonlat_max, zoom=17):
    """Random-texture PNG tiles ``root/{z}/{x}/{y}.png`` covering a lon/lat box (a web map served from disk)."""
    from PIL import Image

    def tile(lon, lat):
        n = 2 ** zoom
        return (int((lon + 180.0) / 360.0 * n),
                int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n))

    (x0, y1), (x1, y0) = tile(*lonlat_min), tile(*lonlat_max)
    rng = np.random.default_rng(4)
    for x in range(x0, x1 + 1):
        (root / str(zoom) / str(x)).mkdir(parents=True, exist_ok=True)
        for y in range(y0, y1 + 1):
            Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(root / str(zoom) / str(x) /
                                                                                    f"{y}.png")
    return f"type=xyz&url=file://{root}/{{z}}/{{x}}/{{y}}.png&zmin={zoom}&zmax={zoom}"


@pytest.mark.inqgis
def test_a_web_layer_is_rendered_by_qgis_like_the_dock_does(provider, fake, tmp_path):
    """An XYZ layer (tiles from disk, so the test needs no network) is a valid AERIAL: each photo's window is
    rendered by `render.LayerRenderer`; poses come back in the layer's CRS (EPSG:3857)."""
    import processing
    from qgis.core import QgsRasterLayer

    from loc2_engine.georef import transform_points

    folder, _, expected = make_folder(tmp_path)
    corners = transform_points([(ORIGIN[0] - 50, ORIGIN[1] - 250), (ORIGIN[0] + 250, ORIGIN[1] + 50)], CRS, 4326)
    xyz = QgsRasterLayer(write_xyz_tiles(tmp_path / "tiles", *corners), "tiles", "wms")
    assert xyz.isValid() and xyz.providerType() == "wms"
    result = processing.run(ALG, {"FOLDER": str(folder), "AERIAL": xyz, "CAMERA_POSES": "TEMPORARY_OUTPUT"})
    assert (result["OK_COUNT"], result["FAILED_COUNT"]) == (3, 5)
    poses = {Path(f["photo"]).name: f for f in result["CAMERA_POSES"].getFeatures()}
    assert result["CAMERA_POSES"].crs().authid() == "EPSG:3857"
    for name, xy in GOOD.items():
        x, y = transform_points([(poses[name]["x"], poses[name]["y"])], "EPSG:3857", CRS)[0]
        assert math.hypot(x - xy[0] - OFFSET_M[0], y - xy[1] - OFFSET_M[1]) < 0.1, name
    assert "no data" in poses["outside.jpg"]["error"]  # outside the tiles: nothing rendered there
    del xyz


@pytest.mark.inqgis
def test_a_file_layer_is_rendered_when_this_python_has_no_rasterio(provider, fake, tmp_path, monkeypatch):
    import processing

    from loc2_qgis.algorithms import georeference_photos

    monkeypatch.setattr(georeference_photos, "_engine_reads_files", lambda: False)
    folder, raster, _ = make_folder(tmp_path)
    result = processing.run(ALG, {"FOLDER": str(folder), "AERIAL": raster, "CAMERA_POSES": "TEMPORARY_OUTPUT"})
    assert (result["OK_COUNT"], result["FAILED_COUNT"]) == (3, 5)
    poses = {Path(f["photo"]).name: f for f in result["CAMERA_POSES"].getFeatures()}
    assert poses["p01.jpg"]["x"] == pytest.approx(GOOD["p01.jpg"][0] + OFFSET_M[0], abs=0.05)


@pytest.mark.inqgis
def test_missing_inputs_are_clear_errors(provider, fake, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    _folder, raster, _ = make_folder(tmp_path)
    with pytest.raises(QgsProcessingException, match="either a folder of photos"):
        processing.run(ALG, {"AERIAL": raster, "CAMERA_POSES": "TEMPORARY_OUTPUT"})  # no FOLDER, no POINTS


@pytest.mark.inqgis
def test_one_of_folder_or_points_is_checked_before_the_run(provider, tmp_path):
    alg = QgsApplication.processingRegistry().createAlgorithmById(ALG)
    points = QgsVectorLayer("Point?crs=EPSG:32633&field=photo:string", "points", "memory")
    folder, raster, _ = make_folder(tmp_path)
    context = QgsProcessingContext()
    for given in ({}, {"FOLDER": str(folder), "POINTS": points}):
        ok, message = alg.checkParameterValues({"AERIAL": raster, "CAMERA_POSES": "TEMPORARY_OUTPUT", **given},
                                               context)
        assert not ok and "One of 'Folder of photos' or 'Photo points' is required" in message
    assert alg.checkParameterValues({"AERIAL": raster, "CAMERA_POSES": "TEMPORARY_OUTPUT", "FOLDER": str(folder)},
                                    context)[0]
    for name in ("FOLDER", "POINTS"):
        description = alg.parameterDefinition(name).description()
        assert "is required" in description and alg.parameterDefinition(name).flags() & \
            QgsProcessingParameterDefinition.Flag.FlagOptional


@pytest.mark.inqgis
def test_help_names_what_the_dialog_shows_and_has_a_help_page(provider):
    import re

    alg = QgsApplication.processingRegistry().algorithmById(ALG)
    text = alg.shortHelpString()
    ids = {p.name() for p in alg.parameterDefinitions()} | {o.name() for o in alg.outputDefinitions()}
    assert not [name for name in ids if re.search(rf"\b{name}\b", text)], text
    assert "one of 'Folder of photos' or 'Photo points' is required" in text
    assert "never replaced" in text and "skipped" in text
    url = alg.helpUrl()
    assert url.startswith("file://") and Path(url[len("file://"):]).is_file()


@pytest.mark.inqgis
def test_a_default_dialog_run_gives_outputs_qgis_can_load(provider, fake, tmp_path, qgis_new_project):
    """As the dialog runs it: every output a QgsProcessingOutputLayerDefinition with the project, each
    temporary. Every layer id the context is to load, and every output id, must resolve to a layer (the
    dialog lists those that do not as 'not correctly generated')."""
    folder, raster, _ = make_folder(tmp_path)
    project = QgsProject.instance()
    alg = QgsApplication.processingRegistry().createAlgorithmById(ALG)
    params = {"FOLDER": str(folder), "AERIAL": raster}
    for name in ("CAMERA_POSES", "VIEW_FRUSTUMS", "INLIERS"):
        params[name] = QgsProcessingOutputLayerDefinition("TEMPORARY_OUTPUT", project)
    context = QgsProcessingContext()
    context.setProject(project)
    feedback = QgsProcessingFeedback()
    assert alg.prepare(params, context, feedback)
    results = alg.runPrepared(params, context, feedback)
    alg.postProcess(context, feedback)
    to_load = context.layersToLoadOnCompletion()
    assert set(to_load) == {results[name] for name in ("CAMERA_POSES", "VIEW_FRUSTUMS", "INLIERS")}
    for layer_id in to_load:
        assert QgsProcessingUtils.mapLayerFromString(layer_id, context) is not None, layer_id
    assert {details.name for details in to_load.values()} == {"Camera poses", "View frustums", "Inliers"}


class Warnings(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.warnings = []

    def pushWarning(self, text):
        self.warnings.append(text)
        super().pushWarning(text)


@pytest.mark.inqgis
def test_an_existing_geopackage_is_appended_to_and_keeps_its_other_layers(provider, fake, tmp_path):
    import processing

    folder, raster, _ = make_folder(tmp_path)
    gpkg = tmp_path / "project.gpkg"
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(gpkg))
    layer = ds.CreateLayer("parcels", None, ogr.wkbPoint)
    layer.CreateField(ogr.FieldDefn("owner", ogr.OFTString))
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetField("owner", "someone")
    layer.CreateFeature(feature)
    ds = layer = feature = None

    params = {"FOLDER": str(folder), "AERIAL": raster, "CAMERA_POSES": str(gpkg), "INLIERS": str(gpkg)}
    feedback = Warnings()
    first = processing.run(ALG, params, feedback=feedback)
    assert "appended" in " ".join(feedback.warnings) and "skipped" in " ".join(feedback.warnings)
    assert first["CAMERA_POSES"] == f"{gpkg}|layername=camera_poses"
    second = processing.run(ALG, params)  # RESUME off
    assert second["SKIPPED_COUNT"] == 8 and second["OK_COUNT"] + second["FAILED_COUNT"] == 0
    ds = ogr.Open(str(gpkg))
    assert ds.GetLayerByName("parcels").GetFeatureCount() == 1  # the user's layer is still there
    assert ds.GetLayerByName("camera_poses").GetFeatureCount() == 8
    assert ds.GetLayerByName("inliers").GetFeatureCount() == 3 * 6
    styles = {f["f_table_name"]: f["useAsDefault"] for f in ds.GetLayerByName("layer_styles")}
    assert styles == {"camera_poses": 1, "inliers": 1}  # stored once, when the layers were created
    poses = QgsVectorLayer(first["CAMERA_POSES"], "poses", "ogr")
    assert poses.isValid() and poses.renderer().type() == "categorizedSymbol"  # its default style



@pytest.mark.inqgis
def test_a_geopackage_output_lists_its_layers_in_drawing_order(provider, fake, tmp_path):
    """Every output into one GeoPackage: QGIS 3.22 stacks a reopened file's layers in the order the file lists
    them, first on top, so the file lists them as `loc2 batch` writes its own (`gpkg.LAYERS`: the pose, its
    inlier dots, the frustum polygon underneath; the trajectory after them), whatever the first photo wrote
    (here a failed one: a camera_poses row only)."""
    import processing
    from qgis.core import (QgsCoordinateTransformContext, QgsProviderRegistry, QgsProviderSublayerDetails)

    folder, raster, _ = make_folder(tmp_path)
    gpkg = tmp_path / "out.gpkg"
    processing.run(ALG, {"FOLDER": str(folder), "AERIAL": raster, "CAMERA_POSES": str(gpkg),
                         "VIEW_FRUSTUMS": str(gpkg), "INLIERS": str(gpkg), "SEQUENCES": True,
                         "TRAJECTORY": str(gpkg)})
    listed = [s for s in QgsProviderRegistry.instance().querySublayers(str(gpkg)) if s.name() != "layer_styles"]
    assert [s.name() for s in listed] == ["camera_poses", "inliers", "view_frustums", "trajectory"]
    project = QgsProject()  # as QGIS adds a dropped file's layers: last to first, each on top
    options = QgsProviderSublayerDetails.LayerOptions(QgsCoordinateTransformContext())
    for sublayer in reversed(listed):
        assert project.addMapLayer(sublayer.toLayer(options)) is not None
    drawn = [layer.name() for layer in project.layerTreeRoot().layerOrder()]  # top first
    assert drawn.index("camera_poses") < drawn.index("inliers") < drawn.index("view_frustums"), drawn
    project.clear()

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
    common = {"FOLDER": str(photos), "AERIAL": str(raster), "MODEL_FILE": model, "DEPTH": "plane", "RADIUS": 25}

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
    # the pose arrow is drawn above the inlier dots and the frustum: first in the layer tree
    order = [node.layer().name() for node in QgsProject.instance().layerTreeRoot().findLayers()]
    assert order.index("Camera poses") < order.index("Inliers") < order.index("View frustums"), order
    QgsProject.instance().removeAllMapLayers()


@pytest.mark.inqgis
@pytest.mark.parametrize("arrival", [("inliers", "view_frustums", "camera_poses"),
                                     ("camera_poses", "inliers", "view_frustums"),
                                     ("view_frustums", "camera_poses", "inliers")])
def test_outputs_are_stacked_pose_on_top_whatever_order_qgis_loads_them_in(qgis_new_project, arrival):
    from qgis.core import QgsProcessingContext, QgsProject

    from loc2_qgis.algorithms.georeference_photos import _Styler

    project = QgsProject.instance()
    other = QgsVectorLayer("Point", "someone else's layer", "memory")
    project.addMapLayer(other)
    context = QgsProcessingContext()
    context.setProject(project)
    loaded = {}
    for name in arrival:  # as QGIS does: each layer added on top, then its post-processor called
        layer = QgsVectorLayer("Point", name, "memory")
        project.addMapLayer(layer, False)
        project.layerTreeRoot().insertLayer(0, layer)
        _Styler.create(name, loaded).postProcessLayer(layer, context, None)
    order = [node.layer().name() for node in project.layerTreeRoot().findLayers()]
    assert order == ["camera_poses", "inliers", "view_frustums", "someone else's layer"]
    assert len(project.mapLayers()) == 4
    project.removeAllMapLayers()


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
