"""Search within an extent: a rectangle covered by overlapping aerial windows, the best pose kept.

When the prior is withheld or unknown, the photo is localized against each window of `cover` (a prior at
the window's centre with the largest radius the window allows) and `best_of` keeps the best pose. A second
place, in another window, that fits about as well makes the answer ambiguous: the best pose's confidence is
lowered so that its status says so. The prior-plus-radius search is the one-window case of the same code.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pyproj

from .confidence import status_from
from .errors import LocalizationError, PriorError
from .georef import LocalFrame, transform_points
from .result import Result
from .search_area import MIN_VISIBLE_RANGE_M, Prior, is_finite_number

#: the most windows one extent is covered with: beyond it the search costs minutes per photo
MAX_WINDOWS = 400
#: poses closer than this (metres) are the same place found from two overlapping windows, not two places
SAME_PLACE_M = 10.0
#: a runner-up at another place within this much confidence of the best makes the best ambiguous ...
CLOSE_CONFIDENCE = 0.1
#: ... or with at least this share of the best's confidence
CLOSE_SHARE = 0.8
#: points per edge of the extent carried into the local frame (its edges curve there, e.g. from EPSG:4326)
_EDGE_POINTS = 17

_GEOD = pyproj.Geod(ellps="WGS84")

Extent = Tuple[float, float, float, float]


def validate_extent(extent_xy) -> Extent:
    """``extent_xy`` as a (xmin, ymin, xmax, ymax) tuple of floats; PriorError unless four finite numbers
    with xmin < xmax and ymin < ymax."""
    values = tuple(extent_xy) if extent_xy is not None else ()
    if len(values) != 4 or not all(is_finite_number(v) for v in values):
        raise PriorError(f"The extent {values!r} is not four finite numbers; give XMIN YMIN XMAX YMAX in its CRS.")
    xmin, ymin, xmax, ymax = (float(v) for v in values)
    if not (xmin < xmax and ymin < ymax):
        raise PriorError(f"The extent ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g}) is empty: give XMIN YMIN XMAX YMAX "
                         "with XMIN < XMAX and YMIN < YMAX.")
    return xmin, ymin, xmax, ymax


def search_radius_m(matcher) -> float:
    """The largest search radius the matcher's window allows (metres): half the window less the ground it
    must still show beyond the radius (`search_area.MIN_VISIBLE_RANGE_M`)."""
    radius = float(matcher.aerial_size_m) / 2.0 - MIN_VISIBLE_RANGE_M
    if radius <= 0:
        raise PriorError(f"The model's aerial window ({float(matcher.aerial_size_m):g} m) is too small to search "
                         "an extent with.")
    return radius


def cover(extent_xy, crs, matcher, max_windows: int = MAX_WINDOWS, heading_deg: Optional[float] = None,
          heading_tolerance_deg: Optional[float] = None) -> List[Prior]:
    """Priors whose search circles cover the extent: one per window, row by row from the south-west.

    extent_xy: (xmin, ymin, xmax, ymax) in ``crs`` units (anything pyproj accepts: metres, feet, degrees);
    matcher: gives the window (``aerial_size_m``). Centres lie on a square grid in true metres (a local frame
    centred on the extent), each with radius r = window / 2 − MIN_VISIBLE_RANGE_M, at most r·√2 apart, so
    each grid cell is inscribed in its centre's circle. Raises PriorError for an unusable extent or one that
    needs more than ``max_windows`` windows (the message gives the largest side that fits).
    """
    extent_xy = validate_extent(extent_xy)
    radius = search_radius_m(matcher)
    frame = LocalFrame(crs, ((extent_xy[0] + extent_xy[2]) / 2.0, (extent_xy[1] + extent_xy[3]) / 2.0))
    lo, hi = _local_bounds(frame, extent_xy)
    spacing = radius * math.sqrt(2.0)
    counts = np.maximum(1, np.ceil((hi - lo) / spacing - 1e-9)).astype(int)  # windows along x, y
    if counts[0] * counts[1] > max_windows:
        side = math.isqrt(max_windows) * spacing
        raise PriorError(
            f"The extent is {hi[0] - lo[0]:.0f} m x {hi[1] - lo[1]:.0f} m and would need {counts[0] * counts[1]} "
            f"windows of this model; the largest it searches is {max_windows} windows, about {side:.0f} m x "
            f"{side:.0f} m: search a smaller area, or around a prior.")
    centres_local = _grid(lo, hi, counts)
    centres = frame.from_local(centres_local)
    return [Prior(float(x), float(y), crs, radius_m=radius, heading_deg=heading_deg,
                  heading_tolerance_deg=heading_tolerance_deg, is_estimate=False) for x, y in centres]


def _local_bounds(frame: LocalFrame, extent_xy: Extent) -> Tuple[np.ndarray, np.ndarray]:
    """(lo (2,), hi (2,)) metres: the bounding box, in ``frame``, of the extent's densified outline."""
    xmin, ymin, xmax, ymax = extent_xy
    t = np.linspace(0.0, 1.0, _EDGE_POINTS)
    xs, ys = xmin + t * (xmax - xmin), ymin + t * (ymax - ymin)
    outline = np.concatenate([np.stack([xs, np.full_like(xs, ymin)], -1), np.stack([xs, np.full_like(xs, ymax)], -1),
                              np.stack([np.full_like(ys, xmin), ys], -1), np.stack([np.full_like(ys, xmax), ys], -1)])
    local = frame.to_local(outline)
    if not np.isfinite(local).all():
        raise PriorError("The extent does not map to positions on the Earth in its CRS; check its CRS.")
    return local.min(0), local.max(0)


