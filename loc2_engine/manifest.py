"""Dataset manifest (docs/manifest.md): ``manifest.csv`` read into typed rows, and written back.

Reading resolves paths against the manifest's folder, turns empty cells into None, parses numbers, and checks
each row, raising `ManifestError` with a sentence that names the file, the line and the column. Columns not in
docs/manifest.md are kept, as strings, in ``ManifestRow.extra`` and written back after the standard ones, so
tools can add their own columns (synth adds town, pitch, ...) without breaking other readers.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
from dataclasses import dataclass, field, fields
from typing import Dict, Iterable, List, Mapping, Optional, Tuple, Union

import pyproj
from pyproj.exceptions import CRSError

from .errors import ManifestError

#: the columns of docs/manifest.md, in the order they are written
MANIFEST_COLUMNS = ("photo", "aerial", "camera", "hfov_deg", "crs", "prior_x", "prior_y", "radius_m",
                    "heading_prior_deg", "heading_tolerance_deg", "true_x", "true_y", "true_heading_deg", "depth")
_PATH_COLUMNS = ("photo", "aerial", "depth")
_FLOAT_COLUMNS = ("hfov_deg", "prior_x", "prior_y", "radius_m", "heading_prior_deg", "heading_tolerance_deg",
                  "true_x", "true_y", "true_heading_deg")
CAMERAS = ("pano", "pinhole", "auto")


@dataclass
class ManifestRow:
    """One photo of a dataset. Paths are absolute (resolved against the manifest's folder); None = empty cell.

    camera: "pano" | "pinhole" | "auto" | None (None = decide from the image). hfov_deg: pinhole horizontal
    FOV, degrees. crs: CRS of every coordinate in the row. prior_x/prior_y, true_x/true_y: in ``crs`` units.
    radius_m: search radius, metres. heading_prior_deg, heading_tolerance_deg, true_heading_deg: degrees
    clockwise from true north. depth: ground-truth range map (.npy). extra: other columns, as strings.
    line: line of the CSV file the row came from (0 for rows built in code).
    """

    photo: str
    aerial: Optional[str] = None
    camera: Optional[str] = None
    hfov_deg: Optional[float] = None
    crs: Optional[str] = None
    prior_x: Optional[float] = None
    prior_y: Optional[float] = None
    radius_m: Optional[float] = None
    heading_prior_deg: Optional[float] = None
    heading_tolerance_deg: Optional[float] = None
    true_x: Optional[float] = None
    true_y: Optional[float] = None
    true_heading_deg: Optional[float] = None
    depth: Optional[str] = None
    extra: Dict[str, str] = field(default_factory=dict)
    line: int = 0

    @property
    def prior_xy(self) -> Optional[Tuple[float, float]]:
        """(prior_x, prior_y) in ``crs`` units, or None when the row has no prior (use EXIF GPS)."""
        return None if self.prior_x is None else (self.prior_x, self.prior_y)

    @property
    def true_xy(self) -> Optional[Tuple[float, float]]:
        """(true_x, true_y) in ``crs`` units, or None when the truth is unknown."""
        return None if self.true_x is None else (self.true_x, self.true_y)


def read_manifest(csv_path) -> List[ManifestRow]:
    """Read and check every row of ``csv_path`` (UTF-8, a BOM is tolerated), one row per photo; raises
    `ManifestError`."""
    csv_path = os.fspath(csv_path)
    folder = os.path.dirname(os.path.abspath(csv_path))
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames
            if not header or "photo" not in header:
                raise ManifestError(f"The manifest {csv_path} has no 'photo' column in its header line; the first "
                                    f"line must name the columns ({', '.join(MANIFEST_COLUMNS)}).")
            crs_ok: Dict[str, Optional[str]] = {}
            rows = [_parse_row(rec, reader.line_num, csv_path, folder, crs_ok) for rec in reader]
    except FileNotFoundError as exc:
        raise ManifestError(f"The manifest {csv_path} does not exist; give the dataset folder's manifest.csv.") \
            from exc
    except UnicodeDecodeError as exc:
        raise ManifestError(f"The manifest {csv_path} is not UTF-8 text ({exc}); save it as UTF-8 CSV.") from exc
    except csv.Error as exc:
        raise ManifestError(f"The manifest {csv_path} is not valid CSV ({exc}).") from exc
    _check_one_row_per_photo(rows, csv_path)
    return rows


def _check_one_row_per_photo(rows: List[ManifestRow], csv_path: str) -> None:
    """ManifestError naming both lines when two rows name the same photo: a batch would localize and write it
    twice, and which row's prior or camera is meant cannot be guessed."""
    seen: Dict[str, int] = {}
    for row in rows:
        key = os.path.normcase(row.photo)
        if key in seen:
            raise ManifestError(f"The manifest {csv_path} lists the photo {row.photo} twice, on lines {seen[key]} "
                                f"and {row.line}; a manifest has one row per photo: remove one of them.")
        seen[key] = row.line


def write_manifest(path, rows: Iterable[Union[ManifestRow, Mapping[str, object]]]) -> None:
    """Write rows (ManifestRow or dicts keyed by column) as a manifest CSV (docs/manifest.md), atomically.

    Standard columns come first, then extra columns in first-seen order. Absolute paths are written relative
    to the manifest's folder. Floats use Python's shortest round-trip form; dict values are written as given.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    records = [_record(r, folder) for r in rows]
    extra: List[str] = []
    for rec in records:
        extra += [k for k in rec if k not in MANIFEST_COLUMNS and k not in extra]
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", suffix=".csv", dir=folder)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(MANIFEST_COLUMNS) + extra, lineterminator="\n")
            writer.writeheader()
            writer.writerows(records)
        os.replace(tmp, path)  # readers never see a half-written manifest
    except BaseException:
        os.unlink(tmp)
        raise


def _record(row, folder: str) -> Dict[str, str]:
    if isinstance(row, ManifestRow):
        rec = {f.name: getattr(row, f.name) for f in fields(row) if f.name in MANIFEST_COLUMNS}
        rec.update(row.extra)
    else:
        rec = dict(row)
    out = {}
    for key, value in rec.items():
        if value is None:
            out[key] = ""
        elif key in _PATH_COLUMNS and isinstance(value, str) and os.path.isabs(value):
            out[key] = _relative(value, folder)
        elif isinstance(value, float):
            out[key] = repr(value)
        else:
            out[key] = str(value)
    return out


def _relative(path: str, folder: str) -> str:
    try:
        return os.path.relpath(path, folder).replace(os.sep, "/")
    except ValueError:  # another drive on Windows: keep it absolute
        return path


def _parse_row(rec: Dict, line: int, csv_path: str, folder: str, crs_ok: Dict) -> ManifestRow:
    where = f"The manifest {csv_path}, line {line}"
    if None in rec:  # DictReader puts surplus cells under the key None
        raise ManifestError(f"{where} has more cells than the header has columns; quote values that contain "
                            f"commas.")
    cells = {k: (v or "").strip() for k, v in rec.items()}
    values: Dict[str, object] = {}
    for name in _PATH_COLUMNS:
        text = cells.get(name, "")
        values[name] = os.path.normpath(os.path.join(folder, text)) if text else None
    if values["photo"] is None:
        raise ManifestError(f"{where} has an empty 'photo' cell; every row needs the photo's path.")
    for name in _FLOAT_COLUMNS:
        text = cells.get(name, "")
        values[name] = _number(text, name, where) if text else None
    camera = cells.get("camera", "").lower() or None
    if camera is not None and camera not in CAMERAS:
        raise ManifestError(f"{where}: camera {cells['camera']!r} is not one of pano, pinhole, auto (or empty).")
    values["camera"] = camera
    values["crs"] = cells.get("crs", "") or None
    row = ManifestRow(**values, extra={k: v for k, v in cells.items() if k not in MANIFEST_COLUMNS}, line=line)
    _check(row, where, crs_ok)
    return row


def _number(text: str, name: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ManifestError(f"{where}: {name} {text!r} is not a number (use a dot as decimal separator, or leave "
                            f"the cell empty).") from None
    if not math.isfinite(value):
        raise ManifestError(f"{where}: {name} {text!r} is not a finite number; leave the cell empty instead.")
    return value


def _check(row: ManifestRow, where: str, crs_ok: Dict) -> None:
    for a, b in (("prior_x", "prior_y"), ("true_x", "true_y")):
        if (getattr(row, a) is None) != (getattr(row, b) is None):
            raise ManifestError(f"{where}: {a} and {b} must both be given or both be empty.")
    if (row.prior_x is not None or row.true_x is not None) and row.crs is None:
        raise ManifestError(f"{where} has coordinates but an empty 'crs' cell; name their CRS (e.g. EPSG:32633).")
    if row.crs is not None:
        if row.crs not in crs_ok:  # parse each distinct CRS once
            try:
                pyproj.CRS.from_user_input(row.crs)
                crs_ok[row.crs] = None
            except CRSError as exc:
                crs_ok[row.crs] = str(exc)
        if crs_ok[row.crs] is not None:
            raise ManifestError(f"{where}: crs {row.crs!r} is not a CRS PROJ understands ({crs_ok[row.crs]}).")
    if row.hfov_deg is not None and not 0.0 < row.hfov_deg < 180.0:
        raise ManifestError(f"{where}: hfov_deg {row.hfov_deg:g} must be between 0 and 180 degrees.")
    if row.radius_m is not None and row.radius_m <= 0.0:
        raise ManifestError(f"{where}: radius_m {row.radius_m:g} must be a positive distance in metres.")
    if row.heading_tolerance_deg is not None:
        if row.heading_prior_deg is None:
            raise ManifestError(f"{where} has a heading_tolerance_deg but no heading_prior_deg; give both or "
                                f"neither.")
        if not 0.0 < row.heading_tolerance_deg <= 180.0:  # 0 would allow no heading at all
            raise ManifestError(f"{where}: heading_tolerance_deg {row.heading_tolerance_deg:g} must be more than 0 "
                                f"and at most 180 degrees.")
