"""The dock driven through its widgets in real QGIS (offscreen): photo + EXIF prior, background task, result
layers with the fields of docs/geopackage.md and the aerial layer's CRS, refusal of a second run, cancel, zoom,
GeoPackage export that appends, and the match viewer.

The localization itself is an injected engine callable that renders the aerial window through QGIS (the
real `render.LayerRenderer`) and returns the known pose of the synthetic scene with synthetic matches, so
the dock/task/layers path is exercised for real while the learned pipeline is tested elsewhere; the test
with the trained model runs when `resources/models/default.safetensors` exists.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import pyproj
from osgeo import ogr
from PIL import Image
from qgis.core import Qgis, QgsApplication, QgsCoordinateReferenceSystem, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QCoreApplication

import loc2_qgis
from loc2_engine.result import POSE_FIELDS, Result
from loc2_qgis.dock import ZOOM_MARGIN_M

REPO = Path(__file__).resolve().parents[1]
CRS = "EPSG:32633"
TRUE_LONLAT = (15.0007, 46.95306)
TRUE_HEADING = 63.0
GSD = 0.25
SIZE_PX = 320  # an 80 m raster


def _true_xy():
    return pyproj.Transformer.from_crs("EPSG:4326", CRS, always_xy=True).transform(*TRUE_LONLAT)


def _dms(value: float):
    d = int(value)
    m = int((value - d) * 60)
    return (float(d), float(m), round(((value - d) * 60 - m) * 60, 4))


@pytest.fixture
def scene(tmp_path):
    """An 80 m RGB GeoTIFF in UTM 33N around the truth, and a photo whose EXIF GPS is 6 m off it."""
    import rasterio
    from rasterio.transform import from_origin

    x, y = _true_xy()
    half = SIZE_PX * GSD / 2
    yy, xx = np.mgrid[0:SIZE_PX, 0:SIZE_PX]
    image = np.stack([(xx * 3) % 256, (yy * 3) % 256, ((xx // 20 + yy // 20) % 2) * 200]).astype(np.uint8)
    tif = tmp_path / "aerial.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=SIZE_PX, height=SIZE_PX, count=3, dtype="uint8",
                       crs=CRS, transform=from_origin(x - half, y + half, GSD, GSD)) as dst:
        dst.write(image)
    lon, lat = pyproj.Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(x + 4.0, y - 4.5)
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: _dms(lat), 3: "E", 4: _dms(lon)}
    exif[0x8769] = {0xA405: 28}  # 35 mm equivalent focal length -> HFOV
    photo = tmp_path / "street.jpg"
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((90, 160, 3)) * 255).astype(np.uint8)).save(photo, exif=exif)
    return {"tif": tif, "photo": photo, "xy": (x, y)}


@pytest.fixture
def aerial_raster(scene, qgis_new_project):
    layer = QgsRasterLayer(str(scene["tif"]), "aerial")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    return layer


class FakeEngine:
    """Engine stand-in: renders the window through QGIS like the pipeline does, returns the scene's truth.

    ``gate``: when given, the engine waits for it (or for cancel), to test refusal and cancel.
    """

    def __init__(self, truth_xy, gate: threading.Event = None):
        self.truth_xy = truth_xy
        self.gate = gate
        self.windows = []

    def __call__(self, request, task):
        from loc2_engine.georef import LocalFrame
        from loc2_engine.solver import rotation_from_heading

        if self.gate is not None:
            while not self.gate.wait(0.02):
                if task.isCanceled():
                    return None
        prior = request.prior
        window = request.aerial.window((prior["x"], prior["y"]), prior["crs"], 40.0, 0.5)
        self.windows.append(window)
        frame = window.frame
        t = frame.to_local(np.array([self.truth_xy]))[0]
        rng = np.random.default_rng(0)
        xy_bev = rng.uniform([-8, 2], [8, 20], size=(30, 2))
        R = np.asarray(rotation_from_heading(TRUE_HEADING), np.float64)
        placed = xy_bev @ R.T + t
        xy_aerial = placed + rng.normal(0, 0.3, placed.shape)
        xy_aerial[:5] += 12.0  # outliers
        inliers = np.ones(30, bool)
        inliers[:5] = False
        lon, lat = frame.local_to_lonlat(t[None])[0]
        return Result(
            photo=request.photo, status="ok", crs=CRS, x=self.truth_xy[0], y=self.truth_xy[1], lon=lon, lat=lat,
            heading_deg=TRUE_HEADING, heading_grid_deg=frame.true_to_grid_heading(TRUE_HEADING), scale=1.0,
            matches=30, inliers=25, inlier_ratio=25 / 30, confidence=0.8, residual_m=0.4, sigma_m=0.2,
            camera="pinhole", model="fake", depth="truth", runtime_s=0.01, hfov_deg=request.hfov_deg or 60.0,
            uv_ground=rng.uniform(0, 90, (30, 2)), xy_bev=xy_bev, xy_aerial=xy_aerial,
            weights=rng.uniform(0.1, 1, 30), inlier_mask=inliers,
            residuals_m=np.linalg.norm(xy_aerial - placed, axis=1), layout_uv=rng.uniform(0, 90, (50, 2)),
            layout_xy=rng.uniform(-10, 10, (50, 2)) + t, window=window, frame=LocalFrame(CRS, self.truth_xy))


def wait_until(condition, timeout=60.0):
    end = time.time() + timeout
    while not condition():
        QCoreApplication.processEvents()
        if time.time() > end:
            raise AssertionError("timed out waiting for the Loc² task")
        time.sleep(0.01)
    QCoreApplication.processEvents()


@pytest.fixture
def plugin(qgis_iface):
    qgis_iface.messageBar().clear_messages()
    qgis_iface.mapCanvas().setDestinationCrs(QgsCoordinateReferenceSystem(CRS))
    plugin = loc2_qgis.classFactory(qgis_iface)
    plugin.initGui()
    plugin.action.trigger()  # the toolbar button opens the dock
    yield plugin
    settle(qgis_iface)
    plugin.unload()


def settle(iface):
    """Let the canvas finish drawing and the task manager empty before the next test clears the project:
    layers removed under a canvas render job or a running task can take QGIS down."""
    canvas = iface.mapCanvas()
    canvas.stopRendering()
    canvas.waitWhileRendering()
    wait_until(lambda: QgsApplication.taskManager().countActiveTasks() == 0)


def drive(dock, scene, layer, engine):
    dock.engine = engine
    dock.raster_combo.setLayer(layer)
    dock.photo.setFilePath(str(scene["photo"]))
    dock.run_button.click()


def group_layers(name):
    group = QgsProject.instance().layerTreeRoot().findGroup(name)
    assert group is not None, name
    return {node.layer().name(): node.layer() for node in group.findLayers()}


@pytest.mark.inqgis
def test_dock_run_adds_styled_layers_in_the_aerial_crs(plugin, scene, aerial_raster, qgis_iface):
    dock = plugin.dock
    assert dock is not None and dock.objectName() == "loc2_dock"
    drive(dock, scene, aerial_raster, FakeEngine(scene["xy"]))
    # the EXIF GPS became the prior and the HFOV was pre-filled from the 35 mm focal length
    assert dock.prior_point is not None and dock.prior_crs.authid() == "EPSG:4326"
    assert 60 < dock.hfov.value() < 70
    assert not dock.thumbnail.pixmap().isNull()
    wait_until(lambda: dock.task is None)

    layers = group_layers("Loc² street.jpg")
    assert set(layers) == {"camera_poses", "view_frustums", "inliers", "matches", "ground_layout"}
    for layer in layers.values():
        assert layer.crs().authid() == CRS
    from loc2_engine.gpkg import LAYERS

    for name, (_geom, fields) in LAYERS.items():
        assert [f.name() for f in layers[name].fields()] == [f for f, _ in fields]
    assert [f.name() for f in layers["camera_poses"].fields()] == list(POSE_FIELDS)
    pose = next(layers["camera_poses"].getFeatures())
    point = pose.geometry().asPoint()
    assert abs(point.x() - scene["xy"][0]) < 1e-6 and abs(point.y() - scene["xy"][1]) < 1e-6
    assert pose["status"] == "ok" and pose["heading_deg"] == pytest.approx(TRUE_HEADING)
    assert layers["inliers"].featureCount() == 25 and layers["matches"].featureCount() == 30
    assert layers["ground_layout"].featureCount() == 50 and layers["view_frustums"].featureCount() == 1
    # styled from resources/styles: the pose symbol is categorised by status, not the default single symbol
    assert layers["camera_poses"].renderer().type() == "categorizedSymbol"

    # the window was rendered by QGIS at the requested size around the prior
    window = dock.engine.windows[0]
    assert window.image.shape == (80, 80, 3) and window.valid.all() and window.frame.crs.to_epsg() == 32633

    assert dock.table.rowCount() == 1
    assert dock.table.item(0, 1).text() == "ok" and dock.table.item(0, 2).text() == "0.80"
    assert any("confidence 0.80" in m for m in qgis_iface.messageBar().get_messages(Qgis.MessageLevel.Success))
    extent = qgis_iface.mapCanvas().extent()
    assert extent.contains(point) and min(extent.width(), extent.height()) < 2.5 * ZOOM_MARGIN_M  # zoomed in


@pytest.mark.inqgis
def test_second_run_is_refused_and_cancel_stops_the_task(plugin, scene, aerial_raster, qgis_iface):
    dock = plugin.dock
    gate = threading.Event()
    drive(dock, scene, aerial_raster, FakeEngine(scene["xy"], gate))
    assert dock.task is not None and dock.cancel_button.isEnabled()
    assert not dock.run_button.isEnabled()  # Run is off while the task runs
    dock.run()  # and a second run is refused even when asked for directly
    assert "still localizing street.jpg" in dock.status.text()
    bar = qgis_iface.messageBar()
    bar.clear_messages()
    dock.cancel_button.click()
    assert dock.status.text().startswith("Cancelled") and not dock.cancel_button.isEnabled()  # at once
    wait_until(lambda: dock.task is None)
    assert dock.status.text().startswith("Cancelled")
    # said once, and not as a failure (QGIS announces "Task failed" for a task whose run returned False)
    said = [m for level in (Qgis.MessageLevel.Info, Qgis.MessageLevel.Warning, Qgis.MessageLevel.Critical)
            for m in bar.get_messages(level)]
    assert len(said) == 1 and "Cancelled" in said[0], said
    assert dock.run_button.isEnabled() and not dock.cancel_button.isEnabled()
    assert dock.table.rowCount() == 0
    assert QgsProject.instance().layerTreeRoot().findGroup("Loc² street.jpg") is None
    # and the dock runs again afterwards
    gate.set()
    dock.run_button.click()
    wait_until(lambda: dock.task is None)
    assert dock.table.rowCount() == 1


@pytest.mark.inqgis
def test_a_cancelled_task_is_complete_not_failed_and_stops_between_stages(scene, monkeypatch):
    from loc2_qgis import task as task_module
    from loc2_qgis.task import LocalizeTask, Request, localize_with_engine

    built = []
    monkeypatch.setattr(task_module, "localizer_for", lambda *args: built.append(args))
    task = LocalizeTask(Request(photo=str(scene["photo"]), aerial=None), lambda t, ok: None)
    task.cancel()
    assert task.run() is True and task.result is None  # returned True: QgsTask.Complete, no "Task failed"
    assert localize_with_engine(task.request, task) is None and not built  # no model loaded after cancel


@pytest.mark.inqgis
@pytest.mark.parametrize("ref, words", [("T", "EXIF compass 123°"), ("M", "magnetic")])
def test_the_exif_compass_heading_is_offered_not_imposed(plugin, tmp_path, ref, words):
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (46.0, 57.0, 11.0), 3: "E", 4: (15.0, 0.0, 2.5), 16: ref, 17: 123.4}
    photo = tmp_path / "compass.jpg"
    Image.fromarray(np.zeros((90, 160, 3), np.uint8)).save(photo, exif=exif)
    dock = plugin.dock
    dock.photo.setFilePath(str(photo))
    assert dock.heading.value() == pytest.approx(123.4)
    assert words in dock.heading_source.text()
    assert not dock.heading_known.isChecked()  # the user decides whether it is known
    plain = tmp_path / "plain.jpg"
    Image.fromarray(np.zeros((90, 160, 3), np.uint8)).save(plain)
    dock.photo.setFilePath(str(plain))
    assert dock.heading_source.text() == ""


@pytest.mark.inqgis
def test_engine_failures_reach_the_user_with_their_reason(plugin, scene, aerial_raster, qgis_iface):
    from loc2_engine.errors import AerialError

    def outside(request, task):
        raise AerialError("The prior is outside the aerial raster.")

    dock = plugin.dock
    drive(dock, scene, aerial_raster, outside)
    wait_until(lambda: dock.task is None)
    assert dock.table.item(0, 1).text() == "failed"
    assert "outside the aerial raster" in dock.status.text()
    warnings = qgis_iface.messageBar().get_messages(Qgis.MessageLevel.Warning)
    assert any("outside the aerial raster" in m for m in warnings)


def count_rows(path, layer="camera_poses"):
    ds = ogr.Open(str(path))
    try:
        return ds.GetLayerByName(layer).GetFeatureCount()
    finally:
        ds = None


@pytest.mark.inqgis
def test_export_appends_and_never_drops_rows(plugin, scene, aerial_raster, tmp_path):
    from loc2_engine.gpkg import GeoPackageWriter
    from loc2_qgis.task import Request

    dock = plugin.dock
    out = tmp_path / "poses.gpkg"
    engine = FakeEngine(scene["xy"])
    # a file that already holds another photo's rows
    request = Request(photo="earlier.jpg", aerial=dock_renderer(aerial_raster), hfov_deg=50.0,
                      prior={"x": scene["xy"][0], "y": scene["xy"][1], "crs": CRS})
    earlier = engine(request, _NeverCancelled())
    with GeoPackageWriter(out, CRS) as writer:
        writer.write(earlier)
    assert count_rows(out) == 1

    drive(dock, scene, aerial_raster, engine)
    wait_until(lambda: dock.task is None)
    dock.export_file.setFilePath(str(out))
    dock.export_button.click()
    assert count_rows(out) == 2 and count_rows(out, "matches") == 60
    dock.export_button.click()  # nothing new: nothing written twice
    assert count_rows(out) == 2
    dock.run_button.click()
    wait_until(lambda: dock.task is None)
    dock.export_button.click()  # the same photo again: a file holds one row per photo, the user is told
    assert count_rows(out) == 2
    assert "already holds a row for the photo" in dock.status.text()
    ds = ogr.Open(str(out))
    photos = [f.GetField("photo") for f in ds.GetLayerByName("camera_poses")]
    ds = None
    assert photos == ["earlier.jpg", str(scene["photo"])]


class _NeverCancelled:
    def isCanceled(self):
        return False


def dock_renderer(layer):
    from loc2_qgis.render import LayerRenderer

    return LayerRenderer(layer, QgsProject.instance().transformContext())


@pytest.mark.inqgis
def test_map_click_sets_the_prior_and_draws_the_radius(plugin, aerial_raster, qgis_iface, scene):
    from qgis.core import QgsPointXY

    dock = plugin.dock
    dock.prior_source.setCurrentIndex(1)
    dock.pick_button.click()
    canvas = qgis_iface.mapCanvas()
    assert canvas.mapTool() is dock.tool
    crs = QgsCoordinateReferenceSystem(CRS)
    dock.tool.prior_clicked.emit(QgsPointXY(*scene["xy"]), crs)
    assert canvas.mapTool() is not dock.tool
    assert dock.prior_point == QgsPointXY(*scene["xy"])
    dock.radius.setValue(30.0)
    box = dock.marker.circle.asGeometry().boundingBox()
    assert box.width() == pytest.approx(60.0, rel=0.01) and box.height() == pytest.approx(60.0, rel=0.01)
    assert box.center().distance(QgsPointXY(*scene["xy"])) < 0.01


@pytest.mark.inqgis
def test_match_viewer_draws_the_result(plugin, scene, aerial_raster):
    from loc2_qgis import match_viewer

    dock = plugin.dock
    drive(dock, scene, aerial_raster, FakeEngine(scene["xy"]))
    wait_until(lambda: dock.task is None)
    dock.viewer_button.click()
    viewer = dock.viewer
    assert viewer is not None and viewer.isVisible()
    screen = viewer.screen().availableGeometry()
    assert viewer.width() <= 0.9 * screen.width() and viewer.height() <= 0.9 * screen.height()
    by_weight = viewer.image.copy()
    # photo 160x90 and the 80x80 window, both scaled to the panel height
    assert by_weight.height() == match_viewer.PANEL_HEIGHT
    assert by_weight.width() == round(160 * match_viewer.PANEL_HEIGHT / 90) + match_viewer.GAP + match_viewer.PANEL_HEIGHT
    # the camera is drawn in red where the pose puts it on the aerial window
    result = dock.results[0]
    rc = result.window.local_to_pixel(result.window.frame.to_local(np.array([[result.x, result.y]])))[0]
    scale = match_viewer.PANEL_HEIGHT / 80
    x0 = round(160 * match_viewer.PANEL_HEIGHT / 90) + match_viewer.GAP
    pixel = by_weight.pixelColor(int(x0 + (rc[1] + 0.5) * scale), int((rc[0] + 0.5) * scale))
    assert (pixel.red(), pixel.green(), pixel.blue()) == (220, 30, 30)
    viewer.colour_by.setCurrentText("residual")
    assert viewer.image != by_weight
    by_residual = viewer.image.copy()
    viewer.outliers.setChecked(True)
    assert viewer.image != by_residual
    viewer.close()


@pytest.mark.inqgis
def test_match_viewer_fits_the_screen_and_its_weight_colours_read_on_dark_imagery():
    from loc2_qgis import match_viewer

    # a wide panorama beside its window, on a 1366x728 laptop screen: scaled as a whole, nothing cut off
    image_w, image_h = 1024 + match_viewer.GAP + match_viewer.PANEL_HEIGHT, match_viewer.PANEL_HEIGHT
    width, height = match_viewer.initial_size(image_w, image_h, (1366, 728))
    assert width <= 0.9 * 1366 and height <= 0.9 * 728
    picture_w, picture_h = width - 40, height - match_viewer.CHROME_PX
    assert picture_w / picture_h == pytest.approx(image_w / image_h, rel=0.02)  # both panels scaled alike
    # a small picture opens at its own size
    assert match_viewer.initial_size(400, 200, (1920, 1080)) == (440, 200 + match_viewer.CHROME_PX)
    for t in np.linspace(0, 1, 11):  # every weight is bright: luminance well above a dark photo's
        colour = match_viewer.ramp(t)
        assert 0.2126 * colour.red() + 0.7152 * colour.green() + 0.0722 * colour.blue() > 70, t


@pytest.mark.inqgis
def test_prior_marker_follows_a_canvas_crs_change(plugin, qgis_iface, scene):
    from qgis.core import QgsPointXY

    dock = plugin.dock
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    dock.set_prior(QgsPointXY(*scene["xy"]), QgsCoordinateReferenceSystem(CRS))
    assert dock.marker.circle.asGeometry().boundingBox().width() < 0.01  # degrees
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem(CRS))  # as QGIS does for the first layer
    box = dock.marker.circle.asGeometry().boundingBox()
    assert box.width() == pytest.approx(2 * dock.radius.value(), rel=0.01)
    assert box.center().distance(QgsPointXY(*scene["xy"])) < 0.01


@pytest.mark.inqgis
def test_real_pipeline_runs_in_the_task_with_a_qgis_rendered_window(plugin, scene, aerial_raster):
    """The production engine function with a real Localizer (untrained small model, plane depth): photo
    loading, window rendering in the worker thread, matching, RANSAC and the Result's way into the dock."""
    from functools import partial

    from loc2_engine.models.small import build
    from loc2_engine.pipeline import Localizer
    from loc2_qgis.task import localize_with_engine

    localizer = Localizer(model=build(), depth="plane", device="cpu", hypotheses=200, n_matches=256)
    dock = plugin.dock
    drive(dock, scene, aerial_raster, partial(localize_with_engine, localizer=localizer))
    wait_until(lambda: dock.task is None, timeout=300)
    assert len(dock.results) == 1, dock.status.text()
    result = dock.results[0]
    assert result.photo == str(scene["photo"]) and result.model and result.depth == "plane"
    assert dock.table.item(0, 1).text() == result.status
    if result.ok:  # an untrained model may or may not find a consistent pose; either way it is reported
        layers = group_layers("Loc² street.jpg")
        assert layers["camera_poses"].crs().authid() == CRS
        assert result.window.image.shape[:2] == (localizer.matcher.aerial_size_px,) * 2
    else:
        assert result.error and result.error in dock.status.text()


