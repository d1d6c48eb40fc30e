"""Matching ground tokens to aerial cells (docs/method.md §2.2): similarity / τ, dustbin, dual softmax, sampling.

Shapes: B batch, C descriptor channels, Na aerial cells, Ng ground tokens.

* ``similarity``: S = <f_a, f_g> / τ of L2-normalised descriptors, (B, Na, Ng).
* ``dual_softmax``: S is bordered by one extra row and column holding a single learned scalar (the
  dustbin), invalid ground tokens get -inf, and P = softmax over the aerial axis ⊙ softmax over the
  ground axis (element-wise product, no Sinkhorn). The dustbin row/column is dropped from P.
* ``sample_correspondences``: n (aerial, ground) pairs drawn without replacement with probability ∝ P,
  weighted by P. Uses the Gumbel-top-k trick — argtopk(log P + Gumbel noise) is an exact draw without
  replacement (Plackett–Luce) — so one pass over the Na·Ng entries, no multinomial over millions of bins.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch


def similarity(desc_a: torch.Tensor, desc_g: torch.Tensor, tau: float) -> torch.Tensor:
    """Scaled cosine similarity.

    desc_a (B, C, Na) and desc_g (B, C, Ng), both L2-normalised over C; tau > 0 (temperature).
    Returns S (B, Na, Ng) = desc_aᵀ desc_g / tau.
    """
    if desc_a.ndim != 3 or desc_g.ndim != 3 or desc_a.shape[:2] != desc_g.shape[:2]:
        raise ValueError(f"descriptors must be (B, C, Na) and (B, C, Ng); got {tuple(desc_a.shape)} "
                         f"and {tuple(desc_g.shape)}")
    return torch.einsum("bca,bcg->bag", desc_a, desc_g) / tau


def dual_softmax(scores: torch.Tensor, dustbin: torch.Tensor,
                 ground_valid: Optional[torch.Tensor] = None,
                 aerial_valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Matching probabilities with a dustbin.

    scores (B, Na, Ng) similarity / τ; dustbin: 0-d learnable scalar (fills the extra row, column and
    corner); ground_valid (B, Ng) bool, aerial_valid (B, Na) bool or None (all valid). Invalid entries get
    -inf before both softmaxes, hence P = 0 there. Returns P (B, Na, Ng), each entry in [0, 1].
    """
    B, Na, Ng = scores.shape
    s = scores
    if ground_valid is not None or aerial_valid is not None:
        ones_g = torch.ones(B, Ng, dtype=torch.bool, device=scores.device)
        ones_a = torch.ones(B, Na, dtype=torch.bool, device=scores.device)
        valid = ((ground_valid if ground_valid is not None else ones_g)[:, None, :]
                 & (aerial_valid if aerial_valid is not None else ones_a)[:, :, None])
        s = s.masked_fill(~valid, float("-inf"))  # one pass over S
    bin_col = dustbin.expand(B, Na, 1).to(s.dtype)
    bin_row = dustbin.expand(B, 1, Ng + 1).to(s.dtype)
    s = torch.cat([torch.cat([s, bin_col], 2), bin_row], 1)  # (B, Na+1, Ng+1)
    # the dustbin keeps every row and column finite, so the softmaxes never see an all -inf slice
    p = torch.softmax(s, dim=1) * torch.softmax(s, dim=2)
    return p[:, :Na, :Ng]


def sample_correspondences(P: torch.Tensor, n: int, generator: Optional[torch.Generator] = None
                           ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw n (aerial, ground) pairs per batch element, without replacement, with probability ∝ P.

    P (B, Na, Ng) >= 0. n is clipped to Na·Ng. Returns idx_a (B, n) long, idx_g (B, n) long, and
    w (B, n) = P at those pairs (differentiable w.r.t. P; the indices are not). Entries with P = 0 are only
    drawn when fewer than n entries are positive, and then carry weight 0.
    """
    if P.ndim != 3:
        raise ValueError(f"P must be (B, Na, Ng), got {tuple(P.shape)}")
    B, Na, Ng = P.shape
    n = min(int(n), Na * Ng)
    flat = P.reshape(B, Na * Ng)
    with torch.no_grad():
        u = torch.rand(flat.shape, generator=generator, dtype=torch.float32, device=P.device)
        u = u.clamp_(torch.finfo(torch.float32).tiny, 1.0 - torch.finfo(torch.float32).eps)
        keys = torch.log(flat.float()) - torch.log(-torch.log(u))  # log P + Gumbel(0, 1); log 0 = -inf
        idx = torch.topk(keys, n, dim=1, sorted=True).indices
    w = torch.gather(flat, 1, idx)
    return idx // Ng, idx % Ng, w

