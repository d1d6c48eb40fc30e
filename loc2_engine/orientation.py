"""Known-orientation panoramas: the roll that puts north at the centre column, and its inverse (method.md §1.1).

The official VIGOR ``known_ori`` checkpoints were trained with ρ = 0, i.e. only on panoramas as VIGOR stores
them: north at the centre column, azimuth clockwise to the right. A panorama whose centre column faces h
(clockwise from true north) looks like that when rolled right by k = round(h·W/360) columns of its W-px model
input (north then sits at the centre within 180/W degrees). The official loader rolls the depth map with it
after its nearest resize to the input size, so every token reads depth at its un-rolled column.

Tokens lifted from the rolled input are in the rolled camera's BEV frame, whose forward is the photo's forward
turned k·360/W degrees anticlockwise. `unroll_bev` turns them back, so the solver, its heading prior and the
result all stay in the photo's own frame; `unroll_uv` maps the rolled tokens' pixels back to the photo.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .solver import rotation_from_heading


def canonical_roll(heading_deg: float, width: int) -> int:
    """Columns k in [0, width) to roll a ``width``-px panorama right so that north is at its centre column.

    heading_deg: heading of the photo's centre column, degrees clockwise from true north.
    k = round(h·width/360) mod width, the official round(ρ·1428) with ρ = h/360.
    """
    return int(round(float(heading_deg) * width / 360.0)) % width


def rolled_depth(depth: np.ndarray, size: Tuple[int, int], k: int) -> np.ndarray:
    """depth (h, w) float32 of the photo -> (H, W) = ``size`` float32 rolled right by k columns.

    As the official loader: nearest resize to the model input (torch's ``interpolate``; NaN stays NaN), then
    the roll; token (r, c) then reads pixel (14r, 14c) of the result, the un-rolled column 14c - k.
    """
    t = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))[None, None]
    if tuple(t.shape[-2:]) != tuple(size):
        t = F.interpolate(t, size=tuple(size), mode="nearest")
    return np.roll(t[0, 0].numpy(), k, axis=1)


def unroll_bev(xy: torch.Tensor, k: int, width: int) -> torch.Tensor:
    """xy (N, 2) in the rolled input's BEV frame (x right, y forward) -> (N, 2) in the photo's BEV frame.

    The photo's forward is δ = k·360/width degrees clockwise of the rolled one's (its centre column sits k
    columns right of the rolled centre), so xy_local = R(h - δ) xy_rolled = R(h) xy_photo gives
    xy_photo = R(δ)ᵀ xy_rolled, i.e. ``xy @ R(δ)`` for row vectors (`solver.rotation_from_heading`).
    """
    R = rotation_from_heading(torch.tensor(k * 360.0 / width, dtype=xy.dtype))
    return xy @ R


def unroll_uv(uv: torch.Tensor, k: int, width_in: int, width: int) -> torch.Tensor:
    """uv (N, 2) px of the rolled input's tokens, expressed in a ``width``-px image of the photo -> (N, 2) px
    of the photo itself: the column moves left by k input columns (k·width/width_in px), modulo width."""
    return torch.stack([torch.remainder(uv[:, 0] - k * width / width_in, width), uv[:, 1]], -1)
