"""GeoPackage output (docs/geopackage.md): five styled layers written incrementally, one transaction per photo.

`GeoPackageWriter(path, crs)` creates the file (or opens an existing one and appends: rows are never
dropped), embeds the QGIS styles of ``resources/styles/*.qml`` in the ``layer_styles`` table once, and
``write(result)`` adds one photo's rows to every layer inside one SQLite transaction, so a crash, Ctrl-C or
a full disk leaves a valid file holding every photo finished before it. ``photos()`` lists the photo ids
already in the file (for ``--resume``).

Nothing is lost or doubled: one writer at a time holds ``FILE.gpkg.lock`` (an operating-system lock, which
the system drops when the process ends however it ends, so a crash never leaves the file locked); a photo
has at most one ``camera_poses`` row (``write`` refuses a second one, and a unique index on ``photo`` makes
SQLite refuse it too); every GDAL failure while writing is an `OutputError` naming the file and the cause.

It uses osgeo.ogr from Debian's GDAL, the library QGIS itself links, so it is safe inside QGIS too.
Explanation arrays of a `Result` are in the window's local east-north frame (metres); they are placed in
the output CRS with ``result.frame.from_local`` and, when the output CRS differs from the raster's,
`georef.transform_points`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import numpy as np
import pyproj
from osgeo import gdal, ogr, osr

from .errors import OutputError
from .frustum import frustum_polygon
from .georef import LocalFrame, transform_points
from .resources import resource_path
from .result import POSE_FIELDS, Result

#: default ground range of the view frustum polygon, metres
FRUSTUM_RANGE_M = 30.0

_OGR_TYPES = {int: ogr.OFTInteger, float: ogr.OFTReal, str: ogr.OFTString}


def _pose_schema() -> Tuple[Tuple[str, int], ...]:
    """(name, OGR type) of the camera_poses fields, typed from the Result dataclass annotations."""
    types = {f.name: f.type for f in dataclasses.fields(Result)}
    py = {"int": int, "float": float, "str": str}
    return tuple((name, _OGR_TYPES[py[types[name]]]) for name in POSE_FIELDS)


#: layer name -> (geometry type, ((field, OGR type), ...)), in drawing order, top first (the pose arrow above its
#: inlier dots, the wide frustum polygon underneath). Layers are created in this order because QGIS 3.22 lists a
#: GeoPackage's layers in creation order and, adding them all at once, stacks them so, the first on top (its
#: sublayer dialog sorts them by name, which puts camera_poses on top too); the dock and Processing stack their
#: layers in this order as well (`loc2_qgis.layers.LAYER_ORDER`).
LAYERS: Dict[str, Tuple[int, Tuple[Tuple[str, int], ...]]] = {
    "camera_poses": (ogr.wkbPoint, _pose_schema()),
    "inliers": (ogr.wkbPoint, (("photo", ogr.OFTString), ("u", ogr.OFTReal), ("v", ogr.OFTReal),
                               ("weight", ogr.OFTReal), ("residual_m", ogr.OFTReal))),
    "matches": (ogr.wkbLineString, (("photo", ogr.OFTString), ("u", ogr.OFTReal), ("v", ogr.OFTReal),
                                    ("weight", ogr.OFTReal), ("residual_m", ogr.OFTReal),
                                    ("inlier", ogr.OFTInteger))),
    "ground_layout": (ogr.wkbPoint, (("photo", ogr.OFTString), ("u", ogr.OFTReal), ("v", ogr.OFTReal))),
    "view_frustums": (ogr.wkbPolygon, (("photo", ogr.OFTString), ("heading_deg", ogr.OFTReal),
                                       ("hfov_deg", ogr.OFTReal), ("range_m", ogr.OFTReal),
                                       ("confidence", ogr.OFTReal), ("status", ogr.OFTString))),
}

#: layers beside LAYERS that the dock and Processing do not show (docs/sequences.md): each photo's runner-up
#: poses, written with its rows so that a later sequence pass (also after --resume) can choose among them, and
#: the lines of the sequence pass, created by its first run
RIVAL_LAYER = "rival_poses"
TRAJECTORY_LAYER = "trajectory"
EXTRA_LAYERS: Dict[str, Tuple[int, Tuple[Tuple[str, int], ...]]] = {
    RIVAL_LAYER: (ogr.wkbPoint, (("photo", ogr.OFTString), ("rank", ogr.OFTInteger), ("heading_deg", ogr.OFTReal),
                                 ("gap", ogr.OFTReal))),
    TRAJECTORY_LAYER: (ogr.wkbLineString, (("sequence", ogr.OFTString), ("photos", ogr.OFTInteger),
                                           ("overruled", ogr.OFTInteger), ("length_m", ogr.OFTReal))),
}
#: nullable camera_poses columns the sequence pass adds and fills; NULL for photos it has not seen
SEQUENCE_FIELDS = (("sequence", ogr.OFTString), ("seq_x", ogr.OFTReal), ("seq_y", ogr.OFTReal),
                   ("seq_heading_deg", ogr.OFTReal), ("seq_sigma_m", ogr.OFTReal), ("seq_overruled", ogr.OFTInteger))

_GEOM_COLUMN = "geom"
_STYLE_TABLE = "layer_styles"
#: the index that makes SQLite refuse a second camera_poses row of one photo
_PHOTO_INDEX = "camera_poses_photo_unique"
#: the columns QGIS's OGR provider reads and writes (QgsOgrProviderUtils, GPKG flavour)
_STYLE_FIELDS = (
    ("f_table_catalog", ogr.OFTString), ("f_table_schema", ogr.OFTString), ("f_table_name", ogr.OFTString),
    ("f_geometry_column", ogr.OFTString), ("styleName", ogr.OFTString), ("styleQML", ogr.OFTString),
    ("styleSLD", ogr.OFTString), ("useAsDefault", ogr.OFTInteger), ("description", ogr.OFTString),
    ("owner", ogr.OFTString), ("ui", ogr.OFTString), ("update_time", ogr.OFTDateTime),
)


def _srs(crs: pyproj.CRS) -> osr.SpatialReference:
    """OGR spatial reference of ``crs``, by EPSG code when it has one (so QGIS shows e.g. EPSG:32633)."""
    srs = osr.SpatialReference()
    epsg = crs.to_epsg()
    err = srs.ImportFromEPSG(epsg) if epsg else srs.ImportFromWkt(crs.to_wkt())
    if err != 0:
        raise OutputError(f"The output CRS {crs.name!r} cannot be written into a GeoPackage.")
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)  # x = easting / longitude
    return srs


def _crs_of_layer(layer) -> Optional[pyproj.CRS]:
    srs = layer.GetSpatialRef()
    if srs is None:
        return None
    code = srs.GetAuthorityCode(None) if srs.GetAuthorityName(None) == "EPSG" else None
    return pyproj.CRS.from_epsg(int(code)) if code else pyproj.CRS.from_wkt(srs.ExportToWkt())


def _set(feature, name: str, value) -> None:
    """Set a field; None and non-finite floats become NULL."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        feature.SetFieldNull(name)
    else:
        feature.SetField(name, value)


