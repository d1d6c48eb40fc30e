"""The last refit of RANSAC's pose, with each match's error larger along its viewing ray than across it.

The scale-aware Procrustes (`solver.procrustes_2d`) weighs a match's residual the same in every direction; a
lifted ground point is uncertain mostly along its ray (`ray_noise`). Weighing the two directions apart lets
the bearings fix the heading and the across-ray position, and the depths what the bearings cannot.

Model, linear in the pose: ``c ≈ M b + t`` with ``M = [[α, -β], [β, α]] = s R``. Match i costs
``w_i (M b_i + t - c_i)ᵀ Λ_i (M b_i + t - c_i)`` with ``Λ_i = u uᵀ / σ²_along + v vᵀ / σ²_across`` (u the
ray's direction in the local frame, v its normal, the variances of `ray_noise.RayNoise` at the point's
distance).
For fixed u, v this is a weighted linear least squares in (α, β, t), solved in closed form; u, v and the
distances then follow the new pose, a few times.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from .ray_noise import RayNoise
from .solver import SimilarityFit


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
    # prediction J_i θ with θ = (α, β, tx, ty): M b_i = [[bx, -by], [by, bx]] (α, β)
    J = torch.zeros(b.shape[0], 2, 4, dtype=torch.float64)
    J[:, 0, 0], J[:, 0, 1], J[:, 1, 0], J[:, 1, 1] = b[:, 0], -b[:, 1], b[:, 1], b[:, 0]
    J[:, 0, 2] = J[:, 1, 3] = 1.0
    M = float(fit.s) * fit.R.double()
    for _ in range(iterations):
        u, v, _, var_along, var_across = noise.variances(b @ M.T)  # rays: camera -> point, local metres
        info_r, info_t = w / var_along, w / var_across
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
