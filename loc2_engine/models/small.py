"""The default matcher: small CNN backbones trained from scratch, then the Loc² projection heads.

No pretrained weights install offline under a permissive licence at a size that trains on 2 CPU cores, so
both branches are small convolutional networks learned end to end with the heads (docs/method.md §2 with the
frozen DINOv2 replaced by a trainable CNN).

Ground branch: photo (B, 3, H, W) -> stride-8 tokens (pano 128×256 -> 16×32; pinhole 144×192 -> 18×24),
with a stride-16 context stage added back (FPN-style). Panoramas are padded circularly along their width
everywhere, so the left and right edges are neighbours and a roll of the panorama rolls its tokens.
Aerial branch: window (B, 3, 224, 224) at 0.5 m/px (112 m) -> stride-4 cells (56×56, 2 m apart) from a
top-down merge of the stride 4, 8 and 16 stages (receptive field of tens of metres).
Heads (`heads.ProjectionHead`): residual block -> linear attention -> final block -> L2 norm, d = 64;
positional encoding on the ground side only.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from .base import (AerialFeatures, GroundFeatures, Matcher, build_from_file, cell_centres_local, grid_centres_uv,
                   merge_conf)
from .heads import BasicBlock, ProjectionHead, pad

#: every knob of the architecture and its inputs, with its default; stored in the weight file's metadata
DEFAULT_CONF = {
    "desc_dim": 64,
    "ground_channels": [24, 48, 96, 128],   # stride 2, 4, 8, 16
    "aerial_channels": [24, 48, 96, 128],   # stride 2, 4, 8, 16
    "fpn_dim": 64,
    "att_layers": 2,
    "att_heads": 4,
    "tau": 0.1,
    "dustbin_init": 1.0,
    "aerial_gsd": 0.5,
    "aerial_size_px": 224,
    "aerial_stride": 4,
    "token_stride": 8,
    "pano_size": [128, 256],
    "pinhole_size": [144, 192],
}


#: the largest aerial window side, px (the default is 224): beyond it a configuration is a mistake, and its
#: activations would not fit in memory
MAX_AERIAL_PX = 2048
#: the most ground tokens along a side: the ground head's positional encoding covers 256 × 256
MAX_GROUND_TOKENS = 256


def check_conf(c: dict) -> None:
    """Raise ModelError naming the first value of a full configuration (`DEFAULT_CONF`'s keys) that the
    network cannot be built or run with; called before anything is built."""
    for key in ("desc_dim", "fpn_dim", "att_heads"):
        whole(c, key)
    whole(c, "att_layers", least=0)
    whole_list(c, "ground_channels", 4)
    whole_list(c, "aerial_channels", 4)
    require(c, "desc_dim", c["desc_dim"] % 4 == 0, "a multiple of 4 (the positional encoding cycles 4 channels)")
    require(c, "att_heads", c["desc_dim"] % c["att_heads"] == 0, f"a divisor of desc_dim ({c['desc_dim']})")
    for key in ("tau", "aerial_gsd"):
        require(c, key, _number(c[key]) and c[key] > 0, "a positive number")
    require(c, "dustbin_init", _number(c["dustbin_init"]), "a finite number")
    for key in ("aerial_stride", "token_stride"):
        require(c, key, c[key] in (4, 8) and not isinstance(c[key], bool), "4 or 8")
    whole(c, "aerial_size_px", multiple_of=16, most=MAX_AERIAL_PX)  # four stride-2 stages
    for key in ("pano_size", "pinhole_size"):
        whole_list(c, key, 2, multiple_of=16, most=MAX_GROUND_TOKENS * c["token_stride"])


def require(c: dict, key: str, ok: bool, must: str) -> None:
    """ModelError saying that configuration value ``key`` must be ``must`` unless ``ok``."""
    if not ok:
        raise ModelError(f"the configuration value {key} = {c[key]!r} is not usable: it must be {must}.")


def whole(c: dict, key: str, least: int = 1, multiple_of: int = 1, most: Optional[int] = None) -> None:
    """Configuration value ``key`` must be a whole number in [least, most], a multiple of ``multiple_of``."""
    require(c, key, _whole_ok(c[key], least, multiple_of, most), _whole_rule(least, multiple_of, most))


def whole_list(c: dict, key: str, length: int, multiple_of: int = 1, most: Optional[int] = None) -> None:
    """Configuration value ``key`` must be ``length`` whole numbers of at least 1, as `whole`."""
    value = c[key]
    ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == length and all(
        _whole_ok(v, 1, multiple_of, most) for v in value)
    require(c, key, ok, f"a list of {length} numbers, each {_whole_rule(1, multiple_of, most)}")


def _whole_ok(value, least: int, multiple_of: int, most: Optional[int]) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool) and value >= least
            and value % multiple_of == 0 and (most is None or value <= most))


def _whole_rule(least: int, multiple_of: int, most: Optional[int]) -> str:
    rule = f"a whole number of at least {least}" + (f" and at most {most}" if most is not None else "")
    return rule + (f", a multiple of {multiple_of}" if multiple_of > 1 else "")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class DownConv(nn.Module):
    """3×3 stride-2 conv (no bias) -> BN -> ReLU: (B, c_in, H, W) -> (B, c_out, H/2, W/2)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, circular: bool = False) -> torch.Tensor:
        return F.relu(self.bn(self.conv(pad(x, 1, circular))))


