"""AerialWindow: a north-up, true-metre image window around a prior, cut from any georeferenced raster.

The window lives in the local frame of `georef.LocalFrame` (azimuthal equidistant, centred on the prior,
x east / y true north, metres), so it is metric and true-north-up whatever the raster's CRS: UTM, EPSG:3857
at high latitude (where its "metres" are stretched by 1/cos(lat)), EPSG:4326 degrees, US feet.

Reading a file (`AerialWindow.from_raster`):
  1. target grid: n x n pixels of ``gsd`` metres centred on the prior, in the local frame;
  2. its outline (densified, so curved mappings are covered) mapped to raster pixels -> a source window;
  3. a windowed read at a decimated ``out_shape`` (about one source pixel per target pixel), which GDAL
     serves from the raster's overviews when it has them, so memory stays ~ (size_m / gsd)^2 whatever the
     raster's size;
  4. ``rasterio.warp.reproject`` (bilinear) of that block into the target grid; pixels with no source data
     (outside the raster, nodata, alpha = 0, GDAL masks) become ``valid = False``.
Band handling: 1 band = grey (or a palette, expanded), 2 bands = grey + alpha, 3 = RGB, 4+ = RGB from the
colour interpretation (alpha band used as mask). Non-8-bit data (16-bit, float) is stretched per band to
uint8 between the 2nd and 98th percentiles of the window's valid pixels (what QGIS shows by default), so
window statistics, not the whole raster's, set the contrast.

Window centres: `window_around` builds a window centred on the prior from any aerial source (file, the
plugin's layer renderer, a callable).

rasterio (and its affine) is imported only where a file is read or an array resampled: a window from an array
already on the local grid (what the QGIS plugin renders) needs no raster library, so a QGIS whose Python
lacks rasterio can still import the pipeline; reading without it raises `AerialError` naming the package.

Pixel convention (docs/conventions.md): pixel (row, col) centre -> x = (col + 0.5 - W/2) * gsd,
y = (H/2 - row - 0.5) * gsd; use `pixel_to_local` / `local_to_pixel`, never re-derive.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import pyproj
from pyproj.exceptions import CRSError

from .errors import AerialError
from .georef import LocalFrame, transform_points

#: largest window side in pixels; beyond this a window is a configuration mistake, not a request
MAX_WINDOW_PX = 8192
#: percentiles that map non-8-bit data to 0..255
STRETCH_PERCENTILES = (2.0, 98.0)
#: points per side when mapping the target outline into the raster (curved mappings: 4326, 3857)
_OUTLINE_POINTS = 33


@dataclass
class AerialWindow:
    """A square aerial image around a prior, north-up in the local metric frame.

    image: (H, W, 3) uint8, row 0 = north edge, column 0 = west edge.
    valid: (H, W) bool, False where the raster has no data (outside it, nodata, transparent).
    gsd: metres per pixel (same along x and y).
    frame: `LocalFrame` whose origin (local (0, 0)) is the window centre; ``frame.crs`` = the raster's CRS.
    source: identifies the pixels' origin for caching (file path + modification time, or an array hash).
    """

    image: np.ndarray
    valid: np.ndarray
    gsd: float
    frame: LocalFrame
    source: str

    @property
    def size_m(self) -> float:
        """Window side in metres (W * gsd)."""
        return self.image.shape[1] * self.gsd

    @property
    def key(self) -> str:
        """Stable cache key: source, centre (lon/lat, 1e-8 deg ~ 1 mm), size and gsd."""
        lon, lat = self.frame.origin_lonlat
        h, w = self.image.shape[:2]
        return f"{self.source}|{lon:.8f},{lat:.8f}|{w}x{h}|{self.gsd:.6g}"

    def pixel_to_local(self, rc):
        """(..., 2) pixel (row, col), fractional allowed -> (..., 2) local (x, y) metres of that point.

        Integer (row, col) gives the pixel centre. Works on numpy arrays and torch tensors.
        """
        h, w = self.image.shape[:2]
        row, col = rc[..., 0], rc[..., 1]
        return _stack(((col + 0.5 - w / 2.0) * self.gsd, (h / 2.0 - row - 0.5) * self.gsd), rc)

    def local_to_pixel(self, xy):
        """(..., 2) local (x, y) metres -> (..., 2) fractional pixel (row, col); inverse of `pixel_to_local`."""
        h, w = self.image.shape[:2]
        x, y = xy[..., 0], xy[..., 1]
        return _stack((h / 2.0 - y / self.gsd - 0.5, x / self.gsd + w / 2.0 - 0.5), xy)

    @classmethod
    def from_raster(cls, path, center_xy, center_crs, size_m: float, gsd: float) -> "AerialWindow":
        """Cut a ``size_m`` x ``size_m`` metre window at ``gsd`` m/px centred on ``center_xy`` (in ``center_crs``).

        ``center_crs`` None means the raster's CRS.
        Raises `AerialError` when the raster cannot be read, has no CRS, does not contain the prior, or has
        only nodata in the window. A window that only partly overlaps the raster is allowed (see ``valid``).
        """
        path = os.fspath(path)
        n = _window_pixels(size_m, gsd)
        with _open(path) as src, _gdal_errors(path):
            crs = _raster_crs(src, path)
            center = _center_in(center_xy, center_crs, crs, path)
            frame = LocalFrame(crs, center)
            _check_prior_inside(src, center, center_xy, center_crs, path)
            block, block_valid, block_transform, dtype = _read_block(src, frame, n, gsd, path)
            image, valid = _warp(block, block_valid, block_transform, crs, frame, n, gsd)
        if not valid.any():
            raise AerialError(
                f"The aerial raster {path} has no data (only nodata or transparent pixels) in the "
                f"{n * gsd:g} m window around the prior {_fmt_xy(center_xy)} ({_crs_name(center_crs)}); "
                f"choose another raster or prior.")
        stat = os.stat(path)
        source = f"{os.path.abspath(path)}@{stat.st_mtime_ns}:{stat.st_size}"
        return cls(_to_uint8(image, valid, dtype), valid, float(gsd), frame, source)

    @classmethod
    def from_array(cls, array, transform, crs, center_xy, center_crs, size_m: float, gsd: float, *,
                   valid=None, source: Optional[str] = None) -> "AerialWindow":
        """Window from an in-memory raster (e.g. a QGIS layer rendered to an array).

        array: (H, W) or (H, W, C) with C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA); any dtype
            (non-uint8 is stretched like a file). transform: `affine.Affine` or its coefficients
            (a, b, c, d, e, f) in rasterio order (NOT GDAL's geotransform order). crs: anything pyproj
            accepts. valid: optional (H, W) bool mask of pixels that hold data. source: cache identity
            (default: a hash of the pixels, transform and CRS).
        If ``crs`` is already the local frame's CRS (aeqd on the prior), the grid is north-up at ``gsd`` and
        aligned with the window, the pixels are copied without resampling.
        """
        arr = np.asarray(array)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
            raise AerialError(f"The aerial array must be (H, W) or (H, W, C) with C in 1..4, got {arr.shape}.")
        n = _window_pixels(size_m, gsd)
        try:
            crs = pyproj.CRS.from_user_input(crs)
        except CRSError as exc:
            raise AerialError(f"The CRS {crs!r} of the in-memory aerial array is not understood by PROJ ({exc}).") \
                from exc
        center = _center_in(center_xy, center_crs, crs, "the in-memory aerial array")
        frame = LocalFrame(crs, center)
        bands = np.moveaxis(arr, 2, 0)
        has_alpha = bands.shape[0] in (2, 4)
        data = bands[:-1] if has_alpha else bands
        ok = np.ones(arr.shape[:2], bool) if valid is None else np.asarray(valid, bool).copy()
        if has_alpha:
            ok &= bands[-1] > 0
        if source is None:
            digest = hashlib.sha1(np.ascontiguousarray(arr).tobytes())
            digest.update(repr((tuple(transform)[:6], crs.to_wkt())).encode())
            digest.update(np.packbits(ok).tobytes())
            source = f"array:{digest.hexdigest()[:16]}"
        aligned = _aligned_slice(transform, crs, frame, n, gsd)
        if aligned is not None:
            image, valid_out = _paste(data, ok, aligned, n)
        else:
            image, valid_out = _warp_array(data, ok, transform, crs, frame, n, gsd, center_xy, center_crs)
        if not valid_out.any():
            raise AerialError(
                f"The in-memory aerial array has no data in the {n * gsd:g} m window around the prior "
                f"{_fmt_xy(center_xy)} ({_crs_name(center_crs)}); its extent does not cover the prior.")
        return cls(_to_uint8(image, valid_out, arr.dtype), valid_out, float(gsd), frame, source)


def _warp_array(data: np.ndarray, valid: np.ndarray, transform, crs, frame: LocalFrame, n: int, gsd: float,
                center_xy, center_crs):
    """`_warp` of the part of a (B, H, W) in-memory array under the window; (H, W) ``valid``; rasterio needed."""
    _require_rasterio("resample the in-memory aerial array into the window")
    from affine import Affine

    transform = Affine(*tuple(transform)[:6])
    window = _source_window(transform, valid.shape[1], valid.shape[0], frame, n, gsd)
    if window is None:
        raise AerialError(
            f"The in-memory aerial array does not overlap the {n * gsd:g} m window around the prior "
            f"{_fmt_xy(center_xy)} ({_crs_name(center_crs)}); its extent does not cover the prior.")
    rows, cols = window.toslices()
    return _warp(data[:, rows, cols].astype(np.float32), valid[rows, cols],
                 transform * Affine.translation(window.col_off, window.row_off), crs, frame, n, gsd)


def window_around(source, center_xy, center_crs, size_m: float, gsd: float) -> AerialWindow:
    """`AerialWindow` of ``size_m`` at ``gsd`` centred on center_xy (in ``center_crs``, the prior) from any
    aerial source: a raster path, an object with ``window(center_xy, center_crs, size_m, gsd)`` (the plugin's
    renderer of a QGIS layer), or a callable with those arguments."""
    if isinstance(source, (str, os.PathLike)):
        return AerialWindow.from_raster(source, center_xy, center_crs, size_m, gsd)
    if hasattr(source, "window"):
        return source.window(center_xy, center_crs, size_m, gsd)
    if callable(source):
        return source(center_xy, center_crs, size_m, gsd)
    raise AerialError(f"The aerial source {source!r} is neither a raster path nor an aerial window.")


def raster_info(path) -> Tuple[pyproj.CRS, Tuple[float, float, float, float]]:
    """(CRS, (left, bottom, right, top) bounds in that CRS) of a raster file; `AerialError` if unreadable."""
    path = os.fspath(path)
    with _open(path) as src:
        return _raster_crs(src, path), tuple(src.bounds)


# --- reading -------------------------------------------------------------------------------------------

def _require_rasterio(task: str) -> None:
    """Raise `AerialError` naming the missing package when rasterio (or its affine) cannot be imported."""
    try:
        import affine  # noqa: F401 -- only checking that it is there
        import rasterio  # noqa: F401
    except ImportError as exc:
        raise AerialError(
            f"Loc² needs the Python package 'rasterio' to {task}, and it cannot be imported ({exc}). Install "
            "rasterio from the same source as your GDAL (e.g. Debian's python3-rasterio, or conda-forge), or, "
            "in QGIS, load the raster as a layer: the plugin renders layers without rasterio.") from exc


def _open(path: str):
    if not os.path.exists(path):
        raise AerialError(f"The aerial raster {path} does not exist; check the path.")
    _require_rasterio(f"read the aerial raster {path}")
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        return rasterio.open(path)
    except RasterioIOError as exc:
        raise AerialError(f"The aerial raster {path} cannot be read by GDAL ({exc}); it must be a "
                          f"georeferenced raster such as a GeoTIFF.") from exc


@contextmanager
def _gdal_errors(path: str):
    """GDAL failures while reading pixels, which surface only when a block is read (a VRT or mosaic whose
    source file is missing or unreadable, a corrupt or cut-off block), as AerialError naming the raster."""
    from rasterio.errors import RasterioError, RasterioIOError  # the second is an OSError, not the first

    try:
        from rasterio._err import CPLE_BaseError  # GDAL errors raised as such by some rasterio calls
    except ImportError:  # pragma: no cover -- a rasterio without the private module
        CPLE_BaseError = RasterioError
    try:
        yield
    except (RasterioIOError, RasterioError, CPLE_BaseError) as exc:
        reason = str(exc).strip().rstrip(".")
        raise AerialError(
            f"The aerial raster {path} cannot be read around the prior: GDAL reports {reason!r}. If it is a VRT "
            f"or a mosaic, check that every file it refers to exists and is readable; else the file is damaged: "
            f"copy or export it again.") from exc


def _raster_crs(src, path: str) -> pyproj.CRS:
    if src.crs is None:
        raise AerialError(f"The aerial raster {path} has no coordinate reference system; georeference it "
                          f"(e.g. with the QGIS Georeferencer) or add a .prj / .aux.xml.")
    return pyproj.CRS.from_user_input(src.crs.to_wkt())


def _center_in(center_xy, center_crs, crs: pyproj.CRS, what: str) -> np.ndarray:
    if center_crs is None:  # a prior without a CRS is taken in the raster's own CRS
        return np.asarray(center_xy, np.float64).reshape(2)
    center = transform_points(np.asarray(center_xy, np.float64), center_crs, crs)[0]
    if not np.all(np.isfinite(center)):
        raise AerialError(f"The prior {_fmt_xy(center_xy)} ({_crs_name(center_crs)}) cannot be expressed in "
                          f"the CRS of {what} ({crs.name}); check the prior's CRS.")
    return center


def _check_prior_inside(src, center, center_xy, center_crs, path: str) -> None:
    col, row = ~src.transform * (float(center[0]), float(center[1]))
    if not (0.0 <= col <= src.width and 0.0 <= row <= src.height):
        b = src.bounds
        raise AerialError(
            f"The prior {_fmt_xy(center_xy)} ({_crs_name(center_crs)}) is outside the aerial raster {path}: "
            f"in its CRS {_crs_name(src.crs)} the prior is at {_fmt_xy(center)} but the raster covers "
            f"x {b.left:.6g}..{b.right:.6g}, y {b.bottom:.6g}..{b.top:.6g}; check the prior's CRS or use a "
            f"raster that covers it.")


def _read_block(src, frame: LocalFrame, n: int, gsd: float, path: str):
    """Read the part of ``src`` under the target window, decimated to about the target resolution.

    Returns (data (B, h, w) float32, valid (h, w) bool, transform of the block, source dtype) with B = 1 or 3
    colour bands (a palette is expanded to RGB, dtype uint8).
    """
    from affine import Affine
    from rasterio.enums import Resampling

    window = _source_window(src.transform, src.width, src.height, frame, n, gsd)
    if window is None:  # cannot happen once the prior is inside, kept as a clear message
        raise AerialError(f"The window around the prior does not overlap the aerial raster {path}.")

    # source pixels per target pixel along each raster axis, from the Jacobian at the centre
    jac = ~src.transform * tuple(frame.from_local(np.array([[0.0, 0.0], [gsd, 0.0], [0.0, gsd]])).T)
    jc, jr = np.asarray(jac[0]), np.asarray(jac[1])
    fx = max(1, int(max(abs(jc[1] - jc[0]), abs(jc[2] - jc[0]))))
    fy = max(1, int(max(abs(jr[1] - jr[0]), abs(jr[2] - jr[0]))))
    out_h, out_w = math.ceil(window.height / fy), math.ceil(window.width / fx)

    indexes, palette = _colour_bands(src, path)
    # average when decimating (no aliasing), nearest for palettes (indices must not be averaged)
    resampling = Resampling.nearest if palette is not None or (fx, fy) == (1, 1) else Resampling.average
    data = src.read(indexes, window=window, out_shape=(len(indexes), out_h, out_w), resampling=resampling)
    mask = src.dataset_mask(window=window, out_shape=(out_h, out_w), resampling=resampling)
    # an averaged mask below 255 means some nodata was mixed into that pixel: drop it
    valid = mask == 255
    dtype = np.dtype(src.dtypes[indexes[0] - 1])
    if palette is not None:
        data, dtype = palette[:, data[0]], np.dtype(np.uint8)
    block_transform = src.window_transform(window) * Affine.scale(window.width / out_w, window.height / out_h)
    return data.astype(np.float32), valid, block_transform, dtype


def _source_window(transform: "Affine", width: int, height: int, frame: LocalFrame, n: int,
                   gsd: float) -> Optional["Window"]:
    """Pixel window of a width x height raster with ``transform`` that covers the n x n target grid (+1 px).

    The target's outline and centre cross (densified, so curved mappings such as 4326 or a far-off UTM zone
    are covered) are mapped into raster pixels; None when the window misses the raster.
    """
    from rasterio.windows import Window

    half = n * gsd / 2.0
    s = np.linspace(-half, half, _OUTLINE_POINTS)
    edge = np.full_like(s, half)
    local = np.concatenate([np.stack(p, 1) for p in
                            ((s, -edge), (s, edge), (-edge, s), (edge, s), (s, 0 * s), (0 * s, s))])
    cols, rows = ~transform * tuple(frame.from_local(local).T)
    cols, rows = np.asarray(cols), np.asarray(rows)
    finite = np.isfinite(cols) & np.isfinite(rows)
    if not finite.any():
        return None
    c0, c1 = math.floor(cols[finite].min()) - 1, math.ceil(cols[finite].max()) + 1
    r0, r1 = math.floor(rows[finite].min()) - 1, math.ceil(rows[finite].max()) + 1
    c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, width), min(r1, height)
    if c1 <= c0 or r1 <= r0:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)


def _colour_bands(src, path: str):
    """Band indexes to read as colour (1 grey or 3 RGB) and, for a palette raster, its (3, 256) lookup."""
    from rasterio.enums import ColorInterp

    interp = list(src.colorinterp)
    if src.count == 1 and interp[0] == ColorInterp.palette:
        try:
            cmap = src.colormap(1)
        except ValueError:
            cmap = {}
        lut = np.zeros((3, 256), np.uint8)
        for idx, rgba in cmap.items():
            if 0 <= idx < 256:
                lut[:, idx] = rgba[:3]
        return [1], lut
    colour = [i + 1 for i, ci in enumerate(interp) if ci != ColorInterp.alpha]
    if not colour:
        raise AerialError(f"The aerial raster {path} has only an alpha band and no image data.")
    rgb = [interp.index(ci) + 1 for ci in (ColorInterp.red, ColorInterp.green, ColorInterp.blue) if ci in interp]
    if len(rgb) == 3:
        return rgb, None
    return (colour[:3] if len(colour) >= 3 else colour[:1]), None


# --- resampling into the window --------------------------------------------------------------------------

def _warp(data: np.ndarray, valid: np.ndarray, transform: "Affine", crs, frame: LocalFrame, n: int, gsd: float):
    """Bilinear reprojection of (B, h, w) data with a (h, w) validity mask into the n x n local grid.

    Returns (image (n, n, B) float32, valid (n, n) bool). Invalid source pixels are excluded from the
    bilinear kernels (NaN nodata), so nodata never bleeds into valid colours.
    """
    from rasterio.crs import CRS as RioCRS
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    src = np.where(valid[None], data, np.nan).astype(np.float32)
    dst = np.full((src.shape[0], n, n), np.nan, np.float32)
    reproject(
        source=src, destination=dst,
        src_transform=transform, src_crs=RioCRS.from_wkt(pyproj.CRS(crs).to_wkt()),
        dst_transform=_window_transform(n, gsd), dst_crs=RioCRS.from_wkt(frame.local_crs.to_wkt()),
        src_nodata=np.nan, dst_nodata=np.nan, resampling=Resampling.bilinear,
    )
    image = np.moveaxis(dst, 0, 2)
    return image, np.isfinite(image).all(axis=2)


def _window_transform(n: int, gsd: float) -> "Affine":
    from affine import Affine

    half = n * gsd / 2.0
    return Affine(gsd, 0.0, -half, 0.0, -gsd, half)


def _aligned_slice(transform, crs: pyproj.CRS, frame: LocalFrame, n: int, gsd: float):
    """(row0, col0) of the window's top-left pixel in the array when no resampling is needed, else None."""
    if not _same_local_crs(crs, frame.local_crs):
        return None
    a, b, c, d, e, f = tuple(transform)[:6]
    tol = 1e-6 * gsd
    if abs(a - gsd) > tol or abs(e + gsd) > tol or abs(b) > tol or abs(d) > tol:
        return None
    half = n * gsd / 2.0
    col0, row0 = (-half - c) / gsd, (f - half) / gsd
    if abs(col0 - round(col0)) > 1e-6 or abs(row0 - round(row0)) > 1e-6:
        return None
    return int(round(row0)), int(round(col0))


