"""GroundImage: upright pixels, camera choice, HFOV priority and source, broken photos with specific errors."""

import io
import math

import numpy as np
import piexif
import pytest
from PIL import Image, ImageFile

from loc2_engine.cameras import PanoramaCamera, PinholeCamera
from loc2_engine.errors import CameraError, PhotoError
from loc2_engine.exif import ExifInfo
from loc2_engine.ground import DEFAULT_HFOV_DEG, GroundImage, hfov_from_exif
from loc2_engine.models.base import letterbox_rows


def _hfov_35(f35, w, h):
    return math.degrees(2 * math.atan(43.27 * w / math.hypot(w, h) / (2 * f35)))


def _photo(path, size=(64, 48), orientation=None, exif_ifd=None, fmt="JPEG"):
    """A stored (not upright) w x h photo: grey with a red 8x8 marker in the stored top-left corner."""
    w, h = size
    pixels = np.full((h, w, 3), 100, np.uint8)
    pixels[:8, :8] = (255, 0, 0)
    zeroth = {piexif.ImageIFD.Orientation: orientation} if orientation else {}
    exif = piexif.dump({"0th": zeroth, "Exif": exif_ifd or {}})
    Image.fromarray(pixels).save(path, fmt, exif=exif, quality=95)
    return path


def _marker_corner(image):
    red = (image[..., 0] > 200) & (image[..., 1] < 80)
    rows, cols = np.nonzero(red)
    h, w = red.shape
    return ("top" if rows.mean() < h / 2 else "bottom") + "-" + ("left" if cols.mean() < w / 2 else "right")


def test_plain_pinhole_with_default_hfov(tmp_path):
    g = GroundImage.load(_photo(tmp_path / "p.jpg"))
    assert g.image.shape == (48, 64, 3) and g.image.dtype == np.uint8 and g.image.flags.writeable
    assert isinstance(g.camera, PinholeCamera) and g.camera.kind == "pinhole"
    assert g.hfov_source == "default" and g.hfov_deg == pytest.approx(DEFAULT_HFOV_DEG)
    assert _marker_corner(g.image) == "top-left"


@pytest.mark.parametrize("orientation,corner", [(6, "top-right"), (8, "bottom-left"), (3, "bottom-right")])
def test_exif_orientation_is_applied_first(tmp_path, orientation, corner):
    g = GroundImage.load(_photo(tmp_path / "r.jpg", orientation=orientation))
    assert g.image.shape == ((64, 48, 3) if orientation in (6, 8) else (48, 64, 3))
    assert (g.camera.width, g.camera.height) == (g.image.shape[1], g.image.shape[0])
    assert _marker_corner(g.image) == corner
    assert g.exif.orientation == orientation and (g.exif.width, g.exif.height) == (64, 48)


def test_rotated_photo_hfov_refers_to_the_upright_width(tmp_path):
    ifd = {piexif.ExifIFD.FocalLengthIn35mmFilm: 26}
    land = GroundImage.load(_photo(tmp_path / "l.jpg", exif_ifd=ifd))
    port = GroundImage.load(_photo(tmp_path / "p.jpg", orientation=6, exif_ifd=ifd))
    assert land.hfov_source == port.hfov_source == "exif-35mm"
    assert land.hfov_deg == pytest.approx(_hfov_35(26, 64, 48), abs=0.01)
    assert port.hfov_deg == pytest.approx(_hfov_35(26, 48, 64), abs=0.01)
    assert port.hfov_deg < land.hfov_deg


def test_hfov_priority_user_then_35mm_then_focal(tmp_path):
    both = {piexif.ExifIFD.FocalLengthIn35mmFilm: 24, piexif.ExifIFD.FocalLength: (50, 10),
            piexif.ExifIFD.FocalPlaneXResolution: (64, 6), piexif.ExifIFD.FocalPlaneResolutionUnit: 4}
    path = _photo(tmp_path / "o.jpg", exif_ifd=both)
    user = GroundImage.load(path, hfov_deg=80.0)
    assert user.hfov_source == "user" and user.hfov_deg == pytest.approx(80.0)
    assert GroundImage.load(path).hfov_source == "exif-35mm"
    focal_only = {k: v for k, v in both.items() if k != piexif.ExifIFD.FocalLengthIn35mmFilm}
    g = GroundImage.load(_photo(tmp_path / "f.jpg", exif_ifd=focal_only))
    # sensor 64 px / (64/6 px per mm) = 6 mm wide, f = 5 mm
    assert g.hfov_source == "exif-focal" and g.hfov_deg == pytest.approx(math.degrees(2 * math.atan(0.6)))


