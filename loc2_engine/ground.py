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

Before decoding, the size the header claims is checked (`check_photo_size`): at most `MAX_PHOTO_PIXELS`,
at least `MIN_PHOTO_SIDE_PX` on each side, and not more than the file's bytes can possibly hold (a JPEG or
PNG cut right after its header decodes without an error, into grey).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageOps

from .cameras import PanoramaCamera, PinholeCamera, hfov_from_focal_35mm, looks_like_panorama
from .errors import CameraError, PhotoError
from .exif import ExifInfo, decode_error, exif_from_image, open_photo

#: the most pixels a photo may have: decoding costs about 14 bytes a pixel (PIL's buffer, the RGB array, the
#: upright copy), 1.7 GB here; a 102-megapixel medium-format frame (11648 × 8736) still passes
MAX_PHOTO_PIXELS = 120_000_000
#: the least a photo may have on each side, px: below this it is a thumbnail or a placeholder, and the
#: matcher's input (144 × 192 px for a pinhole, 8 px a token) would be almost all interpolation
MIN_PHOTO_SIDE_PX = 32

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
            check_photo_size(img, path)
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


def check_photo_size(img: Image.Image, path: str) -> None:
    """Raise `PhotoError` when the size in the header of the opened (not yet decoded) ``img`` is beyond
    `MAX_PHOTO_PIXELS`, below `MIN_PHOTO_SIDE_PX`, or more than the file's bytes can encode."""
    width, height = img.size
    if width * height > MAX_PHOTO_PIXELS:
        raise PhotoError(
            f"The photo {path} is {width} × {height} px ({width * height / 1e6:.0f} megapixels), more than the "
            f"{MAX_PHOTO_PIXELS / 1e6:.0f}-megapixel limit of what is decoded; downscale it (e.g. to 4000 px "
            f"across: the matcher sees photos a few hundred pixels wide).")
    if min(width, height) < MIN_PHOTO_SIDE_PX:
        raise PhotoError(
            f"The photo {path} is only {width} × {height} px; a photo must be at least {MIN_PHOTO_SIDE_PX} px on "
            f"each side to be localized (this is a thumbnail or a placeholder); use the full-size photo.")
    needed = _least_bytes(img, path)
    have = os.path.getsize(path)
    if have < needed:
        raise PhotoError(
            f"The photo {path} is truncated: its header says {width} × {height} px, which takes at least "
            f"{needed:,.0f} bytes of image data, but the whole file has {have:,} bytes; the copy or download was "
            f"probably interrupted, copy it again.")


def _least_bytes(img: Image.Image, path: str) -> float:
    """A lower bound on the size of a complete file of ``img``'s format and size, bytes (0: no bound).

    A Huffman-coded JPEG spends at least 1 bit on each 8 × 8 block of its full-resolution component (the
    code of its DC difference; every scan order codes it); deflate compresses at most 1032:1 (a 258-byte
    match in 2 bits) and a PNG row holds at least 1 bit a pixel. Arithmetic-coded JPEGs and other formats
    have no such bound here (their decoders report truncation themselves).
    """
    width, height = img.size
    if img.format in ("JPEG", "MPO") and _jpeg_frame_marker(path) in _HUFFMAN_FRAMES:
        return math.ceil(width / 8) * math.ceil(height / 8) / 8.0
    if img.format == "PNG":
        return width * height / 8.0 / 1032.0
    return 0.0


#: JPEG start-of-frame markers of Huffman-coded frames (baseline, extended, progressive, lossless, hierarchical)
_HUFFMAN_FRAMES = (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7)


def _jpeg_frame_marker(path: str) -> Optional[int]:
    """The second byte of the first start-of-frame marker of the JPEG file at ``path``; None if not found
    before the first scan (the decoder then reports what is wrong)."""
    with open(path, "rb") as f:
        if f.read(2) != b"\xff\xd8":
            return None
        for _ in range(1000):  # a header has a few dozen segments; this bounds a corrupt one
            byte = f.read(1)
            while byte == b"\xff":  # fill bytes before a marker
                byte = f.read(1)
            if not byte:
                return None
            marker = byte[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return marker
            if marker in (0xDA, 0xD9):  # start of scan, end of image: no frame header before them
                return None
            if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
                continue
            length = f.read(2)
            if len(length) < 2:
                return None
            f.seek(int.from_bytes(length, "big") - 2, os.SEEK_CUR)
            if f.read(1) != b"\xff":
                return None
    return None


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