@pytest.mark.inqgis
def test_cancel_stops_the_running_matcher_promptly_and_is_said_once(plugin, scene, aerial_raster, qgis_iface):
    """Cancel while the matcher runs its eight ensemble passes (half a second each): the engine stops at its
    next checkpoint instead of finishing them, the task ends complete, and "Cancelled" is said once."""
    from functools import partial

    from images import scene_like
    from loc2_engine.models.small import build
    from loc2_engine.pipeline import Localizer
    from loc2_qgis.task import localize_with_engine

    with Image.open(scene["photo"]) as photo:  # a scene, not noise: past the content check to the matcher
        exif = photo.getexif()
    Image.fromarray(scene_like(90, 160)).save(scene["photo"], exif=exif)
    matcher, started, passes = build(), threading.Event(), []

    def slow_match(*args, match=matcher.match, **kwargs):
        passes.append(time.monotonic())
        started.set()
        time.sleep(0.5)
        return match(*args, **kwargs)

    matcher.match = slow_match
    localizer = Localizer(model=matcher, depth="plane", device="cpu", mirror_tta=True, aerial_quarters=4,
                          hypotheses=200, n_matches=256)
    dock = plugin.dock
    bar = qgis_iface.messageBar()
    bar.clear_messages()
    drive(dock, scene, aerial_raster, partial(localize_with_engine, localizer=localizer))
    wait_until(lambda: started.is_set() or dock.task is None, timeout=120)
    task = dock.task
    assert task is not None, dock.status.text()
    dock.cancel_button.click()
    cancelled_at = time.monotonic()
    wait_until(lambda: dock.task is None, timeout=30)
    assert time.monotonic() - cancelled_at < 2.0  # the seven passes left would take 3.5 s
    assert len(passes) <= 2, passes
    said = [m for level in (Qgis.MessageLevel.Info, Qgis.MessageLevel.Warning, Qgis.MessageLevel.Critical)
            for m in bar.get_messages(level)]
    assert len(said) == 1 and "Cancelled" in said[0], said
    assert task.result is None and not task.error and dock.table.rowCount() == 0
    assert dock.run_button.isEnabled()


