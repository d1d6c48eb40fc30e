"""The pose refitted against the whole matching probability matrix P instead of the matches drawn from it.

RANSAC (`ransac`) fits the pose to a few thousand correspondences drawn from P. Each ground token's row of P,
though, spreads its mass over several nearby aerial cells, and the draw keeps a noisy handful of them. Here
the pose is refitted to all of it: the objective is the expected number of matches that land near where the
pose puts their token,

    S(R, t) = Σ_g Σ_c P[c, g] · exp(-½ rᵀ Λ r),   r = x_c - (s R b_g + t),

over each token's ``top_k`` most probable cells, with the scale s kept from RANSAC. It is maximised by EM: the
weights P · kernel at the current pose, then a pose step on them; the kernel narrows from a few metres (several
cells) to below a cell's spacing, so the pose moves to the mass nearby, not to another place.

The kernel Λ is the pose refits' one noise model (`ray_noise`) with the kernel's width as its isotropic part.
Isotropic (depth_rel 0), the M-step is the weighted rigid Procrustes (`solver.procrustes_2d`), which never
lowers S. Long along each ray (depth_rel > 0), monocular depth may be wrong along the ray while the bearings
fix heading and position; that M-step has no closed form and is one Gauss–Newton step in (heading, t).

Per camera kind (`KIND_SETTINGS`): a panorama's heading and position are refitted with the long kernel down
to 1 m; a pinhole keeps its heading and the isotropic kernel, since its few lifted points are uncertain mostly
along their rays and an isotropic kernel would trade that error for heading. RANSAC's runner-up poses are
refitted too, and the one that explains P most tightly is kept (`refit_best`). The measurements behind these
choices are in docs/evaluation.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

import torch

from .ransac import apart
from .ray_noise import RayNoise
from .solver import SimilarityFit, procrustes_2d

#: kernel widths of the EM rounds, metres: from 1.5 cells of the default model (2 m) down to 3/4 of one
DEFAULT_SIGMAS_M = (3.0, 2.0, 1.5)


@dataclass(frozen=True)
class RefitSettings:
    """One camera kind's refit: kernel widths (m) in order, the relative depth error its kernel allows along
    each ray (0: isotropic) and whether the heading moves (False: the position alone)."""

    sigmas_m: Sequence[float]
    depth_rel: float
    turn: bool

    @property
    def noise(self) -> Optional[RayNoise]:
        """The kernel's noise model (its width set per EM round), None for the isotropic kernel."""
        return RayNoise(0.0, self.depth_rel) if self.depth_rel > 0.0 else None


KIND_SETTINGS = {"pinhole": RefitSettings(DEFAULT_SIGMAS_M, 0.0, turn=False),
                 "pano": RefitSettings(DEFAULT_SIGMAS_M + (1.0,), 0.2, turn=True)}