def test_hfov_from_focal_follows_rotation():
    info = ExifInfo(focal_mm=5.0, sensor_width_mm=6.0, width=4000, height=3000)
    assert hfov_from_exif(info, 4000, 3000)[0] == pytest.approx(math.degrees(2 * math.atan(0.6)))
    assert hfov_from_exif(info, 3000, 4000)[0] == pytest.approx(math.degrees(2 * math.atan(0.45)))
    assert hfov_from_exif(ExifInfo(focal_mm=5.0), 100, 100) == (None, None)


def test_panorama_auto_and_forced(tmp_path):
    pano = GroundImage.load(_photo(tmp_path / "pano.jpg", size=(128, 64)))
    assert isinstance(pano.camera, PanoramaCamera) and pano.hfov_source == "pano"
    assert GroundImage.load(tmp_path / "pano.jpg", camera=None).camera.kind == "pano"
    assert GroundImage.load(tmp_path / "pano.jpg", camera="pinhole", hfov_deg=90).camera.kind == "pinhole"
    with pytest.raises(CameraError, match="twice as wide") as err:
        GroundImage.load(_photo(tmp_path / "n.jpg"), camera="pano")
    assert "n.jpg" in str(err.value) and "64 × 48" in str(err.value)
    with pytest.raises(CameraError, match="unknown"):
        GroundImage.load(tmp_path / "n.jpg", camera="fisheye")


def test_resized_scales_image_and_camera(tmp_path):
    g = GroundImage.load(_photo(tmp_path / "p.jpg"), hfov_deg=70.0)
    small = g.resized(32, 24)
    assert small.image.shape == (24, 32, 3) and small.camera.width == 32 and small.image.flags.writeable
    assert small.hfov_deg == pytest.approx(70.0) and small.hfov_source == "user" and g.image.shape == (48, 64, 3)
    pano = GroundImage.load(_photo(tmp_path / "pano.jpg", size=(128, 64))).resized(64, 32)
    assert pano.camera == PanoramaCamera(64, 32)


@pytest.mark.parametrize("size, top, rows", [((640, 360), 18, 108), ((600, 400), 8, 128), ((640, 480), 0, 144),
                                             ((360, 480), 0, 144), ((645, 480), 0, 144)])
def test_letterbox_rows_keep_a_wider_photo_undistorted(size, top, rows):
    # a 192 x 144 input (4:3): 16:9 and 3:2 photos keep their aspect, 4:3, portrait and within-1 % fill it
    assert letterbox_rows(size[::-1], (144, 192)) == (top, rows)


def test_fitted_wide_pinhole_is_letterboxed_with_its_edge_rows(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (90, 160, 3), dtype=np.uint8)  # 16:9
    Image.fromarray(pixels).save(tmp_path / "w.png")
    g = GroundImage.load(tmp_path / "w.png", hfov_deg=80.0)
    fit = g.fitted(64, 48)
    assert fit.image.shape == (48, 64, 3) and fit.rows == (6, 36) and fit.content.image.shape == (36, 64, 3)
    assert np.array_equal(fit.image[6:42], fit.content.image)
    assert (fit.image[:6] == fit.content.image[0]).all() and (fit.image[42:] == fit.content.image[-1]).all()
    # the content keeps the photo's optics: square pixels, the same HFOV, the principal point in its middle
    cam = fit.content.camera
    assert cam.fx == pytest.approx(cam.fy) and fit.content.hfov_deg == pytest.approx(80.0)
    assert cam.cy == pytest.approx(17.5)
    # stretched when asked (official models); a 2:1 image is letterboxed as a pinhole, never as a panorama
    assert g.fitted(64, 48, letterbox=False).rows == (0, 48)
    Image.fromarray(pixels[:80]).save(tmp_path / "pano.png")
    assert GroundImage.load(tmp_path / "pano.png", camera="pinhole", hfov_deg=90.0).fitted(64, 48).rows == (8, 32)
    assert GroundImage.load(tmp_path / "pano.png").fitted(64, 32).rows == (0, 32)


def test_16_bit_grey_png_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "g16.png"
    Image.fromarray(np.full((40, 80), 32896, np.uint16)).save(path)  # 128 * 257
    g = GroundImage.load(path)
    assert (g.image == 128).all()


def _jpeg_bytes():
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray((rng.random((120, 160, 3)) * 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.mark.parametrize("cut", [0.02, 0.5, 0.99])
def test_truncated_jpeg(tmp_path, cut):
    data = _jpeg_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(PhotoError, match="is truncated") as err:
        GroundImage.load(path)
    assert str(path) in str(err.value)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("content,match", [
    (None, "does not exist"), (b"", "empty file"),
    (np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not an image"),
])
def test_broken_photos_give_specific_photo_errors(tmp_path, content, match):
    path = tmp_path / "broken.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(PhotoError, match=match) as err:
        GroundImage.load(path)
    assert str(path) in str(err.value) and err.value.code == "photo"