def _default_weights_available() -> bool:
    """Where the model registry looks for the default weights: $LOC2_MODELS, then resources/models."""
    import os

    folders = [os.environ["LOC2_MODELS"]] if os.environ.get("LOC2_MODELS") else []
    return any((Path(f) / "default.safetensors").is_file() for f in folders + [REPO / "resources" / "models"])


@pytest.fixture(scope="module")
def demo_scene(tmp_path_factory):
    """data/demo when present (`loc2 synth data/demo --preset demo`), else the same preset made here."""
    import csv
    import subprocess
    import sys

    folder = REPO / "data" / "demo"
    if not (folder / "manifest.csv").is_file():
        folder = tmp_path_factory.mktemp("demo")
        subprocess.run([sys.executable, "-m", "loc2_engine", "synth", str(folder), "--preset", "demo"],
                       check=True, capture_output=True, timeout=600)
    rows = list(csv.DictReader(open(folder / "manifest.csv", encoding="utf-8")))
    return folder, rows


@pytest.mark.slow
@pytest.mark.inqgis
@pytest.mark.skipif(not _default_weights_available(), reason="trained default model not in resources/models yet")
def test_dock_with_the_default_model_finds_the_true_pose(plugin, demo_scene, qgis_iface):
    folder, rows = demo_scene
    # the demo's panorama with a heading prior that the shipped model localizes (final weights: 4.3 m / 0.6°
    # from the raster file as the CLI reads it, 4.2 m / 0.4° from the QGIS-rendered window)
    row = next(r for r in rows if r["photo"].endswith("lucerne_0002.jpg"))
    layer = QgsRasterLayer(str(folder / row["aerial"]), "demo aerial")
    QgsProject.instance().addMapLayer(layer)
    dock = plugin.dock
    dock.raster_combo.setLayer(layer)
    dock.photo.setFilePath(str(folder / row["photo"]))
    from qgis.core import QgsPointXY

    dock.set_prior(QgsPointXY(float(row["prior_x"]), float(row["prior_y"])),
                   QgsCoordinateReferenceSystem(row["crs"]))
    dock.radius.setValue(float(row["radius_m"]))
    if row["heading_prior_deg"]:  # a known-orientation row: the heading prior the manifest gives
        dock.heading_known.setChecked(True)
        dock.heading.setValue(float(row["heading_prior_deg"]))
        dock.tolerance.setValue(float(row["heading_tolerance_deg"]))
    dock.run_button.click()
    wait_until(lambda: dock.task is None, timeout=600)
    result = dock.results[-1]
    assert result.ok, result.error
    error_m = float(np.hypot(result.x - float(row["true_x"]), result.y - float(row["true_y"])))
    heading_err = abs((result.heading_deg - float(row["true_heading_deg"]) + 180) % 360 - 180)
    assert error_m < 5.0 and heading_err < 5.0, (error_m, heading_err)
    pose = next(group_layers(f"Loc² {Path(row['photo']).name}")["camera_poses"].getFeatures())
    assert pose.geometry().asPoint().distance(QgsPointXY(result.x, result.y)) < 1e-6
    QgsProject.instance().removeMapLayer(layer.id())


