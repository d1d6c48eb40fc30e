"""Frozen DINOv2 ViT-L/14 backbone of the official Loc² models (docs/method.md §2.1), on transformers' Dinov2Model.

Weights come from a local path only (nothing is downloaded):
    * Meta's ``dinov2_vitl14_pretrain.pth`` (keys ``blocks.N.attn.qkv`` ...), remapped by `meta_to_hf`;
    * a transformers folder of ``facebook/dinov2-large`` (``config.json`` + ``model.safetensors``).

Feature fidelity with the checkpoints' training features:
    * input is un-normalised RGB in [0, 1] (no ImageNet mean/std: the official code feeds raw [0, 1]);
    * output is the last block's LayerNorm-ed patch tokens (no cls, no intermediate layers);
    * the position embeddings are resized with the *old* DINOv2 formula (bicubic, ``scale_factor =
      ((H/14 + 0.1)/37, (W/14 + 0.1)/37)``, no antialias), which transformers replaced by ``size=(H/14, W/14)``:
      the two sample the 37×37 grid at different positions, so `old_interpolate_pos_encoding` is bound to the
      model's embeddings;
    * dtype: float32 or bfloat16 on CPU (float16 GEMMs are ~50× slower there; bfloat16 pays only with native
      bfloat16 instructions, see `cpu`), float16 on GPU (as trained).

Speed: in float32 on a CPU the blocks run through `cpu_layer_forward`, the layer's maths with SDPA attention and
the GEMM library that is faster on the CPU: oneDNN on AVX-512 CPUs (1.35× faster per ViT-L block than
transformers' forward, whose GEMMs go to MKL), MKL on AVX2-only ones (there 1.1× faster than oneDNN); elsewhere
transformers runs.
"""

from __future__ import annotations

import math
import os
import re
import types
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from .base import load_state_file
from .cpu import onednn_gemm_faster

#: where users get the backbone (named in every error about it)
DINOV2_SOURCE = ("Meta's dinov2_vitl14_pretrain.pth from "
                 "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth, or a "
                 "transformers folder of facebook/dinov2-large (see docs/official-models.md)")

#: DINOv2 uses 64-dimensional heads at every size (S 384/6, B 768/12, L 1024/16, g 1536/24)
HEAD_DIM = 64

_META_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")
_HF_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")
#: per-block renames (Meta suffix -> transformers suffix) other than the fused qkv
_BLOCK_RENAMES = {
    "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias",
    "attn.proj.weight": "attention.o_proj.weight", "attn.proj.bias": "attention.o_proj.bias",
    "ls1.gamma": "layer_scale1.lambda1",
    "norm2.weight": "norm2.weight", "norm2.bias": "norm2.bias",
    "mlp.fc1.weight": "mlp.fc1.weight", "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.weight": "mlp.fc2.weight", "mlp.fc2.bias": "mlp.fc2.bias",
    "ls2.gamma": "layer_scale2.lambda1",
}
_TOP_RENAMES = {
    "cls_token": "embeddings.cls_token", "mask_token": "embeddings.mask_token",
    "pos_embed": "embeddings.position_embeddings",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "norm.weight": "layernorm.weight", "norm.bias": "layernorm.bias",
}
_QKV = ("q_proj", "k_proj", "v_proj")


