"""The pose's last refit, against the whole matching probability matrix instead of the drawn matches.

RANSAC (`ransac`) fits the pose to a few thousand correspondences drawn from P and keeps the hard inliers.
Each ground token's row of P, though, spreads its mass over several nearby aerial cells 2 m apart, and the
draw keeps a noisy handful of them. Here the pose is refitted to all of it: the objective is the expected
number of matches that land near where the pose puts their token,

    S(R, t) = Σ_g Σ_c P[c, g] · exp(-|x_c - (s R b_g + t)|² / 2σ²),

over each token's ``top_k`` most probable cells, with the scale s kept from RANSAC. It is maximised by EM:
the weights P · kernel at the current pose, then the weighted rigid Procrustes of the pairs (s b_g, x_c)
(`solver.procrustes_2d`), which never lowers S; σ shrinks from a few metres (several cells) to below a
cell's spacing, so the pose moves to the mass nearby, not to another place.

A panorama's heading and position are refitted. A pinhole's heading is kept and only its position moves:
its few lifted points are uncertain mostly along their rays (depth), and an isotropic kernel would trade
that error for heading (on 800 bench-style photos, refitting a pinhole's heading too made its heading
error worse by about 1° for no gain in position).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from .solver import SimilarityFit, procrustes_2d

#: kernel widths of the EM rounds, metres: from 1.5 cells of the default model (2 m) down to 3/4 of one
DEFAULT_SIGMAS_M = (3.0, 2.0, 1.5)
#: aerial cells kept per ground token (its most probable ones)
DEFAULT_TOP_K = 32
#: EM steps per kernel width
DEFAULT_ITERATIONS = 5


def dense_refit(P: torch.Tensor, cells_xy: torch.Tensor, bev: torch.Tensor, fit: SimilarityFit, *,
                turn: bool = True, sigmas_m: Sequence[float] = DEFAULT_SIGMAS_M, top_k: int = DEFAULT_TOP_K,
                iterations: int = DEFAULT_ITERATIONS,
                accept: Optional[Callable[[SimilarityFit], bool]] = None) -> SimilarityFit:
    """The pose ``fit`` refitted to the matching probabilities (module docstring).

    P (Na, Ng) matching probabilities of the aerial cells and the ground tokens that have depth; cells_xy
    (Na, 2) cell centres, local metres; bev (Ng, 2) those tokens lifted to the camera BEV, depth units
    (camera at the origin); fit: unbatched SimilarityFit (R (2, 2), t (2,), s ()), the start, whose scale
    is kept. turn: refit the heading too (False: the position alone). accept(fit) -> bool vets each
    iterate (heading prior, search radius): the first it refuses, or a degenerate system, ends the refit
    with the last accepted pose. Returns an unbatched SimilarityFit in the dtypes of ``fit``.
    """
    if P.numel() == 0 or not bool(fit.ok):
        return fit
    k = min(int(top_k), P.shape[0])
    prob, cell = P.double().topk(k, dim=0)                         # (k, Ng)
    target = cells_xy.double()[cell]                                # (k, Ng, 2)
    src = (float(fit.s) * bev.double())[None].expand_as(target)     # (k, Ng, 2)
    keep = torch.isfinite(src).all(-1) & (prob > 0)
    prob = torch.where(keep, prob, torch.zeros_like(prob))
    src = torch.where(keep[..., None], src, torch.zeros_like(src))
    R, t = fit.R.double(), fit.t.double()
    for sigma in sigmas_m:
        for _ in range(iterations):
            d2 = ((target - (src @ R.T + t)) ** 2).sum(-1)
            w = prob * torch.exp(-d2 / (2.0 * sigma * sigma))
            if float(w.sum()) <= 0.0:
                return _as(fit, R, t)
            if turn:
                step = procrustes_2d(src.reshape(1, -1, 2), target.reshape(1, -1, 2), w.reshape(1, -1),
                                     with_scale=False)
                if not bool(step.ok[0]):
                    return _as(fit, R, t)
                R_new, t_new = step.R[0], step.t[0]
            else:
                w_hat = (w / w.sum())[..., None]
                R_new, t_new = R, (w_hat * (target - src @ R.T)).sum((0, 1))
            candidate = _as(fit, R_new, t_new)
            if accept is not None and not accept(candidate):
                return _as(fit, R, t)
            R, t = R_new, t_new
    return _as(fit, R, t)


def _as(fit: SimilarityFit, R: torch.Tensor, t: torch.Tensor) -> SimilarityFit:
    """``fit`` with rotation R and translation t (its scale, in its dtypes)."""
    return SimilarityFit(R.to(fit.R.dtype), t.to(fit.t.dtype), fit.s, fit.ok, fit.reason)
