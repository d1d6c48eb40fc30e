"""The official Loc² matchers (vita-epfl/Loc2 checkpoints) on a frozen DINOv2 ViT-L/14: loc2-vigor, loc2-kitti.

The trainable part (`OfficialHeads`) has exactly the official ``CrossViewMatcher`` state dict (docs/method.md §8):
``dustbin_score`` (0-d) and two `heads.ProjectionHead`s ``grd_projector`` (with the sine positional encoding)
/ ``sat_projector``, 163 tensors, loaded with ``strict=True`` from a ``torch.load(weights_only=True)`` file.

Conventions reproduced (docs/method.md §1-§3): un-normalised [0, 1] inputs at the official sizes; the aerial
45×45 (VIGOR) / 36×36 (KITTI) DINOv2 tokens resized bilinearly (align_corners=False) to 41×41 cells before
the head; τ = 0.1, single-scalar dustbin and dual softmax (`matching.dual_softmax`); ground token depth
sampled at the top-left pixel (14r, 14c) of each patch; the official token angles / intrinsics grids.

Frames. The official code works in an aerial frame with axis 1 = image-down (south) and axis 2 = image-right
(east), origin at the tile centre, and fits ``a_off = s R_off g_off + t_off``. The project's local frame is
(x east, y north) and its camera BEV frame (x right, y forward). Both conversions are the same linear map

    M (down, right) -> (right, -down) = (x east, y north),   M = [[0, 1], [-1, 0]]  (a rotation by -90°)

because with R_off = I the official ground points already have forward along -down (VIGOR: panorama
centre column -> north; KITTI: point (-d, ...)) and right along +right. Hence
``xy_local = s (M R_off Mᵀ) xy_bev + M t_off`` and, 2-D rotations commuting, M R_off Mᵀ = R_off: the project
rotation equals the official one, heading (clockwise from north) = -yaw_off, t_local = (t_right, -t_down).
`official_cells_local` and `ground_tokens` apply M to the official aerial grid and lifted points, so the
project's solver directly returns the project's pose (tests/test_official.py checks it against a pose
expressed in the official frames).

Orientation: the pipeline feeds north-up aerial windows and photos as taken. That is the input distribution of
the unknown-orientation checkpoints (VIGOR unknown_ori: panoramas rolled at random; KITTI ori_noise180: aerial
rotated at random), which are therefore the defaults. VIGOR known_ori saw only panoramas with north at the
centre column: ``build_vigor(orientation="known")`` (registry name loc2-vigor-known) sets
``matcher.orientation = "known"``, and the pipeline then rolls the panorama and its depth by the heading prior
(`loc2_engine.orientation`). KITTI ori_noise10 saw aerial tiles turned so that the car heads east (±10°):
``build_kitti(orientation="known")`` (loc2-kitti-known) sets the same attribute, and the pipeline turns the
aerial window by the heading prior instead, and the model's cells back.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CameraError, DepthError, ModelError
from .base import AerialFeatures, GroundFeatures, Matcher, load_state_file
from .cpu import native_bf16
from .dinov2 import DINOV2_SOURCE, Dinov2Backbone, load_dinov2
from .heads import ProjectionHead

#: VIGOR metres per pixel of the 640-px tiles, per city (official eval/dataloader constants)
VIGOR_MPP_640 = {"NewYork": 0.113248, "Seattle": 0.100817, "SanFrancisco": 0.118141, "Chicago": 0.111262}
#: KITTI satellite maps: Web-Mercator zoom 18 at lat 49.015 with 2x-oversampled tiles, m/px at 512 px
KITTI_MPP_512 = 156543.03392 * math.cos(math.radians(49.015)) / 2 ** 18 / 2

CHECKPOINT_SOURCE = ("the Google Drive folder linked from the README of https://github.com/vita-epfl/Loc2 "
                     "(see docs/official-models.md)")
EMBED_DIM = 1024          # DINOv2 ViT-L/14 channels, the heads' input
BLOCK_DIMS = (512, 256, 128)
ATT_LAYERS, ATT_HEADS = 3, 8
AERIAL_CELLS = 41         # config [Model] sat_bev_res
TAU = 0.1
PATCH = 14


@dataclass(frozen=True)
class Variant:
    """What differs between the VIGOR and KITTI models (the network does not).

    camera_kind: "pano" | "pinhole"; ground_size (H, W) px of the ground input; aerial_px: aerial input side;
    aerial_gsd: m/px at that size; max_depth_m: the official depth clip (the official code masks tokens at or
    beyond it; exposed for the pipeline); max_depth_kind: the depth it clips, the one the model was trained
    with ("range": UniK3D on VIGOR, "z": Depth Anything V2 on KITTI); weights_names: default file names
    searched in $LOC2_MODELS; checkpoint: what the user should download; orientation: "unknown" (trained
    on any orientation) | "known" (VIGOR: panoramas with north at the centre column only, docs/method.md §1.1;
    KITTI: aerial tiles turned so that the car heads east, ±10°, §1.2).
    """

    name: str
    camera_kind: str
    ground_size: Tuple[int, int]
    aerial_px: int
    aerial_gsd: float
    max_depth_m: float
    max_depth_kind: str
    weights_names: Tuple[str, ...]
    checkpoint: str
    orientation: str = "unknown"


#: checkpoint folder of each orientation's model, per dataset (docs/method.md §8)
CHECKPOINT_FOLDERS = {"vigor": {"unknown": "unknown_ori", "known": "known_ori"},
                      "kitti": {"unknown": "ori_noise180", "known": "ori_noise10"}}


def _named(dataset: str, orientation: str) -> Tuple[str, str]:
    """(registry name, checkpoint folder) of ``dataset``'s model for ``orientation``; ModelError for others."""
    folders = CHECKPOINT_FOLDERS[dataset]
    if orientation not in folders:
        raise ModelError(f"The {dataset.upper()} orientation must be 'unknown' or 'known', got {orientation!r}.")
    return f"loc2-{dataset}" + ("-known" if orientation == "known" else ""), folders[orientation]


