"""Rendered view -> camera-like JPEG: photometric variation, optional EXIF rotation, EXIF GPS/optics via piexif.

Two looks: ``photometric`` (global exposure, white balance and gamma jitter, vignetting, blur, noise), used by
demo, train and bench, and ``camera_response`` (a phone-like pipeline: auto exposure, colour temperature,
shot noise, tone curve, sharpening), used only by the heldout preset.

EXIF written: Make/Model, GPS position (WGS84 lon/lat of the noisy prior, altitude), optionally
GPSImgDirection (true north, ref "T"); pinholes also get FocalLength, FocalLengthIn35mmFilm (35 mm
equivalent over the 43.27 mm full-frame diagonal at the upright image's aspect ratio, as exif.py reads it),
FocalPlaneXResolution/Unit (so focal length + sensor width give the exact HFOV) and Orientation.
Orientation 6 means the stored pixels are the upright image rotated 90 degrees counter-clockwise (a reader
rotates them 90 degrees clockwise to display); 8 the opposite.
"""

from __future__ import annotations

import io
import math
from datetime import datetime
from fractions import Fraction
from typing import Optional, Tuple

import numpy as np
import piexif
from PIL import Image
from scipy import ndimage

FULL_FRAME_DIAGONAL_MM = 43.27
PIXEL_PITCH_MM = 0.0014 * 4   # a phone-like sensor pitch scaled to these small images


def photometric(rgb: np.ndarray, rng, pano: bool) -> np.ndarray:
    """(H, W, 3) float [0, 1] -> (H, W, 3) uint8 with exposure, white balance, gamma, vignetting, blur, noise."""
    img = rgb.astype(np.float32)
    img = img * rng.uniform(0.8, 1.25) * rng.uniform(0.92, 1.08, 3).astype(np.float32)
    img = np.clip(img, 0, 1) ** rng.uniform(0.85, 1.15)
    if not pano:
        H, W = img.shape[:2]
        yy, xx = np.mgrid[0:H, 0:W]
        r2 = ((xx - W / 2) ** 2 + (yy - H / 2) ** 2) / ((W / 2) ** 2 + (H / 2) ** 2)
        img = img * (1 - rng.uniform(0.1, 0.3) * r2)[..., None]
    img = ndimage.gaussian_filter(img, (rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), 0))  # lens softness
    img = img + rng.normal(0, rng.uniform(0.004, 0.015), img.shape).astype(np.float32)
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


#: Rec. 709 luma weights
LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


def camera_response(rgb: np.ndarray, rng, pano: bool) -> np.ndarray:
    """(H, W, 3) float [0, 1] -> (H, W, 3) uint8 through a phone-like camera, a look ``photometric`` never
    gives (the heldout preset's): auto exposure towards a mean grey of 0.36-0.50 with metering error (gain
    0.6-2.2), white balance off by a colour temperature (+-7 % red against blue) and a green-magenta tint
    (+-3 %), lens vignetting on pinholes (15-40 % in the corners), lens blur, sensor noise that grows with
    the signal (shot) plus read noise, per channel (colour speckle), a tone curve (gamma 0.8-1.25, an S-curve
    of 10-50 % strength, a highlight shoulder above 0.8) and sharpening (unsharp mask, amount 0-0.8)."""
    img = rgb.astype(np.float32)
    mean = float((img @ LUMA).mean())
    img = img * float(np.clip(rng.uniform(0.36, 0.5) / max(mean, 1e-3), 0.6, 2.2)) * rng.uniform(0.9, 1.1)
    img = img * _white_balance(rng)
    if not pano:
        img = img * _vignette(img.shape[:2], rng.uniform(0.15, 0.4))[..., None]
    blur = rng.uniform(0.3, 0.8)
    img = ndimage.gaussian_filter(img, (blur, blur, 0))
    shot, read = rng.uniform(1e-4, 6e-4), rng.uniform(0.002, 0.008)
    sigma = np.sqrt(shot * np.clip(img, 0, None) + read ** 2)
    img = img + sigma * rng.standard_normal(img.shape).astype(np.float32)
    img = _tone_curve(np.clip(img, 0, None), rng.uniform(0.8, 1.25), rng.uniform(0.1, 0.5))
    amount = rng.uniform(0.0, 0.8)
    img = img + amount * (img - ndimage.gaussian_filter(img, (1.0, 1.0, 0)))
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def _white_balance(rng) -> np.ndarray:
    """(3,) channel gains: a colour temperature error (red against blue) and a green-magenta tint, at equal
    luma."""
    warm, tint = rng.uniform(-0.07, 0.07), rng.uniform(-0.03, 0.03)
    gains = np.array([1 + warm, 1 + tint, 1 - warm], np.float32)
    return gains / float(gains @ LUMA)


def _vignette(hw, strength: float) -> np.ndarray:
    """(H, W) gain falling off as 1 - strength r^2, r = 1 in the corners."""
    H, W = hw
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    r2 = ((xx + 0.5 - W / 2) ** 2 + (yy + 0.5 - H / 2) ** 2) / ((W / 2) ** 2 + (H / 2) ** 2)
    return 1.0 - strength * r2