def _same_local_crs(a: pyproj.CRS, b: pyproj.CRS) -> bool:
    """Both azimuthal equidistant on WGS84 with the same centre (1e-9 deg)."""
    if a == b:
        return True
    with warnings.catch_warnings():  # to_dict warns that PROJ strings are lossy; lat_0/lon_0 are enough here
        warnings.simplefilter("ignore", UserWarning)
        pa, pb = a.to_dict(), b.to_dict()
    if pa.get("proj") != "aeqd" or pb.get("proj") != "aeqd":
        return False
    keys = ("lat_0", "lon_0", "x_0", "y_0")
    return all(abs(float(pa.get(k, 0.0)) - float(pb.get(k, 0.0))) < 1e-9 for k in keys) and \
        pa.get("datum", pa.get("ellps")) == pb.get("datum", pb.get("ellps"))


def _paste(data: np.ndarray, valid: np.ndarray, origin, n: int):
    """Copy the n x n window of (B, H, W) ``data`` starting at pixel ``origin`` (row, col); outside = invalid."""
    r0, c0 = origin
    h, w = valid.shape
    image = np.full((n, n, data.shape[0]), np.nan, np.float32)
    ok = np.zeros((n, n), bool)
    rs, re_ = max(r0, 0), min(r0 + n, h)
    cs, ce = max(c0, 0), min(c0 + n, w)
    if rs < re_ and cs < ce:
        image[rs - r0:re_ - r0, cs - c0:ce - c0] = np.moveaxis(data[:, rs:re_, cs:ce], 0, 2).astype(np.float32)
        ok[rs - r0:re_ - r0, cs - c0:ce - c0] = valid[rs:re_, cs:ce]
    return image, ok