#: kernel width (m) at which candidates are ranked (`refit_best`) and a pose's share and sharpness measured
#: for its confidence (the stored calibration was fitted with it)
SCORE_SIGMA_M = 1.5
#: aerial cells kept per ground token (its most probable ones)
DEFAULT_TOP_K = 32
#: EM steps per kernel width
DEFAULT_ITERATIONS = 5
#: `sharpness` compares the mass within the last kernel width with that within this many times it
WIDE_KERNEL_RATIO = 4.0
#: `refit_best` ranks a candidate by sharpness + RIVAL_MASS_WEIGHT · log(share): sharper wins, but a rival
#: that explains far less of P must be much sharper (at 0.1, half the mass costs 0.07)
RIVAL_MASS_WEIGHT = 0.1
#: how much higher a rival must rank than RANSAC's own pose to replace it (`refit_best`)
DEFAULT_RIVAL_MARGIN = 0.125
#: a candidate is a rival of the kept pose when its camera is this far from it, or its heading this far off
RIVAL_DISTINCT_M, RIVAL_DISTINCT_DEG = 4.0, 30.0
#: `Choice.rival_gap` is clipped to ± this (no rival at all, or one without any mass near it)
RIVAL_GAP_CAP = 3.0
#: `Choice.rivals` keeps at most this many distinct runner-up poses (for smoothing along a capture)
KEPT_RIVALS = 4


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
                 noise: Optional[RayNoise] = None) -> torch.Tensor:
        """(k, Ng) P · exp(-½ rᵀ Λ r), r = x_c - (R src_g + t); src (k, Ng, 2) the scaled BEV points (depth
        units), R (2, 2), t (2,) local m. Λ = I / σ², or with a noise model that of its kernel σ wide."""
        ray = src @ R.T
        r = self.target - (ray + t)
        if noise is None:
            return self.prob * torch.exp(-_dot(r, r) / (2.0 * sigma_m * sigma_m))
        u, v, _, var_along, var_across = noise.with_width(sigma_m).variances(ray)
        along, across = _dot(r, u), _dot(r, v)
        return self.prob * torch.exp(-0.5 * ((1.0 / var_along) * along ** 2 + across ** 2 / var_across))

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

    def refit(self, fit: SimilarityFit, settings: RefitSettings, *, iterations: int = DEFAULT_ITERATIONS,
              accept: Optional[Callable[[SimilarityFit], bool]] = None) -> SimilarityFit:
        """The pose ``fit`` (unbatched, R (2, 2), t (2,), s ()) refitted to this mass, its scale kept, with the
        kernels of ``settings``.

        accept(fit) -> bool vets each iterate (heading prior, search radius): the first it refuses, or a
        degenerate system, ends the refit with the last accepted pose. Returns an unbatched SimilarityFit in
        the dtypes of ``fit``.
        """
        if self.prob.numel() == 0 or not bool(fit.ok):
            return fit
        noise = settings.noise
        src = float(fit.s) * self.bev
        R, t = fit.R.double(), fit.t.double()
        for sigma in settings.sigmas_m:
            for _ in range(iterations):
                w = self._weights(src, R, t, sigma, noise)
                if float(w.sum()) <= 0.0:
                    return _as(fit, R, t)
                if noise is not None:
                    step = _ray_step(src, self.target, w, R, t, noise.with_width(sigma), settings.turn)
                    if step is None:
                        return _as(fit, R, t)
                    R_new, t_new = step
                elif settings.turn:
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


@dataclass(frozen=True)
class Choice:
    """The candidate `refit_best` keeps, and by how much: rival_gap is its rank minus the best rank of a
    candidate at another place or heading (`ransac.apart`), RIVAL_GAP_CAP when there is none; near 0 or
    below, another pose explains P about as tightly (a confidence feature). rivals: up to KEPT_RIVALS
    refitted candidates at other places or headings, each (fit, its rank minus the kept one's), best first
    and apart from each other (what a capture's other photos may choose instead, `smoother`)."""

    fit: SimilarityFit
    rival_gap: float
    rivals: Tuple[Tuple[SimilarityFit, float], ...] = ()


def refit_best(mass: DenseMass, fits: Sequence[SimilarityFit], settings: RefitSettings, *,
               accept: Optional[Callable[[SimilarityFit], bool]] = None,
               margin: float = DEFAULT_RIVAL_MARGIN) -> Choice:
    """Each candidate pose of ``fits`` (RANSAC's best first, then its rivals) refitted to ``mass``
    (`DenseMass.refit` with settings, accept); keeps the one ranked first by `sharpness` +
    RIVAL_MASS_WEIGHT · log(`DenseMass.share`) at SCORE_SIGMA_M, RANSAC's own pose getting ``margin`` ahead.

    RANSAC ranks poses by how many of the few thousand drawn matches they explain; this ranks them mostly by
    how tightly they explain all of P. Where two places fit, the wrong one tends to gather mass loosely.
    """
    refits = [mass.refit(f, settings, accept=accept) for f in fits]
    ranks = [_rank(mass, f, SCORE_SIGMA_M) for f in refits]
    best = max(range(len(refits)), key=lambda i: ranks[i] + (margin if i == 0 else 0.0))
    others = [ranks[i] for i, f in enumerate(refits) if apart(f, refits[best], RIVAL_DISTINCT_M, RIVAL_DISTINCT_DEG)]
    gap = ranks[best] - max(others) if others and math.isfinite(ranks[best]) else RIVAL_GAP_CAP
    return Choice(refits[best], float(min(max(gap, -RIVAL_GAP_CAP), RIVAL_GAP_CAP)),
                  _distinct_rivals(refits, ranks, best))


