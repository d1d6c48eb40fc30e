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

RANSAC's runner-up poses at other places are refitted too, and the pose that explains P most tightly is
kept (`refit_best`).

A panorama's heading and position are refitted. A pinhole's heading is kept and only its position moves:
its few lifted points are uncertain mostly along their rays (depth), and an isotropic kernel would trade
that error for heading (on 800 bench-style photos, refitting a pinhole's heading too made its heading
error worse by about 1° for no gain in position).

The kernel is long along each ray (``ray_rel``): its variance there is σ² + (ray_rel · d)² at the point's
distance d, σ² across it, as in RANSAC's last refit (`refine`). Monocular depth is wrong in a correlated way
(a whole side of a street too far), and an isotropic kernel pulls the pose sideways to absorb that; the long
kernel lets the bearings, which are exact up to a token's width, fix heading and position. Its M-step has no
closed form: a Gauss–Newton step in (heading, t), or t alone, which need not raise S as the Procrustes step
does. A panorama's refit uses it and narrows on to half a cell; a pinhole's keeps the isotropic kernel
(below).

Measured with the thirteenth session's default model (seed 0, mono depth, the 440 panoramas and 460 pinholes
of data/bench, calib..calib5, calib-anysun, calib-light, calib-degraded, each photo's P computed once and
stored as float16 for all the variants; paired bootstrap over photos, 90 %). Panoramas: without a heading
prior median 1.03 -> 0.91 m [-0.15, -0.04], heading 2.10 -> 1.87° [-0.45, -0.01], within 5 m 87.8 -> 88.3 %;
with one 0.98 -> 0.91 m, heading 2.27 -> 1.72° [-0.73, -0.09], 92.9 -> 93.3 %. The isotropic kernel narrowed
to 1.0 m alone made the heading worse (without a prior 2.10 -> 2.34°); ray_rel 0.3 did about as well as 0.2,
0.4 and 1.0 less well. Pinholes: narrowed to 1.0 m the long kernel lost 1-2 points within 5 m. Stopping at
1.5 m (position only) it gained a little on these photos, inside the noise (P in float32, as the pipeline
has it: with a heading prior 2.40 -> 2.28 m [-0.21, +0.05], without one 4.14 -> 4.01 m [-0.32, +0.05]), but
on data/bench over seeds 0-2 those without a heading prior lost (2.66 -> 2.74 m, ≥ 60° wide 2.58 -> 2.70 m,
within 5 m 75 -> 72 %) and a pinhole took 0.15 s longer, so pinholes keep the isotropic kernel.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch

from .solver import SimilarityFit, procrustes_2d

#: kernel widths of the EM rounds, metres: from 1.5 cells of the default model (2 m) down to 3/4 of one
DEFAULT_SIGMAS_M = (3.0, 2.0, 1.5)
#: the refit per camera kind: kernel widths (m) and the relative depth error its kernel allows along a ray
KIND_SETTINGS = {"pinhole": (DEFAULT_SIGMAS_M, 0.0), "pano": (DEFAULT_SIGMAS_M + (1.0,), 0.2)}
#: kernel width (m) at which candidates are ranked (`refit_best`) and a pose's share and sharpness measured
#: for its confidence (the calibration was fitted with it)
SCORE_SIGMA_M = 1.5
#: aerial cells kept per ground token (its most probable ones)
DEFAULT_TOP_K = 32
#: EM steps per kernel width
DEFAULT_ITERATIONS = 5
#: `sharpness` compares the mass within the last kernel width with that within this many times it
WIDE_KERNEL_RATIO = 4.0
#: `refit_best` ranks a candidate by sharpness + RIVAL_MASS_WEIGHT · log(share) (+ the margin for RANSAC's own
#: pose): sharper wins, but a rival that explains far less of P needs to be much sharper (at 0.1, half the
#: mass costs 0.07). Chosen with the margin on RANSAC's 8 rivals of 500 photos (data/calib, calib2,
#: calib-degraded, calib-anysun, calib-light) and checked on 600 others (data/bench, calib3..5), default model,
#: against RANSAC's own pose: median 1.83 -> 1.67 m, within 5 m 74.7 -> 78.2 % (without the mass term 1.70 m /
#: 77.7 %; on the 500: 1.92 -> 1.91 m, 71.6 -> 72.0 %). A margin of 0 gave 1.85 m / 74.7 %, 0.25 1.73 / 77.5 %
RIVAL_MASS_WEIGHT = 0.1
#: how much higher a rival must rank than RANSAC's own pose to replace it (`refit_best`; see above)
DEFAULT_RIVAL_MARGIN = 0.125


