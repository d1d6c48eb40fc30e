"""Georeferencing: a raster CRS <-> the local east-north metric frame <-> WGS84, and grid vs true north.

The local frame (``xy_local``, metres) is an azimuthal-equidistant projection on the WGS84 ellipsoid centred
on the window origin: x east, y true north, distances and azimuths from the origin are exact, so a few hundred
metres around the origin are metric and true-north-aligned whatever the raster CRS (UTM, EPSG:3857 at high
latitude, EPSG:4326 in degrees, a state plane in feet).

Meridian convergence ``gamma`` here is "grid north minus true north": the azimuth of the CRS's +y axis
measured clockwise from true north, in degrees. East of a UTM zone's central meridian in the northern
hemisphere gamma > 0. Hence ``heading_grid = heading_true - gamma``. In a conformal CRS (UTM, Lambert) this
holds for every direction; in a non-conformal one (EPSG:3857 is spherical Mercator of ellipsoidal latitudes)
it is exact for north and the other cardinal directions and off by up to ~0.1-0.2 degrees obliquely.
"""

from __future__ import annotations

import functools
from typing import Tuple

import numpy as np
import pyproj
from pyproj.exceptions import CRSError

from .errors import AerialError

_WGS84 = pyproj.CRS.from_epsg(4326)
_GEOD = pyproj.Geod(ellps="WGS84")


def _as_points(xy, name: str) -> np.ndarray:
    """Coerce ``xy`` to a float64 (N, 2) array (a single (2,) point becomes (1, 2))."""
    arr = np.asarray(xy, dtype=np.float64)
    if arr.ndim == 1 and arr.shape[0] == 2:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2) or (2,), got {arr.shape}")
    return arr


def _wrap360(deg: np.ndarray):
    """Wrap degrees to [0, 360); a 0-d input comes back as a Python float."""
    out = np.mod(deg, 360.0)
    out = np.where(out >= 360.0, 0.0, out)  # np.mod(-1e-17, 360) rounds to 360.0
    return float(out) if out.ndim == 0 else out


@functools.lru_cache(maxsize=64)
def _transformer(src: pyproj.CRS, dst: pyproj.CRS) -> pyproj.Transformer:
    """The transformer from ``src`` to ``dst`` with x first (easting or longitude, whatever the CRS's declared
    axis order), made once per pair of CRSs (hashed by their WKT): PROJ takes 2–35 ms to choose the operation
    between two CRSs. pyproj's transformers may be shared between threads (each thread gets its own PROJ
    context)."""
    return pyproj.Transformer.from_crs(src, dst, always_xy=True)


def _aeqd_from_lonlat(lon: float, lat: float) -> pyproj.Transformer:
    """WGS84 (lon, lat) degrees -> the azimuthal-equidistant metres centred on (lon, lat): a fixed PROJ
    pipeline, built in a fraction of a millisecond where choosing an operation between CRSs takes tens."""
    return pyproj.Transformer.from_pipeline(
        f"+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad "
        f"+step +proj=aeqd +lat_0={lat:.12f} +lon_0={lon:.12f} +ellps=WGS84")


def _crs(crs) -> pyproj.CRS:
    try:
        return pyproj.CRS.from_user_input(crs)
    except CRSError as exc:
        raise AerialError(f"The coordinate reference system {crs!r} is not understood by PROJ: {exc}") from exc


def transform_points(xy, src_crs, dst_crs) -> np.ndarray:
    """Transform points between two CRSs (anything pyproj.CRS accepts).

    xy: (N, 2) or (2,) in ``src_crs`` axis units, x first (easting or longitude). Returns (N, 2) float64 in
    ``dst_crs`` units, x first.
    """
    pts = _as_points(xy, "xy")
    x, y = _transformer(_crs(src_crs), _crs(dst_crs)).transform(pts[:, 0], pts[:, 1])
    return np.stack([np.asarray(x, np.float64), np.asarray(y, np.float64)], axis=-1)


