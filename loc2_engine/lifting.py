"""Lifting: photo pixel + depth -> bird's-eye-view point in the camera frame (x right, y forward), depth units.

Two depth kinds (docs/conventions.md):
    ``range``  Euclidean distance along the ray (panoramas, synthetic truth): p = d * ray, ray unit.
    ``z``      distance along the optical axis y (pinhole mono-depth models): p = d * ray / ray_y.
Height (z) is dropped, whatever it is (docs/method.md §3). In both cases the BEV point is linear in depth,
``xy_bev = depth * lift_coefficients(camera, uv, kind)``, which lets a model precompute the coefficients of
its token grid once. Invalid depth (NaN, <= 0) gives NaN points.

`lift_tokens` is the pipeline's lifting stage: a depth provider's map read at each ground token of the
matcher's input, the tokens without usable depth masked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .depth import as_depth_map
from .errors import DepthError, LocalizationError
from .orientation import rolled_depth, unroll_bev

#: ground tokens with depth needed before matching is attempted (3 fix a similarity; more to vote)
MIN_VALID_TOKENS = 8

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


@dataclass(frozen=True)
class LiftedTokens:
    """Every ground token of the matcher's input lifted to the camera's BEV frame.

    xy_bev (Ng, 2) float32, depth units, in the photo's own frame (a rolled canonical view turned back);
    valid (Ng,) bool: the token has usable depth (the others are masked out of matching).
    """

    xy_bev: torch.Tensor
    valid: torch.Tensor


def lift_tokens(matcher, depth_provider, ground_in, depth_map=None, roll: int = 0, max_range_m=None
                ) -> LiftedTokens:
    """The lifting stage: ``depth_provider``'s depth of ``ground_in`` (a `ground.ModelInput`; depth is taken
    of its content, the photo without letterbox padding) read where ``matcher``'s tokens fall on the photo.

    depth_map: ground-truth depth for the ``truth`` provider (.npy path or array), else None.
    roll: columns the matcher's input is rolled right (`orientation.CanonicalView`): the depth is rolled with
    it (after the official nearest resize to the input) and the points turned back into the photo's frame.
    max_range_m: metric depth at or beyond it is masked; None: the matcher's own clip ``max_depth_m`` on its
    ``max_depth_kind`` (official models: 35 m of range VIGOR, 40 m of z-depth KITTI), else half the aerial
    window (farther than it can show).
    Invalid also: no depth (sky, above the horizon, letterbox padding). Raises LocalizationError when fewer
    than MIN_VALID_TOKENS remain (an all-sky photo).
    """
    photo = ground_in.content
    h, w = photo.image.shape[:2]
    depth = as_depth_map(depth_provider(photo, truth_path=depth_map), (h, w), photo.camera)
    if roll:
        depth = rolled_depth(depth, photo.image.shape[:2], roll)
    # tokens where the depth map's own grid has them (no resampling of depth, see depth.as_depth_map)
    depth_camera = photo.camera.resized(depth.shape[1], depth.shape[0])
    uv_depth, coef = matcher.ground_tokens(depth_camera, depth_provider.kind, ground_in.rows)  # (Ng, 2) each
    # bilinear: token centres fall between pixels; an exact pixel (official grids) reads that pixel
    depth_tok = sample_depth_at(torch.from_numpy(depth)[None].double(), uv_depth[None].double(),
                                mode="bilinear")[0]  # (Ng,)
    valid = torch.isfinite(depth_tok) & (depth_tok > 0)
    xy_bev = depth_tok[:, None] * coef.double()  # (Ng, 2)
    if depth_provider.metric and max_range_m is None and matcher.max_depth_m is not None:
        # a pinhole's z-depth is its forward BEV coordinate, whatever kind of depth the provider gives
        along_z = matcher.max_depth_kind == "z"
        valid &= (xy_bev[:, 1] if along_z else depth_tok) < matcher.max_depth_m
    elif depth_provider.metric:
        valid &= depth_tok < (max_range_m or matcher.aerial_size_m / 2.0)
    if int(valid.sum()) < MIN_VALID_TOKENS:
        raise LocalizationError(
            f"The photo shows no usable ground: only {int(valid.sum())} of {len(valid)} image regions have "
            f"depth from '{depth_provider.name}' (the rest is sky, above the horizon, or too far); there is "
            "nothing to match against the aerial image.")
    return LiftedTokens(unroll_bev(xy_bev, roll, photo.image.shape[1]).float(), valid)
