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

from ..errors import DepthError
from . import DepthProvider

#: camera height above the ground, metres, when none is given
DEFAULT_CAMERA_HEIGHT_M = 1.6


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
        super().__init__(device)
        if not camera_height_m > 0:
            raise DepthError(f"The plane depth camera height must be positive, got {camera_height_m} m.")
        self.camera_height_m = float(camera_height_m)

    def __call__(self, ground, *, truth_path=None) -> np.ndarray:
        """Depth (H, W) float32 for ``ground.image`` (using ``ground.camera``); NaN at and above the horizon."""
        h, w = ground.image.shape[:2]
        camera = ground.camera
        if (camera.width, camera.height) != (w, h):
            camera = camera.resized(w, h)
        rays = camera.pixel_to_ray(pixel_centres(h, w))
        if isinstance(rays, tuple):  # pinhole returns (rays, valid)
            rays = rays[0]
        down = -rays[..., 2].double()
        # rays within ~0.3° of the horizon meet the ground > 300 camera heights away: useless, so invalid
        depth = torch.where(down > 5e-3, self.camera_height_m * rays.double().norm(dim=-1) / down,
                            torch.full_like(down, float("nan")))
        return depth.float().numpy()
