"""The dock's search areas and EXIF write-back, driven in real QGIS (offscreen): a rectangle drawn with the mouse
on a canvas in another CRS becomes the right extent in the aerial layer's CRS, a polygon and the map view
give their bounding rectangle clipped to the layer, the run goes through `Localizer.localize_in_extent`
(via `task.localize_with_engine`), an area too large for the model is refused saying the largest, and a
pose is written into a copy of its photo (the original only on an explicit, confirmed choice).
"""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pyproj
import pytest
from PIL import Image
from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsPointXY, QgsProject, QgsRasterLayer
from qgis.gui import QgsMapMouseEvent
from qgis.PyQt.QtCore import QEvent, QPoint, Qt
from qgis.PyQt.QtGui import QKeyEvent

from test_plugin_dock import CRS, FakeEngine, aerial_raster, drive, plugin, scene, wait_until  # noqa: F401 (fixtures)

from loc2_qgis.dock import AREA_POLYGON, AREA_PRIOR, AREA_RECTANGLE, AREA_VIEW
from loc2_qgis.task import Request

WEB_MERCATOR = QgsCoordinateReferenceSystem("EPSG:3857")
needs_exiftool = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool is not installed (make setup)")


def _canvas_over(canvas, layer, crs, margin=1.5):
    """The canvas in ``crs``, sized and zoomed to ``layer`` with ``margin`` times its extent around it."""
    canvas.resize(400, 400)
    canvas.setDestinationCrs(crs)
    box = QgsCoordinateTransform(layer.crs(), crs, QgsProject.instance()).transformBoundingBox(layer.extent())
    box.scale(margin)
    canvas.setExtent(box)
    canvas.refresh()


def _pixel(canvas, xy_canvas):
    """The canvas pixel of a point in the canvas CRS (what a mouse event carries: whole pixels)."""
    px = canvas.getCoordinateTransform().transform(QgsPointXY(*xy_canvas))
    return QPoint(round(px.x()), round(px.y()))


def _mouse(canvas, kind, pixel, button=Qt.MouseButton.LeftButton):
    buttons = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseMove else button
    return QgsMapMouseEvent(canvas, kind, pixel, button, buttons, Qt.KeyboardModifier.NoModifier)


def _click(tool, canvas, pixel, button=Qt.MouseButton.LeftButton):
    tool.canvasMoveEvent(_mouse(canvas, QEvent.Type.MouseMove, pixel))
    tool.canvasPressEvent(_mouse(canvas, QEvent.Type.MouseButtonPress, pixel, button))
    tool.canvasReleaseEvent(_mouse(canvas, QEvent.Type.MouseButtonRelease, pixel, button))


def _bbox_in(crs_from, crs_to, ring_xy, n=50):
    """pyproj's bounding box, in ``crs_to``, of the closed ring ``ring_xy`` (in ``crs_from``) densified."""
    pts = np.asarray(ring_xy + ring_xy[:1], float)
    dense = np.concatenate([a + np.linspace(0, 1, n)[:, None] * (b - a) for a, b in zip(pts[:-1], pts[1:])])
    x, y = pyproj.Transformer.from_crs(crs_from, crs_to, always_xy=True).transform(dense[:, 0], dense[:, 1])
    return min(x), min(y), max(x), max(y)


def _choose(dock, index):
    dock.area_choice.setCurrentIndex(index)
    dock.area_choice.activated.emit(index)


class ExtentLocalizer:
    """The session's Localizer stand-in: records `localize_in_extent` calls and answers with the scene's truth
    (`FakeEngine`, its window rendered by QGIS at the extent's centre)."""

    def __init__(self, truth_xy):
        self.engine = FakeEngine(truth_xy)
        self.calls = []

    def localize_in_extent(self, photo, aerial, extent, extent_crs=None, heading_deg=None,
                           heading_tolerance_deg=None, depth_map=None, should_stop=None):
        self.calls.append(dict(photo=photo, extent=tuple(extent), crs=extent_crs, heading_deg=heading_deg,
                               heading_tolerance_deg=heading_tolerance_deg))
        centre = {"x": (extent[0] + extent[2]) / 2, "y": (extent[1] + extent[3]) / 2, "crs": extent_crs}
        return self.engine(SimpleNamespace(photo=photo.path, prior=centre, aerial=aerial, hfov_deg=None), None)

    def localize(self, *args, **kwargs):
        raise AssertionError("a search in an area must not go through localize around a prior")