def vigor_variant(city: str = "NewYork", orientation: str = "unknown") -> Variant:
    """loc2-vigor at the official m/px of ``city`` (one of VIGOR_MPP_640), rescaled from 640 to 630 px;
    orientation "known": loc2-vigor-known, for the known_ori checkpoints."""
    if city not in VIGOR_MPP_640:
        raise ModelError(f"Unknown VIGOR city {city!r} for the aerial resolution: use one of {sorted(VIGOR_MPP_640)}.")
    name, folder = _named("vigor", orientation)
    return Variant(name, "pano", (714, 1428), 630, VIGOR_MPP_640[city] * 640 / 630, 35.0, "range",
                   (f"{name}.pt", f"checkpoints/vigor/crossarea/{folder}/model.pt"),
                   f"a VIGOR {orientation}-orientation checkpoint checkpoints/vigor/{{samearea,crossarea}}/{folder}/"
                   "model.pt", orientation)


def kitti_variant(orientation: str = "unknown") -> Variant:
    """loc2-kitti (ori_noise180 checkpoints); orientation "known": loc2-kitti-known, for ori_noise10."""
    name, folder = _named("kitti", orientation)
    return Variant(name, "pinhole", (364, 1232), 504, KITTI_MPP_512 * 512 / 504, 40.0, "z",
                   (f"{name}.pt", f"checkpoints/kitti/{folder}/model.pt"),
                   f"a KITTI {folder} checkpoint checkpoints/kitti/{folder}/model.pt", orientation)


KITTI = kitti_variant()
BACKBONE_NAMES = ("dinov2_vitl14_pretrain.pth", "dinov2-large")


class OfficialHeads(nn.Module):
    """The official ``CrossViewMatcher`` minus its backbone: the 163-tensor state dict of the checkpoints.

    grd_projector / sat_projector: (B, embed_dim, h, w) -> (B, 128, h, w) L2-normalised (zero padding, as
    trained); dustbin_score: 0-d, the matching dustbin.
    """

    def __init__(self, embed_dim: int = EMBED_DIM):
        super().__init__()
        self.dustbin_score = nn.Parameter(torch.tensor(1.0))
        self.grd_projector = ProjectionHead(embed_dim, BLOCK_DIMS, ATT_LAYERS, ATT_HEADS, positional_encoding=True)
        self.sat_projector = ProjectionHead(embed_dim, BLOCK_DIMS, ATT_LAYERS, ATT_HEADS, positional_encoding=False)