@pytest.mark.inqgis
def test_selected_point_feature_and_heading_prior_reach_the_request(plugin, scene, aerial_raster, qgis_iface):
    from qgis.core import QgsFeature, QgsGeometry, QgsPointXY, QgsVectorLayer

    points = QgsVectorLayer(f"Point?crs={CRS}", "gps points", "memory")
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(scene["xy"][0] + 3, scene["xy"][1])))
    points.dataProvider().addFeatures([feature])
    QgsProject.instance().addMapLayer(points)
    points.selectAll()
    qgis_iface.setActiveLayer(points)
    dock = plugin.dock
    dock.raster_combo.setLayer(aerial_raster)
    dock.photo.setFilePath(str(scene["photo"]))
    dock.prior_source.setCurrentIndex(2)
    dock.prior_source.activated.emit(2)
    assert dock.prior_point == QgsPointXY(scene["xy"][0] + 3, scene["xy"][1]) and dock.prior_crs.authid() == CRS
    dock.heading_known.setChecked(True)
    dock.heading.setValue(80.0)
    dock.tolerance.setValue(20.0)
    dock.camera.setCurrentText("pinhole")
    request = dock.request()
    assert request.prior == {"x": scene["xy"][0] + 3, "y": scene["xy"][1], "crs": CRS,
                             "radius_m": dock.radius.value(), "heading_deg": 80.0, "heading_tolerance_deg": 20.0}
    assert request.camera == "pinhole" and request.hfov_deg == pytest.approx(dock.hfov.value())
    assert request.aerial.crs == CRS
    assert "truth" not in [dock.depth.itemText(i) for i in range(dock.depth.count())]
    QgsProject.instance().removeMapLayer(points.id())


