"""Canvas interaction: a map tool that sets the prior by a click, the prior + search radius drawn on the map, and
a map tool that draws a search area (rectangle or polygon) kept on the map until cleared.

The radius is a true ground circle: it is built in an azimuthal-equidistant CRS centred on the prior (the
same kind of frame the engine works in) and transformed to the canvas CRS, so it stays a correct circle in
metres whatever the project CRS (EPSG:4326, 3857 at high latitude, ...). Drawn areas are held in the CRS
they were drawn in and redrawn when the canvas CRS changes.
"""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

from qgis.core import (QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsGeometry, QgsPointXY,
                       QgsProject, QgsRectangle, QgsWkbTypes)
from qgis.gui import QgsMapTool, QgsMapToolEmitPoint, QgsRubberBand
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor

CIRCLE_POINTS = 72
WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")
#: the shapes `AreaTool` draws
RECTANGLE, POLYGON = "rectangle", "polygon"
#: pixels the mouse must move with the button down for a press and release to be a drag (one rectangle)
DRAG_PX = 6
AREA_COLOR = QColor(43, 120, 214)


def local_crs(lon: float, lat: float) -> QgsCoordinateReferenceSystem:
    """Azimuthal-equidistant CRS (metres, true north) centred on lon/lat; the engine's local frame."""
    return QgsCoordinateReferenceSystem.fromProj(
        f"+proj=aeqd +lat_0={lat:.12f} +lon_0={lon:.12f} +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs")


def to_lonlat(point: QgsPointXY, crs: QgsCoordinateReferenceSystem) -> QgsPointXY:
    return QgsCoordinateTransform(crs, WGS84, QgsProject.instance()).transform(point)


def ground_size_m(rect: QgsRectangle, crs: QgsCoordinateReferenceSystem) -> Tuple[float, float]:
    """(width, height) in metres on the ground of ``rect`` (in ``crs``): its bounding box in the
    azimuthal-equidistant frame centred on it, so degrees and Web Mercator read as true metres."""
    centre = to_lonlat(rect.center(), crs)
    frame = local_crs(centre.x(), centre.y())
    box = QgsCoordinateTransform(crs, frame, QgsProject.instance()).transformBoundingBox(rect)
    return box.width(), box.height()


def circle_geometry(center: QgsPointXY, crs: QgsCoordinateReferenceSystem, radius_m: float,
                    out_crs: QgsCoordinateReferenceSystem) -> QgsGeometry:
    """Polygon of the ground circle of ``radius_m`` metres around ``center`` (in ``crs``), in ``out_crs``."""
    lonlat = to_lonlat(center, crs)
    frame = local_crs(lonlat.x(), lonlat.y())
    ring = [QgsPointXY(radius_m * math.sin(a), radius_m * math.cos(a))
            for a in (2 * math.pi * i / CIRCLE_POINTS for i in range(CIRCLE_POINTS + 1))]
    geom = QgsGeometry.fromPolygonXY([ring])
    geom.transform(QgsCoordinateTransform(frame, out_crs, QgsProject.instance()))
    return geom


class PriorTool(QgsMapToolEmitPoint):
    """Click on the map to set the prior; emits the point in the canvas CRS."""

    prior_clicked = pyqtSignal(QgsPointXY, QgsCoordinateReferenceSystem)

    def __init__(self, canvas):
        super().__init__(canvas)
        self.canvasClicked.connect(self._clicked)

    def _clicked(self, point, _button):
        self.prior_clicked.emit(QgsPointXY(point), self.canvas().mapSettings().destinationCrs())


