"""The last refit of a pose, with each match's error larger along its viewing ray than across it.

The scale-aware Procrustes (`solver.procrustes_2d`) weighs a match's residual the same in every direction.
A lifted ground point is uncertain mostly along its ray, though: the bearing of a ground token is exact up
to the token's angular width, while its depth (monocular, relative) is off by some per cent of the distance.
Weighing the two directions apart lets the bearings fix the heading and the across-ray position, and the
depths what the bearings cannot.

Model, linear in the pose: ``c ≈ M b + t`` with ``M = [[α, -β], [β, α]] = s R``. Match i costs
``w_i (M b_i + t - c_i)ᵀ Λ_i (M b_i + t - c_i)`` with ``Λ_i = u uᵀ / σ_r² + v vᵀ / σ_t²``: u is the ray's
direction in the local frame (``M b_i / |M b_i|``), v its normal, σ_r² = σ_cell² + (depth_rel d)²,
σ_t² = σ_cell² + (token_rad d)² / 12 at the point's distance d (m), σ_cell² = cell² / 12 (a uniform
position inside the matched aerial cell). For fixed u, v this is a weighted linear least squares in
(α, β, t), solved in closed form; u, v and d then follow the new pose, a few times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .solver import SimilarityFit


@dataclass(frozen=True)
class RayNoise:
    """How uncertain a match is: cell_m, spacing of the aerial cells (m); token_rad, angular width of a
    ground token (radians); depth_rel, relative error of the depth (σ along the ray = depth_rel · distance)."""

    cell_m: float
    token_rad: float
    depth_rel: float


def refine_pose(src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor, fit: SimilarityFit,
                noise: RayNoise, iterations: int = 3,
                accept: Optional[Callable[[SimilarityFit], bool]] = None) -> SimilarityFit:
    """The similarity ``dst ≈ s R src + t`` refitted with along-ray and across-ray errors weighed apart.

    src (N, 2) BEV points of the matches (the camera at the origin), depth units; dst (N, 2) their aerial
    points, local metres; weights (N,) >= 0; fit: unbatched SimilarityFit (R (2, 2), t (2,), s ()) in
    these coordinates, the start. accept(fit) -> bool vets each iterate (scale range, heading prior, search
    radius): the first it refuses, or a singular system, ends the refinement with the last accepted pose.
    Returns an unbatched SimilarityFit in the dtypes of ``fit``.
    """
    b, c, w = src.double(), dst.double(), weights.double()
    keep = torch.isfinite(b).all(-1) & torch.isfinite(c).all(-1) & (w > 0) & (b.norm(dim=-1) > 0)
    b, c, w = b[keep], c[keep], w[keep]
    if b.shape[0] < 3:
        return fit
    cell_var = noise.cell_m ** 2 / 12.0
    # prediction J_i θ with θ = (α, β, tx, ty): M b_i = [[bx, -by], [by, bx]] (α, β)
    J = torch.zeros(b.shape[0], 2, 4, dtype=torch.float64)
    J[:, 0, 0], J[:, 0, 1], J[:, 1, 0], J[:, 1, 1] = b[:, 0], -b[:, 1], b[:, 1], b[:, 0]
    J[:, 0, 2] = J[:, 1, 3] = 1.0
    M = float(fit.s) * fit.R.double()
    for _ in range(iterations):
        ray = b @ M.T  # (N, 2) camera -> point, local metres
        dist = ray.norm(dim=-1).clamp_min(1e-6)
        u = ray / dist[:, None]
        v = torch.stack([-u[:, 1], u[:, 0]], -1)
        info_r = w / (cell_var + (noise.depth_rel * dist) ** 2)
        info_t = w / (cell_var + (noise.token_rad * dist) ** 2 / 12.0)
        Lam = (info_r[:, None, None] * u[:, :, None] * u[:, None, :]
               + info_t[:, None, None] * v[:, :, None] * v[:, None, :])  # (N, 2, 2)
        JtL = J.transpose(1, 2) @ Lam  # (N, 4, 2)
        theta, info = torch.linalg.solve_ex((JtL @ J).sum(0), (JtL @ c[:, :, None]).sum(0)[:, 0])
        s = float(torch.hypot(theta[0], theta[1]))
        if int(info) != 0 or not bool(torch.isfinite(theta).all()) or s <= 0:
            break
        M = torch.stack([torch.stack([theta[0], -theta[1]]), torch.stack([theta[1], theta[0]])])
        step = SimilarityFit((M / s).to(fit.R.dtype), theta[2:].to(fit.t.dtype),
                             torch.tensor(s, dtype=fit.s.dtype), torch.tensor(True), ("",))
        if accept is not None and not accept(step):
            break
        fit = step
    return fit