def _to_uint8(image: np.ndarray, valid: np.ndarray, dtype) -> np.ndarray:
    """(n, n, B) float32 with B in {1, 3} -> (n, n, 3) uint8; invalid pixels black.

    8-bit data is rounded and clipped; anything else is stretched per band between the window's
    `STRETCH_PERCENTILES` of valid pixels.
    """
    out = np.zeros(image.shape[:2] + (3,), np.uint8)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    if not valid.any():
        return out
    vals = image[valid]  # (K, 3)
    if np.dtype(dtype) != np.uint8:
        lo, hi = np.percentile(vals, STRETCH_PERCENTILES, axis=0)
        vals = (vals - lo) / np.maximum(hi - lo, 1e-12) * 255.0
    out[valid] = np.clip(np.rint(vals), 0, 255).astype(np.uint8)
    return out


# --- small helpers ---------------------------------------------------------------------------------------

def _window_pixels(size_m: float, gsd: float) -> int:
    if not (gsd > 0 and size_m > 0 and math.isfinite(gsd) and math.isfinite(size_m)):
        raise AerialError(f"The aerial window needs a positive size and resolution, got size {size_m} m "
                          f"and gsd {gsd} m/px.")
    n = int(round(size_m / gsd))
    if not 2 <= n <= MAX_WINDOW_PX:
        raise AerialError(f"An aerial window of {size_m:g} m at {gsd:g} m/px would be {n} px wide; it must be "
                          f"between 2 and {MAX_WINDOW_PX} px.")
    return n


def _stack(parts, like):
    if type(like).__module__.startswith("torch"):
        import torch  # only when the caller already works in torch
        return torch.stack(parts, dim=-1)
    return np.stack(parts, axis=-1)


def _fmt_xy(xy) -> str:
    x, y = np.asarray(xy, np.float64).reshape(-1)[:2]
    return f"({x:.8g}, {y:.8g})"


def _crs_name(crs) -> str:
    if crs is None:
        return "in the raster's CRS"
    try:
        c = pyproj.CRS.from_user_input(crs)
    except Exception:  # noqa: BLE001 -- only for the message
        return str(crs)
    auth = c.to_authority()
    return f"{auth[0]}:{auth[1]}" if auth else c.name