class DenseMass:
    """The matching probabilities as seen by the refit: each ground token's ``top_k`` most probable cells.

    P (Na, Ng) matching probabilities of the aerial cells and the ground tokens that have depth; cells_xy
    (Na, 2) cell centres, local metres; bev (Ng, 2) those tokens lifted to the camera BEV, depth units
    (camera at the origin).
    """

    def __init__(self, P: torch.Tensor, cells_xy: torch.Tensor, bev: torch.Tensor, top_k: int = DEFAULT_TOP_K):
        k = min(int(top_k), P.shape[0])
        prob, cell = P.double().topk(k, dim=0)                          # (k, Ng)
        self.target = cells_xy.double()[cell]                            # (k, Ng, 2)
        bev = bev.double()[None].expand_as(self.target)                  # (k, Ng, 2)
        keep = torch.isfinite(bev).all(-1) & (prob > 0)
        self.prob = torch.where(keep, prob, torch.zeros_like(prob))
        self.bev = torch.where(keep[..., None], bev, torch.zeros_like(bev))

    def _weights(self, src: torch.Tensor, R: torch.Tensor, t: torch.Tensor, sigma_m: float,
                 ray_rel: float = 0.0) -> torch.Tensor:
        """(k, Ng) P · exp(-½ rᵀ Λ r), r = x_c - (R src_g + t); src (k, Ng, 2) the scaled BEV points (depth
        units), R (2, 2), t (2,) local m. Λ = I / σ², with ray_rel > 0 the long kernel's (`_ray_frame`)."""
        ray = src @ R.T
        r = self.target - (ray + t)
        if ray_rel <= 0.0:
            return self.prob * torch.exp(-(r ** 2).sum(-1) / (2.0 * sigma_m * sigma_m))
        u, v, _, info_along = _ray_frame(ray, sigma_m, ray_rel)
        along, across = (r * u).sum(-1), (r * v).sum(-1)
        return self.prob * torch.exp(-0.5 * (info_along * along ** 2 + across ** 2 / (sigma_m * sigma_m)))

    def share(self, fit: SimilarityFit, sigma_m: float) -> float:
        """`score` over the whole mass considered (each token's top_k cells): in [0, 1], 0 without mass."""
        total = float(self.prob.sum())
        return self.score(fit, sigma_m) / total if total > 0.0 else 0.0

    def score(self, fit: SimilarityFit, sigma_m: float) -> float:
        """S of the module docstring under the unbatched ``fit``: the matches expected within about ``sigma_m``
        of where it puts them (0 for a fit that is not ok)."""
        if not bool(fit.ok):
            return 0.0
        return float(self._weights(float(fit.s) * self.bev, fit.R.double(), fit.t.double(), sigma_m).sum())

    def refit(self, fit: SimilarityFit, *, turn: bool = True, sigmas_m: Sequence[float] = DEFAULT_SIGMAS_M,
              iterations: int = DEFAULT_ITERATIONS,
              accept: Optional[Callable[[SimilarityFit], bool]] = None, ray_rel: float = 0.0) -> SimilarityFit:
        """The pose ``fit`` (unbatched, R (2, 2), t (2,), s ()) refitted to this mass, its scale kept.

        turn: refit the heading too (False: the position alone). accept(fit) -> bool vets each iterate
        (heading prior, search radius): the first it refuses, or a degenerate system, ends the refit with
        the last accepted pose. ray_rel: relative depth error the kernel allows along each ray (0: isotropic;
        module docstring). Returns an unbatched SimilarityFit in the dtypes of ``fit``.
        """
        if self.prob.numel() == 0 or not bool(fit.ok):
            return fit
        src = float(fit.s) * self.bev
        R, t = fit.R.double(), fit.t.double()
        for sigma in sigmas_m:
            for _ in range(iterations):
                w = self._weights(src, R, t, sigma, ray_rel)
                if float(w.sum()) <= 0.0:
                    return _as(fit, R, t)
                if ray_rel > 0.0:
                    step = _ray_step(src, self.target, w, R, t, sigma, ray_rel, turn)
                    if step is None:
                        return _as(fit, R, t)
                    R_new, t_new = step
                elif turn:
                    step = procrustes_2d(src.reshape(1, -1, 2), self.target.reshape(1, -1, 2), w.reshape(1, -1),
                                         with_scale=False)
                    if not bool(step.ok[0]):
                        return _as(fit, R, t)
                    R_new, t_new = step.R[0], step.t[0]
                else:
                    R_new, t_new = R, ((w / w.sum())[..., None] * (self.target - src @ R.T)).sum((0, 1))
                if accept is not None and not accept(_as(fit, R_new, t_new)):
                    return _as(fit, R, t)
                R, t = R_new, t_new
        return _as(fit, R, t)