@pytest.fixture
def engine_stub(monkeypatch, scene):
    from loc2_qgis import task as task_module

    localizer = ExtentLocalizer(scene["xy"])
    monkeypatch.setattr(task_module, "localizer_for", lambda *args: localizer)
    return localizer


@pytest.mark.inqgis
def test_a_rectangle_drawn_on_a_web_mercator_canvas_is_searched_in_the_layer_crs(plugin, scene, aerial_raster,
                                                                                 qgis_iface, engine_stub):
    from loc2_qgis.task import localize_with_engine

    dock = plugin.dock
    canvas = qgis_iface.mapCanvas()
    _canvas_over(canvas, aerial_raster, WEB_MERCATOR)
    _choose(dock, AREA_RECTANGLE)
    assert canvas.mapTool() is dock.area_tool  # choosing a shape starts drawing it
    assert dock.radius.isHidden() and dock.pick_button.isHidden()  # no prior is needed: its rows go
    # two corners inside the 80 m layer, in Web Mercator: click one, move, click the other
    x, y = scene["xy"]
    to_3857 = pyproj.Transformer.from_crs(CRS, "EPSG:3857", always_xy=True)
    a, b = _pixel(canvas, to_3857.transform(x - 30, y + 25)), _pixel(canvas, to_3857.transform(x + 20, y - 35))
    _click(dock.area_tool, canvas, a)
    dock.area_tool.canvasMoveEvent(_mouse(canvas, QEvent.Type.MouseMove, b))
    assert not dock.area_tool.band.asGeometry().isEmpty()  # the rubber band follows the mouse
    _click(dock.area_tool, canvas, b)
    assert canvas.mapTool() is not dock.area_tool and dock.area is not None
    assert dock.area_marker.band.asGeometry().boundingBox().contains(dock.area[0].boundingBox())
    assert " m × " in dock.area_label.text()

    # the corners as the canvas has them (whole pixels), and the rectangle they span in the layer's CRS
    corners = [canvas.getCoordinateTransform().toMapCoordinates(p) for p in (a, b)]
    xmin, xmax = sorted(c.x() for c in corners)
    ymin, ymax = sorted(c.y() for c in corners)
    expected = _bbox_in("EPSG:3857", CRS, [(xmin, ymin), (xmax, ymin), (xmax, ymax), (xmin, ymax)])
    # 50 m x 60 m drawn; its bounding box in UTM is a little larger (Web Mercator's grid is turned from UTM's)
    assert expected[2] - expected[0] == pytest.approx(50, abs=3) and expected[3] - expected[1] == \
        pytest.approx(60, abs=3)

    assert dock.engine is localize_with_engine  # the real task path, with the session's Localizer stubbed
    dock.heading_known.setChecked(True)
    dock.heading.setValue(63.0)
    drive(dock, scene, aerial_raster, localize_with_engine)
    wait_until(lambda: dock.task is None)
    assert len(engine_stub.calls) == 1, dock.status.text()
    call = engine_stub.calls[0]
    assert call["crs"] == CRS and call["extent"] == pytest.approx(expected, abs=0.05)
    assert call["heading_deg"] == pytest.approx(63.0)  # the heading prior reaches every window
    assert dock.table.rowCount() == 1 and dock.table.item(0, 1).text() == "ok"

    # the drawn area stays on the map, redrawn when the canvas CRS changes, until cleared
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem(CRS))
    drawn = dock.area_marker.band.asGeometry().boundingBox()
    assert drawn.xMinimum() == pytest.approx(expected[0], abs=0.5) and drawn.yMaximum() == pytest.approx(
        expected[3], abs=0.5)
    dock.clear_area_button.click()
    assert dock.area is None and dock.area_marker.band.asGeometry().isEmpty()


