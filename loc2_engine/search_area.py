"""Where to search: the prior (the caller's, else the photo's EXIF GPS) and the aerial window around it.

A known-orientation checkpoint (``matcher.orientation == "known"``) sees its inputs turned by the heading
prior as in its training (`orientation`): a panorama rolled, or a pinhole photo's aerial window cut √2 wider
and turned. `SearchArea` carries the window, its local frame, the prior in it and that view.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from . import defaults
from .aerial import AerialWindow, raster_info, window_around
from .errors import AerialError, PriorError
from .exif import invalid_gps_error
from .georef import LocalFrame, transform_points
from .orientation import CanonicalView, canonical_view, turned_px

#: the window must show at least this much ground beyond the search radius, metres
MIN_VISIBLE_RANGE_M = 10.0

#: what a known-orientation model's heading prior is, and the checkpoint that needs none, per camera kind
_KNOWN_ORIENTATION_HELP = {
    "pano": ("of the panorama's centre column", "an unknown-orientation checkpoint (loc2-vigor, unknown_ori)"),
    "pinhole": ("the camera looks", "an any-orientation checkpoint (loc2-kitti, ori_noise180)"),
}


@dataclass
class Prior:
    """Where to search: a position, a radius, and optionally a heading.

    x, y: position in ``crs`` units (None, None: take the photo's EXIF GPS, keeping radius and heading);
    crs: anything pyproj accepts (None: the aerial raster's CRS); radius_m: search radius, metres;
    heading_deg: heading prior clockwise from true north (None: unknown orientation, full 360°);
    heading_tolerance_deg: half-width of the allowed heading interval (None: `defaults.HEADING_TOLERANCE_DEG`);
    is_estimate: whether the position estimates the camera's (GPS, a map click) or only centres a search tile
    (an extent's windows), which says nothing about where the camera is (the confidence's prior_offset).
    """

    x: Optional[float] = None
    y: Optional[float] = None
    crs: object = None
    radius_m: float = defaults.RADIUS_M
    heading_deg: Optional[float] = None
    heading_tolerance_deg: Optional[float] = None
    is_estimate: bool = True

    @property
    def has_position(self) -> bool:
        return self.x is not None and self.y is not None

    def validate(self) -> "Prior":
        """This prior, unchanged, when every value is usable; else PriorError naming the first one that is not:
        half a position or a coordinate that is not a finite number, a radius that is not a distance above
        0 m, a heading that is not a finite angle, a heading's tolerance outside (0°, 180°].

        A Prior is a plain mutable record (callers adjust it after construction), so it is checked where it
        is used, before any work is done for it, rather than when it is built.
        """
        if (self.x is None) != (self.y is None):
            raise PriorError("The prior position has only one coordinate; give both x and y, or neither to use "
                             "the photo's EXIF GPS.")
        if self.has_position and not (is_finite_number(self.x) and is_finite_number(self.y)):
            raise PriorError(f"The prior position ({_show(self.x)}, {_show(self.y)}) is not a pair of finite "
                             "numbers; give its coordinates in its CRS.")
        if not (is_finite_number(self.radius_m) and self.radius_m > 0):
            raise PriorError(f"The search radius {_show(self.radius_m)} m is not usable: it must be a distance in "
                             f"metres greater than 0 (the default is {defaults.RADIUS_M:g} m).")
        if self.heading_deg is not None and not is_finite_number(self.heading_deg):
            raise PriorError(f"The heading prior {_show(self.heading_deg)}° is not a direction: give degrees "
                             "clockwise from true north, or none for an unknown orientation.")
        tolerance = self.heading_tolerance_deg  # only used with a heading (callers may set both apart)
        if self.heading_deg is not None and tolerance is not None and not (
                is_finite_number(tolerance) and 0.0 < tolerance <= 180.0):
            raise PriorError(f"The heading tolerance {_show(tolerance)}° is not usable: it must be more than 0° "
                             f"and at most 180° (the default is {defaults.HEADING_TOLERANCE_DEG:g}°).")
        return self


def is_finite_number(value) -> bool:
    """True for a real, finite number (int, float, numpy scalar); False for NaN, ±inf, text, None, bools."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _show(value) -> str:
    """A number as ``:g`` writes it (nan, inf, -5, 0.5), anything else as its repr."""
    return f"{value:g}" if isinstance(value, numbers.Real) and not isinstance(value, bool) else repr(value)


@dataclass(frozen=True)
class SearchArea:
    """prior: with a position and a CRS; window: the aerial window the model encodes (its turned, wider one
    for a turned view); view: how the model's inputs are turned; prior_local (2,): the prior in the window's
    local frame, metres."""

    prior: Prior
    window: AerialWindow
    view: CanonicalView
    prior_local: np.ndarray

    @property
    def frame(self) -> LocalFrame:
        return self.window.frame


def search_area(matcher, model_name: str, ground, prior: Optional[Prior], aerial,
                exif_radius_m: float = defaults.RADIUS_M) -> SearchArea:
    """The search area of ``ground`` (a `GroundImage`) for ``matcher``.

    prior: None, or without a position, takes the photo's EXIF GPS (with ``exif_radius_m`` when None);
    aerial: see `aerial_window`. Raises PriorError (no position, a radius too large for the window, a
    known-orientation model without a heading prior) or AerialError.
    """
    prior = resolve_prior(ground, prior, aerial, exif_radius_m)
    view = canonical_view_for(matcher, model_name, prior, ground.camera.kind)
    size_m = float(matcher.aerial_size_m)
    if size_m / 2.0 - prior.radius_m < MIN_VISIBLE_RANGE_M:
        raise PriorError(
            f"The search radius {prior.radius_m:g} m is too large for the model {model_name}, whose "
            f"aerial window is {size_m:g} m wide; use a radius of at most "
            f"{size_m / 2.0 - MIN_VISIBLE_RANGE_M:g} m.")
    window = aerial_window(matcher, model_name, aerial, prior, turned=view.aerial_turn_deg is not None)
    prior_local = window.frame.to_local(transform_points([[prior.x, prior.y]], prior.crs, window.frame.crs))[0]
    return SearchArea(prior, window, view, prior_local)


def aerial_window(matcher, model_name: str, aerial, prior: Prior, turned: bool = False) -> AerialWindow:
    """The model's window around ``prior`` (position in ``prior.crs``); turned: the `turned_px` wider one that
    a turned view's tile is cut out of (`CanonicalView.aerial_turn_deg`).

    aerial: an `AerialWindow` (used as is; it must have the model's gsd and size, or the wider one when
    turned), a raster path, a callable ``aerial(center_xy, center_crs, size_m, gsd) -> AerialWindow``, or an
    object with a method ``window(center_xy, center_crs, size_m, gsd)`` (e.g. the plugin's renderer of a QGIS
    layer). Raises AerialError for a window of another size or gsd.
    """
    gsd = float(matcher.aerial_gsd)
    n = int(matcher.aerial_size_px)
    n = turned_px(n) if turned else n
    size_m = n * gsd
    window = aerial if isinstance(aerial, AerialWindow) else window_around(
        aerial, (float(prior.x), float(prior.y)), prior.crs, size_m, gsd)
    if window.image.shape[:2] != (n, n) or not math.isclose(window.gsd, gsd, rel_tol=1e-6):
        raise AerialError(
            f"The aerial window is {window.image.shape[1]} px at {window.gsd:g} m/px but the model "
            f"{model_name} needs {n} px at {gsd:g} m/px; build it {size_m:g} m wide at the model's aerial_gsd.")
    return window


def resolve_prior(ground, prior: Optional[Prior], aerial, exif_radius_m: float = defaults.RADIUS_M) -> Prior:
    """A Prior with a position and a CRS: the given one (its CRS defaulting to the aerial source's), else the
    photo's EXIF GPS (WGS84), else PriorError; PriorError too for a prior with an unusable value
    (`Prior.validate`) or an invalid EXIF GPS position."""
    prior = (prior or Prior(radius_m=exif_radius_m)).validate()
    if prior.has_position:
        return prior if prior.crs is not None else replace(prior, crs=aerial_crs(aerial))
    lonlat = getattr(ground.exif, "lonlat", None) if ground.exif is not None else None
    invalid = invalid_gps_error(ground.path, ground.exif) if ground.exif is not None else None
    if invalid is not None:
        raise invalid
    if lonlat is None:
        raise PriorError(
            f"The photo {os.path.basename(os.fspath(ground.path))} has no GPS position in its EXIF and no "
            "prior position was given; give one (--prior X Y, a map click, or the manifest's prior_x/prior_y).")
    return replace(prior, x=float(lonlat[0]), y=float(lonlat[1]), crs="EPSG:4326")


def canonical_view_for(matcher, model_name: str, prior: Prior, kind: str) -> CanonicalView:
    """How a known-orientation matcher's inputs are turned by the heading prior to look as in its training
    (`orientation.canonical_view`); unturned for other matchers and for a camera kind the matcher does not
    take (which it refuses later with a CameraError).

    Raises PriorError without a heading prior: such a checkpoint never saw another orientation.
    """
    if matcher.orientation != "known" or kind not in matcher.ground_input_sizes:
        return CanonicalView()
    if prior.heading_deg is None:
        facing, other = _KNOWN_ORIENTATION_HELP[kind]
        raise PriorError(
            f"The model {model_name} is a known-orientation checkpoint and needs a heading prior (the "
            f"direction {facing}: --heading DEG, the dock's heading, or the manifest's heading_prior_deg); "
            f"without one, use {other}, which needs none.")
    return canonical_view(prior.heading_deg, kind, matcher.ground_input_size_for(kind)[1])


def aerial_crs(aerial):
    """The CRS of an aerial source: a window's, a raster file's, or a renderer's ``crs``; PriorError if none."""
    if isinstance(aerial, AerialWindow):
        return aerial.frame.crs
    if isinstance(aerial, (str, os.PathLike)):
        return raster_info(aerial)[0]
    crs = getattr(aerial, "crs", None)
    if crs is None:
        raise PriorError("A prior position without a CRS needs an aerial source with a CRS; give the "
                         "prior's CRS.")
    return crs