def _grid(lo: np.ndarray, hi: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(counts[0] * counts[1], 2) cell centres of the box lo..hi cut into counts[0] x counts[1] equal cells."""
    xs = lo[0] + (np.arange(counts[0]) + 0.5) * (hi[0] - lo[0]) / counts[0]
    ys = lo[1] + (np.arange(counts[1]) + 0.5) * (hi[1] - lo[1]) / counts[1]
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx.ravel(), gy.ravel()], -1)


def inside(result: Result, extent_xy: Extent, crs) -> bool:
    """True when ``result``'s pose (in ``result.crs``) lies within the extent (in ``crs``)."""
    if not result.ok or not (math.isfinite(result.x) and math.isfinite(result.y)):
        return False
    x, y = transform_points([[result.x, result.y]], result.crs or crs, crs)[0]
    xmin, ymin, xmax, ymax = extent_xy
    return bool(xmin <= x <= xmax and ymin <= y <= ymax)


def best_of(results: Sequence[Result], extent_xy: Optional[Extent] = None, crs=None) -> Result:
    """The best of one photo's results over an extent's windows, its confidence lowered when ambiguous.

    Best: highest confidence among the results that are not failed (and, with ``extent_xy`` and ``crs``,
    whose pose lies inside the extent), ties broken by more inliers. The runner-up is the best of the others
    more than SAME_PLACE_M from it; when its confidence is close to the best's (within CLOSE_CONFIDENCE, or
    at least CLOSE_SHARE of it) the best's confidence is multiplied by 1 − runner-up / (best + runner-up) and
    its status recomputed. ``quality_features`` records ``extent_windows`` (windows searched),
    ``extent_runner_up`` (its confidence, 0 when none) and ``extent_runner_up_m`` (its distance, metres; NaN
    when none). Without any pose: a failed Result saying so, with the first failure's reason.
    """
    if not results:
        raise ValueError("best_of needs at least one result")
    poses = [r for r in results if r.ok and (extent_xy is None or inside(r, extent_xy, crs))]
    if not poses:
        return _no_pose(results, extent_xy is not None)
    ranked = sorted(poses, key=lambda r: (r.confidence, r.inliers), reverse=True)
    best = ranked[0]
    rival, distance = _runner_up(best, ranked[1:])
    features = dict(best.quality_features, extent_windows=float(len(results)),
                    extent_runner_up=rival.confidence if rival else 0.0,
                    extent_runner_up_m=distance if rival else math.nan)
    confidence = best.confidence
    if rival is not None and _close(best.confidence, rival.confidence):
        confidence *= 1.0 - rival.confidence / (best.confidence + rival.confidence)
    return replace(best, confidence=confidence, status=status_from(confidence, best.inliers),
                   quality_features=features, runtime_s=sum(r.runtime_s for r in results))


def _runner_up(best: Result, others: Sequence[Result]) -> Tuple[Optional[Result], float]:
    """The most confident of ``others`` (already ranked) at another place than ``best``, and its distance
    from it (metres, on the ellipsoid); (None, NaN) when every other pose is the same place."""
    for other in others:
        _, _, distance = _GEOD.inv(best.lon, best.lat, other.lon, other.lat)
        if distance > SAME_PLACE_M:
            return other, float(distance)
    return None, math.nan


def _close(best: float, other: float) -> bool:
    """Whether a runner-up's confidence ``other`` is close enough to ``best``'s to make it ambiguous."""
    return best - other <= CLOSE_CONFIDENCE or other >= CLOSE_SHARE * best


def _no_pose(results: Sequence[Result], with_extent: bool) -> Result:
    """A failed Result for an extent where no window gave a pose (inside it), with the first reason."""
    failed = [r for r in results if not r.ok]
    where = " inside the extent" if with_extent else ""
    reason = f" (first window: {failed[0].error})" if failed else ""
    error = LocalizationError(f"None of the extent's {len(results)} windows gave a pose{where}{reason}.")
    first = results[0]
    return Result.failure(first.photo, error, runtime_s=sum(r.runtime_s for r in results), model=first.model,
                          depth=first.depth, camera=first.camera, hfov_deg=first.hfov_deg,
                          quality_features={"extent_windows": float(len(results))})