@pytest.mark.inqgis
def test_choices_persist_in_qgs_settings(plugin, scene, aerial_raster):
    from loc2_qgis.dock import Loc2Dock

    dock = plugin.dock
    dock.radius.setValue(42.0)
    drive(dock, scene, aerial_raster, FakeEngine(scene["xy"]))
    wait_until(lambda: dock.task is None)
    again = Loc2Dock(plugin.iface)
    try:
        assert again.radius.value() == 42.0
        assert again.raster_combo.currentLayer() is aerial_raster
        assert again.model.currentText() == dock.model.currentText()
        assert again.depth.currentText() == dock.depth.currentText()
    finally:
        again.close_down()
        again.deleteLater()


@pytest.mark.inqgis
def test_rotated_camera_photo_gets_an_upright_thumbnail_and_its_portrait_hfov(plugin, tmp_path):
    from loc2_engine.exif import read_exif
    from loc2_engine.ground import hfov_from_exif

    photo = tmp_path / "portrait.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90° clockwise: an upright portrait
    exif[0x8769] = {0xA405: 26}
    Image.new("RGB", (1200, 800), (90, 120, 150)).save(photo, exif=exif)
    dock = plugin.dock
    dock.photo.setFilePath(str(photo))
    pixmap = dock.thumbnail.pixmap()
    assert pixmap.height() > pixmap.width()
    expected, _ = hfov_from_exif(read_exif(photo), 800, 1200)
    assert dock.hfov.value() == pytest.approx(expected, abs=0.01) and expected < 60
    assert "no GPS position" in dock.prior_label.text() and dock.prior_point is None


