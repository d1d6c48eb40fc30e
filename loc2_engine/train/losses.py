"""Training losses (docs/method.md §7): virtual-correspondence pose loss + bidirectional InfoNCE; mono depth loss.

Weak supervision from the pose only, as in Loc²: the truth depth lifts ground tokens to BEV points
(``xy_bev``, metres), and the ground-truth pose ``xy_local = R_gt xy_bev + t_gt`` says which aerial cell each
lifted token lands on. Shapes: B batch, Na aerial cells (h × w grid, spacing ``sp`` metres), Ng ground tokens,
n sampled correspondences.

* VCE: sampled matches (∝ P, weighted by P) -> weighted scale-aware Procrustes (`solver.procrustes_2d`,
  differentiable through the weights) -> mean distance between virtual points placed by the predicted
  and by the true pose, ``|(R_gt p + t_gt) - (R p + t)|`` over a grid of points p around the camera.
  Robustified per sample as c·log(1 + e/c): hopeless early fits (tens of metres) do not dominate.
* InfoNCE, ground -> aerial: every valid token whose true position falls inside the window (within one
  cell of a cell centre) is a query, its nearest cell the positive, all cells the denominator. This uses
  all tokens rather than only the sampled ones (a deviation from the reference) because on 2 CPU cores
  the number of steps, not the number of positives per step, is what is scarce.
* InfoNCE, aerial -> ground: the sampled aerial cells (deduplicated) mapped into the camera frame with the
  true pose; the nearest lifted valid token within one cell spacing is the positive, and the negatives are
  the valid tokens whose lifted point lies more than ``neg_radius_m`` from the positive's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch
import torch.nn.functional as F

from .. import matching
from ..solver import procrustes_2d
from .data import Batch


@dataclass
class LossConf:
    n_matches: int = 1024
    vce_grid_m: float = 10.0       # side of the virtual-point square around the camera (reference: 5 m)
    vce_points: int = 10           # virtual points per side
    vce_soft_m: float = 10.0       # c of the robust c·log(1 + e/c)
    w_vce: float = 1.0
    w_nce: float = 1.0             # β of the reference
    neg_radius_m: float = 1.0
    sky_weight: float = 1.0
    si_lambda: float = 0.85


def virtual_points(side_m: float, n: int) -> torch.Tensor:
    """(n*n, 2) grid over [-side/2, side/2]², camera (BEV) frame, metres."""
    lin = torch.linspace(-side_m / 2, side_m / 2, n)
    y, x = torch.meshgrid(lin, lin, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], -1)


def vce_loss(fit, R_gt: torch.Tensor, t_gt: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Mean virtual-point distance (B,) metres, NaN where the fit failed. pts (V, 2)."""
    gt = pts @ R_gt.transpose(1, 2) + t_gt[:, None]
    pred = pts @ fit.R.transpose(1, 2) + fit.t[:, None]
    return (gt - pred).norm(dim=-1).mean(-1)


def _cell_index(xy_local: torch.Tensor, h: int, w: int, x0: float, y0: float, sp: float):
    """Nearest cell of points (..., 2) on the h × w grid whose cell (0, 0) is at (x0, y0), spacing sp
    (rows go south). Returns (flat index (...) long, inside (...) bool)."""
    finite = torch.isfinite(xy_local).all(-1)
    xy = torch.where(finite[..., None], xy_local, torch.zeros_like(xy_local))
    col = torch.round((xy[..., 0] - x0) / sp)
    row = torch.round((y0 - xy[..., 1]) / sp)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h) & finite
    idx = (row.clamp(0, h - 1) * w + col.clamp(0, w - 1)).long()
    return idx, inside


def nce_ground_to_aerial(S: torch.Tensor, xy_gt_local: torch.Tensor, valid: torch.Tensor, grid,
                         aerial_valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """S (B, Na, Ng) raw similarity/τ; xy_gt_local (B, Ng, 2) tokens placed by the true pose; valid (B, Ng);
    aerial_valid (B, Na): cells without imagery are never positives (they stay in the denominator, where
    they are harmless: one pass less over S). Returns (B,) mean -log softmax_aerial(S)[positive] over the
    kept tokens (NaN when none)."""
    idx, inside = _cell_index(xy_gt_local, *grid)
    keep = valid & inside
    if aerial_valid is not None:
        keep = keep & torch.gather(aerial_valid, 1, idx)
    lse = torch.logsumexp(S, dim=1)                                   # (B, Ng), over the aerial cells
    pos = torch.gather(S, 1, idx[:, None, :])[:, 0] - lse             # (B, Ng)
    pos = torch.where(keep, pos, torch.zeros_like(pos))
    n = keep.sum(1)
    return torch.where(n > 0, -pos.sum(1) / n.clamp_min(1), torch.full_like(pos[:, 0], float("nan")))


def nce_aerial_to_ground(S: torch.Tensor, idx_a: torch.Tensor, cell_xy: torch.Tensor, xy_bev: torch.Tensor,
                         valid: torch.Tensor, R_gt: torch.Tensor, t_gt: torch.Tensor, max_dist: float,
                         neg_radius: float) -> torch.Tensor:
    """Aerial -> ground InfoNCE over the sampled cells idx_a (B, n). cell_xy (Na, 2) local metres,
    xy_bev (B, Ng, 2) lifted tokens (NaN invalid). Returns (B,) (NaN when no positive)."""
    B, _, Ng = S.shape
    pts = torch.where(valid[..., None], xy_bev, torch.full_like(xy_bev, 1e9))   # invalid tokens: far away
    rows_b, rows_a, rows_j = [], [], []
    with torch.no_grad():  # positives and negatives are labels: no gradient, small tensors
        for b in range(B):
            ia = torch.unique(idx_a[b])
            g_star = (cell_xy[ia] - t_gt[b]) @ R_gt[b]                 # R_gtᵀ (a - t), row vectors
            dmin, j_star = torch.cdist(g_star, pts[b]).min(1)
            keep = dmin <= max_dist
            rows_b.append(torch.full((int(keep.sum()),), b, dtype=torch.long, device=S.device))
            rows_a.append(ia[keep]), rows_j.append(j_star[keep])
        bb, ia, js = torch.cat(rows_b), torch.cat(rows_a), torch.cat(rows_j)
        far = (pts[bb] - pts[bb, js][:, None]).norm(dim=-1) > neg_radius          # (K, Ng)
        mask = (far & valid[bb]) | F.one_hot(js, Ng).bool()
    logits = S[bb, ia]                                                # (K, Ng): one gather, one backward
    per_row = torch.logsumexp(logits.masked_fill(~mask, float("-inf")), 1) - logits.gather(1, js[:, None])[:, 0]
    total = torch.zeros(B, dtype=S.dtype, device=S.device).index_add(0, bb, per_row)
    count = torch.bincount(bb, minlength=B)
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("nan")))