def _point(x: float, y: float) -> ogr.Geometry:
    g = ogr.Geometry(ogr.wkbPoint)
    g.AddPoint_2D(float(x), float(y))
    return g


@contextmanager
def _quiet():
    """GDAL errors kept from stderr (the writer reports them in its OutputError), the last one reset first so
    that ``gdal.GetLastErrorMsg()`` names this operation's failure."""
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    gdal.ErrorReset()
    try:
        yield
    finally:
        gdal.PopErrorHandler()


class GeoPackageWriter:
    """Incremental, crash-safe writer of the layers of docs/geopackage.md.

    path: the .gpkg file (created with its parents if missing; appended to if it exists).
    crs: output CRS, anything pyproj accepts (normally the aerial raster's). When the file already has a
        ``camera_poses`` layer, the file's CRS wins and results are transformed into it, so appending to a
        file never mixes CRSs.
    frustum_range_m: ground range of the view frustum polygons, metres.
    Use as a context manager, or call `close()`; every `write()` is committed when it returns.
    Raises OutputError when the file cannot be created, opened or written, when another writer holds it,
    or when a photo already has its row.
    """

    def __init__(self, path, crs, frustum_range_m: float = FRUSTUM_RANGE_M):
        self.path = Path(path)
        self.frustum_range_m = float(frustum_range_m)
        self._ds = None
        self._layers = {}
        self._writing: Optional[str] = None  # the photo whose rows are being written, for messages
        self._raised: Optional[str] = None  # the message of the last GDAL call that raised
        self._make_folder()
        self._lock = WriterLock(self.path)
        try:
            self._ds = self._open()
            existing = self._ds.GetLayerByName("camera_poses")
            self.crs = (existing is not None and _crs_of_layer(existing)) or pyproj.CRS.from_user_input(crs)
            with _quiet():
                try:
                    self._layers = {name: self._layer(name, geom, fields) for name, (geom, fields) in LAYERS.items()}
                    self._layers[RIVAL_LAYER] = self._layer(RIVAL_LAYER, *EXTRA_LAYERS[RIVAL_LAYER])
                    self._embed_styles(LAYERS)
                except RuntimeError as exc:  # GDAL with exceptions enabled by other code
                    raise OutputError(f"Cannot set up the layers of {self.path} ({exc}).") from exc
                self._index_photos()
            self._photos = self.photos()
        except BaseException:
            self.close()
            raise

    # -- setup -------------------------------------------------------------------------------------------
    def _make_folder(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file where a folder should be, no permission
            raise OutputError(f"Cannot create the GeoPackage {self.path} ({exc}).") from exc

    def _open(self):
        """The dataset, opened for update or created; OutputError with the reason otherwise."""
        exists = self.path.exists()
        if exists and self.path.is_file() and not os.access(self.path, os.W_OK):
            raise OutputError(f"{self.path} is read-only; make it writable or choose another output file.")
        try:  # GDAL returns None, or raises RuntimeError when some other code called ogr.UseExceptions()
            with _quiet():
                if exists:
                    ds = ogr.Open(str(self.path), update=1)
                else:
                    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(self.path))
                reason = gdal.GetLastErrorMsg()
        except RuntimeError as exc:
            ds, reason = None, str(exc)
        if exists and (ds is None or ds.GetDriver().GetName() != "GPKG"):
            raise OutputError(f"{self.path} exists but is not a GeoPackage that can be opened for writing "
                              f"({reason or 'another format'}); choose another output file.")
        if ds is None:
            raise OutputError(f"Cannot create the GeoPackage {self.path} ({reason or 'unknown reason'}).")
        return ds

    def _layer(self, name: str, geom_type: int, fields):
        layer = self._ds.GetLayerByName(name)
        created = layer is None
        if created:
            self._raised = None
            layer = self._ds.CreateLayer(name, _srs(self.crs), geom_type,
                                         options=[f"GEOMETRY_NAME={_GEOM_COLUMN}", "SPATIAL_INDEX=YES"])
            if layer is None:
                raise OutputError(f"Cannot create the layer {name!r} in {self.path} ({self._reason()}).")
        have = {layer.GetLayerDefn().GetFieldDefn(i).GetName()
                for i in range(layer.GetLayerDefn().GetFieldCount())}
        for field_name, field_type in fields:
            if field_name not in have and self._gdal(layer.CreateField, ogr.FieldDefn(field_name, field_type)):
                raise OutputError(f"Cannot add the field {field_name!r} to the layer {name!r} in {self.path} "
                                  f"({self._reason()}).")
        # GDAL creates the table at its first row; made now, the tables are listed in `LAYERS` (drawing) order
        if created and self._gdal(layer.SyncToDisk):
            raise OutputError(f"Cannot create the layer {name!r} in {self.path} ({self._reason()}).")
        return layer

    def _embed_styles(self, layers) -> None:
        """Store resources/styles/<layer>.qml as the default QGIS style of each of ``layers``, once per layer."""
        table = self._ds.GetLayerByName(_STYLE_TABLE)
        if table is None:
            self._raised = None
            table = self._ds.CreateLayer(_STYLE_TABLE, None, ogr.wkbNone)
            if table is None:
                raise OutputError(f"Cannot create the style table in {self.path} ({self._reason()}).")
            for name, ftype in _STYLE_FIELDS:
                defn = ogr.FieldDefn(name, ftype)
                if name == "useAsDefault":
                    defn.SetSubType(ogr.OFSTBoolean)
                table.CreateField(defn)
        styled = set()
        table.ResetReading()
        for feature in table:
            styled.add(feature.GetField("f_table_name"))
        todo = [name for name in layers if name not in styled and resource_path("styles", f"{name}.qml").is_file()]
        if not todo:
            return
        now = _dt.datetime.now(_dt.timezone.utc)
        self._begin("the layer styles")
        for name in todo:
            f = ogr.Feature(table.GetLayerDefn())
            for key, value in (("f_table_catalog", ""), ("f_table_schema", ""), ("f_table_name", name),
                               ("f_geometry_column", _GEOM_COLUMN), ("styleName", name),
                               ("styleQML", resource_path("styles", f"{name}.qml").read_text(encoding="utf-8")),
                               ("styleSLD", ""), ("useAsDefault", 1), ("description", "Loc² default style"),
                               ("owner", ""), ("ui", "")):
                f.SetField(key, value)
            f.SetField("update_time", now.year, now.month, now.day, now.hour, now.minute, now.second, 100)
            self._create(table, f)
        self._commit("the layer styles")

    def _index_photos(self) -> None:
        """A unique index on camera_poses.photo, so SQLite itself refuses a second row of one photo.

        A file written before the index existed may already hold a photo twice; the index cannot be made
        there, and `write`'s own check still keeps new photos single.
        """
        try:
            self._ds.ExecuteSQL(f'CREATE UNIQUE INDEX IF NOT EXISTS "{_PHOTO_INDEX}" ON "camera_poses" ("photo")')
        except RuntimeError:  # GDAL with exceptions enabled: the same as a silent failure
            pass

    # -- reading -----------------------------------------------------------------------------------------
    def photos(self) -> Set[str]:
        """Photo ids that already have a ``camera_poses`` row (finished, ok or failed)."""
        return _photo_ids(self._ds, "camera_poses")

    # -- writing -----------------------------------------------------------------------------------------
    def write(self, result: Result) -> None:
        """Append one photo's rows to all five layers in one transaction (all or nothing).

        Raises OutputError when the file already holds the photo (rows are never replaced) or cannot be
        written (disk full, read-only); the file then holds exactly what it held before.
        """
        if result.photo in self._photos:
            raise OutputError(self._duplicate(result.photo))
        rows = layer_rows(result, self.crs, self.frustum_range_m)  # compute first: no transaction left open
        rows[RIVAL_LAYER] = rival_rows(result, self.crs)
        what = f"the rows of the photo {result.photo}"
        self._writing = result.photo
        try:
            with _quiet():
                self._begin(what)
                try:
                    for name, features in rows.items():
                        layer = self._layers[name]
                        defn = layer.GetLayerDefn()
                        for geometry, attrs in features:
                            f = ogr.Feature(defn)
                            if geometry is not None:
                                f.SetGeometry(geometry)
                            for key, value in attrs.items():
                                _set(f, key, value)
                            self._create(layer, f)
                except BaseException:
                    self._rollback()
                    raise
                self._commit(what)
        finally:
            self._writing = None
        self._photos.add(result.photo)

    # -- the sequence pass (docs/sequences.md) -------------------------------------------------------------
    def pose_evidence(self) -> Dict[str, dict]:
        """{photo: its single-photo pose} of every ``camera_poses`` row: x, y (layer CRS; None when failed),
        heading_deg, sigma_m, confidence, status, and rivals: (R, 4) array of x, y, heading_deg, gap, best
        first (`result.RivalPose`; empty for photos written before rivals were kept)."""
        poses = {}
        layer = self._layers["camera_poses"]
        layer.ResetReading()
        for f in layer:
            poses[f.GetField("photo")] = {name: f.GetField(name) for name in
                                          ("x", "y", "heading_deg", "sigma_m", "confidence", "status")}
        rivals: Dict[str, list] = {}
        layer = self._layers[RIVAL_LAYER]
        layer.ResetReading()
        for f in layer:
            g = f.GetGeometryRef()
            rivals.setdefault(f.GetField("photo"), []).append(
                (f.GetField("rank"), g.GetX(), g.GetY(), f.GetField("heading_deg"), f.GetField("gap")))
        for photo, pose in poses.items():
            found = sorted(rivals.get(photo, []))
            pose["rivals"] = np.array([r[1:] for r in found], np.float64).reshape(-1, 4)
        return poses

    def write_sequences(self, poses: Dict[str, dict], lines: List[Row]) -> None:
        """Store a sequence pass in one transaction: ``poses`` {photo: {field of SEQUENCE_FIELDS: value}} into
        those ``camera_poses`` columns (added when missing), and ``lines`` (geometry, trajectory attributes)
        into the trajectory layer (created and styled when missing), replacing its rows of the same sequences.
        The single-photo pose fields are never touched."""
        with _quiet():
            try:
                self._layers["camera_poses"] = self._layer("camera_poses", ogr.wkbPoint, SEQUENCE_FIELDS)
                self._layers[TRAJECTORY_LAYER] = self._layer(TRAJECTORY_LAYER, *EXTRA_LAYERS[TRAJECTORY_LAYER])
                self._embed_styles((TRAJECTORY_LAYER,))
            except RuntimeError as exc:  # GDAL with exceptions enabled by other code
                raise OutputError(f"Cannot set up the sequence layers of {self.path} ({exc}).") from exc
            what = "the sequences"
            self._begin(what)
            try:
                layer = self._layers["camera_poses"]
                layer.ResetReading()
                changed = [f for f in layer if f.GetField("photo") in poses]
                for f in changed:
                    for key, value in poses[f.GetField("photo")].items():
                        _set(f, key, value)
                    if self._gdal(layer.SetFeature, f):
                        raise OutputError(self._failure(what))
                trajectory = self._layers[TRAJECTORY_LAYER]
                ids = {attrs["sequence"] for _, attrs in lines}
                trajectory.ResetReading()
                for fid in [f.GetFID() for f in trajectory if f.GetField("sequence") in ids]:
                    if self._gdal(trajectory.DeleteFeature, fid):
                        raise OutputError(self._failure(what))
                for geometry, attrs in lines:
                    f = ogr.Feature(trajectory.GetLayerDefn())
                    f.SetGeometry(geometry)
                    for key, value in attrs.items():
                        _set(f, key, value)
                    self._create(trajectory, f)
            except BaseException:
                self._rollback()
                raise
            self._commit(what)

    def _begin(self, what: str) -> None:
        if self._gdal(self._ds.StartTransaction):
            raise OutputError(self._failure(what))

    def _commit(self, what: str) -> None:
        if self._gdal(self._ds.CommitTransaction):
            reason = self._failure(what)
            self._rollback()  # SQLite may keep a failed COMMIT's transaction open; nothing of it stays
            raise OutputError(reason)

    def _rollback(self) -> None:
        try:
            self._ds.RollbackTransaction()
        except RuntimeError:  # already rolled back by SQLite
            pass

    def _create(self, layer, feature) -> None:
        if self._gdal(layer.CreateFeature, feature):
            photo = self._writing
            if photo is not None and "UNIQUE constraint failed" in self._reason():
                raise OutputError(self._duplicate(photo))
            what = f"the rows of the photo {photo}" if photo is not None else f"a row of {layer.GetName()!r}"
            raise OutputError(self._failure(what))

    def _gdal(self, call, *args) -> bool:
        """True when the GDAL ``call`` failed, whether it says so by its return code or, with exceptions
        enabled by other code, by raising; `_reason` then says why."""
        self._raised = None
        try:
            return call(*args) != 0
        except RuntimeError as exc:
            self._raised = str(exc)
            return True

    def _reason(self) -> str:
        """Why the last GDAL call failed: its exception's message, else GDAL's last error."""
        return self._raised or gdal.GetLastErrorMsg() or "GDAL gave no reason"

    def _failure(self, what: str) -> str:
        return (f"Cannot write {what} into {self.path}: {self._reason()}. The file is intact and holds every "
                f"photo written before; free disk space or make the file writable, then rerun (loc2 batch "
                f"--resume continues where it stopped).")

    def _duplicate(self, photo: str) -> str:
        return (f"{self.path} already holds a row for the photo {photo}; a photo is written once per file "
                f"(rows are never replaced): skip the photos already there (loc2 batch --resume) or write to "
                f"another file.")

    # -- lifetime ----------------------------------------------------------------------------------------
    def close(self) -> None:
        """Flush and close the file, and let other writers in (idempotent)."""
        if self._ds is not None:
            with _quiet():  # after a failed write (disk full) flushing fails too; the file is already safe
                try:
                    self._ds.FlushCache()
                except RuntimeError:
                    pass
            self._ds = None
            self._layers = {}
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.release()
            self._lock = None

    def __enter__(self) -> "GeoPackageWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class WriterLock:
    """An exclusive operating-system lock on ``FILE.gpkg.lock``, held by the one writer of ``FILE.gpkg``.

    The system drops the lock when its process ends, however it ends, so a crashed writer never leaves
    the file locked (its stale lock file is simply locked again). The lock file is removed on release.
    Raises OutputError when another writer holds the lock.
    """

    def __init__(self, path: Path):
        self.target = Path(path)
        self.path = self.target.with_name(self.target.name + ".lock")
        self._file = None
        for _ in range(10):  # a writer that just released removed the file; lock the one there now
            handle = self._open()
            if not _try_lock(handle):
                handle.close()
                raise OutputError(
                    f"Another loc2 batch (or another Loc² writer: loc2 localize --out, the QGIS dock's export) is "
                    f"writing {self.target}; wait until it has finished, or write to another file: two writers "
                    f"would interleave their photos and could write some of them twice.")
            if _same_file(handle, self.path):
                self._file = handle
                return
            handle.close()
        raise OutputError(f"Cannot lock {self.target}: its lock file {self.path} keeps being replaced.")

    def _open(self):
        try:
            return open(self.path, "a+b")
        except OSError as exc:
            raise OutputError(f"Cannot create the lock file {self.path} next to the GeoPackage ({exc}); the "
                              "output folder must be writable.") from exc

    def release(self) -> None:
        """Unlock and remove the lock file (idempotent)."""
        if self._file is None:
            return
        if os.name != "nt":  # removed while still locked, so no one locks a file that is about to go
            _unlink(self.path)
        self._file.close()
        self._file = None
        if os.name == "nt":  # Windows cannot remove an open file; another writer's open one stays
            _unlink(self.path)