def load_official_checkpoint(heads: OfficialHeads, path: str, variant: Variant) -> None:
    """Load a released ``model.pt`` into ``heads`` strictly; ModelError names what is wrong and the source."""
    state, _ = load_state_file(path)
    try:
        heads.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # torch lists every missing / unexpected key and shape mismatch
        raise ModelError(f"{path} is not an official Loc² matcher checkpoint ({exc}). Expected "
                         f"{variant.checkpoint} from {CHECKPOINT_SOURCE}.") from exc


def _in_models_dir(names: Sequence[str]) -> Optional[str]:
    """The first of ``names`` (files or folders) that exists under $LOC2_MODELS, else None."""
    root = os.environ.get("LOC2_MODELS")
    for name in names if root else ():
        path = os.path.join(root, name)
        if os.path.exists(path):
            return path
    return None


def official_cells_local(n: int, size_m: float) -> torch.Tensor:
    """(n*n, 2) xy_local (x east, y north, metres) of the official aerial cells, row-major.

    Official: cell (i, j) sits at (down, right) = (-L/2 + i·L/(n-1), -L/2 + j·L/(n-1)), an edge-to-edge
    linspace (not cell centres, although the bilinear resize samples centres: the checkpoints were trained
    so). Mapped by M: x = right, y = -down.
    """
    axis = torch.linspace(-size_m / 2, size_m / 2, n)
    down, right = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([right.flatten(), -down.flatten()], -1)


def _nearest_index(dst: torch.Tensor, size_in: int, size_out: int) -> torch.Tensor:
    """Source index of torch's ``interpolate(mode='nearest')`` from size_in to size_out: floor(dst·in/out) in
    float32, as its kernel computes it (the official loader resizes depth this way)."""
    if size_in == size_out:
        return dst.long()
    scale = torch.tensor(size_in / size_out, dtype=torch.float32)
    return torch.clamp(torch.floor(dst.to(torch.float32) * scale).long(), max=size_in - 1)