def refit_best(mass: DenseMass, fits: Sequence[SimilarityFit], *, turn: bool = True,
               sigmas_m: Sequence[float] = DEFAULT_SIGMAS_M,
               accept: Optional[Callable[[SimilarityFit], bool]] = None,
               margin: float = DEFAULT_RIVAL_MARGIN, ray_rel: float = 0.0) -> SimilarityFit:
    """Each candidate pose of ``fits`` (RANSAC's best first, then its rivals) refitted to ``mass``
    (`DenseMass.refit` with turn, sigmas_m, accept, ray_rel); returns the one ranked first by `sharpness` +
    RIVAL_MASS_WEIGHT · log(`DenseMass.share`) at SCORE_SIGMA_M, RANSAC's own pose getting ``margin`` ahead.

    RANSAC ranks poses by how many of the few thousand drawn matches they explain; this ranks them mostly by
    how tightly they explain all of P. Where two places fit, the wrong one tends to gather mass loosely.
    """
    refits = [mass.refit(f, turn=turn, sigmas_m=sigmas_m, accept=accept, ray_rel=ray_rel) for f in fits]
    ranks = [_rank(mass, f, SCORE_SIGMA_M) + (margin if i == 0 else 0.0) for i, f in enumerate(refits)]
    return refits[ranks.index(max(ranks))]


def _rank(mass: DenseMass, fit: SimilarityFit, sigma_m: float) -> float:
    share = mass.share(fit, sigma_m)
    return sharpness(mass, fit, sigma_m) + RIVAL_MASS_WEIGHT * math.log(share) if share > 0.0 else -math.inf


def sharpness(mass: DenseMass, fit: SimilarityFit, sigma_m: float) -> float:
    """log S(σ) - log S(WIDE_KERNEL_RATIO σ): how much of the matching mass near where ``fit`` puts the
    tokens lies within about σ of it (≤ 0; -inf when none is near)."""
    narrow, wide = mass.score(fit, sigma_m), mass.score(fit, WIDE_KERNEL_RATIO * sigma_m)
    return math.log(narrow / wide) if narrow > 0.0 else -math.inf


def _ray_frame(ray: torch.Tensor, sigma_m: float, ray_rel: float):
    """The long kernel at points ``ray`` (..., 2), camera-to-point vectors in local m: their directions u and
    normals v (..., 2), distances d (...) and the inverse variance along the ray 1 / (σ² + (ray_rel · d)²)
    (...); across it the inverse variance is 1 / σ²."""
    d = ray.norm(dim=-1).clamp_min(1e-6)
    u = ray / d[..., None]
    return u, torch.stack([-u[..., 1], u[..., 0]], -1), d, 1.0 / (sigma_m * sigma_m + (ray_rel * d) ** 2)


def _ray_step(src: torch.Tensor, target: torch.Tensor, w: torch.Tensor, R: torch.Tensor, t: torch.Tensor,
              sigma_m: float, ray_rel: float, turn: bool):
    """The M-step under the long kernel: one Gauss–Newton step of Σ w (r_u² / var_along + r_v² / σ²) in
    (heading, t), or in t alone (turn False), with r = R src + t - target split along (u) and across (v) each
    ray (`_ray_frame`); src, target (k, Ng, 2), w (k, Ng). Returns (R, t), or None when singular."""
    ray = src @ R.T
    u, v, d, info_along = _ray_frame(ray, sigma_m, ray_rel)
    r = ray + t - target
    # gradients of r·u and r·v over (heading, tx, ty): turning moves a point by d across its ray
    grad_u, grad_v = u, v
    if turn:
        grad_u = torch.cat([torch.zeros_like(d)[..., None], u], -1)
        grad_v = torch.cat([d[..., None], v], -1)
    w_u, w_v = w * info_along, w / (sigma_m * sigma_m)
    A = torch.einsum("kn,kni,knj->ij", w_u, grad_u, grad_u) + torch.einsum("kn,kni,knj->ij", w_v, grad_v, grad_v)
    b = (torch.einsum("kn,kni->i", w_u * (r * u).sum(-1), grad_u)
         + torch.einsum("kn,kni->i", w_v * (r * v).sum(-1), grad_v))
    delta, singular = torch.linalg.solve_ex(A, -b)
    if int(singular) != 0 or not bool(torch.isfinite(delta).all()):
        return None
    if not turn:
        return R, t + delta
    c, s = math.cos(float(delta[0])), math.sin(float(delta[0]))
    return torch.tensor([[c, -s], [s, c]], dtype=R.dtype) @ R, t + delta[1:]


def _as(fit: SimilarityFit, R: torch.Tensor, t: torch.Tensor) -> SimilarityFit:
    """``fit`` with rotation R and translation t (its scale, in its dtypes)."""
    return SimilarityFit(R.to(fit.R.dtype), t.to(fit.t.dtype), fit.s, fit.ok, fit.reason)
