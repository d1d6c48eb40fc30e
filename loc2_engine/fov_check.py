"""Whether a pinhole pose's matches agree with the field of view the photo was assumed to have.

A wrong horizontal field of view (a bad ``--hfov``, a wrong 35 mm equivalent in EXIF) bends every lifted
ray sideways, and RANSAC still fits a pose to whatever subset of matches survives. The matches tell: seen
from the estimated pose, each match's aerial cell lies at a bearing from the optical axis, and for a pinhole
the true bearing of its photo column u is

    atan(k * (u - cx) / fx),   k = tan(true HFOV / 2) / tan(assumed HFOV / 2).

The inliers cannot show k: they were chosen because they fit the assumed camera. So every match votes, by
its match probability, for the (k, heading offset) under which its bearing agrees within BEARING_TOL_DEG;
wrong matches spread their votes over every k, right ones pile up at the true k. A pose whose best k gathers
clearly more votes (MIN_GAIN) than k = 1, at a field of view far from the assumed one (MAX_FOV_RATIO), is
marked ``low_confidence`` with the reason (`fov_gate`); its confidence and the calibrated features are left
as they are. Bearings do not depend on depth, so depth errors do not enter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

#: estimated / assumed HFOV beyond which (or below its inverse) a pose may be marked
MAX_FOV_RATIO = 1.4
#: votes at the best k over the votes at k = 1 needed to mark a pose: on the bench's pinholes with the right
#: HFOV the best k gathers up to 1.6 times k = 1's votes by chance (docs/method.md §6)
MIN_GAIN = 2.0
#: matches needed in front of the camera for a verdict
MIN_MATCHES = 30
#: a match votes for the (k, offset) that put its photo column within this of its aerial bearing, degrees
BEARING_TOL_DEG = 3.0
#: the k tried: tan(true HFOV / 2) / tan(assumed / 2) from 0.15 to 4, evenly in log
K_GRID = np.exp(np.linspace(math.log(0.15), math.log(4.0), 33))
#: heading offsets tried, degrees: a pose fitted with the wrong camera is also turned a little
OFFSETS_DEG = np.arange(-20.0, 20.5, 2.0)
#: error code of the reason (`Result.error_code`) when the gate marks a pose
FOV_CODE = "fov"


@dataclass(frozen=True)
class FovEstimate:
    """The field of view the matches suggest: ``hfov_deg`` (degrees), ``ratio`` = it / the assumed HFOV,
    ``gain`` = the votes for it / the votes for the assumed one, ``matches`` that voted."""

    hfov_deg: float
    ratio: float
    gain: float
    matches: int

    @property
    def plausible(self) -> bool:
        return self.gain < MIN_GAIN or 1.0 / MAX_FOV_RATIO <= self.ratio <= MAX_FOV_RATIO


def estimate_fov(camera, uv: np.ndarray, xy_aerial: np.ndarray, weights: np.ndarray, position: np.ndarray,
                 heading_deg: float) -> Optional[FovEstimate]:
    """The HFOV the matches' bearings suggest for a pinhole; None for a panorama or fewer than MIN_MATCHES
    matches in front of the camera.

    camera: the assumed `PinholeCamera` of the photo as loaded; uv (N, 2): matched photo pixels (u right);
    xy_aerial (N, 2): their aerial cells, local frame metres; weights (N,): match probabilities;
    position (2,): the camera, local metres; heading_deg: clockwise from true north.
    """
    if getattr(camera, "kind", "") != "pinhole":
        return None
    from .solver import rotation_from_heading  # torch import deferred: the check itself is numpy

    R = np.asarray(rotation_from_heading(float(heading_deg)), np.float64)
    xy_bev = (np.asarray(xy_aerial, np.float64).reshape(-1, 2) - np.asarray(position, np.float64)) @ R
    ahead = xy_bev[:, 1] > 0.0
    if int(ahead.sum()) < MIN_MATCHES:
        return None
    bearing = np.arctan2(xy_bev[ahead, 0], xy_bev[ahead, 1])                      # (N,) rad, right of forward
    photo_tan = (np.asarray(uv, np.float64).reshape(-1, 2)[ahead, 0] - camera.cx) / camera.fx  # (N,)
    w = np.asarray(weights, np.float64).reshape(-1)[ahead]
    seen = np.arctan(K_GRID[:, None] * photo_tan[None])                          # (K, N)
    miss = bearing[None, None] - seen[:, None] - np.radians(OFFSETS_DEG)[None, :, None]   # (K, O, N)
    miss = (miss + np.pi) % (2.0 * np.pi) - np.pi
    votes = ((np.abs(miss) < math.radians(BEARING_TOL_DEG)) * w).sum(-1).max(1)  # (K,) best offset each
    best, assumed = int(votes.argmax()), int(np.abs(np.log(K_GRID)).argmin())
    half = math.tan(math.radians(camera.hfov_deg) / 2.0)
    hfov = 2.0 * math.degrees(math.atan(K_GRID[best] * half))
    gain = float(votes[best] / votes[assumed]) if votes[assumed] > 0 else math.inf
    return FovEstimate(hfov, hfov / camera.hfov_deg, gain, int(ahead.sum()))


def fov_gate(result, camera):
    """``result`` (a localized `Result` of a photo taken with ``camera``), marked ``low_confidence`` with the
    reason (``error``, ``error_code`` FOV_CODE) when its matches point to another HFOV than the camera's;
    ``quality_features`` records ``fov_ratio`` and ``fov_gain`` (NaN: no verdict). A failed result is
    returned as it is."""
    if not result.ok or result.frame is None:
        return result
    position = result.frame.to_local(np.array([[result.x, result.y]], np.float64))[0]
    found = estimate_fov(camera, result.uv_ground, result.xy_aerial, result.weights, position, result.heading_deg)
    features = dict(result.quality_features, fov_ratio=found.ratio if found else math.nan,
                    fov_gain=found.gain if found else math.nan)
    if found is None or found.plausible:
        return replace(result, quality_features=features)
    reason = (f"The matches do not fit the assumed horizontal field of view of {camera.hfov_deg:.0f}°: seen from "
              f"the pose, they fit about {found.hfov_deg:.0f}° {found.gain:.1f} times better. Check --hfov or the "
              "photo's EXIF focal length, then localize it again.")
    return replace(result, status="low_confidence", error=reason, error_code=FOV_CODE, quality_features=features)
