"""How uncertain a lifted ground point is along its viewing ray and across it: the one noise model of the pose
refits (`refine` after RANSAC, `dense_refit` against the whole of P).

A point lifted with monocular depth is uncertain mostly along its ray: its bearing is exact up to a token's
angular width, its depth is off by some per cent of the distance, and that error is correlated (a whole side
of a street too far). At distance d (m) from the camera, with an isotropic part σ₀² (where inside an aerial
cell the match lies, or a kernel's width):

    σ²_along = σ₀² + (depth_rel · d)²,     σ²_across = σ₀² + (token_rad · d)² / 12.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Tuple

import torch


@dataclass(frozen=True)
class RayNoise:
    """base_var: the isotropic variance σ₀² (m²); depth_rel: relative depth error (σ along the ray =
    depth_rel · distance); token_rad: angular width of a ground token (radians), 0 for none."""

    base_var: float
    depth_rel: float
    token_rad: float = 0.0

    @classmethod
    def of_cells(cls, cell_m: float, token_rad: float, depth_rel: float) -> "RayNoise":
        """The noise of a match to an aerial cell cell_m wide (a uniform position inside it: cell² / 12)."""
        return cls(cell_m ** 2 / 12.0, depth_rel, token_rad)

    def with_width(self, sigma_m: float) -> "RayNoise":
        """This noise with the isotropic part a kernel σ (m) wide."""
        return replace(self, base_var=sigma_m * sigma_m)

    def variances(self, ray: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """At points ``ray`` (..., 2), camera-to-point vectors in local metres: their directions u and normals v
        (..., 2), distances d (...), σ²_along (...) and σ²_across ((...); the float σ₀² when token_rad is 0)."""
        d = ray.norm(dim=-1).clamp_min(1e-6)
        u = ray / d[..., None]
        v = torch.stack([-u[..., 1], u[..., 0]], -1)
        along = self.base_var + (self.depth_rel * d) ** 2
        across = self.base_var + (self.token_rad * d) ** 2 / 12.0 if self.token_rad else self.base_var
        return u, v, d, along, across
