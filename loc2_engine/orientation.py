"""Known-orientation checkpoints: their inputs turned by the heading prior as in training, and back.

Panoramas (VIGOR ``known_ori``, docs/method.md §1.1). The checkpoints were trained with ρ = 0, i.e. only on
panoramas as VIGOR stores them: north at the centre column, azimuth clockwise to the right. A panorama whose
centre column faces h (clockwise from true north) looks like that when rolled right by k = round(h·W/360)
columns of its W-px model input (north then sits at the centre within 180/W degrees). The official loader
rolls the depth map with it after its nearest resize to the input size, so every token reads depth at its
un-rolled column. Tokens lifted from the rolled input are in the rolled camera's BEV frame, whose forward is
the photo's forward turned k·360/W degrees anticlockwise. `unroll_bev` turns them back, so the solver, its
heading prior and the result all stay in the photo's own frame; `unroll_uv` maps the rolled tokens' pixels
back to the photo.

Pinhole photos (KITTI ``ori_noise10``, docs/method.md §1.2). The aerial map was turned by -heading so that the car
heads east (right), ±10°, then centre-cropped. Here a north-up window `turned_px` wide is turned clockwise by
``aerial_turn_deg(h)`` about its centre and its centre cropped (`turned_tile`); the model's cells, which it
places in that tile's (right, up) frame, are turned back into the east-north local frame by `unturn`.
`canonical_view` says which of the two a photo needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .solver import rotation_from_heading


@dataclass(frozen=True)
class CanonicalView:
    """How a known-orientation matcher's inputs are turned to look as in its training (the default: not at all).

    roll: columns the panorama input (and its depth) is rolled right (VIGOR known_ori);
    aerial_turn_deg: degrees the north-up aerial window is turned clockwise about its centre before encoding
    (KITTI ori_noise10); None: the window is encoded north-up, as it is.
    """

    roll: int = 0
    aerial_turn_deg: Optional[float] = None


def canonical_view(heading_deg: float, kind: str, width: int) -> CanonicalView:
    """The view of a ``kind`` photo ("pano" | "pinhole") facing ``heading_deg`` (clockwise from true north):
    a panorama is rolled (``width``: its model input's width), a pinhole photo keeps its pixels and the aerial
    window is turned instead (the two known-orientation checkpoints, docs/method.md §1.1 / §1.2)."""
    if kind == "pano":
        return CanonicalView(roll=canonical_roll(heading_deg, width))
    return CanonicalView(aerial_turn_deg=aerial_turn_deg(heading_deg))


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
    return unturn(xy, k * 360.0 / width)


def unroll_uv(uv: torch.Tensor, k: int, width_in: int, width: int) -> torch.Tensor:
    """uv (N, 2) px of the rolled input's tokens, expressed in a ``width``-px image of the photo -> (N, 2) px
    of the photo itself: the column moves left by k input columns (k·width/width_in px), modulo width."""
    return torch.stack([torch.remainder(uv[:, 0] - k * width / width_in, width), uv[:, 1]], -1)


def aerial_turn_deg(heading_deg: float) -> float:
    """Degrees in [0, 360) to turn a north-up aerial image clockwise about its centre so that ``heading_deg``
    (clockwise from true north) points right (east): 90 - h. A bearing β then shows at bearing β + 90 - h."""
    return (90.0 - float(heading_deg)) % 360.0


def unturn(xy, turn_deg: float):
    """(..., 2) points of an image turned ``turn_deg`` clockwise (x right, y up) -> (..., 2) in the unturned
    frame: Rᵀ xy with R = `solver.rotation_from_heading` (clockwise), i.e. ``xy @ R`` for row vectors.
    numpy arrays or torch tensors (whose dtype and device are kept)."""
    R = rotation_from_heading(float(turn_deg))  # (2, 2) float64
    if isinstance(xy, torch.Tensor):
        R = torch.as_tensor(R, dtype=xy.dtype, device=xy.device)
    return xy @ R


def turned_px(n: int) -> int:
    """Side N (px) of the north-up window an ``n``-px tile is cut from at any turn: the tile's corners reach
    n/√2 from the centre, +1 px for the bilinear neighbours on each side; N has n's parity so that the
    unturned tile is whole pixels of the window (a turn of 0 copies them)."""
    N = math.ceil(math.sqrt(2.0) * n) + 2
    return N + (N - n) % 2


def turned_tile(window, turn_deg: float, n: int) -> np.ndarray:
    """(n, n, 3) uint8: the north-up ``window`` (an `AerialWindow`, at least `turned_px`(n) px) turned
    ``turn_deg`` clockwise about its centre and centre-cropped to n px, at the window's gsd.

    Tile pixel (r, c) shows the local point Rᵀ p (`unturn`), p being where the unturned crop's pixel
    (r + o, c + o), o = (N - n) / 2, lies; sampled bilinearly (torch ``grid_sample``, align_corners=False,
    rounded back to uint8 as an 8-bit image rotation does).
    """
    N = window.image.shape[0]
    o = (N - n) / 2.0
    rc = np.stack(np.meshgrid(np.arange(n) + o, np.arange(n) + o, indexing="ij"), -1)  # (n, n, 2) float64
    src = window.local_to_pixel(unturn(window.pixel_to_local(rc), turn_deg))  # (n, n, 2) (row, col) in window
    grid = torch.from_numpy((2.0 * np.stack([src[..., 1], src[..., 0]], -1) + 1.0) / N - 1.0).float()[None]
    # grid: (1, n, n, (x = col, y = row)) in [-1, 1] of the window's pixel edges
    image = torch.from_numpy(window.image).permute(2, 0, 1)[None].float()  # (1, 3, N, N)
    out = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