class PriorMarker:
    """The prior (a cross) and its search radius (a circle) drawn on the canvas as rubber bands.

    Rubber bands hold map coordinates, so the marker is redrawn when the canvas CRS changes (QGIS switches
    it to the first layer's CRS, possibly after the prior was set).
    """

    def __init__(self, canvas):
        self.canvas = canvas
        self.shown = None  # (point, crs, radius_m) currently drawn
        canvas.destinationCrsChanged.connect(self._redraw)
        self.circle = QgsRubberBand(canvas, QgsWkbTypes.GeometryType.PolygonGeometry)
        self.circle.setStrokeColor(QColor(214, 64, 43, 220))
        self.circle.setFillColor(QColor(214, 64, 43, 30))
        self.circle.setWidth(2)
        self.center = QgsRubberBand(canvas, QgsWkbTypes.GeometryType.PointGeometry)
        self.center.setColor(QColor(214, 64, 43, 255))
        self.center.setIcon(QgsRubberBand.IconType.ICON_X)
        self.center.setIconSize(12)
        self.center.setWidth(3)

    def show(self, point: QgsPointXY, crs: QgsCoordinateReferenceSystem, radius_m: float) -> None:
        self.shown = (QgsPointXY(point), crs, radius_m)
        canvas_crs = self.canvas.mapSettings().destinationCrs()
        self.circle.setToGeometry(circle_geometry(point, crs, radius_m, canvas_crs), None)
        center = QgsGeometry.fromPointXY(point)
        center.transform(QgsCoordinateTransform(crs, canvas_crs, QgsProject.instance()))
        self.center.setToGeometry(center, None)

    def _redraw(self) -> None:
        if self.shown is not None:
            self.show(*self.shown)

    def clear(self) -> None:
        self.shown = None
        self.circle.reset(QgsWkbTypes.GeometryType.PolygonGeometry)
        self.center.reset(QgsWkbTypes.GeometryType.PointGeometry)

    def remove(self) -> None:
        """Take the rubber bands off the canvas for good (plugin unload)."""
        self.canvas.destinationCrsChanged.disconnect(self._redraw)
        for band in (self.circle, self.center):
            self.canvas.scene().removeItem(band)


def _area_band(canvas, alpha: int) -> QgsRubberBand:
    """A polygon rubber band in the search-area colour, filled with ``alpha`` (0-255)."""
    band = QgsRubberBand(canvas, QgsWkbTypes.GeometryType.PolygonGeometry)
    band.setStrokeColor(AREA_COLOR)
    fill = QColor(AREA_COLOR)
    fill.setAlpha(alpha)
    band.setFillColor(fill)
    band.setWidth(2)
    return band