@pytest.mark.inqgis
def test_a_polygon_is_drawn_by_clicks_and_finished_by_right_click_and_esc_cancels(plugin, scene, aerial_raster,
                                                                                  qgis_iface):
    dock = plugin.dock
    canvas = qgis_iface.mapCanvas()
    _canvas_over(canvas, aerial_raster, QgsCoordinateReferenceSystem(CRS))
    _choose(dock, AREA_POLYGON)
    tool = dock.area_tool
    assert canvas.mapTool() is tool and tool.shape == "polygon"
    x, y = scene["xy"]
    pixels = [_pixel(canvas, p) for p in ((x - 30, y - 30), (x + 30, y - 30), (x, y + 30))]
    for p in pixels[:2]:
        _click(tool, canvas, p)
    tool.keyPressEvent(QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_Escape, Qt.KeyboardModifier.NoModifier))
    assert canvas.mapTool() is not tool and dock.area is None and tool.points == []  # cancelled, nothing kept

    dock.draw_button.click()
    for p in pixels:
        _click(tool, canvas, p)
    _click(tool, canvas, pixels[-1], Qt.MouseButton.RightButton)
    assert dock.area is not None and dock.area[0].area() == pytest.approx(0.5 * 60 * 60, rel=0.05)
    assert "bounding rectangle" in dock.area_label.text()
    extent, crs = dock._search_extent(aerial_raster)
    assert crs == CRS and extent == pytest.approx((x - 30, y - 30, x + 30, y + 30), abs=0.5)


@pytest.mark.inqgis
def test_the_map_view_is_clipped_to_the_layer_and_a_too_large_area_is_refused_naming_the_largest(
        plugin, scene, qgis_iface, tmp_path, monkeypatch, qgis_new_project):
    import rasterio
    from rasterio.transform import from_origin

    from loc2_engine.pipeline import Localizer
    from loc2_qgis import task as task_module
    from test_pipeline import OracleMatcher

    # a 20 km aerial layer (10 m pixels), viewed whole on a canvas in EPSG:4326
    x, y = scene["xy"]
    tif = tmp_path / "wide.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=2000, height=2000, count=3, dtype="uint8", crs=CRS,
                       transform=from_origin(x - 10_000, y + 10_000, 10.0, 10.0)) as dst:
        dst.write(np.full((3, 2000, 2000), 90, np.uint8))
    layer = QgsRasterLayer(str(tif), "wide")
    QgsProject.instance().addMapLayer(layer)
    canvas = qgis_iface.mapCanvas()
    _canvas_over(canvas, layer, QgsCoordinateReferenceSystem("EPSG:4326"))
    dock = plugin.dock
    _choose(dock, AREA_VIEW)
    assert "the map view when Run is pressed" in dock.area_label.text() and " m × " in dock.area_label.text()
    dock.raster_combo.setLayer(layer)
    extent, _crs = dock._search_extent(layer)
    # the view is 1.5 times the layer: the search stops at the layer's edges
    assert extent == pytest.approx((x - 10_000, y - 10_000, x + 10_000, y + 10_000), abs=0.01)

    localizer = Localizer(model=OracleMatcher(), depth="plane", device="cpu")  # a 64 m window
    monkeypatch.setattr(task_module, "localizer_for", lambda *args: localizer)
    drive(dock, scene, layer, task_module.localize_with_engine)
    wait_until(lambda: dock.task is None)
    text = dock.status.text()
    assert "largest it searches is 400 windows" in text and "search a smaller area, or around a prior" in text
    assert "--" not in text and dock.table.item(0, 1).text() == "failed"


