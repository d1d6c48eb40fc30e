"""The answer for one photo: pose, confidence, and the matches that explain it.

A `Result` is what every consumer reads: QGIS layers, the GeoPackage writer, figures, JSON output and the
benchmark. Pose fields follow docs/geopackage.md (`camera_poses`); explanation arrays are in the window's local
east-north frame (metres) unless their name says otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

#: field names and order of the `camera_poses` layer (docs/geopackage.md)
POSE_FIELDS = (
    "photo", "x", "y", "lon", "lat", "heading_deg", "heading_grid_deg", "scale", "matches", "inliers",
    "inlier_ratio", "confidence", "residual_m", "sigma_m", "status", "error", "camera", "model", "depth",
    "runtime_s",
)

STATUSES = ("ok", "low_confidence", "failed")


@dataclass(frozen=True)
class RivalPose:
    """A runner-up pose of a photo: another place or heading that also explains its matches.

    x, y in the Result's ``crs`` units; heading_deg clockwise from true north, [0, 360); gap: its rank minus
    the kept pose's (`dense_refit.Choice.rivals`, log units: about 0 = as tight a fit, -1 = markedly looser;
    up to +0.125 when RANSAC's own pose was kept by its margin).
    """

    x: float
    y: float
    heading_deg: float
    gap: float


@dataclass
class Result:
    """Outcome of localizing one photo.

    Pose (NaN when failed): ``x, y`` in ``crs`` units, ``lon, lat`` WGS84 degrees, ``heading_deg`` clockwise
    from true north in [0, 360), ``heading_grid_deg`` from grid north of ``crs``, ``scale`` = aerial metres
    per depth unit.

    Explanation arrays (empty when failed), N = sampled correspondences, M = lifted ground points:
        uv_ground (N, 2)      matched ground pixels (u right, v down) in the photo as loaded (EXIF-rotated)
        xy_bev (N, 2)         those pixels lifted to the camera BEV frame (x right, y forward), depth units
        xy_aerial (N, 2)      their aerial matches, local frame metres
        weights (N,)          match probabilities
        inlier_mask (N,)      RANSAC inliers
        residuals_m (N,)      distance between placed ground point and aerial match, metres
        layout_uv (M, 2), layout_xy (M, 2)  every valid lifted ground token: photo pixel and placed local xy
    ``window`` is the AerialWindow used (for figures); ``frame`` its LocalFrame.
    """

    photo: str
    status: str = "failed"
    error: str = ""
    crs: str = ""
    x: float = math.nan
    y: float = math.nan
    lon: float = math.nan
    lat: float = math.nan
    heading_deg: float = math.nan
    heading_grid_deg: float = math.nan
    scale: float = math.nan
    matches: int = 0
    inliers: int = 0
    inlier_ratio: float = 0.0
    confidence: float = 0.0
    residual_m: float = math.nan
    sigma_m: float = math.nan
    camera: str = ""
    model: str = ""
    depth: str = ""
    runtime_s: float = 0.0
    hfov_deg: float = math.nan
    error_code: str = ""
    ambiguity: float = math.nan  # RANSAC: rival place's support / the winner's (ransac.RansacResult)
    quality_features: dict = field(default_factory=dict)  # what the confidence was computed from (confidence.py)
    rivals: tuple = ()  # RivalPose runner-ups, best first (a capture's other photos may pick one: smoother.py)
    uv_ground: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    xy_bev: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    xy_aerial: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    weights: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    inlier_mask: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))
    residuals_m: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    layout_uv: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    layout_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    window: Optional[object] = None
    frame: Optional[object] = None

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    @classmethod
    def failure(cls, photo: str, exc: Exception, **fields) -> "Result":
        """A failed result carrying the exception's sentence and code."""
        return cls(photo=photo, status="failed", error=str(exc) or type(exc).__name__,
                   error_code=getattr(exc, "code", "error"), **fields)

    def pose_row(self) -> dict:
        """The `camera_poses` attributes (docs/geopackage.md), JSON-serialisable; NaN becomes None."""
        row = {}
        for name in POSE_FIELDS:
            value = getattr(self, name)
            if isinstance(value, (float, np.floating)):
                value = None if not math.isfinite(value) else float(value)
            elif isinstance(value, np.integer):
                value = int(value)
            row[name] = value
        return row
