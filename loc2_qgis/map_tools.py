"""Canvas interaction: a map tool that sets the prior by a click, and the prior + search radius drawn on the map.

The radius is a true ground circle: it is built in an azimuthal-equidistant CRS centred on the prior (the
same kind of frame the engine works in) and transformed to the canvas CRS, so it stays a correct circle in
metres whatever the project CRS (EPSG:4326, 3857 at high latitude, ...).
"""

from __future__ import annotations

import math

from qgis.core import (QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsGeometry, QgsPointXY,
                       QgsProject, QgsWkbTypes)
from qgis.gui import QgsMapToolEmitPoint, QgsRubberBand
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtGui import QColor

CIRCLE_POINTS = 72
WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")


def local_crs(lon: float, lat: float) -> QgsCoordinateReferenceSystem:
    """Azimuthal-equidistant CRS (metres, true north) centred on lon/lat; the engine's local frame."""
    return QgsCoordinateReferenceSystem.fromProj(
        f"+proj=aeqd +lat_0={lat:.12f} +lon_0={lon:.12f} +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs")


def to_lonlat(point: QgsPointXY, crs: QgsCoordinateReferenceSystem) -> QgsPointXY:
    return QgsCoordinateTransform(crs, WGS84, QgsProject.instance()).transform(point)


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
