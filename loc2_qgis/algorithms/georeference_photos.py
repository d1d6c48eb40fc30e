"""Processing algorithm ``loc2:georeferencephotos``: batch-localize photos against an aerial raster.

It builds the photo list (a folder, or a point layer with a photo-path field such as the output of QGIS's
``native:importphotos``), then runs the engine's one batch loop, `loc2_engine.batch.run_batch`, with a
writer that puts each photo's rows (`loc2_engine.gpkg.layer_rows`, the same rows `loc2 batch` writes into
its GeoPackage) into the feature sinks. Failed photos are logged and become ``failed`` rows placed at their
prior; cancel is honoured between photos; RESUME appends to existing output files and skips the photos
they hold, as ``loc2 batch --resume``. A raster file is read by the engine as ``loc2 batch`` reads it; any
other raster layer (WMS, XYZ, ...) is rendered by QGIS with the dock's `render.LayerRenderer`. The engine
(and torch) is imported only when the algorithm runs.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections import deque

from qgis.core import (QgsFeature, QgsFeatureSink, QgsField, QgsFields, QgsGeometry, QgsProcessing,
                       QgsProcessingAlgorithm, QgsProcessingException, QgsProcessingLayerPostProcessorInterface,
                       QgsProcessingOutputLayerDefinition, QgsProcessingOutputNumber, QgsProperty,
                       QgsRemappingSinkDefinition,
                       QgsProcessingParameterBoolean, QgsProcessingParameterEnum,
                       QgsProcessingParameterFeatureSink, QgsProcessingParameterFeatureSource,
                       QgsProcessingParameterField, QgsProcessingParameterFile, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterLayer, QgsProcessingParameterString, QgsProject, QgsWkbTypes)

from loc2_engine import defaults

from ..compat import tr

CAMERAS = ("auto", "pano", "pinhole")
HEADING_MODES = ("Unknown: search every direction",
                 "From the photos: HEADING_FIELD, or EXIF GPSImgDirection (true north)",
                 "Fixed: HEADING for every photo")  # translated where shown (tr)
#: sink parameter -> (GeoPackage layer of loc2_engine.gpkg.LAYERS, QGIS geometry type)
SINKS = {"CAMERA_POSES": ("camera_poses", QgsWkbTypes.Type.Point),
         "VIEW_FRUSTUMS": ("view_frustums", QgsWkbTypes.Type.Polygon),
         "INLIERS": ("inliers", QgsWkbTypes.Type.Point)}


class GeoreferencePhotos(QgsProcessingAlgorithm):
    """Georeference photos (the engine loop of `loc2_engine.batch`, writing into feature sinks)."""

    def name(self):
        return "georeferencephotos"

    def displayName(self):
        return tr("Georeference photos")

    def group(self):
        return tr("Localization")

    def groupId(self):
        return "localization"

    def shortHelpString(self):
        return tr(
            "Estimates the position and heading of ground photos (phone, DSLR or 360° panoramas) by matching "
            "them against an aerial raster.\n\n"
            "Photos: a FOLDER (optionally RECURSIVE; priors from EXIF GPS), or a POINTS layer whose points are "
            "the priors and whose PHOTO_FIELD holds the photo paths, e.g. the output of 'Import geotagged "
            "photos' (its 'direction' field can serve as HEADING_FIELD).\n"
            "AERIAL is any raster layer QGIS can draw: files (GeoTIFF, VRT, ...) are read like 'loc2 batch' "
            "reads them, other layers (WMS, XYZ, ...) are rendered by QGIS like in the Loc² panel. RADIUS is "
            "the search radius around each prior in metres.\n\n"
            "Every photo gives a row in Camera poses with status ok, low_confidence or failed; failed rows "
            "say why in 'error', are listed in the log, and sit at the photo's prior when it has one (their "
            "x, y stay empty: they are not poses). The counts are in the outputs OK_COUNT, "
            "LOW_CONFIDENCE_COUNT, FAILED_COUNT and SKIPPED_COUNT. Cancelling stops after the current photo.\n\n"
            "RESUME (as 'loc2 batch --resume'): outputs that are existing files are appended to, and photos "
            "already in the Camera poses file are skipped, so an interrupted run can be finished. Without it, "
            "existing output files are replaced.")

    def createInstance(self):
        return GeoreferencePhotos()

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterFile(
            "FOLDER", tr("Folder of photos"), behavior=QgsProcessingParameterFile.Behavior.Folder, optional=True))
        self.addParameter(QgsProcessingParameterBoolean("RECURSIVE", tr("Include sub-folders"), defaultValue=False))
        self.addParameter(QgsProcessingParameterFeatureSource(
            "POINTS", tr("Photo points (instead of a folder)"), [QgsProcessing.SourceType.TypeVectorPoint],
            optional=True))
        self.addParameter(QgsProcessingParameterField(
            "PHOTO_FIELD", tr("Photo path field"), defaultValue="photo", parentLayerParameterName="POINTS",
            type=QgsProcessingParameterField.DataType.String, optional=True))
        self.addParameter(QgsProcessingParameterField(
            "HEADING_FIELD", tr("Heading field (degrees from true north, e.g. 'direction')"),
            parentLayerParameterName="POINTS", type=QgsProcessingParameterField.DataType.Numeric,
            optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer("AERIAL", tr("Aerial raster")))
        self.addParameter(QgsProcessingParameterNumber(
            "RADIUS", tr("Search radius (m)"), type=QgsProcessingParameterNumber.Type.Double,
            defaultValue=defaults.RADIUS_M, minValue=1.0))
        self.addParameter(QgsProcessingParameterEnum("CAMERA", tr("Camera"), options=list(CAMERAS),
                                                     defaultValue=CAMERAS.index(defaults.CAMERA)))
        self.addParameter(QgsProcessingParameterNumber(
            "HFOV", tr("Horizontal field of view of pinhole photos (degrees; empty: from EXIF)"),
            type=QgsProcessingParameterNumber.Type.Double, optional=True, minValue=1.0, maxValue=179.0))
        self.addParameter(QgsProcessingParameterNumber(
            "CAMERA_HEIGHT",
            tr("Camera height above the ground (m; empty: {height:g}, hand-held; a car roof is about 2.5)").format(
                height=defaults.CAMERA_HEIGHT_M),
            type=QgsProcessingParameterNumber.Type.Double, optional=True, minValue=0.3, maxValue=20.0))
        self.addParameter(QgsProcessingParameterEnum("HEADING_MODE", tr("Heading prior"),
                                                     options=[tr(mode) for mode in HEADING_MODES], defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            "HEADING", tr("Fixed heading (degrees from true north)"), type=QgsProcessingParameterNumber.Type.Double,
            optional=True, minValue=0.0, maxValue=360.0))
        self.addParameter(QgsProcessingParameterNumber(
            "HEADING_TOLERANCE", tr("Heading tolerance (degrees)"), type=QgsProcessingParameterNumber.Type.Double,
            defaultValue=defaults.HEADING_TOLERANCE_DEG, minValue=0.1, maxValue=180.0))
        self.addParameter(QgsProcessingParameterString("MODEL", tr("Model (registry name or weight file)"),
                                                       defaultValue=defaults.MODEL))
        self.addParameter(QgsProcessingParameterFile(
            "WEIGHTS", tr("Matcher checkpoint, for models that need one (the official loc2-* models)"), optional=True))
        self.addParameter(QgsProcessingParameterFile(
            "BACKBONE", tr("Backbone weights, for models that need them (DINOv2 ViT-L/14 .pth)"), optional=True))
        self.addParameter(QgsProcessingParameterString(
            "DEPTH", tr("Depth provider (empty: the model's default)"), optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            "RESUME", tr("Resume: append to existing output files, skipping the photos already in Camera poses"),
            defaultValue=False))
        self.addParameter(QgsProcessingParameterFeatureSink(
            "CAMERA_POSES", tr("Camera poses"), QgsProcessing.SourceType.TypeVectorPoint))
        self.addParameter(QgsProcessingParameterFeatureSink(
            "VIEW_FRUSTUMS", tr("View frustums"), QgsProcessing.SourceType.TypeVectorPolygon, optional=True))
        self.addParameter(QgsProcessingParameterFeatureSink(
            "INLIERS", tr("Inliers"), QgsProcessing.SourceType.TypeVectorPoint, optional=True))
        self.addOutput(QgsProcessingOutputNumber("OK_COUNT", tr("Photos localized (ok)")))
        self.addOutput(QgsProcessingOutputNumber("LOW_CONFIDENCE_COUNT", tr("Photos localized with low confidence")))
        self.addOutput(QgsProcessingOutputNumber("FAILED_COUNT", tr("Photos that failed")))
        self.addOutput(QgsProcessingOutputNumber("SKIPPED_COUNT", tr("Photos skipped (already in the output)")))

    # -- run ------------------------------------------------------------------------------------------------
    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS's name)
        """Main thread: the aerial source, since a layer renderer must copy the layer here (see render.py)."""
        layer = self.parameterAsRasterLayer(parameters, "AERIAL", context)
        if layer is None:
            raise QgsProcessingException(tr("No aerial raster layer was given (AERIAL)."))
        self.aerial_layer_crs = layer.crs()
        self.aerial = _aerial_source(layer, context)
        return True

    def processAlgorithm(self, parameters, context, feedback):
        from .. import deps

        absent = deps.missing()
        if absent:  # say what to install instead of an ImportError traceback
            raise QgsProcessingException(
                deps.describe(absent) + " " + tr("Open the Loc² panel in QGIS to install it."))
        from loc2_engine import pipeline
        from loc2_engine.batch import output_crs, run_batch
        from loc2_engine.errors import Loc2Error

        jobs = self._jobs(parameters, context, feedback)
        if not jobs:
            raise QgsProcessingException(tr("No photos to georeference: the folder has no jpg/jpeg/png/tif/tiff "
                                            "files, or the point layer has no features with a photo path."))
        hfov = self.parameterAsDouble(parameters, "HFOV", context) if _given(parameters, "HFOV") else None
        height = (self.parameterAsDouble(parameters, "CAMERA_HEIGHT", context)
                  if _given(parameters, "CAMERA_HEIGHT") else None)
        resume = self.parameterAsBoolean(parameters, "RESUME", context)
        try:
            crs = output_crs(jobs, self.aerial)
            localizer = pipeline.Localizer(
                model=self.parameterAsString(parameters, "MODEL", context) or defaults.MODEL,
                depth=self.parameterAsString(parameters, "DEPTH", context) or None,
                weights=self.parameterAsFile(parameters, "WEIGHTS", context) or None,
                backbone=self.parameterAsFile(parameters, "BACKBONE", context) or None,
                camera=CAMERAS[self.parameterAsEnum(parameters, "CAMERA", context)], hfov_deg=hfov,
                radius_m=self.parameterAsDouble(parameters, "RADIUS", context), camera_height_m=height)
            writer = _SinkWriter(self, parameters, context, self.aerial_layer_crs, crs, jobs, resume)
        except Loc2Error as exc:
            raise QgsProcessingException(str(exc)) from exc
        total = len(jobs)

        def progress(done, _total, result):
            feedback.setProgress(100.0 * done / total)
            name = os.path.basename(result.photo)
            if result.status == "failed":
                feedback.reportError(f"{done}/{total} {name}: failed: {result.error}", False)
            else:
                feedback.pushInfo(f"{done}/{total} {name}: {result.status}, confidence {result.confidence:.2f}, "
                                  f"{result.runtime_s:.1f} s")

        summary = run_batch(jobs, self.aerial, writer, localizer, resume=resume, progress=progress,
                            cancelled=feedback.isCanceled)
        feedback.pushInfo(f"ok {summary.ok}, low confidence {summary.low_confidence}, failed {summary.failed}, "
                          f"skipped (already in the output) {summary.skipped}"
                          + (" (cancelled)" if summary.cancelled else ""))
        return dict(writer.dest_ids, OK_COUNT=summary.ok, LOW_CONFIDENCE_COUNT=summary.low_confidence,
                    FAILED_COUNT=summary.failed, SKIPPED_COUNT=summary.skipped)

    def _jobs(self, parameters, context, feedback):
        """PhotoJobs from FOLDER or POINTS (exactly one of them), with priors from the other parameters."""
        from loc2_engine.batch import PhotoJob, folder_jobs
        from loc2_engine.errors import Loc2Error
        from loc2_engine.pipeline import Prior

        folder = self.parameterAsFile(parameters, "FOLDER", context)
        source = self.parameterAsSource(parameters, "POINTS", context)
        if bool(folder) == (source is not None):
            raise QgsProcessingException(tr("Give either a folder of photos (FOLDER) or a point layer (POINTS), "
                                            "not both and not neither."))
        mode = self.parameterAsEnum(parameters, "HEADING_MODE", context)
        fixed = self.parameterAsDouble(parameters, "HEADING", context) if _given(parameters, "HEADING") else None
        if mode == 2 and fixed is None:
            raise QgsProcessingException(tr("The heading prior is 'Fixed' but no HEADING was given."))
        base = Prior(radius_m=self.parameterAsDouble(parameters, "RADIUS", context),
                     heading_deg=fixed if mode == 2 else None,
                     heading_tolerance_deg=self.parameterAsDouble(parameters, "HEADING_TOLERANCE", context))
        if folder:
            try:
                return folder_jobs(folder, recursive=self.parameterAsBoolean(parameters, "RECURSIVE", context),
                                   prior=base, exif_heading=mode == 1)
            except Loc2Error as exc:
                raise QgsProcessingException(str(exc)) from exc

        photo_field = self.parameterAsString(parameters, "PHOTO_FIELD", context) or "photo"
        heading_field = self.parameterAsString(parameters, "HEADING_FIELD", context)
        fields = source.fields()
        for name in [photo_field] + ([heading_field] if heading_field else []):
            if fields.lookupField(name) < 0:
                raise QgsProcessingException(tr("The point layer has no field {name!r}; pick the photo path field "
                                                "(PHOTO_FIELD) and, optionally, a heading field (HEADING_FIELD).")
                                             .format(name=name))
        crs = source.sourceCrs()
        prior_crs = crs.authid() or crs.toWkt()
        jobs = []
        for feature in source.getFeatures():
            photo = feature[photo_field]
            if photo in (None, "") or not isinstance(photo, str):
                feedback.reportError(tr("Feature {id} has no photo path in {field!r}; skipped.").format(
                    id=feature.id(), field=photo_field), False)
                continue
            prior = base
            geometry = feature.geometry()
            if not geometry.isEmpty():
                point = geometry.vertexAt(0)  # multipoints: the first point
                prior = Prior(**{**base.__dict__, "x": point.x(), "y": point.y(), "crs": prior_crs})
            heading = feature[heading_field] if heading_field and mode == 1 else None
            if isinstance(heading, (int, float)):
                prior = Prior(**{**prior.__dict__, "heading_deg": float(heading) % 360.0})
            jobs.append(PhotoJob(photo=os.path.abspath(photo), prior=prior,
                                 exif_heading=mode == 1 and not heading_field))
        return jobs


def _given(parameters, name) -> bool:
    """True when an optional parameter has a value (qgis_process passes absent ones as missing or None)."""
    value = parameters.get(name)
    return value is not None and value != ""


def _aerial_source(layer, context):
    """What the engine reads: the file behind a GDAL raster layer (as ``loc2 batch`` reads it), else a
    `render.LayerRenderer` that has QGIS draw the layer (WMS, XYZ, ...), as the dock does. Files are
    rendered too when this Python has no rasterio (the engine's file reader needs it, QGIS does not)."""
    from ..render import LayerRenderer

    path = layer.source().split("|")[0]
    if layer.providerType() == "gdal" and os.path.isfile(path) and _engine_reads_files():
        return path
    return LayerRenderer(layer, context.transformContext())


def _engine_reads_files() -> bool:
    """Whether the engine can read raster files here (rasterio importable), checked without importing it."""
    return importlib.util.find_spec("rasterio") is not None


def _existing_file(destination: str):
    """(file path, layer name or None) of a sink destination that is an existing file; None otherwise."""
    path, _, options = destination.partition("|")
    if not os.path.isfile(path):
        return None
    layer = options.partition("layername=")[2] or None
    return path, layer


def _appending(value, destination: str, fields, wkb_type, crs) -> QgsProcessingOutputLayerDefinition:
    """A sink parameter value that appends to the existing ``destination`` instead of replacing it.

    value: the parameter's value (a QgsProcessingOutputLayerDefinition keeps its project and layer name, so
    the layer is still loaded after the run); fields are mapped by name.
    """
    remap = QgsRemappingSinkDefinition()
    remap.setDestinationFields(fields)
    remap.setFieldMap({name: QgsProperty.fromField(name) for name in fields.names()})
    remap.setSourceCrs(crs)
    remap.setDestinationCrs(crs)
    remap.setDestinationWkbType(wkb_type)
    project = value.destinationProject if isinstance(value, QgsProcessingOutputLayerDefinition) else None
    definition = QgsProcessingOutputLayerDefinition(destination, project)
    if isinstance(value, QgsProcessingOutputLayerDefinition):
        definition.destinationName = value.destinationName
    definition.setRemappingDefinition(remap)
    return definition


class _Styler(QgsProcessingLayerPostProcessorInterface):
    """Applies ``resources/styles/<layer>.qml`` to an output layer when QGIS loads it after the run, and keeps
    the run's output layers stacked as in the dock (`layers.LAYER_ORDER`: the pose above its inliers).

    QGIS loads a run's outputs one by one in an order of its own (each new layer on top), which would leave
    the pose arrow under the inlier dots; ``loaded`` (shared by the run's stylers) lists the layer ids
    already loaded, by layer name, so each new one can be put in its place among them.
    """

    #: QGIS does not own post-processors: keep the last few alive until QGIS has called them
    _alive = deque(maxlen=64)

    def __init__(self, layer_name: str, loaded: dict):
        super().__init__()
        self.layer_name = layer_name
        self.loaded = loaded

    @classmethod
    def create(cls, layer_name: str, loaded: dict) -> "_Styler":
        styler = cls(layer_name, loaded)
        cls._alive.append(styler)
        return styler

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS's name)
        from loc2_engine.resources import resource_path

        qml = resource_path("styles", f"{self.layer_name}.qml")
        if qml.is_file():
            layer.loadNamedStyle(str(qml))
            layer.triggerRepaint()
        self.loaded[self.layer_name] = layer.id()
        project = context.project() if context is not None and context.project() is not None else None
        _stack(project or QgsProject.instance(), self.loaded)


def _stack(project, loaded: dict) -> None:
    """Reorder the layer tree nodes of ``loaded`` ({layer name: layer id}) as `layers.LAYER_ORDER`, in the
    place of the topmost of them; nodes in different groups are left alone (the user put them there)."""
    from ..layers import LAYER_ORDER

    root = project.layerTreeRoot()
    nodes = [root.findLayer(loaded[name]) for name in LAYER_ORDER if name in loaded]
    nodes = [node for node in nodes if node is not None]
    if len(nodes) < 2 or len({id(node.parent()) for node in nodes}) != 1:
        return
    parent = nodes[0].parent()
    children = parent.children()
    if [children.index(node) for node in nodes] == sorted(children.index(node) for node in nodes):
        return  # already in order
    top = min(children.index(node) for node in nodes)
    # clones first: a layer whose last node leaves the tree is removed from the project
    parent.insertChildNodes(top, [node.clone() for node in nodes])
    for node in nodes:
        parent.removeChildNode(node)


class _SinkWriter:
    """The batch writer of the algorithm: each Result's `layer_rows` into the three feature sinks.

    qgis_crs: the sinks' CRS (the aerial layer's); crs: the same CRS as pyproj understands it (the raster
    file's, as `loc2 batch` uses), for placing the geometries; jobs: the batch's `PhotoJob` list (failed
    rows are placed at their prior); resume: sinks whose destination is an existing file are appended to,
    and `photos` lists the photos already in the Camera poses file (Raises OutputError if unreadable).
    """

    def __init__(self, alg, parameters, context, qgis_crs, crs, jobs, resume: bool):
        from loc2_engine.gpkg import LAYERS, photos_in

        from ..compat import ogr_field_types

        qt_types = ogr_field_types()
        self.crs = crs
        self.jobs = {job.photo: job for job in jobs}
        self.sinks, self.dest_ids, self.done = {}, {}, set()
        loaded = {}  # the run's output layers, as QGIS loads them (see _Styler)
        for param, (layer_name, wkb_type) in SINKS.items():
            fields = QgsFields()
            for name, kind in LAYERS[layer_name][1]:
                fields.append(QgsField(name, qt_types[kind]))
            destination = alg.parameterAsOutputLayer(parameters, param, context) or ""
            existing = _existing_file(destination) if resume else None
            if existing is not None:
                if param == "CAMERA_POSES":
                    self.done = photos_in(*existing)
                parameters = {**parameters,
                              param: _appending(parameters[param], destination, fields, wkb_type, qgis_crs)}
            sink, dest_id = alg.parameterAsSink(parameters, param, context, fields, wkb_type, qgis_crs)
            if sink is None:
                if param == "CAMERA_POSES":
                    raise QgsProcessingException(alg.invalidSinkError(parameters, param))
                continue  # an optional output the user switched off
            self.sinks[layer_name] = (sink, fields)
            self.dest_ids[param] = dest_id
            if context.willLoadLayerOnCompletion(dest_id):
                context.layerToLoadOnCompletionDetails(dest_id).setPostProcessor(_Styler.create(layer_name, loaded))

    def photos(self):
        """Photo ids already in the Camera poses file when resuming (`batch.run_batch` skips them)."""
        return self.done

    def write(self, result) -> None:
        from loc2_engine.gpkg import layer_rows

        rows = layer_rows(result, self.crs, failed_at=None if result.ok else self._prior_xy(result.photo))
        for layer_name, (sink, fields) in self.sinks.items():
            features = []
            for geometry, attrs in rows[layer_name]:
                feature = QgsFeature(fields)
                if geometry is not None:
                    g = QgsGeometry()
                    g.fromWkb(bytes(geometry.ExportToIsoWkb()))
                    feature.setGeometry(g)
                for name, value in attrs.items():
                    feature.setAttribute(name, value)
                features.append(feature)
            if features and not sink.addFeatures(features, QgsFeatureSink.Flag.FastInsert):
                raise QgsProcessingException(f"Cannot write the {layer_name} rows of {result.photo}: "
                                             f"{sink.lastError()}")

    def _prior_xy(self, photo: str):
        """(x, y) in the output CRS where ``photo`` was looked for (prior or EXIF GPS), or None."""
        from loc2_engine.batch import prior_position
        from loc2_engine.georef import transform_points

        job = self.jobs.get(photo)
        found = prior_position(job) if job is not None else None
        if found is None:
            return None
        xy, crs = found
        if crs is not None:  # None: already in the raster's CRS, the output's
            xy = transform_points([xy], crs, self.crs)[0]
        return tuple(float(v) for v in xy) if all(map(math.isfinite, xy)) else None