def _distinct_rivals(refits, ranks, best: int) -> Tuple[Tuple[SimilarityFit, float], ...]:
    """(fit, rank - the kept rank) of the best-ranked refits apart from the kept one and from each other."""
    kept = [refits[best]]
    out = []
    for i in sorted(range(len(refits)), key=lambda i: -ranks[i]):
        if len(out) == KEPT_RIVALS or not math.isfinite(ranks[i]) or not math.isfinite(ranks[best]):
            break
        if all(apart(refits[i], k, RIVAL_DISTINCT_M, RIVAL_DISTINCT_DEG) for k in kept):
            kept.append(refits[i])
            out.append((refits[i], float(ranks[i] - ranks[best])))
    return tuple(out)


def _rank(mass: DenseMass, fit: SimilarityFit, sigma_m: float) -> float:
    share = mass.share(fit, sigma_m)
    return sharpness(mass, fit, sigma_m) + RIVAL_MASS_WEIGHT * math.log(share) if share > 0.0 else -math.inf


def sharpness(mass: DenseMass, fit: SimilarityFit, sigma_m: float) -> float:
    """log S(σ) - log S(WIDE_KERNEL_RATIO σ): how much of the matching mass near where ``fit`` puts the
    tokens lies within about σ of it (≤ 0; -inf when none is near)."""
    narrow, wide = mass.score(fit, sigma_m), mass.score(fit, WIDE_KERNEL_RATIO * sigma_m)
    return math.log(narrow / wide) if narrow > 0.0 else -math.inf


def _ray_step(src: torch.Tensor, target: torch.Tensor, w: torch.Tensor, R: torch.Tensor, t: torch.Tensor,
              kernel: RayNoise, turn: bool):
    """The M-step under a long kernel: one Gauss–Newton step of Σ w (r_u² / σ²_along + r_v² / σ²_across) in
    (heading, t), or in t alone (turn False), with r = R src + t - target split along (u) and across (v) each
    ray (`ray_noise.RayNoise.variances`); src, target (k, Ng, 2), w (k, Ng). Returns (R, t), or None when
    singular."""
    ray = src @ R.T
    u, v, d, var_along, var_across = kernel.variances(ray)
    r = ray + t - target
    # gradients of r·u and r·v over (heading, tx, ty): turning moves a point by d across its ray
    grad_u, grad_v = u, v
    if turn:
        grad_u = torch.cat([torch.zeros_like(d)[..., None], u], -1)
        grad_v = torch.cat([d[..., None], v], -1)
    w_u, w_v = w * (1.0 / var_along), w / var_across
    A = torch.einsum("kn,kni,knj->ij", w_u, grad_u, grad_u) + torch.einsum("kn,kni,knj->ij", w_v, grad_v, grad_v)
    b = torch.einsum("kn,kni->i", w_u * _dot(r, u), grad_u) + torch.einsum("kn,kni->i", w_v * _dot(r, v), grad_v)
    delta, singular = torch.linalg.solve_ex(A, -b)
    if int(singular) != 0 or not bool(torch.isfinite(delta).all()):
        return None
    if not turn:
        return R, t + delta
    c, s = math.cos(float(delta[0])), math.sin(float(delta[0]))
    return torch.tensor([[c, -s], [s, c]], dtype=R.dtype) @ R, t + delta[1:]


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Dot products (...) of 2-vectors a, b (..., 2), written out: the same sums as ``(a * b).sum(-1)``,
    several times faster than a reduction over a last axis of two."""
    return a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1]


def _as(fit: SimilarityFit, R: torch.Tensor, t: torch.Tensor) -> SimilarityFit:
    """``fit`` with rotation R and translation t (its scale, in its dtypes)."""
    return SimilarityFit(R.to(fit.R.dtype), t.to(fit.t.dtype), fit.s, fit.ok, fit.reason)