class Stage(nn.Module):
    """DownConv then one BasicBlock."""

    def __init__(self, c_in: int, c_out: int, blocks: int = 1):
        super().__init__()
        self.down = DownConv(c_in, c_out)
        self.blocks = nn.ModuleList([BasicBlock(c_out, c_out) for _ in range(blocks)])

    def forward(self, x: torch.Tensor, circular: bool = False) -> torch.Tensor:
        x = self.down(x, circular)
        for b in self.blocks:
            x = b(x, circular)
        return x


class PyramidEncoder(nn.Module):
    """Four stride-2 stages (strides 2, 4, 8, 16) merged top-down into ``out_stride`` (4 or 8).

    (B, 3, H, W) in [0, 1] -> (B, fpn_dim, H/out_stride, W/out_stride). H, W divisible by 16.
    """

    def __init__(self, channels, fpn_dim: int, out_stride: int):
        super().__init__()
        c1, c2, c3, c4 = channels
        self.stem = DownConv(3, c1)
        self.stage2 = Stage(c1, c2)
        self.stage3 = Stage(c2, c3)
        self.stage4 = Stage(c3, c4)
        self.levels = {4: 2, 8: 3}[out_stride]  # first pyramid level merged: stage 2 (stride 4) or 3 (8)
        chans = {2: c2, 3: c3, 4: c4}
        self.lateral = nn.ModuleList([nn.Conv2d(chans[k], fpn_dim, 1, bias=False) for k in range(self.levels, 5)])
        # ImageNet-like normalisation is not needed for from-scratch training; centring helps the first BN
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor, circular: bool = False) -> torch.Tensor:
        x = self.stem(x - self.mean, circular)
        feats = {2: self.stage2(x, circular)}
        feats[3] = self.stage3(feats[2], circular)
        feats[4] = self.stage4(feats[3], circular)
        levels = list(range(self.levels, 5))
        y = self.lateral[-1](feats[4])
        for i in range(len(levels) - 2, -1, -1):
            y = upsample2(y, circular) + self.lateral[i](feats[levels[i]])
        return y


def upsample2(x: torch.Tensor, circular: bool) -> torch.Tensor:
    """Bilinear ×2 upsampling of (B, C, h, w); with ``circular`` the columns wrap around (panoramas), so the
    result does not depend on where the panorama was cut."""
    if not circular:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    x = F.pad(x, (1, 1, 0, 0), mode="circular")
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)[..., 2:-2]


class SmallMatcher(Matcher):
    """Default Loc² matcher (see module docstring); ``conf`` overrides `DEFAULT_CONF` entries."""

    mirror_tta = True  # the mirror ensemble (`config.MatchingConfig`) helps its panoramas

    def __init__(self, conf: Optional[dict] = None):
        super().__init__()
        self.conf = merge_conf(DEFAULT_CONF, conf, "the default model")
        check_conf(self.conf)
        c = self.conf
        self.ground_input_sizes = {"pano": tuple(c["pano_size"]), "pinhole": tuple(c["pinhole_size"])}
        self.token_stride = int(c["token_stride"])
        self.aerial_gsd = float(c["aerial_gsd"])
        self.aerial_size_px = int(c["aerial_size_px"])
        self.aerial_stride = int(c["aerial_stride"])
        self.tau = float(c["tau"])
        d = c["desc_dim"]
        self.ground_encoder = PyramidEncoder(c["ground_channels"], c["fpn_dim"], self.token_stride)
        self.aerial_encoder = PyramidEncoder(c["aerial_channels"], c["fpn_dim"], self.aerial_stride)
        self.grd_projector = ProjectionHead(c["fpn_dim"], [d], c["att_layers"], c["att_heads"], True)
        self.sat_projector = ProjectionHead(c["fpn_dim"], [d], c["att_layers"], c["att_heads"], False)
        self.dustbin = nn.Parameter(torch.tensor(float(c["dustbin_init"])))
        n = self.aerial_size_px // self.aerial_stride
        self.register_buffer("cell_xy_local", cell_centres_local(n, n, self.aerial_stride, self.aerial_gsd),
                             persistent=False)

    def encode_aerial(self, aerial: torch.Tensor) -> AerialFeatures:
        """aerial (B, 3, 224, 224) in [0, 1], north-up -> desc (B, d, 56, 56), xy_local (3136, 2) m."""
        size = (self.aerial_size_px, self.aerial_size_px)
        if tuple(aerial.shape[-2:]) != size:
            raise ValueError(f"the aerial window must be {size} px, got {tuple(aerial.shape[-2:])}")
        desc = self.sat_projector(self.aerial_encoder(aerial))
        return AerialFeatures(desc=desc, xy_local=self.cell_xy_local)

    def encode_ground(self, ground: torch.Tensor, kind: Optional[str] = None) -> GroundFeatures:
        """ground (B, 3, H, W) in [0, 1] -> desc (B, d, H/8, W/8), uv (Ng, 2) input px."""
        kind = self._kind_of(ground, kind)
        circular = kind == "pano"
        desc = self.grd_projector(self.ground_encoder(ground, circular), circular)
        hg, wg = desc.shape[-2:]
        return GroundFeatures(desc=desc, uv=grid_centres_uv(hg, wg, self.token_stride).to(ground.device),
                              input_size=tuple(ground.shape[-2:]))


def build(weights=None, conf: Optional[dict] = None, **_files) -> SmallMatcher:
    """Registry factory: a SmallMatcher, with ``weights`` (safetensors or weights-only PyTorch) loaded.

    The architecture configuration stored in a safetensors file's metadata (key ``conf``, JSON) wins over
    ``conf``. Raises ModelError for unreadable or mismatching weights. Other files (backbone) are ignored.
    """
    return build_from_file(SmallMatcher, weights, conf, "the default architecture")
