"""The Loc² dock: choose an aerial layer, a photo and where to search (around a prior, or in a drawn rectangle,
a drawn polygon or the map view), run the localization in the background, list the results, export them,
write a pose into a copy of its photo, open the match viewer.

It only collects choices and shows answers; the localization is `task.LocalizeTask` (engine in a worker
thread), the layers are `layers.add_result_layers`, the window is rendered by `render.LayerRenderer`, an
area becomes the engine's extent in `search_extent.engine_extent`, the EXIF is written by
`loc2_engine.exif_write`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional

from qgis.core import (Qgis, QgsApplication, QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsGeometry,
                       QgsMapLayerProxyModel, QgsMessageLog, QgsPointXY, QgsProject, QgsRectangle,
                       QgsVectorLayer, QgsWkbTypes)
from qgis.gui import QgsCollapsibleGroupBox, QgsDoubleSpinBox, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QImageReader, QPixmap
from qgis.PyQt.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDockWidget, QFileDialog, QFormLayout,
                                 QFrame, QHBoxLayout, QHeaderView, QLabel, QMenu, QMessageBox, QProgressBar,
                                 QPushButton, QScrollArea, QTableWidget, QTableWidgetItem, QToolButton,
                                 QVBoxLayout, QWidget)

from loc2_engine import defaults

from . import deps, settings
from .compat import QAction, tr
from .map_tools import POLYGON, RECTANGLE, WGS84, AreaMarker, AreaTool, PriorMarker, PriorTool, ground_size_m
from .render import LayerRenderer, crs_definition
from .search_extent import AreaError, engine_extent
from .task import LocalizeTask, Request, localize_with_engine

LOG_TAG = "Loc²"
PHOTO_FILTER = "Photos (*.jpg *.jpeg *.JPG *.JPEG *.png *.PNG *.tif *.tiff *.TIF *.TIFF);;All files (*)"
WEIGHTS_FILTER = "Weights (*.safetensors *.pt *.pth *.bin);;All files (*)"
THUMBNAIL_WIDTH = 260
#: a portrait photo's thumbnail is limited by height, so that it does not push the rest of the dock down
THUMBNAIL_HEIGHT = 110
#: rows of results visible without scrolling the table itself
TABLE_MIN_HEIGHT = 110
#: seconds a message stays in QGIS's message bar, by level (0: until dismissed; only for unexpected errors)
MESSAGE_SECONDS = {Qgis.MessageLevel.Info: 8, Qgis.MessageLevel.Success: 8, Qgis.MessageLevel.Warning: 15,
                   Qgis.MessageLevel.Critical: 0}
#: prior sources, in the order of the combo box
PRIOR_EXIF, PRIOR_CLICK, PRIOR_FEATURE = range(3)
#: search areas, in the order of the combo box
AREA_PRIOR, AREA_RECTANGLE, AREA_POLYGON, AREA_VIEW = range(4)
#: the shape drawn for each drawn search area
AREA_SHAPES = {AREA_RECTANGLE: RECTANGLE, AREA_POLYGON: POLYGON}
#: how to draw each shape, said while the tool is active
DRAW_HINTS = {RECTANGLE: "click one corner, then the other (or drag); Esc cancels",
              POLYGON: "click each corner; right-click or double-click to finish; Esc cancels"}
#: what the dock says when neither the photo nor the user gives a prior position
NO_GPS = "This photo has no GPS position: click the map to set the prior, or pick a point layer feature."
#: results table columns
COLUMNS = ("photo", "status", "confidence", "heading°", "error")
#: metres of map shown around a pose when zooming to it
ZOOM_MARGIN_M = 60.0


def format_point(point: QgsPointXY, crs: QgsCoordinateReferenceSystem) -> str:
    """A point as a surveyor reads it: degrees to 6 decimals (~0.1 m), projected units to 0.1 (a prior is a
    few metres off anyway, more digits only suggest a precision it does not have)."""
    decimals = 6 if crs.isGeographic() else 1
    return f"{point.x():.{decimals}f}, {point.y():.{decimals}f} ({crs.authid() or crs.description()})"


def engine_choices():
    """(model names, depth provider names, devices) from the engine registries; read when the dock opens.

    Without torch only the CPU is offered, and Run offers the installer instead of failing.
    """
    from loc2_engine.depth import DEPTH_PROVIDERS

    # "truth" reads a dataset's ground-truth depth file per photo; a surveyor's photo has none
    depths = [name for name in DEPTH_PROVIDERS if name != "truth"]
    from loc2_engine.registry import MODEL_REGISTRY

    try:
        import torch
    except ImportError:
        return list(MODEL_REGISTRY), depths, ["cpu"]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return list(MODEL_REGISTRY), depths, devices


def _weights_picker(name: str, tooltip: str) -> QgsFileWidget:
    """A file picker for a model file (weights or backbone)."""
    picker = QgsFileWidget()
    picker.setFilter(tr(WEIGHTS_FILTER))
    picker.setObjectName(name)
    picker.setToolTip(tooltip)
    return picker


class Loc2Dock(QDockWidget):
    """The dock; ``engine`` is the callable the task runs (`task.localize_with_engine` unless injected)."""

    def __init__(self, iface, parent=None, engine=localize_with_engine):
        super().__init__(tr("Loc² photo localization"), parent)
        self.setObjectName("loc2_dock")
        self.iface = iface
        self.engine = engine
        self.canvas = iface.mapCanvas()
        self.task: Optional[LocalizeTask] = None
        self.results: List[object] = []
        self.result_layers: List[dict] = []
        self.prior_point: Optional[QgsPointXY] = None
        self.prior_crs: Optional[QgsCoordinateReferenceSystem] = None
        self.exif_lonlat = None
        self.viewer = None
        self.exported = {}  # GeoPackage path -> indices of self.results already written there
        self.marker = PriorMarker(self.canvas)
        self.tool = PriorTool(self.canvas)
        self.tool.prior_clicked.connect(self._prior_clicked)
        #: the drawn search area: (geometry, its CRS), or None
        self.area: Optional[tuple] = None
        self.area_marker = AreaMarker(self.canvas)
        self.area_tool = AreaTool(self.canvas)
        self.area_tool.area_drawn.connect(self._area_drawn)
        self.area_tool.cancelled.connect(self._area_cancelled)
        self._build()
        self._restore_settings()
        self._area_chosen(AREA_PRIOR)
        self.canvas.extentsChanged.connect(self._show_area)

    # -- layout -------------------------------------------------------------------------------------------
    def _build(self):
        body = QWidget()
        body.setObjectName("loc2_dock_body")
        outer = QVBoxLayout(body)
        form = QFormLayout()
        outer.addLayout(form)

        self.raster_combo = QgsMapLayerComboBox()
        self.raster_combo.setFilters(QgsMapLayerProxyModel.Filter.RasterLayer)
        self.raster_combo.setObjectName("loc2_raster_combo")
        form.addRow(tr("Aerial layer"), self.raster_combo)

        self.photo = QgsFileWidget()
        self.photo.setFilter(tr(PHOTO_FILTER))
        self.photo.setObjectName("loc2_photo")
        self.photo.fileChanged.connect(self._photo_changed)
        form.addRow(tr("Photo"), self.photo)
        self.thumbnail = QLabel(tr("no photo"))
        self.thumbnail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumbnail.setMinimumHeight(40)
        form.addRow(self.thumbnail)

        self.area_choice = QComboBox()
        self.area_choice.addItems([tr("Around the prior"), tr("Drawn rectangle"), tr("Drawn polygon"),
                                   tr("Current map view")])
        self.area_choice.setObjectName("loc2_area_choice")
        self.area_choice.setToolTip(tr("Where the photo is looked for: around a prior position, or anywhere in "
                                       "an area (no prior needed; every window of the area is matched, so a "
                                       "larger area takes longer)"))
        self.area_choice.activated.connect(self._area_chosen)
        # tool buttons: as narrow as their words, so that the row fits beside the form's labels
        self.draw_button = QToolButton()
        self.draw_button.setText(tr("Draw"))
        self.draw_button.setToolTip(tr("Draw the search area on the map"))
        self.draw_button.clicked.connect(self.draw_area)
        self.clear_area_button = QToolButton()
        self.clear_area_button.setText(tr("Clear"))
        self.clear_area_button.setToolTip(tr("Remove the drawn search area from the map"))
        self.clear_area_button.clicked.connect(self.clear_area)
        row = QHBoxLayout()
        row.addWidget(self.area_choice, 1)
        row.addWidget(self.draw_button)
        row.addWidget(self.clear_area_button)
        form.addRow(tr("Search area"), row)
        self.area_label = QLabel("")
        self.area_label.setObjectName("loc2_area_label")
        self.area_label.setWordWrap(True)
        form.addRow("", self.area_label)

        self.prior_source = QComboBox()
        self.prior_source.addItems([tr("EXIF GPS"), tr("Click on the map"), tr("Selected point feature")])
        self.prior_source.setObjectName("loc2_prior_source")
        self.prior_source.activated.connect(self._prior_source_chosen)
        self.pick_button = QPushButton(tr("Pick"))
        self.pick_button.setToolTip(tr("Click on the map to set the prior position"))
        self.pick_button.clicked.connect(lambda: self._prior_source_chosen(PRIOR_CLICK))
        row = QHBoxLayout()
        row.addWidget(self.prior_source, 1)
        row.addWidget(self.pick_button)
        prior_title = QLabel(tr("Prior"))
        form.addRow(prior_title, row)
        self.prior_label = QLabel(tr("none"))
        self.prior_label.setWordWrap(True)
        form.addRow("", self.prior_label)

        self.radius = QgsDoubleSpinBox()
        self.radius.setRange(1.0, 500.0)
        self.radius.setSuffix(" m")
        self.radius.setClearValue(defaults.RADIUS_M)
        self.radius.valueChanged.connect(self._show_prior)
        radius_title = QLabel(tr("Search radius"))
        form.addRow(radius_title, self.radius)
        #: shown only for a search around the prior (an area needs none): the dock stays short either way
        self.prior_widgets = (prior_title, self.prior_source, self.pick_button, self.prior_label, radius_title,
                              self.radius)

        self.camera = QComboBox()
        self.camera.addItems(["auto", "pano", "pinhole"])
        self.camera.setCurrentText(defaults.CAMERA)
        form.addRow(tr("Camera"), self.camera)

        self.heading_known = QCheckBox(tr("known"))
        self.heading = QgsDoubleSpinBox()
        self.heading.setRange(0.0, 359.9)
        self.heading.setSuffix("°")
        self.heading.setWrapping(True)
        self.tolerance = QgsDoubleSpinBox()
        self.tolerance.setRange(1.0, 180.0)
        self.tolerance.setClearValue(defaults.HEADING_TOLERANCE_DEG)
        self.tolerance.setValue(defaults.HEADING_TOLERANCE_DEG)
        self.tolerance.setPrefix("± ")
        self.tolerance.setSuffix("°")
        self.heading_known.toggled.connect(self.heading.setEnabled)
        self.heading_known.toggled.connect(self.tolerance.setEnabled)
        self.heading_known.setChecked(False)
        self.heading.setEnabled(False)
        self.tolerance.setEnabled(False)
        row = QHBoxLayout()
        for widget in (self.heading_known, self.heading, self.tolerance):
            row.addWidget(widget)
        form.addRow(tr("Heading (true north)"), row)
        self.heading_source = QLabel("")
        self.heading_source.setObjectName("loc2_heading_source")
        self.heading_source.setWordWrap(True)
        form.addRow("", self.heading_source)

        # options a surveyor sets once, if ever: folded away so that the results fit on a laptop screen
        self.advanced = QgsCollapsibleGroupBox(tr("Advanced"))
        self.advanced.setObjectName("loc2_advanced")
        self.advanced.setCollapsed(True)  # QGIS restores the user's last state (saved under the object name)
        advanced = QFormLayout(self.advanced)
        outer.addWidget(self.advanced)
        self.hfov = QgsDoubleSpinBox()
        self.hfov.setRange(0.0, 179.0)
        self.hfov.setSuffix("°")
        self.hfov.setSpecialValueText(tr("from EXIF / default"))
        self.hfov.setClearValue(0.0)
        advanced.addRow(tr("Horizontal FOV"), self.hfov)
        self.camera_height = QgsDoubleSpinBox()
        self.camera_height.setRange(0.3, 20.0)
        self.camera_height.setSingleStep(0.1)
        self.camera_height.setSuffix(" m")
        self.camera_height.setClearValue(defaults.CAMERA_HEIGHT_M)
        self.camera_height.setToolTip(tr("Height of the camera above the ground: about {height:g} m hand-held, "
                                         "2.5 m on a car roof. Monocular depth is put in metres from it, and "
                                         "the pose's depth scale is searched around it.").format(
                                             height=defaults.CAMERA_HEIGHT_M))
        advanced.addRow(tr("Camera height"), self.camera_height)

        models, depths, devices = engine_choices()
        self.model = QComboBox()
        self.model.addItems(models)
        advanced.addRow(tr("Model"), self.model)
        # the official loc2-* models need files the plugin does not ship (docs/cli.md: --weights / --backbone)
        self.weights = _weights_picker("loc2_weights", tr("Matcher checkpoint of this model (the official loc2-* "
                                       "models need one); empty: the registry's file, or the one in $LOC2_MODELS"))
        advanced.addRow(tr("Weights"), self.weights)
        self.backbone = _weights_picker("loc2_backbone", tr("Backbone weights of the official loc2-* models "
                                        "(DINOv2 ViT-L/14 .pth); empty: the one in $LOC2_MODELS"))
        advanced.addRow(tr("Backbone"), self.backbone)
        self.model.currentTextChanged.connect(self._model_changed)
        self.depth = QComboBox()
        self.depth.addItems(depths)
        advanced.addRow(tr("Depth"), self.depth)
        self.device = QComboBox()
        self.device.addItems(devices)
        advanced.addRow(tr("Device"), self.device)

        row = QHBoxLayout()
        self.run_button = QPushButton(tr("Run"))
        self.run_button.setObjectName("loc2_run")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton(tr("Cancel"))
        self.cancel_button.setObjectName("loc2_cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        outer.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        outer.addWidget(self.progress)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setObjectName("loc2_status")
        outer.addWidget(self.status)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("loc2_results")
        self.table.setHorizontalHeaderLabels([tr(c) for c in COLUMNS])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setMinimumHeight(TABLE_MIN_HEIGHT)
        self.table.itemSelectionChanged.connect(self._row_selected)
        outer.addWidget(self.table, 1)

        self.export_file = QgsFileWidget()
        self.export_file.setStorageMode(QgsFileWidget.StorageMode.SaveFile)
        self.export_file.setFilter(tr("GeoPackage (*.gpkg)"))
        self.export_file.setObjectName("loc2_export_file")
        self.export_button = QPushButton(tr("Export to GeoPackage"))
        self.export_button.setObjectName("loc2_export")
        self.export_button.clicked.connect(self.export)
        self.viewer_button = QPushButton(tr("Match viewer"))
        self.viewer_button.setObjectName("loc2_viewer")
        self.viewer_button.clicked.connect(self.open_viewer)
        row = QHBoxLayout()
        row.addWidget(self.export_file, 1)
        row.addWidget(self.export_button)
        outer.addLayout(row)
        # a copy by default; the original only through the menu, after saying what it changes
        self.exif_button = QToolButton()
        self.exif_button.setObjectName("loc2_write_exif")
        self.exif_button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
        self.exif_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        copy_action = QAction(tr("Write position into a copy of the photo…"), self)
        copy_action.setIconText(tr("Write position…"))  # the button's words; the menu gives the full ones
        copy_action.setToolTip(tr("Write the selected pose (position, heading, positioning error) into the EXIF "
                                  "of a copy of its photo, in a folder you choose"))
        copy_action.triggered.connect(lambda: self.write_exif(in_place=False))
        self.in_place_action = QAction(tr("Write position into the original photo…"), self)
        self.in_place_action.triggered.connect(lambda: self.write_exif(in_place=True))
        menu = QMenu(self.exif_button)
        menu.addAction(copy_action)
        menu.addAction(self.in_place_action)
        self.exif_button.setMenu(menu)
        self.exif_button.setDefaultAction(copy_action)
        row = QHBoxLayout()
        row.addWidget(self.viewer_button)
        row.addWidget(self.exif_button, 1)
        outer.addLayout(row)

        # the dock shares the side of the window with other panels (Processing toolbox, Layers): it scrolls
        # instead of demanding the height of all its widgets
        scroll = QScrollArea()
        scroll.setObjectName("loc2_scroll")
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(body)
        self.setWidget(scroll)

    def _restore_settings(self):
        layer = QgsProject.instance().mapLayer(settings.get("last_raster"))
        if layer is not None:
            self.raster_combo.setLayer(layer)
        self.radius.setValue(settings.get("radius_m"))
        self.camera_height.setValue(settings.get("camera_height_m"))
        for combo, key in ((self.model, "model"), (self.depth, "depth")):
            index = combo.findText(settings.get(key))
            if index >= 0:
                combo.setCurrentIndex(index)
        self._model_changed(self.model.currentText())
        self.backbone.setFilePath(settings.get("backbone"))
        folder = settings.get("export_folder")
        if folder:
            self.export_file.setDefaultRoot(folder)

    def _save_settings(self):
        layer = self.raster_combo.currentLayer()
        settings.set("last_raster", layer.id() if layer else "")
        settings.set("radius_m", self.radius.value())
        settings.set("camera_height_m", self.camera_height.value())
        settings.set("model", self.model.currentText())
        settings.set("depth", self.depth.currentText())
        settings.set(settings.weights_key(self.model.currentText()), self.weights.filePath())
        settings.set("backbone", self.backbone.filePath())

    def _model_changed(self, model: str):
        """Show the checkpoint remembered for ``model`` (each model has its own)."""
        self.weights.setFilePath(settings.get(settings.weights_key(model)))

    # -- messages ------------------------------------------------------------------------------------------
    def message(self, text: str, level=Qgis.MessageLevel.Info):
        """Show ``text`` in the dock and in QGIS's message bar for `MESSAGE_SECONDS` (unexpected errors stay)."""
        self.status.setText(text)
        self.iface.messageBar().pushMessage(LOG_TAG, text, level, MESSAGE_SECONDS.get(level, 15))

    # -- photo and prior -----------------------------------------------------------------------------------
    def _photo_changed(self, path: str):
        self.exif_lonlat = None
        self.heading_source.setText("")  # the last photo's compass is not this one's
        reader = QImageReader(path)
        reader.setAutoTransform(True)  # EXIF orientation, as the engine applies it
        size = reader.size()
        if size.isValid() and max(size.width(), size.height()) > 2 * THUMBNAIL_WIDTH:
            # decode a camera-sized JPEG at thumbnail size, not at 24 Mpx
            reader.setScaledSize(size.scaled(2 * THUMBNAIL_WIDTH, 2 * THUMBNAIL_WIDTH,
                                             Qt.AspectRatioMode.KeepAspectRatio))
        image = reader.read()
        if image.isNull():
            self.thumbnail.setPixmap(QPixmap())
            self.thumbnail.setText(tr("cannot read this photo ({reason})").format(reason=reader.errorString())
                                   if path else tr("no photo"))
            return
        self.thumbnail.setPixmap(QPixmap.fromImage(image.scaled(
            THUMBNAIL_WIDTH, THUMBNAIL_HEIGHT, Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation)))
        self._read_exif(path)

    def _read_exif(self, path: str):
        """Pre-fill the HFOV and, with the EXIF source, the prior from the photo's EXIF."""
        from loc2_engine.errors import Loc2Error
        from loc2_engine.exif import read_exif

        try:
            info = read_exif(path)
        except Loc2Error as exc:
            self.message(str(exc), Qgis.MessageLevel.Warning)
            return
        width, height = info.width, info.height
        if info.orientation in (5, 6, 7, 8):  # stored sideways: the upright photo swaps them
            width, height = height, width
        try:
            from loc2_engine.ground import hfov_from_exif
        except ImportError:  # cameras need torch; the installer is offered on Run
            hfov = None
        else:
            hfov, _source = hfov_from_exif(info, width, height)
        self.hfov.setValue(hfov or 0.0)
        self.exif_lonlat = info.lonlat
        self._exif_heading(info)
        if self.prior_source.currentIndex() == PRIOR_EXIF:
            self._prior_source_chosen(PRIOR_EXIF)

    def _exif_heading(self, info):
        """Offer the photo's EXIF compass heading as the heading prior: pre-filled and named, but "known" stays
        as the user left it (a phone compass can be far off; ticking it is the user's call)."""
        if info.gps_heading_deg is None:
            self.heading_source.setText("")
            return
        self.heading.setValue(info.gps_heading_deg)
        if info.gps_heading_ref == "M":
            text = tr("EXIF compass {heading:.0f}° (magnetic north: add the local declination)")
        else:
            text = tr("EXIF compass {heading:.0f}°")
        self.heading_source.setText(text.format(heading=info.gps_heading_deg))

    def _prior_source_chosen(self, index: int):
        self.prior_source.setCurrentIndex(index)
        if index == PRIOR_EXIF:
            if self.exif_lonlat is None:
                self.set_prior(None, None)
                self.prior_label.setText(tr(NO_GPS))
            else:
                self.set_prior(QgsPointXY(*self.exif_lonlat), WGS84)
        elif index == PRIOR_CLICK:
            self.canvas.setMapTool(self.tool)
            self.prior_label.setText(tr("click on the map to set the prior"))
        else:
            self._prior_from_selection()

    def _prior_from_selection(self):
        layer = self.iface.activeLayer()
        if isinstance(layer, QgsVectorLayer) and layer.geometryType() == QgsWkbTypes.GeometryType.PointGeometry:
            for feature in layer.selectedFeatures():
                if feature.hasGeometry():
                    self.set_prior(feature.geometry().centroid().asPoint(), layer.crs())
                    return
        self.set_prior(None, None)
        self.prior_label.setText(tr("select a point feature in the active layer, then choose this again"))

    def _prior_clicked(self, point: QgsPointXY, crs: QgsCoordinateReferenceSystem):
        self.canvas.unsetMapTool(self.tool)
        self.set_prior(point, crs)

    def set_prior(self, point: Optional[QgsPointXY], crs: Optional[QgsCoordinateReferenceSystem]):
        """The prior position (None: none) and its CRS; drawn on the canvas with the search radius."""
        self.prior_point, self.prior_crs = point, crs
        self._show_prior()

    def _show_prior(self, *_):
        if self.prior_point is None:
            self.marker.clear()
            self.prior_label.setText(tr("none"))
            return
        self.marker.show(self.prior_point, self.prior_crs, self.radius.value())
        self.prior_label.setText(format_point(self.prior_point, self.prior_crs))

    # -- search area ---------------------------------------------------------------------------------------
    def _area_chosen(self, index: int):
        """Around the prior: the prior and radius apply; an area: they are off and the area is drawn (on
        choosing a drawn shape with none drawn yet) or read from the canvas at Run (the map view)."""
        self.area_choice.setCurrentIndex(index)
        around_prior = index == AREA_PRIOR
        for widget in self.prior_widgets:
            widget.setVisible(around_prior)
        self.draw_button.setEnabled(index in AREA_SHAPES)
        self.area_label.setVisible(not around_prior)
        if index in AREA_SHAPES and self.area is None:
            self.draw_area()
            return
        if self.canvas.mapTool() is self.area_tool:
            self.canvas.unsetMapTool(self.area_tool)
        self._show_area()

    def draw_area(self):
        """Activate the map tool that draws the chosen shape (a rectangle when the choice is not a shape)."""
        self.area_tool.shape = AREA_SHAPES.get(self.area_choice.currentIndex(), RECTANGLE)
        self.area_tool.reset()
        self.canvas.setMapTool(self.area_tool)
        self.area_label.setText(tr(DRAW_HINTS[self.area_tool.shape]))

    def _area_drawn(self, geometry: QgsGeometry, crs: QgsCoordinateReferenceSystem):
        self.canvas.unsetMapTool(self.area_tool)
        self.area = (QgsGeometry(geometry), crs)
        self.area_marker.show(geometry, crs)
        self._show_area()

    def _area_cancelled(self):
        self.canvas.unsetMapTool(self.area_tool)
        self._show_area()

    def clear_area(self):
        """Forget the drawn area and take it off the map."""
        if self.canvas.mapTool() is self.area_tool:
            self.canvas.unsetMapTool(self.area_tool)
        self.area = None
        self.area_marker.clear()
        self._show_area()

    def _show_area(self, *_):
        """The area's ground size under the choice (the map view's follows the canvas)."""
        index = self.area_choice.currentIndex()
        if index == AREA_PRIOR or self.canvas.mapTool() is self.area_tool:
            return
        found = self._area_rectangle()
        if found is None:
            self.area_label.setText(tr("none drawn: press Draw"))
            return
        width, height = ground_size_m(*found)
        size = tr("{width:.0f} m × {height:.0f} m").format(width=width, height=height)
        if index == AREA_VIEW:
            self.area_label.setText(tr("the map view when Run is pressed, now {size}").format(size=size))
        elif not self.area[0].isGeosEqual(QgsGeometry.fromRect(found[0])):  # a polygon, not a rectangle
            self.area_label.setText(tr("{size}, the polygon's bounding rectangle").format(size=size))
        else:
            self.area_label.setText(size)

    def _area_rectangle(self):
        """(rectangle, its CRS) searched under the current choice: the drawn area's bounding box or the map
        view; None around the prior or with nothing drawn."""
        index = self.area_choice.currentIndex()
        if index == AREA_VIEW:
            return self.canvas.extent(), self.canvas.mapSettings().destinationCrs()
        if index in AREA_SHAPES and self.area is not None:
            return self.area[0].boundingBox(), self.area[1]
        return None

    def _search_extent(self, layer):
        """(extent, extent CRS) of the chosen area for the engine (`search_extent.engine_extent`), or None
        after telling the user what is wrong."""
        found = self._area_rectangle()
        if found is None:
            self.message(tr("Draw the search area on the map first (Draw), or choose another search area."),
                         Qgis.MessageLevel.Warning)
            return None
        try:
            extent = engine_extent(*found, layer.crs(), layer.extent(), QgsProject.instance().transformContext())
        except AreaError as exc:
            self.message(str(exc), Qgis.MessageLevel.Warning)
            return None
        return extent, crs_definition(layer.crs())

    # -- running -------------------------------------------------------------------------------------------
    def request(self) -> Optional[Request]:
        """The run request from the widgets, or None after telling the user what is missing."""
        layer = self.raster_combo.currentLayer()
        if layer is None:
            self.message(tr("Choose an aerial raster layer first."), Qgis.MessageLevel.Warning)
            return None
        photo = self.photo.filePath()
        if not photo or not Path(photo).is_file():
            self.message(tr("Choose a photo file first ({path} does not exist).").format(path=photo) if photo
                         else tr("Choose a photo file first."), Qgis.MessageLevel.Warning)
            return None
        heading = ({"heading_deg": self.heading.value(), "heading_tolerance_deg": self.tolerance.value()}
                   if self.heading_known.isChecked() else {})
        extent = extent_crs = None
        prior = None
        if self.area_choice.currentIndex() != AREA_PRIOR:
            found = self._search_extent(layer)
            if found is None:
                return None
            extent, extent_crs = found
            prior = heading or None  # the heading prior still applies in every window
        elif self.prior_point is None and self.exif_lonlat is None:
            # refused here: the engine would only fail later, in the words of its command line
            self.message(tr(NO_GPS), Qgis.MessageLevel.Warning)
            return None
        elif self.prior_point is not None:
            prior = {"x": self.prior_point.x(), "y": self.prior_point.y(),
                     "crs": crs_definition(self.prior_crs), "radius_m": self.radius.value(), **heading}
        return Request(photo=photo, aerial=LayerRenderer(layer, QgsProject.instance().transformContext()),
                       prior=prior, extent=extent, extent_crs=extent_crs, camera=self.camera.currentText(),
                       hfov_deg=self.hfov.value() or None, camera_height_m=self.camera_height.value(), model=self.model.currentText(),
                       depth=self.depth.currentText(), device=self.device.currentText(),
                       weights=self.weights.filePath() or None, backbone=self.backbone.filePath() or None)

    def run(self):
        """Start a localization; refused with a message while one is running."""
        if self.task is not None:
            self.message(tr("Loc² is still localizing {name}; wait for it to finish or press Cancel before "
                            "starting another.").format(name=Path(self.task.request.photo).name),
                         Qgis.MessageLevel.Warning)
            return
        missing = deps.missing()
        if missing and self.engine is localize_with_engine:
            self.message(deps.describe(missing), Qgis.MessageLevel.Critical)
            deps.InstallDialog(missing, self).show()
            return
        request = self.request()
        if request is None:
            return
        self._save_settings()
        task = LocalizeTask(request, self._task_done, self.engine)
        task.setDependentLayers([self.raster_combo.currentLayer()])
        task.progressChanged.connect(self._task_progress)
        self.task = task  # the task manager holds only a C++ pointer: keep the Python object alive
        self._set_running(True)
        self.progress.setFormat("%p%")
        self.progress.setValue(0)
        self.status.setText((tr("Searching the area for {name}…") if request.extent else
                             tr("Localizing {name}…")).format(name=Path(request.photo).name))
        QgsApplication.taskManager().addTask(task)

    def _set_running(self, running: bool):
        """Run is off while a task runs (a second click would only be refused), Cancel only then."""
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)

    def _task_progress(self, value: float):
        # a progress signal still queued when the task has ended must not move the bar of a finished run
        if self.task is not None:
            self.progress.setValue(int(value))

    def cancel(self):
        """Say "Cancelled" at once (the engine stops at its next checkpoint, within a matcher pass or a batch
        of RANSAC hypotheses, and Run comes back then), and only once."""
        if self.task is not None and not self.task.isCanceled():
            self.cancel_button.setEnabled(False)
            self.progress.setValue(0)
            self.message(tr("Cancelled: {name} was not localized.").format(name=Path(self.task.request.photo).name),
                         Qgis.MessageLevel.Info)
            self.task.cancel()

    def _task_done(self, task: LocalizeTask, ok: bool):
        """Main thread, from the task's finished(): show the result (the task is deleted right after)."""
        self.task = None
        self._set_running(False)  # first, so that nothing below can leave Run disabled
        name = Path(task.request.photo).name
        if task.error:
            self._progress_failed()
            QgsMessageLog.logMessage(task.error, LOG_TAG, Qgis.MessageLevel.Critical)
            last = task.error.strip().splitlines()[-1]
            self.message(tr("Loc² failed on {name} with an unexpected error: {error} (details in the log).").format(
                name=name, error=last), Qgis.MessageLevel.Critical)
            return
        if task.isCanceled():
            return  # cancel() has said so already
        if not ok or task.result is None:
            self.progress.setValue(0)
            self.message(tr("Localization of {name} gave no result.").format(name=name), Qgis.MessageLevel.Warning)
            return
        if not task.result.ok:
            self._progress_failed()
        self.add_result(task.result)

    def _progress_failed(self):
        """The bar of a run that gave no pose: empty and saying so, not a full 100 %."""
        self.progress.setValue(0)
        self.progress.setFormat(tr("failed"))

    def add_result(self, result):
        """Record a Result: a table row, its layer group (when localized) and a message."""
        from .layers import add_result_layers

        self.results.append(result)
        _group, layers = add_result_layers(result)
        self.result_layers.append(layers)
        row = self.table.rowCount()
        self.table.insertRow(row)
        heading = f"{result.heading_deg:.1f}" if math.isfinite(result.heading_deg) else ""
        for col, text in enumerate((Path(result.photo).name, result.status, f"{result.confidence:.2f}",
                                    heading, result.error)):
            self.table.setItem(row, col, QTableWidgetItem(text))
        name = Path(result.photo).name
        if not result.ok:
            self.message(f"{name}: {result.error}", Qgis.MessageLevel.Warning)
            return
        level = Qgis.MessageLevel.Success if result.status == "ok" else Qgis.MessageLevel.Warning
        self.message(tr("{name}: {status}, confidence {confidence:.2f}, heading {heading:.1f}° ({inliers} inliers "
                        "of {matches}).").format(name=name, status=result.status, confidence=result.confidence,
                                                 heading=result.heading_deg, inliers=result.inliers,
                                                 matches=result.matches), level)
        self.table.selectRow(row)

    # -- results -------------------------------------------------------------------------------------------
    def selected_index(self) -> Optional[int]:
        rows = self.table.selectionModel().selectedRows()
        return rows[0].row() if rows else (len(self.results) - 1 if self.results else None)

    def _row_selected(self):
        index = self.selected_index()
        if index is not None:
            self.zoom_to(index)

    def zoom_to(self, index: int):
        """Centre the canvas on a result's pose, showing ZOOM_MARGIN_M around it."""
        pose = self.result_layers[index].get("camera_poses")
        if pose is None or pose.featureCount() == 0:
            return
        point = next(pose.getFeatures()).geometry().asPoint()
        canvas_crs = self.canvas.mapSettings().destinationCrs()
        lonlat = QgsCoordinateTransform(pose.crs(), WGS84, QgsProject.instance()).transform(point)
        from .map_tools import circle_geometry

        box = circle_geometry(lonlat, WGS84, ZOOM_MARGIN_M, canvas_crs).boundingBox()
        self.canvas.setExtent(QgsRectangle(box))
        self.canvas.refresh()

    def export(self):
        """Append every result to the GeoPackage named in the export field (existing rows are kept)."""
        from loc2_engine.errors import Loc2Error
        from loc2_engine.gpkg import GeoPackageWriter

        path = self.export_file.filePath()
        if not path:
            self.message(tr("Choose a GeoPackage file to export to."), Qgis.MessageLevel.Warning)
            return
        if not path.lower().endswith(".gpkg"):
            path += ".gpkg"
        if not self.results:
            self.message(tr("Nothing to export yet: run a localization first."), Qgis.MessageLevel.Warning)
            return
        done = self.exported.setdefault(str(Path(path).resolve()), set())
        todo = [i for i in range(len(self.results)) if i not in done]
        if not todo:
            self.message(tr("Every result is already in {path}.").format(path=path), Qgis.MessageLevel.Info)
            return
        crs = next((r.crs for r in self.results if r.crs), None) or crs_definition(
            self.raster_combo.currentLayer().crs())
        try:
            with GeoPackageWriter(path, crs) as writer:  # opens an existing file for appending
                for i in todo:
                    writer.write(self.results[i])
                    done.add(i)
        except Loc2Error as exc:
            self.message(str(exc), Qgis.MessageLevel.Critical)
            return
        settings.set("export_folder", str(Path(path).parent))
        self.message(tr("Exported {count} result(s) to {path}.").format(count=len(todo), path=path),
                     Qgis.MessageLevel.Success)

    def write_exif(self, in_place: bool = False):
        """Write the selected pose into a copy of its photo (a folder the user picks), or into the photo itself
        when ``in_place`` and the user confirms; a low_confidence pose only after asking, a failed one never."""
        index = self.selected_index()
        if index is None:
            self.message(tr("Nothing to write yet: run a localization first."), Qgis.MessageLevel.Warning)
            return
        result = self.results[index]
        name = Path(result.photo).name
        if not result.ok:
            self.message(tr("{name} was not localized: there is no position to write.").format(name=name),
                         Qgis.MessageLevel.Warning)
            return
        if result.status != "ok" and not self.confirm(
                tr("Low confidence"), tr("The pose of {name} has low confidence ({confidence:.2f}): it may be "
                                         "wrong. Write it anyway?").format(name=name, confidence=result.confidence)):
            return
        if in_place:
            if not self.confirm(tr("Write into the original photo"), tr(
                    "This rewrites {path} itself: its GPS position and direction are replaced by Loc²'s (the old "
                    "ones are kept in its XMP-loc2 record). Write into the original?").format(path=result.photo)):
                return
            out_dir = None
        else:
            folder = self.choose_folder(tr("Folder for the corrected copy of {name}").format(name=name),
                                        str(Path(result.photo).parent))
            if not folder:
                return
            out_dir = Path(folder)
        self._write_pose(result, out_dir)

    def confirm(self, title: str, text: str) -> bool:
        """Ask a yes/no question; No is the default."""
        answer = QMessageBox.question(self, title, text, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def choose_folder(self, title: str, start: str) -> str:
        """A folder picked by the user ("" when cancelled)."""
        return QFileDialog.getExistingDirectory(self, title, start)

    def _write_pose(self, result, out_dir: Optional[Path]):
        """Run `exif_write.write_all` on one result (``out_dir`` None: in place) and say what it did."""
        from loc2_engine.errors import OutputError
        from loc2_engine.exif_write import pose_of, write_all

        photo = Path(result.photo)
        try:
            outcome = list(write_all([pose_of(result)], photo.parent, out_dir))[0]
        except OutputError as exc:  # no exiftool: the sentence says how to install it
            self.message(str(exc), Qgis.MessageLevel.Critical)
            return
        if outcome.error:
            self.message(outcome.error, Qgis.MessageLevel.Warning)
            return
        self.message(tr("Wrote the position of {name} into {path}.").format(name=photo.name, path=outcome.written),
                     Qgis.MessageLevel.Success)

    def open_viewer(self):
        index = self.selected_index()
        if index is None or not self.results[index].ok or self.results[index].window is None:
            self.message(tr("Select a localized result to view its matches."), Qgis.MessageLevel.Warning)
            return
        from .match_viewer import MatchViewer

        self.viewer = MatchViewer(self.results[index], self)
        self.viewer.show()

    # -- teardown ------------------------------------------------------------------------------------------
    def close_down(self):
        """Before the plugin unloads: no callbacks into a deleted dock, no tool or rubber band left behind."""
        if self.task is not None:
            self.task.on_done = lambda *_: None
            self.task.cancel()
            self.task = None
        for tool in (self.tool, self.area_tool):
            if self.canvas.mapTool() is tool:
                self.canvas.unsetMapTool(tool)
        self.canvas.extentsChanged.disconnect(self._show_area)
        self.marker.remove()
        self.area_marker.remove()
        if self.viewer is not None:
            self.viewer.close()