class OfficialMatcher(Matcher):
    """An official Loc² model: DINOv2 backbone + `OfficialHeads`, behind the project's Matcher interface.

    Ground: (B, 3, H, W) at ``variant.ground_size`` -> descriptors (B, 128, H/14, W/14). Aerial:
    (B, 3, P, P), P = ``variant.aerial_px`` at ``variant.aerial_gsd`` m/px -> (B, 128, 41, 41) with
    `official_cells_local` coordinates (the pipeline caches them per aerial window).
    """

    #: real photos need real depth; the project's `mono` network is trained on synthetic towns
    default_depth = "depth-anything"
    #: no along-ray refit (``PoseConfig.ray_depth_rel``): the reference ends with the plain Procrustes
    #: (docs/method.md §4.2)
    ray_depth_rel = 0.0
    #: photos are stretched to the input, as the reference's loaders do
    letterbox = False

    def __init__(self, variant: Variant, backbone: Dinov2Backbone, heads: Optional[OfficialHeads] = None):
        super().__init__()
        self.variant = variant
        self.ground_input_sizes = {variant.camera_kind: variant.ground_size}
        self.token_stride = PATCH
        self.aerial_gsd = variant.aerial_gsd
        self.aerial_size_px = variant.aerial_px
        self.tau = TAU
        self.max_depth_m, self.max_depth_kind = variant.max_depth_m, variant.max_depth_kind
        # "known": the pipeline turns the inputs by the heading prior (`orientation.canonical_view`)
        self.orientation = variant.orientation
        self.backbone = backbone
        self.heads = heads if heads is not None else OfficialHeads(backbone.channels)

    @property
    def dustbin(self) -> torch.Tensor:
        return self.heads.dustbin_score

    def encode_aerial(self, aerial: torch.Tensor) -> AerialFeatures:
        """aerial (B, 3, P, P) RGB [0, 1] -> AerialFeatures desc (B, 128, 41, 41), xy_local (1681, 2) m."""
        P = self.aerial_size_px
        if aerial.ndim != 4 or tuple(aerial.shape[1:]) != (3, P, P):
            raise ValueError(f"aerial input must be (B, 3, {P}, {P}), got {tuple(aerial.shape)}")
        tokens = self.backbone(aerial)                                          # (B, 1024, P/14, P/14)
        cells = F.interpolate(tokens, (AERIAL_CELLS, AERIAL_CELLS), mode="bilinear", align_corners=False)
        desc = self.heads.sat_projector(cells)                                  # (B, 128, 41, 41)
        return AerialFeatures(desc, official_cells_local(AERIAL_CELLS, self.aerial_size_m).to(desc.device))

    def encode_ground(self, ground: torch.Tensor, kind: Optional[str] = None) -> GroundFeatures:
        """ground (B, 3, H, W) RGB [0, 1] at the variant's size -> GroundFeatures desc (B, 128, H/14, W/14),
        uv (Ng, 2) = the top-left pixel (14c, 14r) of each patch in input pixels (where depth is sampled)."""
        self._kind_of(ground, kind)
        desc = self.heads.grd_projector(self.backbone(ground))
        hg, wg = desc.shape[-2:]
        r, c = torch.meshgrid(torch.arange(hg), torch.arange(wg), indexing="ij")
        uv = torch.stack([c.flatten(), r.flatten()], -1).to(torch.float32) * PATCH
        return GroundFeatures(desc, uv.to(desc.device), tuple(ground.shape[-2:]))

    def ground_tokens(self, camera, depth_kind: str = "range",
                      rows: Optional[Tuple[int, int]] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """uv_px (Ng, 2) camera pixels (centres at integers) where each token reads depth, and lift_coef (Ng, 2)
        with xy_bev = depth * lift_coef in the project's BEV frame (x right, y forward). rows: as
        `Matcher.ground_tokens`; only a photo that fills the input (no letterbox) is accepted.

        Depth is read where the official loader reads it: the photo-size map is resized to the ground input
        size by nearest neighbour, then to the token grid by nearest neighbour, i.e. input pixel (14r, 14c).
        """
        if camera.kind != self.variant.camera_kind:
            want = "a 360° panorama" if self.variant.camera_kind == "pano" else "a pinhole (normal) photo"
            other = "loc2-kitti" if self.variant.camera_kind == "pano" else "loc2-vigor"
            raise CameraError(f"{self.variant.name} was trained on {want}; this photo is a {camera.kind} "
                              f"camera. Use {other} or the default model.")
        H, W = self.variant.ground_size
        if rows is not None and tuple(rows) != (0, H):
            raise ValueError(f"{self.variant.name} reads depth of photos stretched to its input, not letterboxed "
                             f"(rows {tuple(rows)} of {H})")
        hg, wg = H // PATCH, W // PATCH
        r, c = torch.meshgrid(torch.arange(hg), torch.arange(wg), indexing="ij")
        r, c = r.flatten(), c.flatten()
        uv_px = torch.stack([_nearest_index(c * PATCH, camera.width, W),
                             _nearest_index(r * PATCH, camera.height, H)], -1).to(torch.float32)
        if self.variant.camera_kind == "pano":
            return uv_px, self._pano_coef(r, c, hg, wg, depth_kind)
        return uv_px, self._pinhole_coef(camera, uv_px, c, hg, wg, depth_kind)

    @staticmethod
    def _pano_coef(r, c, hg, wg, depth_kind) -> torch.Tensor:
        """VIGOR: θ_r = linspace(0, π, hg), φ_c = linspace(0, 2π, wg); official point (d sinθ cosφ,
        -d sinθ sinφ) in (down, right) -> M -> (x right, y forward) = d·(-sinθ sinφ, -sinθ cosφ)."""
        if depth_kind != "range":
            raise DepthError("The official VIGOR model lifts panoramas with range (distance along the ray); "
                             "this depth provider gives z-depth. Use a provider that gives range.")
        theta = torch.linspace(0, math.pi, hg)[r]
        phi = torch.linspace(0, 2 * math.pi, wg)[c]
        return torch.stack([-torch.sin(theta) * torch.sin(phi), -torch.sin(theta) * torch.cos(phi)], -1)

    def _pinhole_coef(self, camera, uv_px, c, hg, wg, depth_kind) -> torch.Tensor:
        """KITTI: intrinsics scaled to the input size then divided by 14 (token grid), u_c = linspace(0, wg, wg);
        official point (-z, (u_c - c_x) z / f_x) in (down, right) -> M -> z·((u_c - c_x)/f_x, 1) for z-depth.

        uv_px (Ng, 2): the camera pixels the tokens read depth at. Range depth is turned into the z-depth the
        official model was given with the ray of that very pixel, z = range · ray_forward(uv_px), so points and
        the 40 m z clip equal the official ones for the same scene. (The u_c grid only enters x: it is the
        official lifting formula, not where the depth was measured.)"""
        H, W = self.variant.ground_size
        fx, cx = camera.fx * W / camera.width / PATCH, camera.cx * W / camera.width / PATCH
        x = (torch.linspace(0, wg, wg)[c] - cx) / fx
        coef = torch.stack([x, torch.ones_like(x)], -1)
        if depth_kind == "z":
            return coef
        if depth_kind != "range":
            raise ValueError(f"depth kind must be 'range' or 'z', got {depth_kind!r}")
        # float64: z = range / |ray| exactly to float32 rounding of the product, the clip at 40 m included
        z_per_range = camera.pixel_to_ray(uv_px.double())[:, 1]                 # (Ng,) unit ray's forward part
        return (coef.double() * z_per_range[:, None]).to(coef.dtype)


def _build(variant: Variant, weights: Optional[str], backbone: Optional[str], dtype) -> OfficialMatcher:
    """Resolve the two files (argument, then $LOC2_MODELS default names), load both, or raise one ModelError
    listing every missing file with where it comes from and where to put it."""
    weights = weights or _in_models_dir(variant.weights_names)
    backbone = backbone or _in_models_dir(BACKBONE_NAMES)
    missing = []
    if weights is None or not os.path.isfile(weights):
        missing.append(f"the matcher checkpoint{f' {weights!r}' if weights else ''}: {variant.checkpoint} from "
                       f"{CHECKPOINT_SOURCE}; pass --weights FILE or save it as $LOC2_MODELS/"
                       f"{variant.weights_names[0]}")
    if backbone is None or not os.path.exists(backbone):
        missing.append(f"the DINOv2 ViT-L/14 backbone{f' {backbone!r}' if backbone else ''}: {DINOV2_SOURCE}; "
                       f"pass --backbone FILE|DIR or save it as $LOC2_MODELS/{BACKBONE_NAMES[0]} (or the folder "
                       f"$LOC2_MODELS/{BACKBONE_NAMES[1]})")
    if missing:
        raise ModelError(f"{variant.name} needs files that are not here: " + "; ".join(missing) + ".")
    dtype = dtype or os.environ.get("LOC2_BACKBONE_DTYPE") or None
    if isinstance(dtype, str):
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype)
        if dtype is None:
            raise ModelError("The backbone dtype (LOC2_BACKBONE_DTYPE) must be float32, bfloat16 or float16.")
    if dtype == torch.bfloat16 and not native_bf16():
        warnings.warn("The official model's backbone runs in bfloat16 (LOC2_BACKBONE_DTYPE), but this CPU has no "
                      "native bfloat16 instructions (AVX512-BF16 or AMX): on a CPU it is then several times slower "
                      "than float32, the default; see docs/official-models.md.", RuntimeWarning, stacklevel=2)
    model = OfficialMatcher(variant, load_dinov2(backbone, dtype))
    load_official_checkpoint(model.heads, weights, variant)
    return model.eval()


