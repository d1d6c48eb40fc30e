"""GroundImage: a photo decoded in full, turned upright by its EXIF orientation, with its camera model.

Everything downstream (pixels, depth maps, matches, the HFOV) refers to the upright image: the EXIF
Orientation is applied first, so a portrait photo shot with a landscape sensor is portrait here and its
horizontal field of view is the one across its (shorter) upright width.

Camera choice: ``camera="auto"`` is a 360° panorama iff the upright image is 2:1 (±1 %), else a pinhole.
Pinhole HFOV, first available of: the caller's ``hfov_deg`` ("user"), the 35 mm-equivalent focal length
spread over the 43.27 mm full-frame diagonal at the image's aspect ("exif-35mm"), focal length + sensor
width from FocalPlaneXResolution ("exif-focal"), `DEFAULT_HFOV_DEG` ("default"). The source is kept in
``hfov_source`` so that results can say how much to trust it.

PIL's ``ImageFile.LOAD_TRUNCATED_IMAGES`` must stay False (its default): with it, a truncated JPEG decodes
to a grey bottom half instead of raising, and would be localized as if it were whole.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageOps

from .cameras import PanoramaCamera, PinholeCamera, hfov_from_focal_35mm, looks_like_panorama
from .errors import CameraError
from .exif import ExifInfo, decode_error, exif_from_image, open_photo

#: horizontal FOV assumed for a pinhole photo with no user value and no usable EXIF optics, degrees
#: (a typical phone main camera is 63-70°)
DEFAULT_HFOV_DEG = 65.0

CAMERA_CHOICES = ("auto", "pano", "pinhole")

Camera = Union[PanoramaCamera, PinholeCamera]


@dataclass
class GroundImage:
    """A photo ready for the matcher.

    path: the file it came from. image: (H, W, 3) uint8 RGB, upright (EXIF orientation applied).
    camera: PanoramaCamera or PinholeCamera of size W x H. exif: what the file's EXIF says (its width /
    height are the stored, pre-rotation size). hfov_source: "pano", "user", "exif-35mm", "exif-focal" or
    "default".
    """

    path: str
    image: np.ndarray
    camera: Camera
    exif: ExifInfo
    hfov_source: str

    @property
    def width(self) -> int:
        return self.image.shape[1]

    @property
    def height(self) -> int:
        return self.image.shape[0]

    @property
    def hfov_deg(self) -> float:
        """Horizontal field of view of the camera, degrees (360 for a panorama)."""
        return self.camera.hfov_deg

    @classmethod
    def load(cls, path, camera: Optional[str] = "auto", hfov_deg: Optional[float] = None) -> "GroundImage":
        """Decode ``path`` fully, apply its EXIF orientation and set up the camera.

        camera: "auto" | "pano" | "pinhole" (None or "" = "auto", as an empty manifest cell). hfov_deg: pinhole horizontal FOV in degrees (overrides EXIF;
        ignored for panoramas). Raises `PhotoError` (missing, empty, truncated, not an image) or
        `CameraError` (a "pano" that is not 2:1, an unusable HFOV, an unknown camera name).
        """
        path = os.fspath(path)
        camera = camera or "auto"
        if camera not in CAMERA_CHOICES:
            raise CameraError(f"The camera type {camera!r} is unknown; use one of {', '.join(CAMERA_CHOICES)}.")
        with open_photo(path) as img:
            exif = exif_from_image(img)
            _decode(img, path)
            try:
                upright = ImageOps.exif_transpose(img)
            except Exception:  # noqa: BLE001 -- a corrupt EXIF block: keep the pixels as stored
                upright = img
            image = _to_rgb8(upright)
        height, width = image.shape[:2]
        cam, source = _camera(path, camera, hfov_deg, exif, width, height)
        return cls(path, image, cam, exif, source)

    def resized(self, width: int, height: int) -> "GroundImage":
        """The same photo resized (antialiased bilinear) to width x height px, with the matching camera."""
        if (width, height) == (self.width, self.height):
            return self
        pixels = Image.fromarray(self.image).resize((int(width), int(height)), Image.BILINEAR)
        return replace(self, image=np.array(pixels), camera=self.camera.resized(int(width), int(height)))

    def fitted(self, width: int, height: int, letterbox: bool = True) -> "ModelInput":
        """The photo as a matcher input of width x height px: with ``letterbox``, a pinhole photo wider than
        that aspect is letterboxed (`models.base.letterbox_rows`); anything else is resized to fill it."""
        from .models.base import letterbox_rows, pad_rows  # torch: only when a model runs

        size = (int(height), int(width))
        # a panorama's rows are fixed elevations: it always fills the input
        boxed = letterbox and self.camera.kind == "pinhole"
        top, rows = letterbox_rows(self.image.shape[:2], size) if boxed else (0, size[0])
        content = self.resized(size[1], rows)
        return ModelInput(pad_rows(content.image, top, size[0]), content, top)


@dataclass
class ModelInput:
    """A photo fitted to a matcher's ground input (`GroundImage.fitted`).

    image: (H, W, 3) uint8, what the matcher sees. content: the photo resized to W x n px (its camera
    resized with it), which fills rows top .. top + n of ``image``; the rows above and below repeat its
    edge rows and have no depth. top = 0 and n = H when the photo fills the input.
    """

    image: np.ndarray
    content: GroundImage
    top: int

    @property
    def rows(self) -> Tuple[int, int]:
        """(top, n): the input rows the photo fills (`Matcher.ground_tokens`)."""
        return self.top, self.content.height


def hfov_from_exif(exif: ExifInfo, width: int, height: int) -> Tuple[Optional[float], Optional[str]]:
    """Horizontal FOV (degrees) of the upright ``width`` x ``height`` image from EXIF optics.

    Returns (hfov_deg, "exif-35mm" | "exif-focal"), or (None, None) when EXIF has no usable optics or
    gives an implausible FOV (outside 1°..179°).
    """
    if exif.focal_35mm:
        hfov = hfov_from_focal_35mm(exif.focal_35mm, width, height)
        if 1.0 <= hfov <= 179.0:
            return hfov, "exif-35mm"
    if exif.focal_mm and exif.sensor_width_mm and exif.width:
        # square pixels: the pixel pitch is the same along both axes, and the upright width spans `width`
        # of them (a 90°-rotated photo's width runs along the sensor's short side)
        extent_mm = exif.sensor_width_mm / exif.width * width
        hfov = math.degrees(2.0 * math.atan(extent_mm / (2.0 * exif.focal_mm)))
        if 1.0 <= hfov <= 179.0:
            return hfov, "exif-focal"
    return None, None


def _decode(img: Image.Image, path: str) -> None:
    """Force the full decode so that truncated or corrupt files fail here, not as grey pixels later."""
    try:
        img.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # PIL's decoders raise all of these
        raise decode_error(path, exc) from exc


def _to_rgb8(img: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from any PIL mode; 16-bit grey is scaled by 1/257 instead of being clipped."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = np.asarray(img, dtype=np.float64)
        if grey.max(initial=0) > 255:
            grey = grey / 257.0
        grey = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.array(img.convert("RGB"))  # np.array, not asarray: PIL's buffer would be read-only


def _camera(path: str, camera: str, hfov_deg, exif: ExifInfo, width: int, height: int) -> Tuple[Camera, str]:
    if camera == "pano" or (camera == "auto" and looks_like_panorama(width, height)):
        if not looks_like_panorama(width, height):
            raise CameraError(
                f"The photo {path} is {width} × {height} px (after EXIF rotation), but a 360° panorama must be "
                f"twice as wide as high (±1 %); use the pinhole camera with an HFOV for a normal photo.")
        return PanoramaCamera(width, height), "pano"
    if hfov_deg is not None:
        hfov, source = float(hfov_deg), "user"
    else:
        hfov, source = hfov_from_exif(exif, width, height)
        if hfov is None:
            hfov, source = DEFAULT_HFOV_DEG, "default"
    return PinholeCamera.from_hfov(width, height, hfov), source