@pytest.mark.inqgis
def test_without_a_drawn_area_the_run_is_refused_and_around_the_prior_is_as_before(plugin, scene, aerial_raster,
                                                                                   tmp_path):
    dock = plugin.dock
    started = []
    _choose(dock, AREA_RECTANGLE)
    dock.area_tool.cancelled.emit()
    drive(dock, scene, aerial_raster, lambda request, task: started.append(request))
    assert not started and dock.status.text().startswith("Draw the search area on the map first")
    _choose(dock, AREA_PRIOR)
    assert not dock.radius.isHidden() and dock.area_label.isHidden()
    drive(dock, scene, aerial_raster, lambda request, task: started.append(request))
    wait_until(lambda: dock.task is None)
    assert isinstance(started[0], Request) and started[0].extent is None and started[0].prior["radius_m"] > 0

    # a photo without GPS, refused around the prior, is searched for in an area
    photo = tmp_path / "nogps.jpg"
    Image.fromarray(np.zeros((90, 160, 3), np.uint8)).save(photo)
    drive(dock, {"photo": photo}, aerial_raster, lambda request, task: started.append(request))
    assert len(started) == 1 and "no GPS position" in dock.status.text()
    _choose(dock, AREA_VIEW)
    dock.run_button.click()
    wait_until(lambda: dock.task is None)
    assert len(started) == 2 and started[1].extent is not None and started[1].prior is None


@pytest.mark.inqgis
def test_the_dock_with_a_search_area_still_fits_a_laptop_screen(plugin, qgis_iface):
    window = qgis_iface.mainWindow()
    window.show()
    try:
        _choose(plugin.dock, AREA_VIEW)  # the area's line shown
        body = plugin.dock.widget().widget().minimumSizeHint()
        assert body.height() <= 700 and body.width() <= 600, body
    finally:
        window.hide()


def _read_gps(path):
    from loc2_engine.exif import read_exif

    return read_exif(path).lonlat


@pytest.mark.inqgis
@needs_exiftool
def test_a_pose_is_written_into_a_copy_and_the_original_only_when_chosen(plugin, scene, aerial_raster, tmp_path,
                                                                         monkeypatch):
    dock = plugin.dock
    drive(dock, scene, aerial_raster, FakeEngine(scene["xy"]))
    wait_until(lambda: dock.task is None)
    result = dock.results[0]
    before = _read_gps(scene["photo"])
    asked = []
    monkeypatch.setattr(dock, "choose_folder", lambda title, start: asked.append(start) or str(tmp_path / "out"))
    monkeypatch.setattr(dock, "confirm", lambda title, text: asked.append(text) or False)

    dock.exif_button.click()  # the button's own action: a copy
    copy = tmp_path / "out" / scene["photo"].name
    assert copy.is_file() and asked == [str(scene["photo"].parent)]  # ok pose: no question asked
    assert _read_gps(copy) == pytest.approx((result.lon, result.lat), abs=1e-6)
    assert _read_gps(scene["photo"]) == pytest.approx(before, abs=1e-9)  # the original is untouched
    assert "Wrote the position of street.jpg" in dock.status.text()

    dock.in_place_action.trigger()  # the original, declined: nothing changes
    assert "rewrites" in asked[-1] and _read_gps(scene["photo"]) == pytest.approx(before, abs=1e-9)
    monkeypatch.setattr(dock, "confirm", lambda title, text: True)
    dock.in_place_action.trigger()  # confirmed
    assert _read_gps(scene["photo"]) == pytest.approx((result.lon, result.lat), abs=1e-6)


@pytest.mark.inqgis
@needs_exiftool
def test_a_low_confidence_pose_is_written_only_when_confirmed_and_a_failed_one_never(plugin, scene, aerial_raster,
                                                                                    tmp_path, monkeypatch):
    from loc2_engine.result import Result

    dock = plugin.dock
    drive(dock, scene, aerial_raster, FakeEngine(scene["xy"]))
    wait_until(lambda: dock.task is None)
    dock.results[0].status = "low_confidence"
    answers = []
    monkeypatch.setattr(dock, "choose_folder", lambda title, start: str(tmp_path / "out"))
    monkeypatch.setattr(dock, "confirm", lambda title, text: answers.append(text) or False)
    dock.write_exif()
    assert "low confidence" in answers[0] and not (tmp_path / "out").exists()
    monkeypatch.setattr(dock, "confirm", lambda title, text: True)
    dock.write_exif()
    assert (tmp_path / "out" / scene["photo"].name).is_file()

    dock.add_result(Result.failure(str(scene["photo"]), ValueError("no pose")))
    dock.table.selectRow(1)
    dock.write_exif()
    assert "there is no position to write" in dock.status.text()