def build_vigor(weights: Optional[str] = None, backbone: Optional[str] = None, dtype=None,
                city: str = "NewYork", orientation: str = "unknown") -> OfficialMatcher:
    """loc2-vigor (panoramas). weights: a released VIGOR ``model.pt``; backbone: DINOv2 ViT-L/14 (Meta .pth or
    transformers folder); dtype: backbone compute dtype, "float32" | "bfloat16" | "float16" (None: the
    environment variable LOC2_BACKBONE_DTYPE, else float16 on CUDA and float32, the exact reference, on a
    CPU; bfloat16 is an approximate choice that pays only on CPUs with native bfloat16 instructions, and
    asking for it elsewhere warns, see `cpu`); city: whose official aerial m/px to use (the model saw 0.102-0.120 m/px); orientation:
    "unknown" (unknown_ori checkpoints) | "known" (known_ori; the pipeline then needs a heading prior)."""
    return _build(vigor_variant(city, orientation), weights, backbone, dtype)


def build_kitti(weights: Optional[str] = None, backbone: Optional[str] = None, dtype=None,
                orientation: str = "unknown") -> OfficialMatcher:
    """loc2-kitti (pinhole front cameras); arguments as `build_vigor`; orientation: "unknown" (ori_noise180
    checkpoints) | "known" (ori_noise10; the pipeline then needs a heading prior and turns the aerial window)."""
    return _build(kitti_variant(orientation), weights, backbone, dtype)
