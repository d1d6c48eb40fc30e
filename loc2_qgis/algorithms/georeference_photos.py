"""Processing algorithm ``loc2:georeferencephotos``: batch-localize photos against an aerial raster.

It builds the photo list (a folder, or a point layer with a photo-path field such as the output of QGIS's
``native:importphotos``), then runs the engine's one batch loop, `loc2_engine.batch.run_batch`, with a
writer that puts each photo's rows (`loc2_engine.gpkg.layer_rows`, the same rows `loc2 batch` writes into
its GeoPackage) into the feature sinks. Failed photos are logged and become ``failed`` rows placed at their
prior; cancel is honoured between photos; RESUME appends to existing output files and skips the photos
they hold, as ``loc2 batch --resume``; an existing GeoPackage is always appended to (layer by layer, never
replaced, so the user's other layers in it stay), as ``loc2 batch`` does. A raster file is read by the engine as ``loc2 batch`` reads it; any
other raster layer (WMS, XYZ, ...) is rendered by QGIS with the dock's `render.LayerRenderer`. The engine
(and torch) is imported only when the algorithm runs.

With EXTENT, a photo that has no prior position (no point of its own, no EXIF GPS) is searched for in the
extent (`Localizer.localize_in_extent`, by the batch loop, as ``loc2 batch --extent``) instead of failing. With WRITE_EXIF, the ``ok``
poses of the run are written into copies of their photos in EXIF_FOLDER (`loc2_engine.exif_write`, as
``loc2 exif write``); the originals are never changed.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections import deque
from pathlib import Path

from qgis.core import (QgsFeature, QgsFeatureSink, QgsField, QgsFields, QgsGeometry, QgsProcessing,
                       QgsProcessingAlgorithm, QgsProcessingContext, QgsProcessingException, QgsProcessingLayerPostProcessorInterface,
                       QgsProcessingOutputLayerDefinition, QgsProcessingOutputNumber, QgsProperty,
                       QgsRemappingSinkDefinition, QgsProcessingParameterDefinition,
                       QgsProcessingParameterBoolean, QgsProcessingParameterEnum, QgsProcessingParameterExtent,
                       QgsProcessingParameterFeatureSink, QgsProcessingParameterFeatureSource,
                       QgsProcessingParameterField, QgsProcessingParameterFile,
                       QgsProcessingParameterFolderDestination, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterLayer, QgsProject, QgsVectorDataProvider, QgsVectorLayer,
                       QgsWkbTypes)
from qgis.PyQt.QtCore import QUrl, QVariant

from loc2_engine import defaults

from ..compat import tr

CAMERAS = ("auto", "pano", "pinhole")
HEADING_MODES = ("Unknown: search every direction",
                 "From the photos: the heading field, or EXIF GPSImgDirection (true north)",
                 "Fixed: the fixed heading for every photo")  # translated where shown (tr)
#: the Depth option that leaves the choice to the model (its registry default)
MODEL_DEFAULT_DEPTH = "model default"
#: the help page the dialog's Help button opens (shipped inside the plugin folder)
HELP_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "help",
                         "georeference_photos.html")
#: sink parameter -> (GeoPackage layer of loc2_engine.gpkg.LAYERS, QGIS geometry type), in that drawing order
#: (top first): the sinks are opened and written in this order, so outputs into one GeoPackage list their
#: tables so, and QGIS stacks the reopened file as `loc2 batch`'s (the frustum polygon under the inlier dots)
SINKS = {"CAMERA_POSES": ("camera_poses", QgsWkbTypes.Type.Point),
         "INLIERS": ("inliers", QgsWkbTypes.Type.Point),
         "VIEW_FRUSTUMS": ("view_frustums", QgsWkbTypes.Type.Polygon)}
#: the sink of the sequence pass (with SEQUENCES): one line per capture; opened after SINKS, as `loc2 batch`
#: creates its trajectory table after the layers of `gpkg.LAYERS`
TRAJECTORY = ("TRAJECTORY", "trajectory", QgsWkbTypes.Type.LineString)


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
        # the dialog shows descriptions, never parameter ids: the help names what the user sees
        return tr(
            "Estimates the position and heading of ground photos (phone, DSLR or 360° panoramas) by matching "
            "them against an aerial raster.\n\n"
            "Photos: one of 'Folder of photos' or 'Photo points' is required (not both). A folder (optionally "
            "with its sub-folders) takes the priors from each photo's EXIF GPS; a point layer gives the priors "
            "as its points and the photo paths in its 'Photo path field', e.g. the output of 'Import geotagged "
            "photos' (its 'direction' field can serve as the 'Heading field').\n"
            "'Aerial raster' is any raster layer QGIS can draw: files (GeoTIFF, VRT, ...) are read like "
            "'loc2 batch' reads them, other layers (WMS, XYZ, ...) are rendered by QGIS like in the Loc² panel. "
            "'Search radius' is the distance around each prior that is searched, in metres. With a 'Search "
            "extent', a photo that has neither a point of its own nor EXIF GPS is searched for anywhere in the "
            "extent (within the aerial raster) instead of failing: the extent is covered with overlapping "
            "windows of the model, so a larger extent takes longer, and one needing more than 400 windows is "
            "refused, naming the largest. Photos with a prior are searched around it as before.\n"
            "'Model' lists the installed models; a 'Model weight file' replaces it. 'Depth provider' "
            "'model default' uses the model's own.\n\n"
            "Every photo gives a row in 'Camera poses' with status ok, low_confidence or failed; failed rows "
            "say why in 'error', are listed in the log, and sit at the photo's prior when it has one (their "
            "x, y stay empty: they are not poses). The counts of each are outputs of the algorithm. Cancelling "
            "stops after the current photo.\n\n"
            "An existing GeoPackage output is never replaced: the layers camera_poses, inliers and view_frustums "
            "are added to it (in that order, the order they are drawn in), or appended to when it has them already, and the other layers in it are kept. "
            "Photos already in its camera_poses are skipped (counted as skipped), as 'loc2 batch' does. "
            "'Resume' does the same for outputs in other formats (without it they are replaced), so an "
            "interrupted run can be finished.\n\n"
            "'Localize the photos of each capture jointly' is for photos taken in sequence (a 360° camera on a car, "
            "a phone taking a frame every few metres): after the photos are localized one by one, they are grouped "
            "into captures by their EXIF time (split where two are farther apart than the advanced 'seconds apart' "
            "and 'metres apart' limits), and each capture is smoothed under a motion model, which can pick a "
            "photo's runner-up pose or place a failed photo. Camera poses gains the fields sequence, seq_x, seq_y, "
            "seq_heading_deg, seq_sigma_m and seq_overruled (1 where the capture disagrees with the photo's own "
            "pose, which stays in x, y, heading_deg); 'Trajectory' gets one line per capture. With photos "
            "skipped because an earlier run wrote them, their poses are read back from Camera poses.\n\n"
            "'Write corrected positions into copies of the photos' copies the photos whose pose is ok into "
            "'Folder for the corrected copies', with the pose in their EXIF (GPS position, direction from true "
            "north, positioning error) and the original GPS kept in an XMP record, as 'loc2 exif write' does "
            "(exiftool is needed). The original photos are never changed.")

    def helpUrl(self):  # noqa: N802 (QGIS's name)
        """The dialog's Help button: the algorithm's page shipped in the plugin folder."""
        return QUrl.fromLocalFile(HELP_FILE).toString() if os.path.isfile(HELP_FILE) else ""

    def createInstance(self):
        return GeoreferencePhotos()

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterFile(
            "FOLDER", tr("Folder of photos (one of this or 'Photo points' is required)"),
            behavior=QgsProcessingParameterFile.Behavior.Folder, optional=True))
        self.addParameter(QgsProcessingParameterBoolean("RECURSIVE", tr("Include sub-folders"), defaultValue=False))
        self.addParameter(QgsProcessingParameterFeatureSource(
            "POINTS", tr("Photo points (one of this or 'Folder of photos' is required)"), [QgsProcessing.SourceType.TypeVectorPoint],
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
        self.addParameter(QgsProcessingParameterExtent(
            "EXTENT", tr("Search extent for photos without a prior position (no point, no EXIF GPS)"), optional=True))
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
            "HEADING", tr("Fixed heading (degrees from true north; with the 'Fixed' heading prior)"), type=QgsProcessingParameterNumber.Type.Double,
            optional=True, minValue=0.0, maxValue=360.0))
        self.addParameter(QgsProcessingParameterNumber(
            "HEADING_TOLERANCE", tr("Heading tolerance (degrees)"), type=QgsProcessingParameterNumber.Type.Double,
            defaultValue=defaults.HEADING_TOLERANCE_DEG, minValue=0.1, maxValue=180.0))
        models = _model_names()
        self.addParameter(QgsProcessingParameterEnum(
            "MODEL", tr("Model"), options=models, usesStaticStrings=True,
            defaultValue=defaults.MODEL if defaults.MODEL in models else models[0]))
        self.addParameter(QgsProcessingParameterFile(
            "MODEL_FILE", tr("Model weight file (replaces 'Model'; default architecture)"), optional=True))
        self.addParameter(QgsProcessingParameterFile(
            "WEIGHTS", tr("Matcher checkpoint, for models that need one (the official loc2-* models)"), optional=True))
        self.addParameter(QgsProcessingParameterFile(
            "BACKBONE", tr("Backbone weights, for models that need them (DINOv2 ViT-L/14 .pth)"), optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            "DEPTH", tr("Depth provider"), options=[MODEL_DEFAULT_DEPTH] + _depth_names(), usesStaticStrings=True,
            defaultValue=MODEL_DEFAULT_DEPTH))
        self.addParameter(QgsProcessingParameterBoolean(
            "RESUME", tr("Resume: append to existing output files of other formats too, skipping the photos "
                         "already in Camera poses (existing GeoPackages are always appended to)"),
            defaultValue=False))
        self.addParameter(QgsProcessingParameterFeatureSink(
            "CAMERA_POSES", tr("Camera poses"), QgsProcessing.SourceType.TypeVectorPoint))
        self.addParameter(QgsProcessingParameterFeatureSink(
            "INLIERS", tr("Inliers"), QgsProcessing.SourceType.TypeVectorPoint, optional=True))
        self.addParameter(QgsProcessingParameterFeatureSink(
            "VIEW_FRUSTUMS", tr("View frustums"), QgsProcessing.SourceType.TypeVectorPolygon, optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            "SEQUENCES", tr("Localize the photos of each capture jointly (photos taken in sequence: EXIF time)"),
            defaultValue=False))
        for name, label, default in (
                ("MAX_GAP_S", tr("Split a capture where photos are more than this many seconds apart"),
                 defaults.MAX_GAP_S),
                ("MAX_GAP_M", tr("Split a capture where prior positions are more than this many metres apart"),
                 defaults.MAX_GAP_M)):
            gap = QgsProcessingParameterNumber(name, label, type=QgsProcessingParameterNumber.Type.Double,
                                               defaultValue=default, minValue=0.001)
            gap.setFlags(gap.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
            self.addParameter(gap)
        self.addParameter(QgsProcessingParameterFeatureSink(
            TRAJECTORY[0], tr("Trajectory (with the joint localization of captures)"),
            QgsProcessing.SourceType.TypeVectorLine, optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            "WRITE_EXIF", tr("Write corrected positions into copies of the photos (ok poses; needs exiftool)"),
            defaultValue=False))
        self.addParameter(QgsProcessingParameterFolderDestination(
            "EXIF_FOLDER", tr("Folder for the corrected copies"), optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber("OK_COUNT", tr("Photos localized (ok)")))
        self.addOutput(QgsProcessingOutputNumber("LOW_CONFIDENCE_COUNT", tr("Photos localized with low confidence")))
        self.addOutput(QgsProcessingOutputNumber("FAILED_COUNT", tr("Photos that failed")))
        self.addOutput(QgsProcessingOutputNumber("SKIPPED_COUNT", tr("Photos skipped (already in the output)")))
        self.addOutput(QgsProcessingOutputNumber("EXIF_WRITTEN_COUNT", tr("Corrected copies of photos written")))
        self.addOutput(QgsProcessingOutputNumber("CAPTURE_COUNT", tr("Captures localized jointly")))
        self.addOutput(QgsProcessingOutputNumber("OVERRULED_COUNT", tr("Photos overruled by their capture")))

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS's name)
        """Before the run: exactly one of FOLDER and POINTS (both are optional to QGIS, one is needed)."""
        ok, message = super().checkParameterValues(parameters, context)
        if ok and _given(parameters, "FOLDER") == _given(parameters, "POINTS"):
            return False, _one_source_message()
        if ok and self.parameterAsBoolean(parameters, "WRITE_EXIF", context) and not _given(parameters, "EXIF_FOLDER"):
            return False, tr("'Write corrected positions into copies of the photos' needs a 'Folder for the "
                             "corrected copies'.")
        return ok, message

    # -- run ------------------------------------------------------------------------------------------------
    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS's name)
        """Main thread: the aerial source, since a layer renderer must copy the layer here (see render.py)."""
        layer = self.parameterAsRasterLayer(parameters, "AERIAL", context)
        if layer is None:
            raise QgsProcessingException(tr("No 'Aerial raster' layer was given."))
        self.aerial_layer_crs = layer.crs()
        self.aerial_layer_extent = layer.extent()
        self.aerial = _aerial_source(layer, context)
        return True

    def processAlgorithm(self, parameters, context, feedback):
        from .. import deps

        absent = deps.missing()
        if absent:  # say what to install instead of an ImportError traceback
            raise QgsProcessingException(
                deps.describe(absent) + " " + tr("Open the Loc² panel in QGIS to install it."))
        from loc2_engine import pipeline
        from loc2_engine.batch import check_extent, output_crs, run_batch, with_extent
        from loc2_engine.errors import Loc2Error
        from loc2_engine.exif_write import pose_of

        jobs = self._jobs(parameters, context, feedback)
        if not jobs:
            raise QgsProcessingException(tr("No photos to georeference: the folder has no jpg/jpeg/png/tif/tiff "
                                            "files, or the point layer has no features with a photo path."))
        hfov = self.parameterAsDouble(parameters, "HFOV", context) if _given(parameters, "HFOV") else None
        height = (self.parameterAsDouble(parameters, "CAMERA_HEIGHT", context)
                  if _given(parameters, "CAMERA_HEIGHT") else None)
        resume = self.parameterAsBoolean(parameters, "RESUME", context)
        sequences = self.parameterAsBoolean(parameters, "SEQUENCES", context)
        search = self._search_extent(parameters, context, feedback) if _given(parameters, "EXTENT") else None
        exif_folder = self._exif_folder(parameters, context)
        try:
            crs = output_crs(jobs, self.aerial)
            depth = self.parameterAsEnumString(parameters, "DEPTH", context)
            localizer = pipeline.Localizer(
                model=(self.parameterAsFile(parameters, "MODEL_FILE", context)
                       or self.parameterAsEnumString(parameters, "MODEL", context) or defaults.MODEL),
                depth=None if depth in ("", MODEL_DEFAULT_DEPTH) else depth,
                weights=self.parameterAsFile(parameters, "WEIGHTS", context) or None,
                backbone=self.parameterAsFile(parameters, "BACKBONE", context) or None,
                camera=CAMERAS[self.parameterAsEnum(parameters, "CAMERA", context)], hfov_deg=hfov,
                radius_m=self.parameterAsDouble(parameters, "RADIUS", context), camera_height_m=height)
            if search is not None:  # too large for the model's windows: refused before the run
                check_extent(localizer, *search)
                jobs = with_extent(jobs, *search)
            writer = _SinkWriter(self, parameters, context, self.aerial_layer_crs, crs, jobs, resume, sequences)
        except Loc2Error as exc:
            raise QgsProcessingException(str(exc)) from exc
        for path in writer.appended_gpkg:
            feedback.pushWarning(tr("{path} exists: the Loc² layers are added to it or appended to, its other "
                                    "layers are kept, and photos already in its camera_poses are skipped.")
                                 .format(path=path))
        total = len(jobs)
        ok_poses = []

        def progress(done, _total, result):
            if exif_folder and result.status == "ok":
                ok_poses.append(pose_of(result))
            feedback.setProgress(100.0 * done / total)
            name = os.path.basename(result.photo)
            if result.status == "failed":
                feedback.reportError(f"{done}/{total} {name}: failed: {result.error}", False)
            else:
                feedback.pushInfo(f"{done}/{total} {name}: {result.status}, confidence {result.confidence:.2f}, "
                                  f"{result.runtime_s:.1f} s")

        summary = run_batch(jobs, self.aerial, writer, localizer, resume=resume or bool(writer.done),
                            progress=progress, cancelled=feedback.isCanceled)
        # after a cancel too: the captures of the photos done so far
        captures = self._sequence_pass(parameters, context, feedback, writer, jobs, crs) if sequences else None
        writer.close(feedback)
        if captures is not None:
            writer.store_sequences(captures.poses, feedback)
        feedback.pushInfo(f"ok {summary.ok}, low confidence {summary.low_confidence}, failed {summary.failed}, "
                          f"skipped (already in the output) {summary.skipped}"
                          + (" (cancelled)" if summary.cancelled else ""))
        outputs = dict(writer.dest_ids, OK_COUNT=summary.ok, LOW_CONFIDENCE_COUNT=summary.low_confidence,
                       FAILED_COUNT=summary.failed, SKIPPED_COUNT=summary.skipped, EXIF_WRITTEN_COUNT=0,
                       CAPTURE_COUNT=captures.summary.sequences if captures else 0,
                       OVERRULED_COUNT=captures.summary.overruled if captures else 0)
        if exif_folder:
            outputs.update(EXIF_FOLDER=exif_folder, EXIF_WRITTEN_COUNT=_write_copies(ok_poses, exif_folder, feedback))
        return outputs

    def _sequence_pass(self, parameters, context, feedback, writer, jobs, crs):
        """The engine's sequence pass (`sequences.smooth_captures`) over the photos of the run's jobs, those
        written by an earlier run into the Camera poses output included; its lines go into Trajectory. Returns
        the `sequences.SequencePass` (its poses are stored once the sinks are closed)."""
        from loc2_engine.errors import Loc2Error
        from loc2_engine.sequences import job_timing, smooth_captures

        records = {**writer.earlier_records(), **writer.records}
        try:
            timings = [job_timing(job, crs) for job in jobs if job.photo in records]
            found = smooth_captures(records, crs, timings,
                                    max_gap_s=self.parameterAsDouble(parameters, "MAX_GAP_S", context),
                                    max_gap_m=self.parameterAsDouble(parameters, "MAX_GAP_M", context))
        except Loc2Error as exc:
            raise QgsProcessingException(str(exc)) from exc
        writer.write_trajectory(found.lines)
        done = found.summary
        feedback.pushInfo(tr("Captures: {n} localized jointly ({photos} photos), {overruled} photos overruled, "
                             "{filled} failed photos placed by their capture.").format(
                                 n=done.sequences, photos=done.photos, overruled=done.overruled, filled=done.filled))
        return found

    def _search_extent(self, parameters, context, feedback):
        """EXTENT as the engine searches it: ((xmin, ymin, xmax, ymax), CRS) in the aerial layer's CRS,
        clipped to the layer (`search_extent.engine_extent`); an extent given without a CRS is in the layer's."""
        from ..render import crs_definition
        from ..search_extent import AreaError, engine_extent

        rect = self.parameterAsExtent(parameters, "EXTENT", context)
        crs = self.parameterAsExtentCrs(parameters, "EXTENT", context)
        try:
            extent = engine_extent(rect, crs if crs.isValid() else self.aerial_layer_crs, self.aerial_layer_crs,
                                   self.aerial_layer_extent, context.transformContext())
        except AreaError as exc:
            raise QgsProcessingException(str(exc)) from exc
        feedback.pushInfo(tr("Photos without a prior position are searched for in {xmin:.1f}, {ymin:.1f} – "
                             "{xmax:.1f}, {ymax:.1f} ({crs}); every window of it is matched, which takes longer "
                             "than a search around a prior.").format(
                                 xmin=extent[0], ymin=extent[1], xmax=extent[2], ymax=extent[3],
                                 crs=crs_definition(self.aerial_layer_crs)))
        return extent, crs_definition(self.aerial_layer_crs)

    def _exif_folder(self, parameters, context) -> str:
        """The folder for corrected copies ("" without WRITE_EXIF); exiftool is checked before the run."""
        if not self.parameterAsBoolean(parameters, "WRITE_EXIF", context):
            return ""
        from loc2_engine.errors import OutputError
        from loc2_engine.exif_write import exiftool_path

        folder = self.parameterAsFileOutput(parameters, "EXIF_FOLDER", context)
        if not folder:
            raise QgsProcessingException(tr("'Write corrected positions into copies of the photos' needs a "
                                            "'Folder for the corrected copies'."))
        try:
            exiftool_path()
        except OutputError as exc:
            raise QgsProcessingException(str(exc)) from exc
        return folder

    def _jobs(self, parameters, context, feedback):
        """PhotoJobs from FOLDER or POINTS (exactly one of them), with priors from the other parameters."""
        from loc2_engine.batch import PhotoJob, folder_jobs
        from loc2_engine.errors import Loc2Error
        from loc2_engine.pipeline import Prior

        folder = self.parameterAsFile(parameters, "FOLDER", context)
        source = self.parameterAsSource(parameters, "POINTS", context)
        if bool(folder) == (source is not None):
            raise QgsProcessingException(_one_source_message())
        mode = self.parameterAsEnum(parameters, "HEADING_MODE", context)
        fixed = self.parameterAsDouble(parameters, "HEADING", context) if _given(parameters, "HEADING") else None
        if mode == 2 and fixed is None:
            raise QgsProcessingException(tr("The heading prior is 'Fixed' but no 'Fixed heading' was given."))
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
                raise QgsProcessingException(tr("The point layer has no field {name!r}; pick the 'Photo path field' "
                                                "and, optionally, a 'Heading field'.")
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


def _one_source_message() -> str:
    return tr("One of 'Folder of photos' or 'Photo points' is required: give either a folder of photos or a "
              "point layer, not both and not neither.")


def _model_names():
    """The model registry's names (a pure module: listing them never imports torch, so QGIS starts fast and
    the provider loads without it)."""
    from loc2_engine.registry import MODEL_REGISTRY

    return list(MODEL_REGISTRY)


def _depth_names():
    """The depth providers a surveyor can use ("truth" reads a dataset's depth files, as in the dock)."""
    try:
        from loc2_engine.depth import DEPTH_PROVIDERS
    except ImportError:
        return []
    return [name for name in DEPTH_PROVIDERS if name != "truth"]


def _write_copies(poses, folder: str, feedback) -> int:
    """Write ``poses`` into copies of their photos in ``folder`` (`exif_write.write_all`); each failure is
    logged and the others go on. Returns the number of copies written."""
    from loc2_engine.exif_write import write_all

    written = 0
    # the photo paths of a batch are absolute: no root folder is needed to find them
    for outcome in write_all(poses, folder, Path(folder)):
        if outcome.error:
            feedback.reportError(tr("Corrected copy of {photo}: {error}").format(photo=outcome.photo,
                                                                               error=outcome.error), False)
        else:
            written += 1
            feedback.pushInfo(tr("Corrected copy written: {path}").format(path=outcome.written))
    return written


def _not_stored(feedback, output: str, reason: str) -> None:
    feedback.pushWarning(tr("The joint poses (sequence, seq_x, seq_y, seq_heading_deg, seq_sigma_m, seq_overruled) "
                            "could not be stored in {output}: {reason}. Write Camera poses to a GeoPackage to keep "
                            "them.").format(output=output, reason=reason))


def _value(value):
    """A feature's attribute as Python: NULL -> None."""
    return None if value is None or (isinstance(value, QVariant) and value.isNull()) else value


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


def _destination(value, context) -> str:
    """The destination string of a sink parameter value, read without side effects.

    `parameterAsOutputLayer` is not used for this: on a value that carries a destination project (every run
    from the dialog) it registers the destination as a layer to load, and for a temporary output that is a
    'memory:<name>' the dialog then cannot find, so it reported the outputs as not correctly generated.
    """
    if isinstance(value, QgsProcessingOutputLayerDefinition):
        value = value.sink
    if isinstance(value, QgsProperty):
        value = value.valueAsString(context.expressionContext(), "")[0]
    return "" if value is None else str(value)


def _gpkg_path(destination: str):
    """The file of a destination written into a GeoPackage as one of its layers, or None."""
    if destination.startswith("ogr:"):
        return None  # already names its layer (a database destination the user typed)
    path = destination.partition("|")[0]
    return path if path.lower().endswith(".gpkg") else None


def _in_gpkg(path: str, layer_name: str) -> str:
    """The sink destination of the layer ``layer_name`` inside the GeoPackage ``path``: QGIS then adds or
    replaces that one layer and keeps the file with its other layers (a plain file path replaces the file)."""
    quoted = path.replace("'", "\\'")
    return f"ogr:dbname='{quoted}' table=\"{layer_name}\" (geom)"


def _gpkg_layer_exists(path: str, layer_name: str) -> bool:
    from osgeo import ogr

    ds = ogr.Open(path) if os.path.isfile(path) else None
    return ds is not None and ds.GetLayerByName(layer_name) is not None


def _existing_file(destination: str):
    """(file path, layer name or None) of a sink destination that is an existing file; None otherwise."""
    path, _, options = destination.partition("|")
    if not os.path.isfile(path):
        return None
    layer = options.partition("layername=")[2] or None
    return path, layer


def _retarget(value, destination: str) -> QgsProcessingOutputLayerDefinition:
    """``value`` (a sink parameter value) pointed at ``destination``, keeping its project and layer name."""
    project = value.destinationProject if isinstance(value, QgsProcessingOutputLayerDefinition) else None
    definition = QgsProcessingOutputLayerDefinition(destination, project)
    if isinstance(value, QgsProcessingOutputLayerDefinition):
        definition.destinationName = value.destinationName
        definition.createOptions = value.createOptions
    return definition


def _store_style(path: str, layer_name: str) -> str:
    """Store ``resources/styles/<layer>.qml`` as the default style of a layer of a GeoPackage (its
    layer_styles table, where QGIS looks when it opens the layer); '' or a sentence saying why not."""
    from loc2_engine.resources import resource_path

    qml = resource_path("styles", f"{layer_name}.qml")
    if not qml.is_file():
        return ""
    layer = QgsVectorLayer(f"{path}|layername={layer_name}", layer_name, "ogr")
    message, ok = layer.loadNamedStyle(str(qml))
    if not ok or not layer.isValid():
        return tr("The Loc² style could not be stored in {path}: {reason}").format(path=path, reason=message)
    error = layer.saveStyleToDatabase(layer_name, "Loc² default style", True, "")
    return tr("The Loc² style could not be stored in {path}: {reason}").format(path=path, reason=error) if error \
        else ""


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
    definition = _retarget(value, destination)
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
    and `photos` lists the photos already in the Camera poses file (Raises OutputError if unreadable);
    sequences: also open the Trajectory sink and keep each photo's pose and rivals (`records`, for
    `sequences.smooth_captures`).
    """

    def __init__(self, alg, parameters, context, qgis_crs, crs, jobs, resume: bool, sequences: bool = False):
        from loc2_engine.gpkg import photos_in

        self.alg, self.parameters, self.context, self.qgis_crs = alg, parameters, context, qgis_crs
        self.crs = crs
        self.jobs = {job.photo: job for job in jobs}
        self.sinks, self.dest_ids, self.done, self.layers = {}, {}, set(), []
        #: {photo: `sequences.pose_record`} of the photos written by this run (with sequences)
        self.records = {} if sequences else None
        #: (file, layer name or None) of the Camera poses output when it existed before the run
        self.poses_file = None
        #: GeoPackages that existed before the run (added or appended to); (GeoPackage, layer) created by this
        #: run (to style)
        self.appended_gpkg, self.created_gpkg = [], []
        self._loaded = {}  # the run's output layers, as QGIS loads them (see _Styler)
        sinks = dict(SINKS, **({TRAJECTORY[0]: TRAJECTORY[1:]} if sequences else {}))
        # files that were there before the run (a second output into a GeoPackage this run made is no news)
        self._existed = {path for path in (_gpkg_path(_destination(parameters.get(param), context)) for param in sinks)
                         if path is not None and os.path.isfile(path)}
        for param, (layer_name, wkb_type) in sinks.items():
            # the trajectory is made again from every photo of the run: a file of another format is replaced
            existing = self._open(param, layer_name, wkb_type, resume and param != TRAJECTORY[0])
            if existing is not None and param == "CAMERA_POSES":
                self.poses_file = existing
                self.done = photos_in(*existing)

    def _open(self, param: str, layer_name: str, wkb_type, resume: bool):
        """Open the sink of ``param`` into ``self.sinks[layer_name]`` (nothing when the user switched an
        optional output off); returns the (file, layer name or None) it appends to, or None."""
        from loc2_engine.gpkg import EXTRA_LAYERS, LAYERS

        from ..compat import ogr_field_types

        alg, parameters, context = self.alg, self.parameters, self.context
        qt_types = ogr_field_types()
        fields = QgsFields()
        for name, kind in {**LAYERS, **EXTRA_LAYERS}[layer_name][1]:
            fields.append(QgsField(name, qt_types[kind]))
        value = parameters.get(param)
        destination = _destination(value, context)
        gpkg = _gpkg_path(destination)
        # a GeoPackage is always appended to, layer by layer: it may be the user's project file
        existing = None
        if gpkg is not None:
            destination = _in_gpkg(gpkg, layer_name)
            if gpkg in self._existed and gpkg not in self.appended_gpkg:
                self.appended_gpkg.append(gpkg)
            if _gpkg_layer_exists(gpkg, layer_name):
                existing = (gpkg, layer_name)
            else:
                self.created_gpkg.append((gpkg, layer_name))
        elif resume:
            existing = _existing_file(destination)
        if existing is not None and gpkg is not None:
            sink, fields, dest_id = self._gpkg_appender(alg, value, param, context, gpkg, layer_name)
        else:
            if existing is not None:
                value = _appending(value, destination, fields, wkb_type, self.qgis_crs)
            elif gpkg is not None:
                value = _retarget(value, destination)
            sink, dest_id = alg.parameterAsSink({**parameters, param: value}, param, context, fields, wkb_type,
                                                self.qgis_crs)
        if sink is None:
            if param == "CAMERA_POSES":
                raise QgsProcessingException(alg.invalidSinkError(parameters, param))
            return existing  # an optional output the user switched off
        self.sinks[layer_name] = (sink, fields)
        self.dest_ids[param] = dest_id
        if context.willLoadLayerOnCompletion(dest_id):
            context.layerToLoadOnCompletionDetails(dest_id).setPostProcessor(_Styler.create(layer_name,
                                                                                            self._loaded))
        return existing

    def _gpkg_appender(self, alg, value, param, context, gpkg, layer_name):
        """(sink, fields, output id) appending to the existing layer ``layer_name`` of ``gpkg``: its own data
        provider (a sink with a remapping definition would write the rows of an `ogr:` destination without
        their attributes in QGIS 3.22), loaded after the run like any sink output."""
        layer = QgsVectorLayer(f"{gpkg}|layername={layer_name}", layer_name, "ogr")
        if not layer.isValid():
            raise QgsProcessingException(tr("Cannot open the layer {layer} of {path} to append to it.").format(
                layer=layer_name, path=gpkg))
        self.layers.append(layer)  # the provider lives as long as its layer
        dest_id = layer.source()
        project = value.destinationProject if isinstance(value, QgsProcessingOutputLayerDefinition) else None
        if project is not None:
            name = (value.destinationName or alg.parameterDefinition(param).description())
            context.addLayerToLoadOnCompletion(dest_id, QgsProcessingContext.LayerDetails(name, project, param))
        return layer.dataProvider(), layer.fields(), dest_id

    def close(self, feedback=None) -> None:
        """Close the sinks (so that their files are complete), then store the Loc² style of each layer this
        run created in a GeoPackage as its default style, as `loc2 batch` does, so it opens styled anywhere."""
        self.sinks.clear()
        self.layers.clear()
        for path, layer_name in self.created_gpkg:
            message = _store_style(path, layer_name)
            if message and feedback is not None:
                feedback.pushWarning(message)

    def photos(self):
        """Photo ids already in the Camera poses file when resuming (`batch.run_batch` skips them)."""
        return self.done

    def earlier_records(self) -> dict:
        """{photo: `sequences.pose_record`} of the photos of this run's jobs that an earlier run wrote into the
        Camera poses file (skipped by this one): their own pose; the rivals of a photo live only in a
        `loc2 batch` GeoPackage (rival_poses), so they bring none."""
        from loc2_engine.sequences import pose_record

        if self.poses_file is None or not self.done:
            return {}
        path, layer_name = self.poses_file
        layer = QgsVectorLayer(path if layer_name is None else f"{path}|layername={layer_name}", "poses", "ogr")
        names = [name for name in ("x", "y", "heading_deg", "sigma_m", "confidence", "status")
                 if layer.fields().lookupField(name) >= 0]
        return {f["photo"]: pose_record({name: _value(f[name]) for name in names}) for f in layer.getFeatures()
                if f["photo"] in self.done and f["photo"] in self.jobs}

    def store_sequences(self, poses: dict, feedback) -> None:
        """The ``sequence`` / ``seq_*`` values of a sequence pass (`sequences.SequencePass.poses`) into the
        Camera poses output, after `close`: the fields (`gpkg.SEQUENCE_FIELDS`) are added when it lacks them,
        the single-photo fields stay as they are. A format that cannot take them gets a warning instead."""
        from loc2_engine.gpkg import SEQUENCE_FIELDS

        from ..compat import ogr_field_types

        dest_id = self.dest_ids["CAMERA_POSES"]
        layer = self.context.getMapLayer(dest_id) or QgsVectorLayer(dest_id, "poses", "ogr")
        if not layer.isValid():
            return _not_stored(feedback, dest_id, tr("it cannot be opened"))
        if layer.storageType() == "ESRI Shapefile":  # it would add the fields under names cut to 10 characters
            return _not_stored(feedback, dest_id, tr("a Shapefile cuts field names to 10 characters"))
        provider = layer.dataProvider()
        qt_types = ogr_field_types()
        missing = [QgsField(name, qt_types[kind]) for name, kind in SEQUENCE_FIELDS
                   if layer.fields().lookupField(name) < 0]
        if missing and not provider.addAttributes(missing):
            return _not_stored(feedback, dest_id, provider.lastError() or tr("its format takes no new fields"))
        layer.updateFields()
        index = {name: layer.fields().lookupField(name) for name, _ in SEQUENCE_FIELDS}
        if min(index.values()) < 0:
            return _not_stored(feedback, dest_id, tr("its format shortens the field names"))
        changes = {f.id(): {index[k]: v for k, v in poses[f["photo"]].items()} for f in layer.getFeatures()
                   if f["photo"] in poses}
        if changes and not provider.changeAttributeValues(changes):
            _not_stored(feedback, dest_id, provider.lastError() or tr("its format cannot be changed"))

    def write(self, result) -> None:
        from loc2_engine.gpkg import layer_rows, rival_rows

        rows = layer_rows(result, self.crs, failed_at=None if result.ok else self._prior_xy(result.photo))
        for layer_name in self.sinks:
            if layer_name in rows:
                self._add(layer_name, rows[layer_name], result.photo)
        if self.records is not None:
            from loc2_engine.sequences import pose_record

            self.records[result.photo] = pose_record(rows["camera_poses"][0][1], rival_rows(result, self.crs))

    def write_trajectory(self, lines) -> None:
        """The lines of a sequence pass (`sequences.SequencePass.lines`) into the Trajectory sink; in a layer
        that existed, its rows of the same sequences are replaced (as `loc2 batch --sequences` does)."""
        if "trajectory" not in self.sinks:
            return
        sink = self.sinks["trajectory"][0]
        if isinstance(sink, QgsVectorDataProvider):  # an existing GeoPackage layer (`_gpkg_appender`)
            ids = {attrs["sequence"] for _, attrs in lines}
            old = [f.id() for f in sink.getFeatures() if f["sequence"] in ids]
            if old and not sink.deleteFeatures(old):
                raise QgsProcessingException(f"Cannot replace the trajectory rows: {sink.lastError()}")
        self._add("trajectory", lines, tr("the capture trajectories"))

    def _add(self, layer_name: str, rows, what: str) -> None:
        """Append ``rows`` ([(OGR geometry or None, {field: value})]) to the sink of ``layer_name``."""
        sink, fields = self.sinks[layer_name]
        features = []
        for geometry, attrs in rows:
            feature = QgsFeature(fields)
            if geometry is not None:
                g = QgsGeometry()
                g.fromWkb(bytes(geometry.ExportToIsoWkb()))
                feature.setGeometry(g)
            for name, value in attrs.items():
                feature.setAttribute(name, value)
            features.append(feature)
        if features and not sink.addFeatures(features, QgsFeatureSink.Flag.FastInsert):
            raise QgsProcessingException(f"Cannot write the {layer_name} rows of {what}: {sink.lastError()}")

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
