"""A small monocular depth network: relative log-range + sky logit, trained on synthetic depth.

The pipeline's `mono` depth provider uses it through `load_mono_depth` and `predict_depth`. Its depth is
*relative* (up to an unknown global scale, trained with a scale-invariant loss): the scale-aware solver
absorbs the scale (docs/method.md §3). It predicts **range** (Euclidean distance along the ray) for both camera
kinds, like the synthetic truth, so the lifting kind is ``MONO_DEPTH_KIND = "range"``.

Network: a 4-level encoder (strides 2–16) and a decoder with skip connections back to stride 2, two
output channels (log-range, sky logit) upsampled bilinearly to the input. Panoramas are padded circularly
along their width. Input sizes are the matcher's ground input sizes (pano 128×256, pinhole 144×192).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from .base import build_from_file, letterbox_image, merge_conf, resize_image, to_input
from .heads import BasicBlock, pad
from .small import MAX_GROUND_TOKENS, DownConv, upsample2, whole_list

#: depth kind of the predictions (see `lifting`)
MONO_DEPTH_KIND = "range"
#: shipped weights, relative to the repository root
MONO_WEIGHTS = "resources/models/mono.safetensors"

DEFAULT_CONF = {
    "channels": [16, 32, 64, 96],
    "pano_size": [128, 256],
    "pinhole_size": [144, 192],
    "sky_threshold": 0.5,
}


def check_sizes(conf: dict) -> None:
    """Raise ModelError naming the first channel count or input size the network cannot be built with."""
    whole_list(conf, "channels", 4)
    for key in ("pano_size", "pinhole_size"):  # four stride-2 stages; no larger than the matcher's inputs
        whole_list(conf, key, 2, multiple_of=16, most=MAX_GROUND_TOKENS * 8)


class UpBlock(nn.Module):
    """Upsample ×2 (wrapping around for panoramas), concatenate the skip, 3×3 conv -> BN -> ReLU: (B, c_in, h, w) + (B, c_skip, 2h, 2w)."""

    def __init__(self, c_in: int, c_skip: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in + c_skip, c_out, 3, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, circular: bool) -> torch.Tensor:
        x = upsample2(x, circular)
        return F.relu(self.bn(self.conv(pad(torch.cat([x, skip], 1), 1, circular))))


class MonoDepthNet(nn.Module):
    """(B, 3, H, W) in [0, 1] -> (log_range (B, H, W), sky_logit (B, H, W)); H, W divisible by 16."""

    def __init__(self, conf: Optional[dict] = None):
        super().__init__()
        self.conf = merge_conf(DEFAULT_CONF, conf, "the mono depth model")
        check_sizes(self.conf)
        c1, c2, c3, c4 = self.conf["channels"]
        self.input_sizes = {"pano": tuple(self.conf["pano_size"]), "pinhole": tuple(self.conf["pinhole_size"])}
        self.down1, self.down2 = DownConv(3, c1), DownConv(c1, c2)
        self.down3, self.down4 = DownConv(c2, c3), DownConv(c3, c4)
        self.block3, self.block4 = BasicBlock(c3, c3), BasicBlock(c4, c4)
        self.up3, self.up2, self.up1 = UpBlock(c4, c3, c3), UpBlock(c3, c2, c2), UpBlock(c2, c1, c1)
        self.out = nn.Conv2d(c1, 2, 1)
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor, circular: bool = False):
        x1 = self.down1(image - self.mean, circular)
        x2 = self.down2(x1, circular)
        x3 = self.block3(self.down3(x2, circular), circular)
        x4 = self.block4(self.down4(x3, circular), circular)
        y = self.up1(self.up2(self.up3(x4, x3, circular), x2, circular), x1, circular)
        y = upsample2(self.out(y), circular)
        return y[:, 0], y[:, 1]


def build_mono(weights=None, conf: Optional[dict] = None) -> MonoDepthNet:
    """A MonoDepthNet with ``weights`` loaded (configuration from the safetensors metadata when present)."""
    return build_from_file(MonoDepthNet, weights, conf, "the mono depth network")


def load_mono_depth(device="cpu", weights=None) -> MonoDepthNet:
    """The shipped mono depth network (or ``weights``), eval mode, on ``device``. Raises ModelError."""
    from . import resolve_file

    return build_mono(resolve_file(weights or MONO_WEIGHTS)).to(torch.device(device)).eval()


@torch.no_grad()
def predict_depth(net: MonoDepthNet, image: np.ndarray, camera) -> np.ndarray:
    """Relative range of a photo: image uint8 (H, W, 3), camera its `cameras` model (``.kind``).

    A pinhole photo wider than the network's input is letterboxed into it (`letterbox_image`), as the
    matcher's input is, and the prediction of the padding dropped.
    Returns float32 (H, W) relative range (arbitrary global scale, kind ``MONO_DEPTH_KIND``), NaN where the
    network sees sky.
    """
    H, W = image.shape[:2]
    size = net.input_sizes.get(camera.kind)
    if size is None:
        raise ModelError(f"the mono depth network has no input size for camera kind {camera.kind!r}")
    device = next(net.parameters()).device
    if camera.kind == "pinhole":
        fitted, top, rows = letterbox_image(image, size)
    else:
        fitted, top, rows = resize_image(image, size), 0, size[0]
    log_range, sky_logit = net(to_input(fitted).to(device), circular=camera.kind == "pano")
    out = torch.stack([log_range, sky_logit], 1)[..., top:top + rows, :]  # the net answers at its input size
    out = F.interpolate(out, size=(H, W), mode="bilinear", align_corners=False)[0]
    depth = torch.exp(out[0])
    sky = torch.sigmoid(out[1]) > net.conf["sky_threshold"]
    depth = torch.where(sky, torch.full_like(depth, float("nan")), depth)
    return depth.cpu().numpy().astype(np.float32)


def save_mono(net: MonoDepthNet, path, info: Optional[dict] = None) -> None:
    """Write the network's weights and configuration (and ``info``, the training summary, under the metadata
    key ``training``) to a safetensors file."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    metadata = {"conf": json.dumps(net.conf), "arch": "mono_depth"}
    if info is not None:
        metadata["training"] = json.dumps(info)
    save_file(state, str(path), metadata=metadata)