@pytest.mark.inqgis
def test_qgis_rendered_window_matches_the_engines_raster_window(tmp_path, qgis_new_project):
    """Same pixels as `AerialWindow.from_raster` (average when shrinking), not QGIS's nearest-neighbour draw,
    and the user's layer keeps its own resampling."""
    import rasterio
    from rasterio.transform import from_origin

    from loc2_engine.aerial import AerialWindow
    from loc2_qgis.render import LayerRenderer

    rng = np.random.default_rng(3)
    noise = rng.integers(0, 256, (3, 400, 400), dtype=np.uint8)  # worst case for aliasing
    tif = tmp_path / "noise.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=400, height=400, count=3, dtype="uint8", crs=CRS,
                       transform=from_origin(500000, 5200100, 0.2, 0.2)) as dst:
        dst.write(noise)
    raster_layer = QgsRasterLayer(str(tif), "noise")
    QgsProject.instance().addMapLayer(raster_layer)
    center = (500040.0, 5200060.0)
    ours = LayerRenderer(raster_layer, QgsProject.instance().transformContext()).window(center, CRS, 60.0, 0.5)
    engine = AerialWindow.from_raster(tif, center, CRS, 60.0, 0.5)
    assert ours.image.shape == engine.image.shape and ours.valid.all()
    diff = np.abs(ours.image.astype(float) - engine.image.astype(float))
    # on pure noise any two resamplings differ (averaging footprints: ~30 grey levels here); QGIS's
    # default nearest-neighbour drawing differs by ~63, i.e. as much as two unrelated noise images
    assert diff.mean() < 40.0, diff.mean()
    assert ours.key != engine.key and ours.frame.crs == engine.frame.crs
    assert raster_layer.resamplingStage() == Qgis.RasterResamplingStage.ResampleFilter