def _tone_curve(x: np.ndarray, gamma: float, s_curve: float) -> np.ndarray:
    """Display values from exposed values ``x`` >= 0: a power ``1 / gamma``, an S-curve (smoothstep) mixed in
    by ``s_curve``, and a soft shoulder that rolls values above 0.8 off towards 1 instead of clipping them."""
    y = x ** (1.0 / gamma)
    y = np.where(y > 0.8, 0.8 + 0.2 * np.tanh((y - 0.8) / 0.2), y)
    return y + s_curve * (y * y * (3 - 2 * y) - y)


def _rational(x: float, den: int = 10000) -> Tuple[int, int]:
    f = Fraction(x).limit_denominator(den)
    return f.numerator, f.denominator


def _dms(deg: float):
    deg = abs(deg)
    d = int(deg)
    m = int((deg - d) * 60)
    s = (deg - d - m / 60) * 3600
    return ((d, 1), (m, 1), (int(round(s * 10000)), 10000))


def exif_bytes(lonlat, altitude: float, hfov_deg: Optional[float], upright_wh: Tuple[int, int],
               stored_wh: Tuple[int, int], orientation: int = 1, img_direction: Optional[float] = None,
               taken_at: Optional[datetime] = None) -> bytes:
    """EXIF block for one photo (see module docstring); hfov_deg None for panoramas; taken_at: the camera
    clock's time, as DateTimeOriginal + SubSecTimeOriginal (milliseconds)."""
    lon, lat = lonlat
    zeroth = {piexif.ImageIFD.Make: b"Loc2", piexif.ImageIFD.Model: b"Loc2 synth camera",
              piexif.ImageIFD.Orientation: int(orientation)}
    ex = {piexif.ExifIFD.PixelXDimension: int(stored_wh[0]), piexif.ExifIFD.PixelYDimension: int(stored_wh[1])}
    if hfov_deg is not None:
        W, H = upright_wh
        tan = math.tan(math.radians(hfov_deg) / 2)
        focal_mm = PIXEL_PITCH_MM * W / 2 / tan
        frame_w = FULL_FRAME_DIAGONAL_MM * W / math.hypot(W, H)
        ex[piexif.ExifIFD.FocalLength] = _rational(focal_mm)
        ex[piexif.ExifIFD.FocalLengthIn35mmFilm] = int(round(frame_w / 2 / tan))
        ex[piexif.ExifIFD.FocalPlaneXResolution] = _rational(10.0 / PIXEL_PITCH_MM)   # pixels per cm
        ex[piexif.ExifIFD.FocalPlaneYResolution] = _rational(10.0 / PIXEL_PITCH_MM)
        ex[piexif.ExifIFD.FocalPlaneResolutionUnit] = 3
    if taken_at is not None:
        ex[piexif.ExifIFD.DateTimeOriginal] = taken_at.strftime("%Y:%m:%d %H:%M:%S").encode()
        ex[piexif.ExifIFD.SubSecTimeOriginal] = f"{taken_at.microsecond // 1000:03d}".encode()
    gps = {piexif.GPSIFD.GPSVersionID: (2, 3, 0, 0),
           piexif.GPSIFD.GPSLatitudeRef: b"N" if lat >= 0 else b"S", piexif.GPSIFD.GPSLatitude: _dms(lat),
           piexif.GPSIFD.GPSLongitudeRef: b"E" if lon >= 0 else b"W", piexif.GPSIFD.GPSLongitude: _dms(lon),
           piexif.GPSIFD.GPSAltitudeRef: 0, piexif.GPSIFD.GPSAltitude: _rational(max(altitude, 0.0), 100)}
    if img_direction is not None:
        gps[piexif.GPSIFD.GPSImgDirectionRef] = b"T"
        gps[piexif.GPSIFD.GPSImgDirection] = _rational(img_direction % 360.0, 100)
    return piexif.dump({"0th": zeroth, "Exif": ex, "GPS": gps, "1st": {}, "thumbnail": None})


def rotate_for_orientation(upright: np.ndarray, orientation: int) -> np.ndarray:
    """Stored pixels for an EXIF orientation: 6 -> upright rotated 90 deg CCW, 8 -> 90 deg CW, 1 -> as is."""
    if orientation == 6:
        return np.ascontiguousarray(np.rot90(upright, 1))
    if orientation == 8:
        return np.ascontiguousarray(np.rot90(upright, -1))
    if orientation == 1:
        return upright
    raise ValueError(f"unsupported EXIF orientation {orientation} (synth writes 1, 6 or 8)")


def save_jpeg(path, stored: np.ndarray, exif: bytes, quality: int) -> None:
    """Write (H, W, 3) uint8 as JPEG with the EXIF block; deterministic bytes for equal inputs."""
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, format="JPEG", quality=int(quality), exif=exif, subsampling=2)
    with open(path, "wb") as f:
        f.write(buf.getvalue())
