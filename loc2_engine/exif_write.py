"""Writing Loc²'s poses back into the photos' EXIF and XMP, with exiftool (docs/cli.md, `loc2 exif write`).

Each photo gets its estimated position (``GPSLatitude``/``GPSLongitude`` and their refs, WGS84 degrees), its
heading (``GPSImgDirection``, degrees clockwise from true north, ``GPSImgDirectionRef = T``), its horizontal
uncertainty (``GPSHPositioningError``, metres, the radius holding 68 % of an isotropic 2-D Gaussian:
`confidence.RADIUS_68` × the per-axis σ) and a provenance record in the project's own XMP namespace
``XMP-loc2`` (method, model, confidence, status, σ, and the GPS position and heading the photo had before).

exiftool does the writing because it rewrites only the tags it is given and keeps everything else
(maker notes, other XMP, ICC profiles, orientation, thumbnails) byte for byte; it is called with an argument
list (never a shell), ``-o COPY`` for copies and ``-overwrite_original`` only when writing in place. A
photo-level failure is an `ExifWriteError` naming the photo; the caller reports it and goes on.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional

from .confidence import RADIUS_68
from .errors import Loc2Error, OutputError
from .exif import read_exif

#: decimals written: 1e-7° ≈ 1 cm of position, 0.01° of heading, 1 cm of positioning error
LONLAT_DECIMALS = 7
HEADING_DECIMALS = 2
ERROR_DECIMALS = 2
#: the method written into XMP-loc2:Method
METHOD = "Loc²"
#: the XMP namespace of the provenance record (a name, not a web page)
NAMESPACE_URI = "http://ns.loc2-qgis.org/provenance/1.0/"
#: seconds allowed for one exiftool call (a photo of a few tens of MB takes well under one)
EXIFTOOL_TIMEOUT_S = 60.0
INSTALL_HINT = ("install it with `sudo apt-get install libimage-exiftool-perl` (Debian, Ubuntu), "
                "`brew install exiftool` (macOS) or from https://exiftool.org, or run `make setup`")

# Perl read by `exiftool -config`: the XMP-loc2 table. Numbers are 'real' so `-n` reads them back as numbers.
_CONFIG = """%Image::ExifTool::UserDefined = (
    'Image::ExifTool::XMP::Main' => {
        loc2 => { SubDirectory => { TagTable => 'Image::ExifTool::UserDefined::loc2' } },
    },
);
%Image::ExifTool::UserDefined::loc2 = (
    GROUPS => { 0 => 'XMP', 1 => 'XMP-loc2', 2 => 'Location' },
    NAMESPACE => { 'loc2' => '""" + NAMESPACE_URI + """' },
    WRITABLE => 'string',
    Method => { },
    Model => { },
    Status => { },
    Confidence => { Writable => 'real' },
    SigmaM => { Writable => 'real' },
    OriginalLatitude => { Writable => 'real' },
    OriginalLongitude => { Writable => 'real' },
    OriginalImgDirection => { Writable => 'real' },
    OriginalImgDirectionRef => { },
);
1;
"""


class ExifWriteError(Loc2Error):
    """One photo could not be written: missing, refused by exiftool, or a pose without a position."""

    code = "exif_write"


@dataclass
class Pose:
    """What is written into one photo, from one ``camera_poses`` row.

    photo: the row's ``photo`` field as stored. lon, lat: WGS84 degrees. heading_deg: clockwise from true
    north, degrees, or None. sigma_m: per-axis 1-σ position uncertainty, metres, or None. confidence: 0..1.
    """

    photo: str
    lon: Optional[float]
    lat: Optional[float]
    heading_deg: Optional[float]
    sigma_m: Optional[float]
    confidence: Optional[float]
    status: str
    model: str


def exiftool_path() -> str:
    """The exiftool executable; OutputError saying how to install it when there is none."""
    path = shutil.which("exiftool")
    if not path:
        raise OutputError(f"exiftool is not installed (it writes the EXIF without losing other metadata); "
                          f"{INSTALL_HINT}.")
    return path


def read_poses(gpkg) -> List[Pose]:
    """Every row of the ``camera_poses`` layer of the Loc² GeoPackage ``gpkg``; OutputError if unusable."""
    from osgeo import gdal, ogr

    path = os.fspath(gpkg)
    if not os.path.isfile(path):
        raise OutputError(f"The GeoPackage {path} does not exist; give the file written by `loc2 batch` or "
                          f"`loc2 localize --out`.")
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        ds = ogr.Open(path)
    except RuntimeError:  # GDAL with exceptions enabled by other code
        ds = None
    finally:
        gdal.PopErrorHandler()
    layer = ds.GetLayerByName("camera_poses") if ds is not None else None
    if layer is None:
        raise OutputError(f"{path} is not a Loc² GeoPackage: it has no camera_poses layer.")
    return [_pose(feature.items()) for feature in layer]


def pose_of(result) -> Pose:
    """The Pose of a `result.Result` held in memory (one that was not read back from a GeoPackage)."""
    return _pose(result.pose_row())


def _pose(items: Dict) -> Pose:
    return Pose(photo=items.get("photo") or "", lon=_finite(items.get("lon")), lat=_finite(items.get("lat")),
                heading_deg=_finite(items.get("heading_deg")), sigma_m=_finite(items.get("sigma_m")),
                confidence=_finite(items.get("confidence")), status=items.get("status") or "",
                model=items.get("model") or "")


def _finite(value) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def selected(poses: List[Pose], include_low_confidence: bool) -> List[Pose]:
    """The poses to write: ``ok``, plus ``low_confidence`` when asked; ``failed`` never."""
    wanted = ("ok", "low_confidence") if include_low_confidence else ("ok",)
    return [p for p in poses if p.status in wanted]


def positioning_error_m(sigma_m: Optional[float]) -> Optional[float]:
    """GPSHPositioningError in metres: the 68 % radius `RADIUS_68` × σ, to the centimetre."""
    if sigma_m is None or sigma_m < 0:
        return None
    return round(RADIUS_68 * sigma_m, ERROR_DECIMALS)


def resolve_photo(photo: str, photos_root) -> Path:
    """The photo file of a row: ``photo`` itself when absolute, else under ``photos_root``."""
    path = Path(photo)
    return path if path.is_absolute() else Path(photos_root) / path


def output_path(photo: str, out_dir) -> Path:
    """Where the copy of ``photo`` goes: its relative path under ``out_dir`` (its file name if absolute)."""
    path = Path(photo)
    if path.is_absolute() or ".." in path.parts:
        return Path(out_dir) / path.name
    return Path(out_dir) / path


def tag_arguments(pose: Pose, original) -> List[str]:
    """exiftool assignments for ``pose``; ``original`` is the photo's `ExifInfo` before writing, or None
    when the photo already carries a Loc² record (its original position is in that record and is kept).

    ``#`` after a tag name writes the number as given (no print conversion), so no locale or format is
    guessed; refs are written explicitly because the rational values are unsigned.
    """
    if pose.lon is None or pose.lat is None:
        raise ExifWriteError(f"The pose of {pose.photo} has no longitude/latitude, so there is nothing to write.")
    args = [f"-GPSLatitude#={abs(round(pose.lat, LONLAT_DECIMALS))}",
            f"-GPSLatitudeRef#={'S' if pose.lat < 0 else 'N'}",
            f"-GPSLongitude#={abs(round(pose.lon, LONLAT_DECIMALS))}",
            f"-GPSLongitudeRef#={'W' if pose.lon < 0 else 'E'}",
            "-GPSMapDatum=WGS-84"]
    if pose.heading_deg is not None:
        args += [f"-GPSImgDirection#={round(pose.heading_deg % 360.0, HEADING_DECIMALS) % 360.0}",
                 "-GPSImgDirectionRef#=T"]
    else:  # a camera heading left beside a new position would be read as ours
        args += ["-GPSImgDirection=", "-GPSImgDirectionRef="]
    error = positioning_error_m(pose.sigma_m)
    args.append(f"-GPSHPositioningError#={error}" if error is not None else "-GPSHPositioningError=")
    return args + _provenance_arguments(pose, original)


def _provenance_arguments(pose: Pose, original) -> List[str]:
    args = [f"-XMP-loc2:Method={METHOD}", f"-XMP-loc2:Model={pose.model}", f"-XMP-loc2:Status={pose.status}"]
    if pose.confidence is not None:
        args.append(f"-XMP-loc2:Confidence#={round(pose.confidence, 4)}")
    if pose.sigma_m is not None:
        args.append(f"-XMP-loc2:SigmaM#={round(pose.sigma_m, 3)}")
    if original is None:
        return args
    if original.lonlat is not None:
        lon, lat = original.lonlat
        args += [f"-XMP-loc2:OriginalLatitude#={lat!r}", f"-XMP-loc2:OriginalLongitude#={lon!r}"]
    if original.gps_heading_deg is not None:
        args.append(f"-XMP-loc2:OriginalImgDirection#={original.gps_heading_deg!r}")
        if original.gps_heading_ref:
            args.append(f"-XMP-loc2:OriginalImgDirectionRef={original.gps_heading_ref}")
    return args


class ExifWriter:
    """Runs exiftool on one photo after another with the XMP-loc2 definitions of `_CONFIG`.

    Use as a context manager (the config file lives in a temporary folder until it closes). Raises
    OutputError at construction when exiftool is missing.
    """

    def __init__(self):
        self.exiftool = exiftool_path()
        self._tmp = tempfile.TemporaryDirectory(prefix="loc2-exiftool-")
        self.config = os.path.join(self._tmp.name, "loc2.config")
        with open(self.config, "w", encoding="utf-8") as f:
            f.write(_CONFIG)

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> "ExifWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self, args: List[str], photo) -> subprocess.CompletedProcess:
        # -config must come first; the rest of the command is an argument list, so no path is ever a shell word
        cmd = [self.exiftool, "-config", self.config, *args]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=EXIFTOOL_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise ExifWriteError(f"exiftool took more than {EXIFTOOL_TIMEOUT_S:g} s on {photo} and was "
                                 f"stopped.") from exc
        except OSError as exc:
            raise ExifWriteError(f"exiftool could not be started for {photo} ({exc}).") from exc

    def read(self, photo, *tags: str) -> Dict:
        """The tags of ``photo`` as exiftool reads them with ``-n`` (numbers, not print strings)."""
        done = self._run(["-json", "-n", *[f"-{t}" for t in tags], "--", os.fspath(photo)], photo)
        if done.returncode != 0:
            raise ExifWriteError(f"exiftool cannot read {photo}: {_message(done)}")
        return json.loads(done.stdout)[0]

    def has_record(self, photo) -> bool:
        """True when ``photo`` already carries a Loc² provenance record (so its GPS is no longer the camera's)."""
        return self.read(photo, "XMP-loc2:Method").get("Method") == METHOD

    def write(self, pose: Pose, source: Path, target: Optional[Path]) -> Path:
        """Write ``pose`` into a copy ``target`` of ``source``, or into ``source`` itself when ``target`` is
        None; returns the file written. ExifWriteError with exiftool's reason when it fails."""
        if not source.is_file():
            raise ExifWriteError(f"The photo {source} does not exist.")
        original = None if self.has_record(source) else read_exif(source)
        args = tag_arguments(pose, original)
        if target is None:
            args += ["-overwrite_original", "--", os.fspath(source)]
        else:
            target = _free_target(source, target)
            args += ["-o", os.fspath(target), "--", os.fspath(source)]
        done = self._run(args, source)
        if done.returncode != 0:
            raise ExifWriteError(f"exiftool could not write {target or source}: {_message(done)}")
        return target or source


def _free_target(source: Path, target: Path) -> Path:
    """``target`` made ready for ``exiftool -o``, which refuses an existing file: a copy left by an earlier
    run is removed; the original itself is never a target."""
    if target.exists() and target.resolve() == source.resolve():
        raise ExifWriteError(f"The copy of {source} would replace the photo itself; choose another --out "
                             f"folder or use --in-place.")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_file():
        target.unlink()
    return target


def _missing(photo: str, source: Path, photos_root) -> str:
    """The sentence for a photo that is not where its row says."""
    if Path(photo).is_absolute():
        return f"The photo {source} does not exist; it was moved or deleted after localization."
    return (f"The photo {source} does not exist; relative paths are taken from --photos-root "
            f"(here {os.path.abspath(photos_root)}), give the folder the paths are relative to.")


def _message(done: subprocess.CompletedProcess) -> str:
    """exiftool's own reason, one line."""
    text = " ".join((done.stderr or done.stdout or "").split())
    return text or f"exit status {done.returncode}"


@dataclass
class Outcome:
    """One photo's result: ``written`` is the file written, ``error`` the sentence when it failed."""

    photo: str
    written: Optional[Path] = None
    error: str = ""


def write_all(poses: List[Pose], photos_root, out_dir: Optional[Path]) -> Iterator[Outcome]:
    """Write every pose (copies under ``out_dir``, in place when it is None), yielding one Outcome each.

    A failure of one photo is its Outcome's ``error``; only a missing exiftool raises (OutputError).
    """
    targets: Dict[Path, str] = {}
    with ExifWriter() as writer:
        for pose in poses:
            try:
                source = resolve_photo(pose.photo, photos_root)
                if not source.is_file():
                    raise ExifWriteError(_missing(pose.photo, source, photos_root))
                target = None if out_dir is None else output_path(pose.photo, out_dir)
                if target is not None and target in targets:
                    raise ExifWriteError(f"The copy of {pose.photo} would be {target}, already written for "
                                         f"{targets[target]}; photos with one file name in several folders "
                                         f"need relative paths and --photos-root.")
                if target is not None:
                    targets[target] = pose.photo
                yield Outcome(pose.photo, written=writer.write(pose, source, target))
            except Loc2Error as exc:  # ExifWriteError, or PhotoError from reading the original EXIF
                yield Outcome(pose.photo, error=str(exc))