@pytest.mark.inqgis
def test_official_model_files_are_chosen_per_model_and_reach_the_localizer(plugin, scene, aerial_raster, tmp_path,
                                                                           monkeypatch):
    """The dock's Weights / Backbone pickers: remembered per model (checkpoint) and across sessions, and
    passed to `Localizer(weights=, backbone=)`."""
    from loc2_engine import defaults, pipeline
    from loc2_qgis import settings, task
    from loc2_qgis.dock import Loc2Dock

    weights, backbone = tmp_path / "loc2-vigor.safetensors", tmp_path / "dinov2_vitl14_pretrain.pth"
    dock = plugin.dock
    assert dock.model.findText("loc2-vigor") >= 0
    dock.model.setCurrentText("loc2-vigor")
    dock.weights.setFilePath(str(weights))
    dock.backbone.setFilePath(str(backbone))
    dock.raster_combo.setLayer(aerial_raster)
    dock.photo.setFilePath(str(scene["photo"]))
    request = dock.request()
    assert (request.model, request.weights, request.backbone) == ("loc2-vigor", str(weights), str(backbone))
    built = []
    monkeypatch.setattr(pipeline, "Localizer", lambda **kw: built.append(kw) or object())
    monkeypatch.setattr(task, "_LOCALIZERS", {})
    task.localizer_for(request.model, request.depth, request.device, request.weights, request.backbone,
                       request.camera_height_m)
    assert built == [{"model": "loc2-vigor", "depth": request.depth, "device": request.device,
                      "weights": str(weights), "backbone": str(backbone),
                      "camera_height_m": defaults.CAMERA_HEIGHT_M}]

    drive(dock, scene, aerial_raster, FakeEngine(scene["xy"]))  # a run saves the choices
    wait_until(lambda: dock.task is None)
    again = Loc2Dock(plugin.iface)
    try:
        assert again.model.currentText() == "loc2-vigor"
        assert (again.weights.filePath(), again.backbone.filePath()) == (str(weights), str(backbone))
        again.model.setCurrentText("default")  # another model, its own (here: no) checkpoint
        assert again.weights.filePath() == ""
        again.model.setCurrentText("loc2-vigor")
        assert again.weights.filePath() == str(weights)
    finally:
        again.close_down()
        again.deleteLater()
        for key, value in (("model", "default"), (settings.weights_key("loc2-vigor"), ""), ("backbone", "")):
            settings.set(key, value)  # later tests run the dock's default model


@pytest.mark.inqgis
def test_camera_height_is_remembered_and_reaches_the_depth_provider(plugin, scene, aerial_raster, monkeypatch):
    """The dock's Camera height: defaults to the engine's hand-held height, is remembered across sessions, and
    builds a Localizer whose depth provider uses it (a separate Localizer per height)."""
    from loc2_engine import defaults
    from loc2_qgis import settings, task
    from loc2_qgis.dock import Loc2Dock

    dock = plugin.dock
    assert dock.camera_height.value() == pytest.approx(defaults.CAMERA_HEIGHT_M)
    dock.camera_height.setValue(2.5)
    dock.raster_combo.setLayer(aerial_raster)
    dock.photo.setFilePath(str(scene["photo"]))
    request = dock.request()
    assert request.camera_height_m == pytest.approx(2.5)
    monkeypatch.setattr(task, "_LOCALIZERS", {})
    car = task.localizer_for("default", "plane", "cpu", camera_height_m=request.camera_height_m)
    hand = task.localizer_for("default", "plane", "cpu", camera_height_m=defaults.CAMERA_HEIGHT_M)
    assert car is not hand and car.depth.camera_height_m == pytest.approx(2.5)
    assert hand.depth.camera_height_m == pytest.approx(defaults.CAMERA_HEIGHT_M)

    drive(dock, scene, aerial_raster, FakeEngine(scene["xy"]))  # a run saves the choices
    wait_until(lambda: dock.task is None)
    again = Loc2Dock(plugin.iface)
    try:
        assert again.camera_height.value() == pytest.approx(2.5)
    finally:
        again.close_down()
        again.deleteLater()
        settings.set("camera_height_m", defaults.CAMERA_HEIGHT_M)
        dock.camera_height.setValue(defaults.CAMERA_HEIGHT_M)