class AreaTool(QgsMapTool):
    """Draws a search area on the canvas and emits it, in the canvas CRS, as ``area_drawn(geometry, crs)``.

    A rectangle: click one corner and click the other (or press, drag and release); a polygon: click each
    vertex, then right-click or double-click to finish (Backspace takes back the last vertex). Esc cancels
    (``cancelled``). Set ``shape`` (`RECTANGLE` or `POLYGON`) before activating the tool.
    """

    area_drawn = pyqtSignal(QgsGeometry, QgsCoordinateReferenceSystem)
    cancelled = pyqtSignal()

    def __init__(self, canvas):
        super().__init__(canvas)
        self.shape = RECTANGLE
        self.points: List[QgsPointXY] = []
        self.cursor_point: Optional[QgsPointXY] = None
        self.press_pos = None  # pixel of the first corner's press: a release far from it ends a drag
        self.band = _area_band(canvas, 20)
        self.band.setLineStyle(Qt.PenStyle.DashLine)
        self.setCursor(Qt.CursorShape.CrossCursor)

    def canvasPressEvent(self, event):  # noqa: N802 (QGIS's names, here and below)
        if event.button() == Qt.MouseButton.RightButton:
            self._finish()
        elif event.button() == Qt.MouseButton.LeftButton:
            self.points.append(QgsPointXY(event.mapPoint()))
            if self.shape == RECTANGLE and len(self.points) == 1:
                self.press_pos = event.pos()
            self._update(event.mapPoint())
            if self.shape == RECTANGLE and len(self.points) == 2:
                self._finish()

    def canvasReleaseEvent(self, event):  # noqa: N802
        dragged = self.press_pos is not None and (event.pos() - self.press_pos).manhattanLength() > DRAG_PX
        if self.shape == RECTANGLE and len(self.points) == 1 and dragged:
            self.points.append(QgsPointXY(event.mapPoint()))
            self._finish()

    def canvasMoveEvent(self, event):  # noqa: N802
        if self.points:
            self._update(event.mapPoint())

    def canvasDoubleClickEvent(self, event):  # noqa: N802
        # Qt sends press, release, double-click: the press before it has already placed this vertex
        self._finish()

    def keyPressEvent(self, event):  # noqa: N802
        if event.key() == Qt.Key.Key_Escape:
            self.reset()
            self.cancelled.emit()
        elif event.key() == Qt.Key.Key_Backspace and self.shape == POLYGON and self.points:
            self.points.pop()
            self._update(self.cursor_point)
        else:
            event.ignore()
            return
        event.accept()

    def deactivate(self):
        self.reset()
        super().deactivate()

    def reset(self) -> None:
        """Forget the area being drawn and take its rubber band off."""
        self.points, self.cursor_point, self.press_pos = [], None, None
        self.band.reset(QgsWkbTypes.GeometryType.PolygonGeometry)

    def geometry(self, cursor: Optional[QgsPointXY] = None) -> Optional[QgsGeometry]:
        """The area of the points placed (and ``cursor``, the corner or vertex under the mouse), in the canvas
        CRS; None while it has no area (one corner, fewer than three distinct vertices, a zero width)."""
        points = self.points + ([QgsPointXY(cursor)] if cursor is not None else [])
        if self.shape == RECTANGLE:
            if len(points) < 2:
                return None
            rect = QgsRectangle(points[0], points[-1])
            return None if rect.isEmpty() else QgsGeometry.fromRect(rect)
        distinct = [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]]
        if len(distinct) < 3:
            return None
        polygon = QgsGeometry.fromPolygonXY([distinct + [distinct[0]]])
        return polygon if polygon.area() > 0 else None

    def _update(self, cursor: Optional[QgsPointXY]) -> None:
        self.cursor_point = QgsPointXY(cursor) if cursor is not None else None
        geometry = self.geometry(self.cursor_point)
        points = self.points + ([self.cursor_point] if self.cursor_point is not None else [])
        if geometry is None and len(points) > 1:  # the first edge of a polygon, before it has an area
            geometry = QgsGeometry.fromPolylineXY(points)
        if geometry is None:
            self.band.reset(QgsWkbTypes.GeometryType.PolygonGeometry)
        else:
            self.band.setToGeometry(geometry, None)

    def _finish(self) -> None:
        # a rectangle finished by a right-click takes the corner under the mouse
        geometry = self.geometry(self.cursor_point if self.shape == RECTANGLE and len(self.points) == 1 else None)
        if geometry is None:
            return  # not an area yet: keep drawing
        self.reset()
        self.area_drawn.emit(geometry, self.canvas().mapSettings().destinationCrs())


class AreaMarker:
    """A search area drawn on the canvas (a filled outline) until cleared, redrawn when the canvas CRS
    changes; ``shown`` is the (geometry, crs) drawn, or None."""

    def __init__(self, canvas):
        self.canvas = canvas
        self.shown = None
        canvas.destinationCrsChanged.connect(self._redraw)
        self.band = _area_band(canvas, 30)

    def show(self, geometry: QgsGeometry, crs: QgsCoordinateReferenceSystem) -> None:
        self.shown = (QgsGeometry(geometry), crs)
        drawn = QgsGeometry(geometry)
        drawn.transform(QgsCoordinateTransform(crs, self.canvas.mapSettings().destinationCrs(), QgsProject.instance()))
        self.band.setToGeometry(drawn, None)

    def _redraw(self) -> None:
        if self.shown is not None:
            self.show(*self.shown)

    def clear(self) -> None:
        self.shown = None
        self.band.reset(QgsWkbTypes.GeometryType.PolygonGeometry)

    def remove(self) -> None:
        """Take the rubber band off the canvas for good (plugin unload)."""
        self.canvas.destinationCrsChanged.disconnect(self._redraw)
        self.canvas.scene().removeItem(self.band)