def meta_to_hf(state_meta: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename Meta DINOv2 keys to transformers (5.x) ``Dinov2Model`` keys; the fused qkv (3D, D) is split into
    ``attention.{q,k,v}_proj``. (Hub folders with the 4.x names ``attention.attention.query`` ... are renamed
    by transformers' own ``from_pretrained``.)

    ``mask_token`` (1, D) keeps its shape (transformers stores it as (1, D) too). Raises ModelError on a key that
    belongs to neither format (e.g. a registers model or a chunked-blocks file).
    """
    out: Dict[str, torch.Tensor] = {}
    for key, value in state_meta.items():
        if key in _TOP_RENAMES:
            out[_TOP_RENAMES[key]] = value
            continue
        m = _META_BLOCK.match(key)
        if m is None:
            raise ModelError(f"unexpected key {key!r} in the DINOv2 file: expected Meta's ViT-L/14 without "
                             f"registers ({DINOV2_SOURCE}).")
        n, rest = m.groups()
        prefix = f"encoder.layer.{n}."
        if rest in ("attn.qkv.weight", "attn.qkv.bias"):
            kind = rest.rsplit(".", 1)[1]
            for name, part in zip(_QKV, value.chunk(3, dim=0)):
                out[f"{prefix}attention.{name}.{kind}"] = part.contiguous()
        elif rest in _BLOCK_RENAMES:
            out[prefix + _BLOCK_RENAMES[rest]] = value
        else:
            raise ModelError(f"unexpected key {key!r} in the DINOv2 file ({DINOV2_SOURCE}).")
    return out


def hf_to_meta(state_hf: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Inverse of `meta_to_hf`: transformers ``Dinov2Model`` keys -> Meta keys, q/k/v fused back into qkv."""
    top = {v: k for k, v in _TOP_RENAMES.items()}
    block = {v: k for k, v in _BLOCK_RENAMES.items()}
    out: Dict[str, torch.Tensor] = {}
    qkv: Dict[tuple, Dict[str, torch.Tensor]] = {}
    for key, value in state_hf.items():
        if key in top:
            out[top[key]] = value
            continue
        m = _HF_LAYER.match(key)
        if m is None:
            raise ModelError(f"unexpected key {key!r} in a transformers Dinov2Model state dict.")
        n, rest = m.groups()
        parts = rest.split(".")
        if parts[0] == "attention" and parts[1] in _QKV:
            qkv.setdefault((n, parts[2]), {})[parts[1]] = value
        elif rest in block:
            out[f"blocks.{n}.{block[rest]}"] = value
        else:
            raise ModelError(f"unexpected key {key!r} in a transformers Dinov2Model state dict.")
    for (n, kind), parts in qkv.items():
        out[f"blocks.{n}.attn.qkv.{kind}"] = torch.cat([parts[name] for name in _QKV], dim=0)
    return out


def config_from_meta(state_meta: Dict[str, torch.Tensor]):
    """The transformers ``Dinov2Config`` that a Meta DINOv2 state dict describes (shapes -> sizes)."""
    from transformers import Dinov2Config

    hidden = state_meta["cls_token"].shape[-1]
    patch = state_meta["patch_embed.proj.weight"].shape[-1]
    n_pos = state_meta["pos_embed"].shape[1] - 1
    layers = 1 + max(int(m.group(1)) for m in map(_META_BLOCK.match, state_meta) if m)
    return Dinov2Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=max(1, hidden // HEAD_DIM),
                        intermediate_size=state_meta["blocks.0.mlp.fc1.weight"].shape[0], patch_size=patch,
                        image_size=int(round(math.sqrt(n_pos))) * patch, layerscale_value=1.0,
                        layer_norm_eps=1e-6, hidden_act="gelu", qkv_bias=True)


def old_interpolate_pos_encoding(self, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Position embeddings (1, 1 + h*w, D) for an input of ``height`` × ``width`` pixels, the old DINOv2 way.

    Bound to a transformers ``Dinov2Embeddings`` (``self``); ``embeddings`` (B, 1 + h*w, D) only gives the
    token count and dtype. Bicubic, align_corners=False, ``scale_factor`` = ((h + 0.1)/side, (w + 0.1)/side)
    with h = height // patch, w = width // patch: the kernel then samples the grid at ``(i + 0.5)·side/(h+0.1)
    - 0.5``, not at ``(i + 0.5)·side/h - 0.5`` as transformers' ``size=`` does. Computed in float32.
    """
    n_patch = embeddings.shape[1] - 1
    pos = self.position_embeddings
    n_pos = pos.shape[1] - 1
    if n_patch == n_pos and height == width:
        return pos
    side = int(math.sqrt(n_pos))
    patch = self.patch_size if isinstance(self.patch_size, int) else self.patch_size[0]
    h, w = height // patch, width // patch
    dim = pos.shape[-1]
    grid = pos[:, 1:].float().reshape(1, side, side, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((h + 0.1) / side, (w + 0.1) / side), mode="bicubic",
                         align_corners=False)
    if grid.shape[-2:] != (h, w):  # the +0.1 exists to make the floor land on (h, w); guard it anyway
        raise RuntimeError(f"position grid came out {tuple(grid.shape[-2:])}, expected {(h, w)}")
    grid = grid.permute(0, 2, 3, 1).reshape(1, h * w, dim)
    return torch.cat([pos[:, :1].float(), grid], dim=1).to(embeddings.dtype)


def onednn_linear(x: torch.Tensor, linear: nn.Linear, activation: str = "none") -> torch.Tensor:
    """``linear(x)`` (then exact erf-GELU when activation == "gelu") through oneDNN, for float32 on a CPU.

    Same maths as ``F.linear`` (float rounding only), but PyTorch's float32 CPU ``F.linear`` calls MKL's sgemm,
    which on the project's AVX-512 AMD CPUs runs at about half of oneDNN's speed (measured: scripts/bench_official.py
    block). The weight is used as stored: no packed copy, so no extra memory.
    """
    return torch.ops.mkldnn._linear_pointwise(x, linear.weight, linear.bias, activation, [],
                                              "none" if activation == "gelu" else "")


def module_linear(x: torch.Tensor, linear: nn.Linear, activation: str = "none") -> torch.Tensor:
    """``linear(x)`` (then exact erf-GELU when activation == "gelu") through the module itself: ``F.linear``,
    which PyTorch's float32 CPU build hands to MKL's sgemm."""
    y = linear(x)
    return F.gelu(y) if activation == "gelu" else y


def layer_forward(layer, x: torch.Tensor, linear) -> torch.Tensor:
    """A transformers ``Dinov2Layer`` (MLP feed-forward, eval) on x (B, N, D) float32 CPU, with the given
    linear (`onednn_linear` or `module_linear`, same signature).

    The layer's own maths: x += ls1 · attn(norm1 x); x += ls2 · fc2(gelu(fc1(norm2 x))); attention is SDPA
    (as transformers' "sdpa").
    """
    b, n, d = x.shape
    att = layer.attention
    h = layer.norm1(x)
    q, k, v = (linear(h, proj).view(b, n, -1, att.head_dim).transpose(1, 2)
               for proj in (att.q_proj, att.k_proj, att.v_proj))                # (B, heads, N, head_dim)
    o = F.scaled_dot_product_attention(q, k, v, scale=att.scaling).transpose(1, 2).reshape(b, n, d)
    x = x + linear(o, att.o_proj) * layer.layer_scale1.lambda1
    h = linear(layer.norm2(x), layer.mlp.fc1, "gelu")
    return x + linear(h, layer.mlp.fc2) * layer.layer_scale2.lambda1


def fast_layer_forward(layer, x: torch.Tensor) -> torch.Tensor:
    """`layer_forward` with oneDNN linears (the GELU fused into the fc1 GEMM)."""
    return layer_forward(layer, x, onednn_linear)


def cpu_layer_forward(layer, x: torch.Tensor) -> torch.Tensor:
    """`layer_forward` on x (B, N, D) float32 CPU with the GEMMs that are faster on this CPU
    (`cpu.onednn_gemm_faster`): oneDNN (`fast_layer_forward`) or MKL (the modules' own ``F.linear``)."""
    return layer_forward(layer, x, onednn_linear if onednn_gemm_faster() else module_linear)


class Dinov2Backbone(nn.Module):
    """Frozen DINOv2 feature extractor: image (B, 3, H, W) in [0, 1] -> patch features (B, D, H/14, W/14) float32.

    H and W must be multiples of the patch size (the official input sizes are). ``dtype`` is the compute
    dtype of the ViT: float32 / bfloat16 on CPU, float16 on GPU; None picks float16 on CUDA and float32 on
    CPU at each call, from where the weights are then (the registry moves models after building them).
    The output is always float32.
    """

    def __init__(self, model, dtype: Optional[torch.dtype] = None):
        super().__init__()
        model.embeddings.interpolate_pos_encoding = types.MethodType(old_interpolate_pos_encoding,
                                                                     model.embeddings)
        self.vit = model.eval().requires_grad_(False)
        self.dtype = dtype
        self.patch_size = int(model.config.patch_size)
        self.channels = int(model.config.hidden_size)

    def compute_dtype(self) -> torch.dtype:
        """The dtype the ViT runs in on its current device."""
        if self.dtype is not None:
            return self.dtype
        return torch.float16 if self.vit.layernorm.weight.device.type == "cuda" else torch.float32

    @torch.no_grad()
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        b, _, height, width = image.shape
        p = self.patch_size
        if height % p or width % p:
            raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {p}")
        dtype = self.compute_dtype()
        if self.vit.layernorm.weight.dtype != dtype:
            self.vit.to(dtype)  # once per device move: the whole ViT runs in one dtype, as the official one
        x = image.to(dtype)
        if self._onednn_path(x):
            hidden = self.vit.embeddings(x)
            for layer in self.vit.encoder.layer:
                hidden = cpu_layer_forward(layer, hidden)
            tokens = self.vit.layernorm(hidden)[:, 1:]
        else:
            tokens = self.vit(pixel_values=x).last_hidden_state[:, 1:]  # drop cls; LayerNorm-ed
        return tokens.transpose(1, 2).reshape(b, self.channels, height // p, width // p).float()

    def _onednn_path(self, x: torch.Tensor) -> bool:
        """Whether `cpu_layer_forward` applies to the input x: float32 on a CPU with oneDNN, a plain-MLP ViT
        in eval mode with transformers 5's layer names and float linears (otherwise transformers' own forward
        runs, e.g. for int8 dynamically quantized linears, which have no float weight to hand to oneDNN)."""
        config = self.vit.config
        layer = self.vit.encoder.layer[0]
        return (x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available()
                and not self.vit.training and isinstance(getattr(layer.attention, "q_proj", None), nn.Linear)
                and isinstance(layer.mlp.fc1, nn.Linear)
                and not config.use_swiglu_ffn and config.hidden_act == "gelu" and not config.drop_path_rate)


def load_dinov2(path: Optional[str], dtype: Optional[torch.dtype] = None) -> Dinov2Backbone:
    """Backbone from Meta's ``.pth`` (or a ``.safetensors`` with Meta keys) or a transformers folder; dtype:
    as `Dinov2Backbone`.

    Nothing is downloaded: the folder is read with ``local_files_only=True``. Raises ModelError naming the path,
    where the file comes from and what was wrong.
    """
    from transformers import Dinov2Model

    if path is None:
        raise ModelError(f"no DINOv2 ViT-L/14 backbone given: pass --backbone FILE|DIR or put "
                         f"dinov2_vitl14_pretrain.pth in $LOC2_MODELS. Get {DINOV2_SOURCE}.")
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ModelError(f"DINOv2 folder {path!r} has no config.json: expected a transformers folder of "
                             f"facebook/dinov2-large ({DINOV2_SOURCE}).")
        try:
            model = Dinov2Model.from_pretrained(path, local_files_only=True, attn_implementation="sdpa")
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot load the DINOv2 folder {path!r} ({exc}). Get {DINOV2_SOURCE}.") from exc
    else:
        if not os.path.isfile(path):
            raise ModelError(f"DINOv2 backbone file {path!r} does not exist. Get {DINOV2_SOURCE}.")
        state_meta, _ = load_state_file(path)
        if "cls_token" not in state_meta or "blocks.0.mlp.fc1.weight" not in state_meta:
            raise ModelError(f"DINOv2 backbone file {path!r} does not hold Meta DINOv2 keys (cls_token, "
                             f"blocks.N...). Get {DINOV2_SOURCE}.")
        config = config_from_meta(state_meta)
        config._attn_implementation = "sdpa"
        model = Dinov2Model(config)
        try:
            model.load_state_dict(meta_to_hf(state_meta), strict=True)
        except RuntimeError as exc:  # missing / unexpected keys or shape mismatches, all listed by torch
            raise ModelError(f"DINOv2 backbone file {path!r} does not match a DINOv2 ViT ({exc}). "
                             f"Get {DINOV2_SOURCE}.") from exc
    return Dinov2Backbone(model, dtype)
