"""EXIF reading: orientation, GPS position and direction, focal length, sensor size, camera make/model, the
time the photo was taken.

Reading never raises on a strange tag: a value that is missing, of the wrong type, has a zero denominator
or is out of range is reported as ``None``. Only a file that cannot be opened as an image raises
`PhotoError` (see `open_photo`), with a sentence that says what is wrong with that file. A GPS position that
is present but impossible (minutes or seconds of 60 or more, a latitude beyond ±90°) is not used, and
``ExifInfo.gps_error`` says why, so that a missing prior can be explained (`invalid_gps_error`).

Turning the optics into a field of view is `ground.hfov_from_exif`'s job (it needs the upright image size).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from dataclasses import dataclass
from typing import Optional, Tuple

from PIL import Image, UnidentifiedImageError

from .errors import PhotoError, PriorError

# Tag numbers (EXIF 2.32); PIL 9.4 names them in ExifTags but numbers keep this file version-proof.
_IFD_EXIF = 0x8769
_IFD_GPS = 0x8825
_ORIENTATION = 0x0112
_MAKE = 0x010F
_MODEL = 0x0110
_FOCAL_LENGTH = 0x920A
_FOCAL_35MM = 0xA405
_FOCAL_PLANE_XRES = 0xA20E
_FOCAL_PLANE_UNIT = 0xA210
_PIXEL_X_DIMENSION = 0xA002
_DATETIME_ORIGINAL, _SUBSEC_ORIGINAL, _OFFSET_ORIGINAL = 0x9003, 0x9291, 0x9011
_GPS_TIME, _GPS_DATE = 7, 29
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4
_GPS_ALT_REF, _GPS_ALT = 5, 6
_GPS_STATUS = 9
_GPS_IMG_DIR_REF, _GPS_IMG_DIR = 16, 17

#: FocalPlaneResolutionUnit -> millimetres per unit (2 = inch is the EXIF default; 4, 5 are common extensions)
_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}


@dataclass
class ExifInfo:
    """What the engine uses from a photo's EXIF; every field is None when absent or unusable.

    orientation: EXIF Orientation 1..8 (1 = upright, 6 = rotate 90° clockwise to view, 8 = 90° counter-clockwise).
    lonlat: (lon, lat) WGS84 degrees, hemisphere refs applied (S and W negative).
    altitude: metres above sea level (negative below, GPSAltitudeRef applied).
    gps_heading_deg: GPSImgDirection in [0, 360), degrees clockwise from the north named by gps_heading_ref.
    gps_heading_ref: "T" (true north) or "M" (magnetic north; the engine must not treat it as true), or None.
    focal_mm: real focal length in mm.  focal_35mm: 35 mm-equivalent focal length in mm.
    sensor_width_mm: sensor extent along the stored image's x axis, from FocalPlaneXResolution, in mm.
    make, model: camera strings, stripped.
    width, height: pixel size of the image as stored in the file (before orientation is applied).
    gps_error: why a GPS position present in the file was not used (a clause such as "its latitude has 75
    minutes, ..."), None when there was none or it was used.
    taken_at: DateTimeOriginal with SubSecTimeOriginal's fraction; timezone-aware when OffsetTimeOriginal
    gives the offset, else naive (the camera's clock). gps_time: GPSDateStamp + GPSTimeStamp, aware UTC.
    """

    orientation: Optional[int] = None
    lonlat: Optional[Tuple[float, float]] = None
    altitude: Optional[float] = None
    gps_heading_deg: Optional[float] = None
    gps_heading_ref: Optional[str] = None
    focal_mm: Optional[float] = None
    focal_35mm: Optional[float] = None
    sensor_width_mm: Optional[float] = None
    make: Optional[str] = None
    model: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    gps_error: Optional[str] = None
    taken_at: Optional[_dt.datetime] = None
    gps_time: Optional[_dt.datetime] = None

    @property
    def swaps_axes(self) -> bool:
        """True when applying the orientation turns the image by 90° (orientations 5-8)."""
        return self.orientation in (5, 6, 7, 8)


def open_photo(path) -> Image.Image:
    """Open ``path`` lazily with PIL (header only), raising `PhotoError` with a specific sentence.

    Distinguishes a missing file, a directory, an empty file and a file that is not an image. Truncation is
    only found by decoding the pixels (``img.load()``), which `ground.GroundImage.load` does.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise PhotoError(f"The photo {path} does not exist; check the path (relative paths are taken from "
                         f"the current folder or, in a manifest, from the manifest's folder).")
    if os.path.isdir(path):
        raise PhotoError(f"The photo path {path} is a folder, not an image file.")
    if os.path.getsize(path) == 0:
        raise PhotoError(f"The photo {path} is an empty file (0 bytes); the copy or download probably "
                         f"failed, copy it again.")
    try:
        return Image.open(path)
    except Image.DecompressionBombError as exc:
        raise PhotoError(f"The photo {path} is too large to decode safely ({exc}); downscale it first.") from exc
    except UnidentifiedImageError as exc:
        raise PhotoError(f"The photo {path} is not an image that can be read (JPEG, PNG, TIFF, ...): its "
                         f"content is not a known image format, whatever its extension.") from exc
    except OSError as exc:
        raise decode_error(path, exc) from exc


def decode_error(path: str, exc: Exception) -> PhotoError:
    """The PhotoError for a file PIL recognised but could not decode (``exc`` from open or ``img.load()``)."""
    if "truncated" in str(exc).lower():
        return PhotoError(f"The photo {path} is truncated: the file ends before the image data does ({exc}); "
                          f"the copy or download was probably interrupted, copy it again.")
    return PhotoError(f"The photo {path} is corrupt and cannot be decoded ({exc}).")


def invalid_gps_error(path, info: ExifInfo) -> Optional[PriorError]:
    """The PriorError for a photo whose EXIF GPS position is invalid (``info.gps_error``), else None."""
    if info.lonlat is not None or not info.gps_error:
        return None
    return PriorError(f"The EXIF GPS position of the photo {os.path.basename(os.fspath(path))} is invalid "
                      f"({info.gps_error}), so it cannot be the prior; give a prior position (--prior X Y, a map "
                      f"click, or the manifest's prior_x/prior_y) or correct the photo's GPS tags.")


def read_exif(path) -> ExifInfo:
    """Read the EXIF of the photo at ``path``; raises `PhotoError` only if the file is not a readable image."""
    with open_photo(path) as img:
        return exif_from_image(img)


def exif_from_image(img: Image.Image) -> ExifInfo:
    """ExifInfo of an already opened PIL image (never raises on bad tags)."""
    info = ExifInfo(width=int(img.width), height=int(img.height))
    try:
        exif = img.getexif()
    except Exception:  # noqa: BLE001 -- a corrupt EXIF block must not make the photo unusable
        return info
    main = _safe_dict(lambda: dict(exif))
    sub = _safe_dict(lambda: exif.get_ifd(_IFD_EXIF))
    gps = _safe_dict(lambda: exif.get_ifd(_IFD_GPS))

    orientation = _int(main.get(_ORIENTATION))
    info.orientation = orientation if orientation is not None and 1 <= orientation <= 8 else None
    info.make = _text(main.get(_MAKE))
    info.model = _text(main.get(_MODEL))
    info.focal_mm = _positive(_float(sub.get(_FOCAL_LENGTH)))
    info.focal_35mm = _positive(_float(sub.get(_FOCAL_35MM)))
    info.sensor_width_mm = _sensor_width_mm(sub, info.width)
    info.taken_at = _taken_at(sub)
    _read_gps(gps, info)
    return info


def _taken_at(sub: dict) -> Optional[_dt.datetime]:
    """DateTimeOriginal ("YYYY:MM:DD HH:MM:SS") + SubSecTimeOriginal digits (+ OffsetTimeOriginal "+HH:MM")."""
    text = _text(sub.get(_DATETIME_ORIGINAL))
    try:
        when = _dt.datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S") if text else None
    except ValueError:  # blank "    :  :  " placeholders, other layouts
        return None
    if when is None:
        return None
    digits = _text(sub.get(_SUBSEC_ORIGINAL)) or ""
    if digits.isdigit():
        when += _dt.timedelta(seconds=int(digits) / 10 ** len(digits))
    offset = _text(sub.get(_OFFSET_ORIGINAL)) or ""
    if len(offset) == 6 and offset[0] in "+-" and offset[1:3].isdigit() and offset[4:].isdigit():
        minutes = int(offset[1:3]) * 60 + int(offset[4:])
        when = when.replace(tzinfo=_dt.timezone(_dt.timedelta(minutes=minutes if offset[0] == "+" else -minutes)))
    return when


def _gps_time(gps: dict) -> Optional[_dt.datetime]:
    """GPSDateStamp ("YYYY:MM:DD") + GPSTimeStamp (hours, minutes, seconds rationals), UTC."""
    date, hms = _text(gps.get(_GPS_DATE)), gps.get(_GPS_TIME)
    if not date or not isinstance(hms, (tuple, list)) or len(hms) != 3:
        return None
    parts = [_float(v) for v in hms]
    try:
        day = _dt.datetime.strptime(date[:10], "%Y:%m:%d")
    except ValueError:
        return None
    if any(p is None or p < 0 for p in parts) or parts[0] >= 24 or parts[1] >= 60 or parts[2] >= 61:
        return None
    return (day + _dt.timedelta(hours=parts[0], minutes=parts[1], seconds=parts[2])).replace(tzinfo=_dt.timezone.utc)


def _sensor_width_mm(sub: dict, stored_width: int) -> Optional[float]:
    xres = _positive(_float(sub.get(_FOCAL_PLANE_XRES)))
    if xres is None:
        return None
    unit = _int(sub.get(_FOCAL_PLANE_UNIT))
    unit_mm = _UNIT_MM.get(2 if unit is None else unit)
    if unit_mm is None:
        return None
    # FocalPlaneXResolution refers to the original capture; PixelXDimension is its width when the file
    # was later downscaled, so prefer it
    pixels = _int(sub.get(_PIXEL_X_DIMENSION)) or stored_width
    width = _positive(pixels / xres * unit_mm)
    return width if width is not None and width < 100.0 else None  # no sensor is wider than 10 cm


def _read_gps(gps: dict, info: ExifInfo) -> None:
    if (_text(gps.get(_GPS_STATUS)) or "A").upper().startswith("V"):
        return  # "V" = measurement void: the receiver had no fix, coordinates are leftovers
    info.lonlat, info.gps_error = _gps_position(gps)
    info.gps_time = _gps_time(gps)
    alt = _float(gps.get(_GPS_ALT))
    if alt is not None and math.isfinite(alt):
        below = _int(gps.get(_GPS_ALT_REF)) == 1
        info.altitude = -abs(alt) if below else alt
    direction = _float(gps.get(_GPS_IMG_DIR))
    if direction is not None and math.isfinite(direction) and 0.0 <= direction <= 360.0:
        info.gps_heading_deg = direction % 360.0
        ref = (_text(gps.get(_GPS_IMG_DIR_REF)) or "").upper()[:1]
        info.gps_heading_ref = ref if ref in ("T", "M") else None


def _gps_position(gps: dict) -> Tuple[Optional[Tuple[float, float]], Optional[str]]:
    """((lon, lat), None) from the GPS IFD; (None, None) without a position or at exactly (0, 0), which
    many cameras write without a fix; (None, why) for a position that is present but impossible."""
    if gps.get(_GPS_LAT) is None and gps.get(_GPS_LON) is None:
        return None, None
    if gps.get(_GPS_LAT) is None or gps.get(_GPS_LON) is None:
        has, lacks = ("longitude", "latitude") if gps.get(_GPS_LAT) is None else ("latitude", "longitude")
        return None, f"it has a {has} but no {lacks}"
    lat, problem = _dms(gps.get(_GPS_LAT), "latitude")
    if problem is None:
        lon, problem = _dms(gps.get(_GPS_LON), "longitude")
    if problem is not None:
        return None, problem
    lat_ref = (_text(gps.get(_GPS_LAT_REF)) or "N").upper()[:1]
    lon_ref = (_text(gps.get(_GPS_LON_REF)) or "E").upper()[:1]
    if lat_ref not in "NS" or lon_ref not in "EW":
        bad = f"latitude reference {lat_ref!r} is neither N nor S" if lat_ref not in "NS" else \
            f"longitude reference {lon_ref!r} is neither E nor W"
        return None, f"its {bad}"
    lat = -lat if lat_ref == "S" else lat
    lon = -lon if lon_ref == "W" else lon
    if not -90.0 <= lat <= 90.0:
        return None, f"its latitude {lat:g}° is beyond ±90°"
    if not -180.0 <= lon <= 180.0:
        return None, f"its longitude {lon:g}° is beyond ±180°"
    if (lat, lon) == (0.0, 0.0):
        return None, None
    return (lon, lat), None


def _safe_dict(get) -> dict:
    try:
        value = get()
        return dict(value) if value else {}
    except Exception:  # noqa: BLE001 -- broken IFD offsets etc.: treat the IFD as absent
        return {}


def _float(value) -> Optional[float]:
    """A number from an int, float, IFDRational, (num, den) pair or 1-tuple; None if not a finite number."""
    try:
        if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
            num, den = value
            value = num / den if den else math.nan
        elif isinstance(value, (tuple, list)) and len(value) == 1:
            value = value[0]
        out = float(value)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return out if math.isfinite(out) else None


def _int(value) -> Optional[int]:
    if isinstance(value, bytes) and len(value) == 1:
        return value[0]
    number = _float(value)
    return int(number) if number is not None and number == int(number) else None


def _positive(value: Optional[float]) -> Optional[float]:
    return value if value is not None and value > 0 else None


def _text(value) -> Optional[str]:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value or None


def _dms(value, name: str) -> Tuple[Optional[float], Optional[str]]:
    """(degrees, None) from EXIF (deg, min, sec) rationals or a plain number; (None, why) when malformed.

    Minutes or seconds of 60 or more are refused rather than carried into the next degree: no GPS writes
    them, so the tag is corrupt and the position could be anywhere.
    """
    if isinstance(value, (tuple, list)) and len(value) == 3:
        parts = [_float(v) for v in value]
        if any(p is None or p < 0 for p in parts):
            return None, f"its {name} {_show(value)} is not three non-negative numbers (degrees, minutes, seconds)"
        for part, unit in zip(parts[1:], ("minutes", "seconds")):
            if part >= 60.0:
                return None, f"its {name} has {part:g} {unit}; minutes and seconds must be below 60"
        return parts[0] + parts[1] / 60.0 + parts[2] / 3600.0, None
    number = _float(value)
    if number is None:
        return None, f"its {name} {_show(value)} is not a number"
    return abs(number), None


def _show(value) -> str:
    """A tag value for a message: numbers as numbers (rationals divided out), kept short."""
    if isinstance(value, (tuple, list)):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    number = _float(value)
    return f"{number:g}" if number is not None else repr(value)[:40]