def _nanmean(x: torch.Tensor) -> torch.Tensor:
    ok = torch.isfinite(x)
    return x[ok].mean() if ok.any() else x.new_zeros(())


def matcher_losses(model, batch: Batch, conf: LossConf, generator: Optional[torch.Generator] = None
                   ) -> Dict[str, torch.Tensor]:
    """Forward the matcher on a batch and compute its losses.

    Returns total (scalar, differentiable), vce, nce_g2a, nce_a2g (scalars, detached) and, per sample,
    err_m (B,) position error of the weighted fit and err_deg (B,) its heading error (NaN when it failed).
    """
    A = model.encode_aerial(batch.aerial)
    G = model.encode_ground(batch.ground, batch.kind)
    h, w = A.desc.shape[-2:]
    cell_xy = A.xy_local
    sp = float(cell_xy[1, 0] - cell_xy[0, 0])
    grid = (h, w, float(cell_xy[0, 0]), float(cell_xy[0, 1]), sp)
    stride = batch.aerial.shape[-1] // w
    # a cell has imagery when the aerial pixel nearest its centre does
    c = stride // 2
    aerial_valid = batch.aerial_valid[:, c::stride, c::stride].reshape(batch.aerial.shape[0], -1)

    valid = torch.isfinite(batch.token_depth) & (batch.token_depth > 0)
    xy_bev = torch.nan_to_num(batch.token_depth)[..., None] * batch.lift_coef
    xy_bev = torch.where(valid[..., None], xy_bev, torch.full_like(xy_bev, float("nan")))

    S = model.scores(A, G)
    P = matching.dual_softmax(S, model.dustbin, valid, aerial_valid)
    idx_a, idx_g, wts = matching.sample_correspondences(P, conf.n_matches, generator)
    src = torch.gather(torch.nan_to_num(xy_bev), 1, idx_g[..., None].expand(-1, -1, 2))
    dst = cell_xy[idx_a]
    fit = procrustes_2d(src, dst, wts)

    pts = virtual_points(conf.vce_grid_m, conf.vce_points).to(batch.R_gt)
    vce = vce_loss(fit, batch.R_gt, batch.t_gt, pts)
    vce = conf.vce_soft_m * torch.log1p(vce / conf.vce_soft_m)

    xy_gt = xy_bev @ batch.R_gt.transpose(1, 2) + batch.t_gt[:, None]
    g2a = nce_ground_to_aerial(S, xy_gt, valid, grid, aerial_valid)
    a2g = nce_aerial_to_ground(S, idx_a, cell_xy, xy_bev, valid, batch.R_gt, batch.t_gt, sp, conf.neg_radius_m)
    nce = 0.5 * (_nanmean(g2a) + _nanmean(a2g))
    total = conf.w_vce * _nanmean(vce) + conf.w_nce * nce

    with torch.no_grad():
        err_m = (fit.t - batch.t_gt).norm(dim=-1)
        d = torch.remainder(fit.heading_deg - batch.heading_gt, 360.0)
        err_deg = torch.minimum(d, 360.0 - d)
    return {"total": total, "vce": _nanmean(vce).detach(), "nce_g2a": _nanmean(g2a).detach(),
            "nce_a2g": _nanmean(a2g).detach(), "err_m": err_m, "err_deg": err_deg}


def mono_depth_loss(net, batch: Batch, conf: LossConf) -> Dict[str, torch.Tensor]:
    """Scale-invariant log loss on valid pixels + sky BCE (sky = no valid truth range).

    Returns total (scalar, differentiable), silog, sky (detached scalars)."""
    log_pred, sky_logit = net(batch.ground, circular=batch.kind == "pano")
    valid = torch.isfinite(batch.depth) & (batch.depth > 0)
    d = torch.where(valid, log_pred - torch.log(torch.where(valid, batch.depth, torch.ones_like(batch.depth))),
                    torch.zeros_like(log_pred))
    n = valid.flatten(1).sum(1).clamp_min(1)
    mean_d = d.flatten(1).sum(1) / n
    mean_d2 = (d * d).flatten(1).sum(1) / n
    silog = (mean_d2 - conf.si_lambda * mean_d ** 2).mean()
    sky = F.binary_cross_entropy_with_logits(sky_logit, (~valid).float())
    return {"total": silog + conf.sky_weight * sky, "silog": silog.detach(), "sky": sky.detach()}


__all__ = ["LossConf", "matcher_losses", "mono_depth_loss", "virtual_points", "vce_loss",
           "nce_ground_to_aerial", "nce_aerial_to_ground"]