def _try_lock(handle) -> bool:
    """Take an exclusive, non-blocking lock on the open file ``handle``; False when another holds it."""
    try:
        if os.name == "nt":
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _same_file(handle, path: Path) -> bool:
    """Whether ``path`` still names the file ``handle`` has open (a releasing writer may have removed it)."""
    try:
        opened, named = os.fstat(handle.fileno()), os.stat(path)
    except OSError:
        return False
    return (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:  # already gone, or open elsewhere (Windows)
        pass


def photos_in(path, layer: Optional[str] = None) -> Set[str]:
    """Photo ids in the ``photo`` field of a pose layer of an existing vector file (for resuming into it).

    layer: the layer's name; None: ``camera_poses`` when the file has it, else its first layer (a file
    written by a QGIS Processing sink names its one layer after the file). Raises OutputError when the file
    or layer cannot be read or has no ``photo`` field.
    """
    try:
        ds = ogr.Open(str(path))
    except RuntimeError:  # when some other code called ogr.UseExceptions()
        ds = None
    if ds is None or ds.GetLayerCount() == 0:
        raise OutputError(f"Cannot read the photos already in {path}: not a vector file GDAL can open.")
    if layer is None:
        layer = "camera_poses" if ds.GetLayerByName("camera_poses") is not None else ds.GetLayer(0).GetName()
    found = ds.GetLayerByName(layer)
    if found is None or found.GetLayerDefn().GetFieldIndex("photo") < 0:
        raise OutputError(f"{path} has no layer {layer!r} with a 'photo' field; it is not a Loc² output to "
                          "resume, choose another output file.")
    return _photo_ids(ds, layer)


def _photo_ids(ds, layer: str) -> Set[str]:
    sql = ds.ExecuteSQL(f'SELECT DISTINCT photo FROM "{layer}"')
    try:
        return {f.GetField(0) for f in sql}
    finally:
        ds.ReleaseResultSet(sql)


Row = Tuple[Optional[ogr.Geometry], Dict[str, object]]


def layer_rows(result: Result, crs, frustum_range_m: float = FRUSTUM_RANGE_M,
               failed_at=None) -> Dict[str, List[Row]]:
    """One photo's features for every layer of `LAYERS`: {layer: [(OGR geometry or None, {field: value})]}.

    Geometries are in ``crs`` (pyproj-compatible; normally the raster's). A failed result gives one
    ``camera_poses`` row and nothing else; its point is ``failed_at`` ((x, y) in ``crs``, e.g. the prior, so
    a failure shows on the map where the photo was looked for), or no geometry when None. Its pose fields
    (x, y, ...) stay empty either way. Values are Python scalars, NaN -> None.
    The GeoPackage writer and the Processing algorithm's feature sinks both write exactly these rows.
    """
    crs = pyproj.CRS.from_user_input(crs)
    out: Dict[str, List[Row]] = {name: [] for name in LAYERS}
    row = result.pose_row()
    geometry = None
    if result.ok and row["x"] is not None and row["y"] is not None:
        src = result.crs or (result.frame.crs if result.frame is not None else crs)
        if pyproj.CRS.from_user_input(src) != crs:
            row["x"], row["y"] = (float(v) for v in transform_points([[row["x"], row["y"]]], src, crs)[0])
            if row["heading_deg"] is not None:  # grid north of the output CRS, not of the raster's
                row["heading_grid_deg"] = float(
                    LocalFrame(crs, (row["x"], row["y"])).true_to_grid_heading(row["heading_deg"]))
        geometry = _point(row["x"], row["y"])
    elif not result.ok and failed_at is not None:
        geometry = _point(*failed_at)
    out["camera_poses"].append((geometry, row))
    if not result.ok or result.frame is None:
        return out

    frame = result.frame
    same_crs = frame.crs == crs

    def place(xy_local) -> np.ndarray:
        """(N, 2) local metres -> (N, 2) in ``crs``."""
        xy_local = np.asarray(xy_local, np.float64).reshape(-1, 2)
        if len(xy_local) == 0:
            return xy_local
        xy = frame.from_local(xy_local)
        return xy if same_crs else transform_points(xy, frame.crs, crs)

    photo = result.photo
    ring = _frustum_local(result, frustum_range_m)
    if ring is not None:
        lr = ogr.Geometry(ogr.wkbLinearRing)
        for x, y in place(ring):
            lr.AddPoint_2D(float(x), float(y))
        lr.CloseRings()
        poly = ogr.Geometry(ogr.wkbPolygon)
        poly.AddGeometry(lr)
        out["view_frustums"].append((poly, {
            "photo": photo, "heading_deg": _num(result.heading_deg), "hfov_deg": _num(result.hfov_deg),
            "range_m": float(frustum_range_m), "confidence": _num(result.confidence), "status": result.status}))

    n = len(result.weights)
    if n:
        aerial = place(result.xy_aerial)
        ground = place(placed_ground(result))
        uv = np.asarray(result.uv_ground, np.float64).reshape(-1, 2)
        inl = np.asarray(result.inlier_mask, bool).reshape(-1)
        res = np.asarray(result.residuals_m, np.float64).reshape(-1)
        w = np.asarray(result.weights, np.float64).reshape(-1)
        for i in range(n):
            common = {"photo": photo, "u": float(uv[i, 0]), "v": float(uv[i, 1]), "weight": _num(w[i]),
                      "residual_m": _num(res[i]) if i < len(res) else None}
            inlier = bool(inl[i]) if i < len(inl) else False
            line = ogr.Geometry(ogr.wkbLineString)
            line.AddPoint_2D(float(ground[i, 0]), float(ground[i, 1]))
            line.AddPoint_2D(float(aerial[i, 0]), float(aerial[i, 1]))
            out["matches"].append((line, dict(common, inlier=int(inlier))))
            if inlier:
                out["inliers"].append((_point(*aerial[i]), common))

    layout = place(result.layout_xy)
    luv = np.asarray(result.layout_uv, np.float64).reshape(-1, 2)
    for (x, y), (u, v) in zip(layout, luv):
        out["ground_layout"].append((_point(x, y), {"photo": photo, "u": float(u), "v": float(v)}))
    return out


def rival_rows(result: Result, crs) -> List[Row]:
    """The ``rival_poses`` rows of a localized result (`result.RivalPose`, rank 1 = best), placed in ``crs``."""
    if not result.ok or not result.rivals:
        return []
    xy = np.array([[r.x, r.y] for r in result.rivals], np.float64)
    src = result.crs or (result.frame.crs if result.frame is not None else crs)
    if pyproj.CRS.from_user_input(src) != pyproj.CRS.from_user_input(crs):
        xy = transform_points(xy, src, crs)
    return [(_point(x, y), {"photo": result.photo, "rank": rank, "heading_deg": _num(r.heading_deg),
                            "gap": _num(r.gap)})
            for rank, ((x, y), r) in enumerate(zip(xy, result.rivals), start=1)]


def line_string(xy) -> ogr.Geometry:
    """An OGR LineString through the (N, 2) points ``xy``."""
    line = ogr.Geometry(ogr.wkbLineString)
    for x, y in np.asarray(xy, np.float64).reshape(-1, 2):
        line.AddPoint_2D(float(x), float(y))
    return line


def _num(value) -> Optional[float]:
    value = float(value)
    return value if math.isfinite(value) else None


def placed_ground(result: Result) -> np.ndarray:
    """(N, 2) matched ground points placed by the pose in the local frame: ``s * R @ xy_bev + t``, metres."""
    from .solver import rotation_from_heading  # torch import deferred: only results with matches need it

    frame = result.frame
    xy = np.array([[result.x, result.y]], np.float64)
    if result.crs and pyproj.CRS.from_user_input(result.crs) != frame.crs:
        xy = transform_points(xy, result.crs, frame.crs)
    t = frame.to_local(xy)[0]
    R = np.asarray(rotation_from_heading(float(result.heading_deg)), np.float64)
    xy_bev = np.asarray(result.xy_bev, np.float64).reshape(-1, 2)
    return float(result.scale) * xy_bev @ R.T + t


def _frustum_local(result: Result, range_m: float) -> Optional[np.ndarray]:
    """(K, 2) ring of the view frustum in the local frame (metres), or None when it cannot be drawn."""
    try:
        return frustum_polygon(result, range_m)
    except ValueError:  # a pinhole result without a usable hfov_deg: the pose is still worth writing
        return None
