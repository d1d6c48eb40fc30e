"""`plane` depth: flat ground seen from a known camera height; everything at or above the horizon is invalid.

No learning and no data: each pixel's ray (from the photo's camera model) is intersected with the plane
z = -camera_height. Rays at or above the horizon never meet the ground and are NaN. Pinhole photos are
assumed level (pitch = roll = 0), as everywhere in the engine, so the horizon is the row through cy.

The default height, 1.6 m, is a hand-held or tripod camera (the synthetic presets use similar heights).
A wrong height only rescales every depth by the same factor, which the scale-aware solver absorbs; hence
`scale_range` is wide. Walls and objects above the ground are assigned the ground distance behind them
(too far), which is the price of needing nothing.
"""

from __future__ import annotations

import numpy as np
import torch

from . import DEFAULT_CAMERA_HEIGHT_M, DepthProvider



def pixel_centres(height: int, width: int) -> torch.Tensor:
    """(H, W, 2) float64 (u, v) of every pixel centre: integers, u = column, v = row (cameras' convention)."""
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                          indexing="ij")
    return torch.stack([u, v], dim=-1)


class PlaneDepth(DepthProvider):
    """Range to a flat ground plane ``camera_height_m`` below the camera (Euclidean, metres)."""

    name = "plane"
    kind = "range"
    metric = True
    # camera height may be off by a factor ~2 either way; the solver's scale takes it up
    scale_range = (0.3, 3.0)

    def __init__(self, camera_height_m: float = DEFAULT_CAMERA_HEIGHT_M, device=None):
        super().__init__(device, camera_height_m)

    def __call__(self, ground, *, truth_path=None) -> np.ndarray:
        """Depth (H, W) float32 for ``ground.image`` (using ``ground.camera``); NaN at and above the horizon."""
        h, w = ground.image.shape[:2]
        return ground_plane_range(ground.camera, h, w, self.camera_height_m)


def ground_plane_range(camera, height: int, width: int, camera_height_m: float = DEFAULT_CAMERA_HEIGHT_M
                       ) -> np.ndarray:
    """Range (height, width) float32 metres from ``camera`` (resized to that grid) to the ground plane
    ``camera_height_m`` below it; NaN at and within ~0.3° of the horizon."""
    if (camera.width, camera.height) != (width, height):
        camera = camera.resized(width, height)
    rays = camera.pixel_to_ray(pixel_centres(height, width))
    if isinstance(rays, tuple):  # pinhole returns (rays, valid)
        rays = rays[0]
    down = -rays[..., 2].double()
    # rays within ~0.3° of the horizon meet the ground > 300 camera heights away: useless, so invalid
    depth = torch.where(down > 5e-3, camera_height_m * rays.double().norm(dim=-1) / down,
                        torch.full_like(down, float("nan")))
    return depth.float().numpy()


#: percentile of the plane / relative-range ratios taken as the scale: a ground pixel gives the true ratio,
#: anything standing on the ground is nearer than the ground behind it and gives a larger one
GROUND_SCALE_PERCENTILE = 35.0
#: pixels below the horizon with relative depth needed for a ground scale
MIN_GROUND_PIXELS = 50


def ground_scale(relative_range: np.ndarray, camera, camera_height_m: float = DEFAULT_CAMERA_HEIGHT_M):
    """Metres per unit of a relative range map, from the flat ground ``camera_height_m`` below the camera.

    relative_range (h, w) float, NaN invalid, in the camera's image aspect. Returns a float, or None when
    fewer than MIN_GROUND_PIXELS pixels below the horizon have depth (nothing to measure the ground on).
    The error is that of the camera height (a ratio) and of the network's depth on the ground.
    """
    h, w = relative_range.shape
    plane = ground_plane_range(camera, h, w, camera_height_m)
    sel = np.isfinite(plane) & np.isfinite(relative_range) & (relative_range > 0)
    if int(sel.sum()) < MIN_GROUND_PIXELS:
        return None
    return float(np.percentile(plane[sel] / relative_range[sel], GROUND_SCALE_PERCENTILE))


#: median range a photo without visible ground is scaled to, metres (a typical street view)
TYPICAL_RANGE_M = 12.0
#: solver scale range for relative depth put in metres by `metres_from_ground`: camera heights of about
#: 1.35-2.55 m against the assumed 1.6 m (hand-held to a car roof); a looser range let pinholes trade scale
#: for distance (docs/evaluation.md, "Pipeline settings")
GROUND_SCALED_RANGE = (0.85, 1.6)


def metres_from_ground(relative_range: np.ndarray, camera,
                       camera_height_m: float = DEFAULT_CAMERA_HEIGHT_M) -> np.ndarray:
    """Relative range (h, w) -> float32 metres via `ground_scale`; a photo showing no ground is scaled to a
    TYPICAL_RANGE_M median instead (which GROUND_SCALED_RANGE only roughly covers)."""
    scale = ground_scale(relative_range, camera, camera_height_m)
    if scale is None:
        finite = np.isfinite(relative_range) & (relative_range > 0)
        scale = TYPICAL_RANGE_M / float(np.median(relative_range[finite])) if finite.any() else 1.0
    return (relative_range * scale).astype(np.float32)