@pytest.mark.inqgis
def test_a_dock_with_nothing_remembered_shows_the_defaults(plugin):
    """Search radius, camera, camera height, heading tolerance and model start at, and clear to, the values
    `loc2` and the Processing algorithm use (`loc2_engine.defaults`)."""
    from qgis.core import QgsSettings

    from loc2_engine import defaults
    from loc2_qgis import settings
    from loc2_qgis.dock import Loc2Dock

    assert settings.DEFAULTS["radius_m"][0] == defaults.RADIUS_M
    assert settings.DEFAULTS["camera_height_m"][0] == defaults.CAMERA_HEIGHT_M
    assert settings.DEFAULTS["model"][0] == defaults.MODEL
    for key in ("radius_m", "camera_height_m", "model"):
        QgsSettings().remove(f"loc2/{key}")  # what earlier runs remembered
    dock = Loc2Dock(plugin.iface)
    try:
        for box, default in ((dock.radius, defaults.RADIUS_M), (dock.camera_height, defaults.CAMERA_HEIGHT_M),
                             (dock.tolerance, defaults.HEADING_TOLERANCE_DEG)):
            assert box.value() == pytest.approx(default)
            box.setValue(box.value() + 1.0)
            box.clear()
            assert box.value() == pytest.approx(default)
        assert (dock.camera.currentText(), dock.model.currentText()) == (defaults.CAMERA, defaults.MODEL)
    finally:
        dock.close_down()
        dock.deleteLater()


@pytest.mark.inqgis
@pytest.mark.parametrize("ending", ["pose", "failed result", "unexpected error"])
def test_run_is_off_during_a_task_and_back_on_however_it_ends(plugin, scene, aerial_raster, ending):
    from loc2_engine.errors import AerialError

    gate = threading.Event()
    pose = FakeEngine(scene["xy"], gate)

    def engine(request, task):
        pose(request, task)  # waits for the gate
        if ending == "failed result":
            raise AerialError("The prior is outside the aerial raster.")
        if ending == "unexpected error":
            raise RuntimeError("boom")
        return pose(request, task)

    dock = plugin.dock
    drive(dock, scene, aerial_raster, engine)
    assert not dock.run_button.isEnabled() and dock.cancel_button.isEnabled()
    gate.set()
    wait_until(lambda: dock.task is None)
    assert dock.run_button.isEnabled() and not dock.cancel_button.isEnabled()
    if ending == "pose":
        assert dock.progress.value() == 100
    else:  # a run that gave no pose does not read 100 %
        assert dock.progress.value() == 0 and dock.progress.text() == "failed"


@pytest.mark.inqgis
def test_the_dock_fits_a_laptop_screen_with_the_advanced_options_folded(plugin, scene, qgis_iface):
    from qgis.PyQt.QtWidgets import QScrollArea

    dock = plugin.dock
    assert isinstance(dock.widget(), QScrollArea)
    for widget in (dock.model, dock.depth, dock.weights, dock.backbone, dock.camera_height, dock.hfov, dock.device):
        assert dock.advanced.isAncestorOf(widget)
    window = qgis_iface.mainWindow()
    window.show()  # a group box folds when it is shown
    try:
        dock.photo.setFilePath(str(scene["photo"]))  # with its thumbnail
        QCoreApplication.processEvents()
        assert dock.advanced.isCollapsed()
        # 1366x768 less the title bar, menus, toolbars, status bar and the Processing toolbox docked above
        hint = dock.minimumSizeHint()
        assert hint.width() <= 1366 and hint.height() <= 700, hint
        # and the whole folded body, results table and Export included, fits without scrolling
        body = dock.widget().widget().minimumSizeHint()
        assert body.height() <= 700 and body.width() <= 600, body
    finally:
        window.hide()


@pytest.mark.inqgis
def test_a_photo_without_gps_and_no_prior_is_refused_in_gui_words(plugin, aerial_raster, tmp_path):
    photo = tmp_path / "nogps.jpg"
    Image.fromarray(np.zeros((90, 160, 3), np.uint8)).save(photo)
    started = []
    dock = plugin.dock
    drive(dock, {"photo": photo}, aerial_raster, lambda request, task: started.append(request))
    assert dock.task is None and not started  # refused before any task
    assert dock.status.text() == ("This photo has no GPS position: click the map to set the prior, or pick a "
                                  "point layer feature.")
    assert "--prior" not in dock.status.text() and "no GPS position" in dock.prior_label.text()


@pytest.mark.inqgis
def test_messages_time_out_and_the_prior_has_sensible_precision(plugin, scene, aerial_raster, qgis_iface,
                                                                 monkeypatch):
    from qgis.core import QgsPointXY

    pushed = []
    bar = qgis_iface.messageBar()
    monkeypatch.setattr(bar, "pushMessage", lambda title, text, level, duration: pushed.append((level, duration)))
    dock = plugin.dock
    dock.message("done", Qgis.MessageLevel.Success)
    dock.message("note", Qgis.MessageLevel.Info)
    dock.message("careful", Qgis.MessageLevel.Warning)
    assert pushed == [(Qgis.MessageLevel.Success, 8), (Qgis.MessageLevel.Info, 8), (Qgis.MessageLevel.Warning, 15)]
    drive(dock, scene, aerial_raster, FakeEngine(scene["xy"]))
    wait_until(lambda: dock.task is None)
    assert pushed[-1] == (Qgis.MessageLevel.Success, 8)

    dock.set_prior(QgsPointXY(500053.26449, 5199947.85991), QgsCoordinateReferenceSystem(CRS))
    assert dock.prior_label.text() == "500053.3, 5199947.9 (EPSG:32633)"
    dock.set_prior(QgsPointXY(15.00071234567, 46.953061234), QgsCoordinateReferenceSystem("EPSG:4326"))
    assert dock.prior_label.text() == "15.000712, 46.953061 (EPSG:4326)"
