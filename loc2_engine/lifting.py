"""Lifting: photo pixel + depth -> bird's-eye-view point in the camera frame (x right, y forward), depth units.

Two depth kinds (docs/ENGINEERING.md):
    ``range``  Euclidean distance along the ray (panoramas, synthetic truth): p = d * ray, ray unit.
    ``z``      distance along the optical axis y (pinhole mono-depth models): p = d * ray / ray_y.
Height (z) is dropped, whatever it is (method.md §3). In both cases the BEV point is linear in depth,
``xy_bev = depth * lift_coefficients(camera, uv, kind)``, which lets a model precompute the coefficients of
its token grid once. Invalid depth (NaN, <= 0) gives NaN points.
"""

from __future__ import annotations

import torch

from .errors import DepthError

DEPTH_KINDS = ("range", "z")


def lift_coefficients(camera, uv: torch.Tensor, kind: str = "range") -> torch.Tensor:
    """Per-pixel factors (..., 2) such that xy_bev = depth[..., None] * coef, for uv (..., 2) px."""
    if kind not in DEPTH_KINDS:
        raise ValueError(f"depth kind must be one of {DEPTH_KINDS}, got {kind!r}")
    ray = camera.pixel_to_ray(uv)
    if kind == "range":
        return ray[..., :2]
    if camera.kind != "pinhole":
        raise DepthError(
            "This depth map measures distance along the optical axis (z-depth), which a 360° panorama "
            "does not have; use a depth provider that gives range for panoramas."
        )
    # ray_y > 0 for every pinhole pixel ray
    return ray[..., :2] / ray[..., 1:2]


def lift_to_bev(camera, uv: torch.Tensor, depth: torch.Tensor, kind: str = "range") -> torch.Tensor:
    """uv (..., 2) px and depth (...) [depth units] -> xy_bev (..., 2) [depth units], NaN where depth invalid."""
    if depth.shape != uv.shape[:-1]:
        raise ValueError(f"depth must have shape {tuple(uv.shape[:-1])} to match uv, got {tuple(depth.shape)}")
    coef = lift_coefficients(camera, uv, kind)
    depth = depth.to(coef.dtype)
    valid = torch.isfinite(depth) & (depth > 0)
    depth = torch.where(valid, depth, torch.full_like(depth, float("nan")))
    return depth[..., None] * coef


def sample_depth_at(depth: torch.Tensor, uv: torch.Tensor, mode: str = "nearest") -> torch.Tensor:
    """Depth values at pixel positions: depth (B, H, W), uv (B, N, 2) px (pixel centres at integers) -> (B, N).

    ``nearest`` takes the pixel containing uv; ``bilinear`` interpolates the 4 surrounding centres (border
    replicated) and is NaN if any of them with non-zero weight is invalid, so sky never bleeds into a
    building edge. Invalid depth (NaN or <= 0) and uv outside [-0.5, W - 0.5] × [-0.5, H - 0.5] give NaN.
    """
    if depth.ndim != 3 or uv.ndim != 3 or uv.shape[-1] != 2 or uv.shape[0] != depth.shape[0]:
        raise ValueError(f"expected depth (B, H, W) and uv (B, N, 2); got {tuple(depth.shape)} and {tuple(uv.shape)}")
    if mode not in ("nearest", "bilinear"):
        raise ValueError(f"mode must be 'nearest' or 'bilinear', got {mode!r}")
    B, H, W = depth.shape
    flat = depth.reshape(B, H * W)
    flat = flat if flat.is_floating_point() else flat.to(torch.float32)
    flat = torch.where(torch.isfinite(flat) & (flat > 0), flat, torch.full_like(flat, float("nan")))
    u, v = uv[..., 0].to(flat.dtype), uv[..., 1].to(flat.dtype)
    inside = (u >= -0.5) & (u <= W - 0.5) & (v >= -0.5) & (v <= H - 0.5)

    def gather(col: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
        col = col.clamp(0, W - 1)
        row = row.clamp(0, H - 1)
        return torch.gather(flat, 1, row * W + col)

    if mode == "nearest":
        # floor(x + 0.5) so that x.5 goes to the right/lower pixel consistently
        out = gather(torch.floor(u + 0.5).long(), torch.floor(v + 0.5).long())
    else:
        u0, v0 = torch.floor(u), torch.floor(v)
        fu, fv = u - u0, v - v0
        c0, r0 = u0.long(), v0.long()
        out = torch.zeros_like(u)
        invalid = torch.zeros_like(inside)
        for dc, dr, wt in ((0, 0, (1 - fu) * (1 - fv)), (1, 0, fu * (1 - fv)),
                           (0, 1, (1 - fu) * fv), (1, 1, fu * fv)):
            val = gather(c0 + dc, r0 + dr)
            counts = wt > 0
            out = out + torch.where(counts, wt * torch.nan_to_num(val), torch.zeros_like(out))
            invalid = invalid | (counts & torch.isnan(val))
        out = torch.where(invalid, torch.full_like(out, float("nan")), out)
    return torch.where(inside, out, torch.full_like(out, float("nan")))
