"""Field of view of a localized camera on the ground, as a polygon ring (`view_frustums`, docs/geopackage.md).

Pinhole: a wedge from the camera position, ``hfov_deg`` wide, centred on the heading, out to ``range_m``.
Panorama: a circle of radius ``range_m`` around the camera (it sees all around).
Both are built in the result's local east-north frame (true metres, true north, so heading and range mean
what they say whatever the CRS) and optionally mapped to the raster CRS.
"""

from __future__ import annotations

import math

import numpy as np

#: vertices on the arc of a wedge / around a circle
ARC_POINTS = 32


def frustum_local(position_xy, heading_deg: float, camera: str, hfov_deg: float, range_m: float,
                  arc_points: int = ARC_POINTS) -> np.ndarray:
    """Closed ring (K, 2) float64 in local east-north metres.

    position_xy: (2,) camera position, local metres; heading_deg: clockwise from true north;
    camera: "pano" or "pinhole"; hfov_deg: horizontal field of view (pinhole only); range_m > 0.
    """
    if not range_m > 0:
        raise ValueError(f"range_m must be positive, got {range_m}")
    px, py = float(position_xy[0]), float(position_xy[1])
    if camera == "pano":
        az = np.linspace(0.0, 360.0, arc_points + 1)  # first == last: closed
        ring = np.stack([px + range_m * np.sin(np.radians(az)), py + range_m * np.cos(np.radians(az))], -1)
        return ring
    if not (math.isfinite(hfov_deg) and 0 < hfov_deg < 180):
        raise ValueError(f"a pinhole frustum needs 0 < hfov_deg < 180, got {hfov_deg}")
    az = heading_deg + np.linspace(-hfov_deg / 2, hfov_deg / 2, arc_points)
    # azimuth clockwise from north: east = sin, north = cos
    arc = np.stack([px + range_m * np.sin(np.radians(az)), py + range_m * np.cos(np.radians(az))], -1)
    apex = np.array([[px, py]])
    return np.concatenate([apex, arc, apex], axis=0)


def frustum_polygon(result, range_m: float, in_crs: bool = False, arc_points: int = ARC_POINTS):
    """Ring of the camera's view for a localized `Result`, or None when the result failed.

    Default: (K, 2) local east-north metres of ``result.frame``; in_crs=True: in the raster CRS units.
    """
    if not result.ok or result.frame is None:
        return None
    frame = result.frame
    position_local = frame.to_local(np.array([[result.x, result.y]]))[0]
    ring = frustum_local(position_local, result.heading_deg, result.camera, result.hfov_deg, range_m, arc_points)
    return frame.from_local(ring) if in_crs else ring