class LocalFrame:
    """Local east-north metric frame (true north) centred on ``origin_xy`` of raster CRS ``crs``.

    Attributes:
        crs: the raster CRS (pyproj.CRS).
        origin_xy: (2,) origin in ``crs`` units.
        origin_lonlat: (lon, lat) WGS84 degrees of the origin.
        local_crs: the azimuthal-equidistant CRS of the local frame (metres).
    """

    def __init__(self, crs, origin_xy):
        self.crs: pyproj.CRS = _crs(crs)
        if not self.crs.is_geographic and not self.crs.is_projected:
            raise AerialError(
                f"The CRS {self.crs.name!r} is neither geographic nor projected, so it cannot be tied to "
                "positions on the Earth; use a georeferenced raster."
            )
        self.origin_xy = _as_points(origin_xy, "origin_xy")[0]
        if not np.all(np.isfinite(self.origin_xy)):
            raise AerialError(f"The local frame origin {tuple(self.origin_xy)} is not a finite position.")
        lon, lat = transform_points(self.origin_xy, self.crs, _WGS84)[0]
        if not (np.isfinite(lon) and np.isfinite(lat)):
            raise AerialError(
                f"The position {tuple(self.origin_xy)} in {self.crs.name} does not map to longitude/latitude."
            )
        self.origin_lonlat: Tuple[float, float] = (float(lon), float(lat))
        self.local_crs = pyproj.CRS.from_proj4(
            f"+proj=aeqd +lat_0={lat:.12f} +lon_0={lon:.12f} +x_0=0 +y_0=0 +datum=WGS84 +units=m +no_defs"
        )
        # the raster CRS <-> local metres go through WGS84 longitude/latitude, the local frame's own datum:
        # the same operation PROJ picks between the two CRSs (equal to 1e-8 m), far cheaper to set up
        self._lonlat_to_local = _aeqd_from_lonlat(lon, lat)

    def __repr__(self) -> str:
        lon, lat = self.origin_lonlat
        return f"LocalFrame(crs={self.crs.to_string()!r}, origin_lonlat=({lon:.7f}, {lat:.7f}))"

    @staticmethod
    def _apply(tr: pyproj.Transformer, xy, name: str, inverse: bool = False) -> np.ndarray:
        pts = _as_points(xy, name)
        x, y = tr.transform(pts[:, 0], pts[:, 1], direction="INVERSE" if inverse else "FORWARD")
        return np.stack([np.asarray(x, np.float64), np.asarray(y, np.float64)], axis=-1)

    def _crs_to_lonlat(self) -> pyproj.Transformer:
        return _transformer(self.crs, _WGS84)

    def to_local(self, xy_crs) -> np.ndarray:
        """(N, 2) positions in ``crs`` units -> (N, 2) local east/north metres."""
        return self.lonlat_to_local(self._apply(self._crs_to_lonlat(), xy_crs, "xy_crs"))

    def from_local(self, xy_local) -> np.ndarray:
        """(N, 2) local east/north metres -> (N, 2) positions in ``crs`` units."""
        return self._apply(self._crs_to_lonlat(), self.local_to_lonlat(xy_local), "xy_local", inverse=True)

    def local_to_lonlat(self, xy_local) -> np.ndarray:
        """(N, 2) local east/north metres -> (N, 2) WGS84 (lon, lat) degrees."""
        return self._apply(self._lonlat_to_local, xy_local, "xy_local", inverse=True)

    def lonlat_to_local(self, lonlat) -> np.ndarray:
        """(N, 2) WGS84 (lon, lat) degrees -> (N, 2) local east/north metres."""
        return self._apply(self._lonlat_to_local, lonlat, "lonlat")

    def convergence_deg(self, xy_crs=None):
        """Meridian convergence (grid north minus true north, degrees clockwise) at ``xy_crs``.

        xy_crs: None (the origin), a (2,) point -> float; or (N, 2) -> (N,) float64 array.
        Computed as the geodesic azimuth of a short step along the CRS's +y axis, so it holds for any CRS
        (0 for geographic CRSs and for EPSG:3857, which are north-up everywhere).
        """
        single = xy_crs is None or np.asarray(xy_crs).ndim == 1
        pts = _as_points(self.origin_xy if xy_crs is None else xy_crs, "xy_crs")
        # a step of ~0.1 m (or 1e-6 degrees): small enough to be local, large enough for double precision
        step = 1e-6 if self.crs.is_geographic else 0.1 / self._unit_in_metres()
        a = self._apply(self._crs_to_lonlat(), pts, "xy_crs")
        b = self._apply(self._crs_to_lonlat(), pts + np.array([0.0, step]), "xy_crs")
        az, _, _ = _GEOD.inv(a[:, 0], a[:, 1], b[:, 0], b[:, 1])
        gamma = (np.asarray(az, np.float64) + 180.0) % 360.0 - 180.0
        return float(gamma[0]) if single else gamma

    def _unit_in_metres(self) -> float:
        factor = self.crs.axis_info[0].unit_conversion_factor if self.crs.axis_info else 1.0
        return float(factor) if factor and np.isfinite(factor) else 1.0

    def true_to_grid_heading(self, heading_true_deg, xy_crs=None):
        """Heading clockwise from true north -> clockwise from grid north of ``crs``, in [0, 360)."""
        return _wrap360(np.asarray(heading_true_deg, np.float64) - self.convergence_deg(xy_crs))

    def grid_to_true_heading(self, heading_grid_deg, xy_crs=None):
        """Heading clockwise from grid north of ``crs`` -> clockwise from true north, in [0, 360)."""
        return _wrap360(np.asarray(heading_grid_deg, np.float64) + self.convergence_deg(xy_crs))

