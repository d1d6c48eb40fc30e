"""Loc² projection head (docs/method.md §2.1), generic in channels and depth, with the official module names.

One head: residual conv blocks (BN) -> LoFTR-style linear self-attention layers -> one residual block
without the final ReLU -> L2 normalisation over channels. The ground head adds a 2-D sinusoidal positional
encoding before the attention; the aerial head does not.

State-dict names follow the official checkpoints so that `models/official.py` can load them as-is:
``resblocks.N.{conv1,bn1,conv2,bn2,shortcut}``, ``att_layer.layers.N.{q_proj,k_proj,v_proj,merge,
mlp.0,mlp.2,norm1,norm2}``, ``final_block.*``. Convolutions are built with ``padding=0`` and padded
explicitly in ``forward`` (padding is not part of a state dict), so that panoramas can be padded
circularly along their width: the left and right edges of an equirectangular image are neighbours.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def pad(x: torch.Tensor, p: int, circular: bool) -> torch.Tensor:
    """Pad (B, C, H, W) by p pixels on each side: zeros, or wrap-around along W when ``circular``."""
    if p == 0:
        return x
    if circular:
        return F.pad(F.pad(x, (p, p, 0, 0), mode="circular"), (0, 0, p, p))
    return F.pad(x, (p, p, p, p))


class BasicBlock(nn.Module):
    """conv3×3 -> BN -> ReLU -> conv3×3 -> BN, plus shortcut (1×1 conv when channels change), then ReLU.

    (B, c_in, H, W) -> (B, c_out, H, W). Convs have no bias. ``final_relu=False`` gives the official
    ``final_block``.
    """

    def __init__(self, c_in: int, c_out: int, final_relu: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=0, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else None
        self.final_relu = final_relu

    def forward(self, x: torch.Tensor, circular: bool = False) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(pad(x, 1, circular))))
        y = self.bn2(self.conv2(pad(y, 1, circular)))
        y = y + (x if self.shortcut is None else self.shortcut(x))
        return F.relu(y) if self.final_relu else y


class LinearAttentionLayer(nn.Module):
    """LoFTR encoder layer with linear attention (feature map elu(x) + 1), bias-free linears.

    message = norm1(merge(attention(q_proj x, k_proj x, v_proj x)));
    out = x + norm2(mlp([x ‖ message])). x (B, L, d_model) -> (B, L, d_model).
    """

    def __init__(self, d_model: int, nhead: int, eps: float = 1e-6):
        super().__init__()
        if d_model % nhead:
            raise ValueError(f"d_model {d_model} is not divisible by nhead {nhead}")
        self.nhead, self.dim, self.eps = nhead, d_model // nhead, eps
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.merge = nn.Linear(d_model, d_model, bias=False)
        self.mlp = nn.Sequential(nn.Linear(2 * d_model, 2 * d_model, bias=False), nn.ReLU(True),
                                 nn.Linear(2 * d_model, d_model, bias=False))
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        q = F.elu(self.q_proj(x).view(B, L, self.nhead, self.dim)) + 1
        k = F.elu(self.k_proj(x).view(B, L, self.nhead, self.dim)) + 1
        # values scaled by 1/L and the result by L, as LoFTR does, to keep the KV sums in range
        v = self.v_proj(x).view(B, L, self.nhead, self.dim) / L
        kv = torch.einsum("blhd,blhv->bhdv", k, v)
        z = 1.0 / (torch.einsum("blhd,bhd->blh", q, k.sum(1)) + self.eps)
        msg = torch.einsum("blhd,bhdv,blh->blhv", q, kv, z) * L
        msg = self.norm1(self.merge(msg.reshape(B, L, -1)))
        return x + self.norm2(self.mlp(torch.cat([x, msg], -1)))


class SelfAttention(nn.Module):
    """A stack of `LinearAttentionLayer`s under ``layers`` (official name ``att_layer.layers.N``)."""

    def __init__(self, d_model: int, num_layers: int, nhead: int):
        super().__init__()
        self.layers = nn.ModuleList([LinearAttentionLayer(d_model, nhead) for _ in range(num_layers)])
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class PositionEncodingSine(nn.Module):
    """LoFTR's (corrected) 2-D sinusoidal encoding added to (B, d, H, W); d divisible by 4.

    Positions start at 1; channels cycle sin x, cos x, sin y, cos y with
    div_k = exp(-ln(10⁴)·2k/(d/2)), k = 0..d/4-1. A non-persistent buffer: not in the state dict.
    """

    def __init__(self, d_model: int, max_shape=(256, 256)):
        super().__init__()
        if d_model % 4:
            raise ValueError(f"positional encoding needs d_model divisible by 4, got {d_model}")
        pe = torch.zeros(d_model, *max_shape)
        y = torch.ones(max_shape).cumsum(0)[None]
        x = torch.ones(max_shape).cumsum(1)[None]
        div = torch.exp(torch.arange(0, d_model // 2, 2).float() * (-math.log(10000.0) / (d_model // 2)))
        div = div[:, None, None]
        pe[0::4], pe[1::4] = torch.sin(x * div), torch.cos(x * div)
        pe[2::4], pe[3::4] = torch.sin(y * div), torch.cos(y * div)
        self.register_buffer("pe", pe[None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        if H > self.pe.shape[2] or W > self.pe.shape[3]:
            raise ValueError(f"feature map {H}x{W} exceeds the positional encoding's {tuple(self.pe.shape[2:])}")
        return x + self.pe[:, :, :H, :W]


class ProjectionHead(nn.Module):
    """Features (B, c_in, H, W) -> L2-normalised descriptors (B, block_dims[-1], H, W).

    block_dims: output channels of the residual blocks ``resblocks.0..`` (the last one is the descriptor
    dimension d); num_att_layers linear-attention layers with nhead heads over the H·W positions;
    positional_encoding: add the 2-D sine encoding before the attention (ground head only).
    """

    def __init__(self, c_in: int, block_dims: Sequence[int], num_att_layers: int, nhead: int,
                 positional_encoding: bool, max_shape=(256, 256)):
        super().__init__()
        dims = [c_in, *block_dims]
        d = dims[-1]
        self.resblocks = nn.ModuleList([BasicBlock(a, b) for a, b in zip(dims[:-1], dims[1:])])
        self.pos_encoding = PositionEncodingSine(d, max_shape) if positional_encoding else None
        self.att_layer = SelfAttention(d, num_att_layers, nhead)
        self.final_block = BasicBlock(d, d, final_relu=False)

    def forward(self, x: torch.Tensor, circular: bool = False) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, circular)
        if self.pos_encoding is not None:
            x = self.pos_encoding(x)
        B, d, H, W = x.shape
        x = self.att_layer(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(B, d, H, W)
        x = self.final_block(x, circular)
        return F.normalize(x, p=2, dim=1, eps=1e-10)
