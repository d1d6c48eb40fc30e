"""The Loc² dock: choose an aerial layer, a photo and a prior, run the localization in the background, list the
results, export them, open the match viewer.

It only collects choices and shows answers; the localization is `task.LocalizeTask` (engine in a worker
thread), the layers are `layers.add_result_layers`, the window is rendered by `render.LayerRenderer`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional

from qgis.core import (Qgis, QgsApplication, QgsCoordinateReferenceSystem, QgsCoordinateTransform,
                       QgsMapLayerProxyModel, QgsMessageLog, QgsPointXY, QgsProject, QgsRectangle,
                       QgsVectorLayer, QgsWkbTypes)
from qgis.gui import QgsDoubleSpinBox, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QImageReader, QPixmap
from qgis.PyQt.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDockWidget, QFormLayout,
                                 QHBoxLayout, QHeaderView, QLabel, QProgressBar, QPushButton, QTableWidget,
                                 QTableWidgetItem, QVBoxLayout, QWidget)

from loc2_engine import defaults

from . import deps, settings
from .map_tools import WGS84, PriorMarker, PriorTool
from .render import LayerRenderer, crs_definition
from .task import LocalizeTask, Request, localize_with_engine

LOG_TAG = "Loc²"
PHOTO_FILTER = "Photos (*.jpg *.jpeg *.JPG *.JPEG *.png *.PNG *.tif *.tiff *.TIF *.TIFF);;All files (*)"
WEIGHTS_FILTER = "Weights (*.safetensors *.pt *.pth *.bin);;All files (*)"
THUMBNAIL_WIDTH = 260
#: prior sources, in the order of the combo box
PRIOR_EXIF, PRIOR_CLICK, PRIOR_FEATURE = range(3)
#: results table columns
COLUMNS = ("photo", "status", "confidence", "heading°", "error")
#: metres of map shown around a pose when zooming to it
ZOOM_MARGIN_M = 60.0


def engine_choices():
    """(model names, depth provider names, devices) from the engine registries; read when the dock opens.

    Without torch the model registry cannot be imported; the dock then offers the defaults and Run offers
    the installer instead of failing.
    """
    from loc2_engine.depth import DEPTH_PROVIDERS

    # "truth" reads a dataset's ground-truth depth file per photo; a surveyor's photo has none
    depths = [name for name in DEPTH_PROVIDERS if name != "truth"]
    try:
        import torch

        from loc2_engine.models import MODEL_REGISTRY
    except ImportError:
        return [defaults.MODEL], depths, ["cpu"]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return list(MODEL_REGISTRY), depths, devices


def _weights_picker(name: str, tooltip: str) -> QgsFileWidget:
    """A file picker for a model file (weights or backbone)."""
    picker = QgsFileWidget()
    picker.setFilter(WEIGHTS_FILTER)
    picker.setObjectName(name)
    picker.setToolTip(tooltip)
    return picker


class Loc2Dock(QDockWidget):
    """The dock; ``engine`` is the callable the task runs (`task.localize_with_engine` unless injected)."""

    def __init__(self, iface, parent=None, engine=localize_with_engine):
        super().__init__("Loc² photo localization", parent)
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
        self._build()
        self._restore_settings()

    # -- layout -------------------------------------------------------------------------------------------
    def _build(self):
        body = QWidget()
        outer = QVBoxLayout(body)
        form = QFormLayout()
        outer.addLayout(form)

        self.raster_combo = QgsMapLayerComboBox()
        self.raster_combo.setFilters(QgsMapLayerProxyModel.Filter.RasterLayer)
        self.raster_combo.setObjectName("loc2_raster_combo")
        form.addRow("Aerial layer", self.raster_combo)

        self.photo = QgsFileWidget()
        self.photo.setFilter(PHOTO_FILTER)
        self.photo.setObjectName("loc2_photo")
        self.photo.fileChanged.connect(self._photo_changed)
        form.addRow("Photo", self.photo)
        self.thumbnail = QLabel("no photo")
        self.thumbnail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumbnail.setMinimumHeight(80)
        form.addRow(self.thumbnail)

        self.prior_source = QComboBox()
        self.prior_source.addItems(["EXIF GPS", "Click on the map", "Selected point feature"])
        self.prior_source.setObjectName("loc2_prior_source")
        self.prior_source.activated.connect(self._prior_source_chosen)
        self.pick_button = QPushButton("Pick")
        self.pick_button.setToolTip("Click on the map to set the prior position")
        self.pick_button.clicked.connect(lambda: self._prior_source_chosen(PRIOR_CLICK))
        row = QHBoxLayout()
        row.addWidget(self.prior_source, 1)
        row.addWidget(self.pick_button)
        form.addRow("Prior", row)
        self.prior_label = QLabel("none")
        self.prior_label.setWordWrap(True)
        form.addRow("", self.prior_label)

        self.radius = QgsDoubleSpinBox()
        self.radius.setRange(1.0, 500.0)
        self.radius.setSuffix(" m")
        self.radius.setClearValue(defaults.RADIUS_M)
        self.radius.valueChanged.connect(self._show_prior)
        form.addRow("Search radius", self.radius)

        self.camera = QComboBox()
        self.camera.addItems(["auto", "pano", "pinhole"])
        self.camera.setCurrentText(defaults.CAMERA)
        form.addRow("Camera", self.camera)
        self.hfov = QgsDoubleSpinBox()
        self.hfov.setRange(0.0, 179.0)
        self.hfov.setSuffix("°")
        self.hfov.setSpecialValueText("from EXIF / default")
        self.hfov.setClearValue(0.0)
        form.addRow("Horizontal FOV", self.hfov)
        self.camera_height = QgsDoubleSpinBox()
        self.camera_height.setRange(0.3, 20.0)
        self.camera_height.setSingleStep(0.1)
        self.camera_height.setSuffix(" m")
        self.camera_height.setClearValue(defaults.CAMERA_HEIGHT_M)
        self.camera_height.setToolTip(f"Height of the camera above the ground: about {defaults.CAMERA_HEIGHT_M:g} m "
                                      "hand-held, 2.5 m on a car roof. Monocular depth is put in metres from it, "
                                      "and the pose's depth scale is searched around it.")
        form.addRow("Camera height", self.camera_height)

        self.heading_known = QCheckBox("known")
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
        form.addRow("Heading (true north)", row)

        models, depths, devices = engine_choices()
        self.model = QComboBox()
        self.model.addItems(models)
        form.addRow("Model", self.model)
        # the official loc2-* models need files the plugin does not ship (docs/cli.md: --weights / --backbone)
        self.weights = _weights_picker("loc2_weights", "Matcher checkpoint of this model (the official loc2-* "
                                       "models need one); empty: the registry's file, or the one in $LOC2_MODELS")
        form.addRow("Weights", self.weights)
        self.backbone = _weights_picker("loc2_backbone", "Backbone weights of the official loc2-* models "
                                        "(DINOv2 ViT-L/14 .pth); empty: the one in $LOC2_MODELS")
        form.addRow("Backbone", self.backbone)
        self.model.currentTextChanged.connect(self._model_changed)
        self.depth = QComboBox()
        self.depth.addItems(depths)
        form.addRow("Depth", self.depth)
        self.device = QComboBox()
        self.device.addItems(devices)
        form.addRow("Device", self.device)

        row = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.run_button.setObjectName("loc2_run")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
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
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._row_selected)
        outer.addWidget(self.table, 1)

        self.export_file = QgsFileWidget()
        self.export_file.setStorageMode(QgsFileWidget.StorageMode.SaveFile)
        self.export_file.setFilter("GeoPackage (*.gpkg)")
        self.export_file.setObjectName("loc2_export_file")
        self.export_button = QPushButton("Export to GeoPackage")
        self.export_button.setObjectName("loc2_export")
        self.export_button.clicked.connect(self.export)
        self.viewer_button = QPushButton("Match viewer")
        self.viewer_button.setObjectName("loc2_viewer")
        self.viewer_button.clicked.connect(self.open_viewer)
        row = QHBoxLayout()
        row.addWidget(self.export_file, 1)
        row.addWidget(self.export_button)
        outer.addLayout(row)
        outer.addWidget(self.viewer_button)
        self.setWidget(body)

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
        """Show ``text`` in the dock and in QGIS's message bar (errors stay until dismissed)."""
        self.status.setText(text)
        duration = 0 if level in (Qgis.MessageLevel.Critical, Qgis.MessageLevel.Warning) else 8
        self.iface.messageBar().pushMessage(LOG_TAG, text, level, duration)

    # -- photo and prior -----------------------------------------------------------------------------------
    def _photo_changed(self, path: str):
        self.exif_lonlat = None
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
            self.thumbnail.setText(f"cannot read this photo ({reader.errorString()})" if path else "no photo")
            return
        self.thumbnail.setPixmap(QPixmap.fromImage(image.scaledToWidth(
            THUMBNAIL_WIDTH, Qt.TransformationMode.SmoothTransformation)))
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
        if self.prior_source.currentIndex() == PRIOR_EXIF:
            self._prior_source_chosen(PRIOR_EXIF)

    def _prior_source_chosen(self, index: int):
        self.prior_source.setCurrentIndex(index)
        if index == PRIOR_EXIF:
            if self.exif_lonlat is None:
                self.set_prior(None, None)
                self.prior_label.setText("the photo has no EXIF GPS: click on the map or select a point")
            else:
                self.set_prior(QgsPointXY(*self.exif_lonlat), WGS84)
        elif index == PRIOR_CLICK:
            self.canvas.setMapTool(self.tool)
            self.prior_label.setText("click on the map to set the prior")
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
        self.prior_label.setText("select a point feature in the active layer, then choose this again")

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
            self.prior_label.setText("none")
            return
        self.marker.show(self.prior_point, self.prior_crs, self.radius.value())
        self.prior_label.setText(f"{self.prior_point.x():.6f}, {self.prior_point.y():.6f} "
                                 f"({self.prior_crs.authid() or self.prior_crs.description()})")

    # -- running -------------------------------------------------------------------------------------------
    def request(self) -> Optional[Request]:
        """The run request from the widgets, or None after telling the user what is missing."""
        layer = self.raster_combo.currentLayer()
        if layer is None:
            self.message("Choose an aerial raster layer first.", Qgis.MessageLevel.Warning)
            return None
        photo = self.photo.filePath()
        if not photo or not Path(photo).is_file():
            self.message(f"Choose a photo file first{f' ({photo} does not exist)' if photo else ''}.",
                         Qgis.MessageLevel.Warning)
            return None
        prior = None
        if self.prior_point is not None:
            prior = {"x": self.prior_point.x(), "y": self.prior_point.y(),
                     "crs": crs_definition(self.prior_crs), "radius_m": self.radius.value()}
            if self.heading_known.isChecked():
                prior.update(heading_deg=self.heading.value(), heading_tolerance_deg=self.tolerance.value())
        return Request(photo=photo, aerial=LayerRenderer(layer, QgsProject.instance().transformContext()),
                       prior=prior, camera=self.camera.currentText(),
                       hfov_deg=self.hfov.value() or None, camera_height_m=self.camera_height.value(), model=self.model.currentText(),
                       depth=self.depth.currentText(), device=self.device.currentText(),
                       weights=self.weights.filePath() or None, backbone=self.backbone.filePath() or None)

    def run(self):
        """Start a localization; refused with a message while one is running."""
        if self.task is not None:
            self.message(f"Loc² is still localizing {Path(self.task.request.photo).name}; wait for it to finish "
                         "or press Cancel before starting another.", Qgis.MessageLevel.Warning)
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
        task.progressChanged.connect(lambda value: self.progress.setValue(int(value)))
        self.task = task  # the task manager holds only a C++ pointer: keep the Python object alive
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.status.setText(f"Localizing {Path(request.photo).name}…")
        QgsApplication.taskManager().addTask(task)

    def cancel(self):
        if self.task is not None:
            self.status.setText("Cancelling…")  # first: a queued task reports back inside cancel()
            self.task.cancel()

    def _task_done(self, task: LocalizeTask, ok: bool):
        """Main thread, from the task's finished(): show the result (the task is deleted right after)."""
        self.task = None
        self.cancel_button.setEnabled(False)
        name = Path(task.request.photo).name
        if task.error:
            QgsMessageLog.logMessage(task.error, LOG_TAG, Qgis.MessageLevel.Critical)
            last = task.error.strip().splitlines()[-1]
            self.message(f"Loc² failed on {name} with an unexpected error: {last} (details in the log).",
                         Qgis.MessageLevel.Critical)
            return
        if not ok or task.result is None:
            self.progress.setValue(0)
            self.message(f"Localization of {name} cancelled.", Qgis.MessageLevel.Info)
            return
        self.add_result(task.result)

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
        self.message(f"{name}: {result.status}, confidence {result.confidence:.2f}, heading "
                     f"{result.heading_deg:.1f}° ({result.inliers} inliers of {result.matches}).", level)
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
            self.message("Choose a GeoPackage file to export to.", Qgis.MessageLevel.Warning)
            return
        if not path.lower().endswith(".gpkg"):
            path += ".gpkg"
        if not self.results:
            self.message("Nothing to export yet: run a localization first.", Qgis.MessageLevel.Warning)
            return
        done = self.exported.setdefault(str(Path(path).resolve()), set())
        todo = [i for i in range(len(self.results)) if i not in done]
        if not todo:
            self.message(f"Every result is already in {path}.", Qgis.MessageLevel.Info)
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
        self.message(f"Exported {len(todo)} result(s) to {path}.", Qgis.MessageLevel.Success)

    def open_viewer(self):
        index = self.selected_index()
        if index is None or not self.results[index].ok or self.results[index].window is None:
            self.message("Select a localized result to view its matches.", Qgis.MessageLevel.Warning)
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
        if self.canvas.mapTool() is self.tool:
            self.canvas.unsetMapTool(self.tool)
        self.marker.remove()
        if self.viewer is not None:
            self.viewer.close()
