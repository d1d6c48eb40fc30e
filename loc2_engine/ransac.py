"""RANSAC for a 2-D similarity over weighted correspondences (docs/method.md §4.2), vectorised over hypotheses.

Model ``dst ≈ s R src + t`` (src: ground BEV points, depth units; dst: aerial points, local metres).

1. Hypotheses: all minimal samples are drawn at once. Indices are drawn i.i.d. with probability ∝ weight
   (``torch.multinomial`` with replacement) and grouped into triples; triples that repeat an
   index are dropped (so each tuple is a draw without replacement, as in the reference, up to the
   order-dependence of sequential draws). Each tuple gets an unweighted Procrustes fit in one batched call;
   degenerate tuples (coincident or collinear points) are discarded, as are fits outside ``scale_range``
   or farther than ``heading_tolerance_deg`` from ``heading_prior_deg``.
2. Scoring: soft inlier count over all N correspondences, Σ_n sigmoid(β (th_soft - d_n)), β = 5 / th_soft,
   d_n = sqrt(|s R src_n + t - dst_n|² + 1e-6). All (hypotheses × N) squared distances come from one matrix
   product per chunk of hypotheses: |M p + t - q|² expands into 11 features of each correspondence times 11
   coefficients of each hypothesis (coordinates are centred first to keep float32 cancellation small).
3. Refinement from the best hypothesis: up to ``refine_steps`` times, hard inliers d <= th_inlier; while
   their count is >= 3 and grows, refit the Procrustes on them with binary weights.
4. With ``ray_noise``: a last refit on the hard inliers, weighted, with each match's error larger along its
   viewing ray than across it (`refine.refine_pose`), under the same scale, heading and position limits.
5. With ``rivals``: the best-scored hypotheses at other places or headings (each one chosen suppresses every
   hypothesis near it), finished by steps 3-4 like the winner and returned beside it.

Everything runs in float32. ``generator`` makes it reproducible; without one a fixed seed is used, so the
same input always gives the same pose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional, Tuple

import torch

from .cancel import checkpoint
from .defaults import HEADING_TOLERANCE_DEG
from .ray_noise import RayNoise
from .refine import refine_pose
from .solver import SimilarityFit, heading_from_rotation, procrustes_2d

#: correspondences in a minimal sample, as in the reference
SAMPLE_SIZE = 3

#: hypotheses scored per matrix product: keeps the (chunk, N) block cache-sized
_SCORE_ELEMENTS_PER_CHUNK = 1 << 20

#: added under the square root of squared distances, as in the reference
_DIST_EPS = 1e-6


@dataclass
class RansacResult:
    """Outcome of ``ransac_similarity``.

    fit: SimilarityFit, unbatched (R (2, 2), t (2,), s (), ok ()); NaN when not ok.
    inliers (N,) bool: residual <= th_inlier under the final fit (False for unusable correspondences).
    residuals (N,) float32, dst units (m): |s R src + t - dst| under the final fit; NaN where unusable.
    soft_score: Σ sigmoid(β (th_inlier - residual)), β = 5 / th_inlier, of the final fit (the reference's
        confidence, a soft inlier count); 0 when not ok.
    n_hypotheses_valid: hypotheses that survived degeneracy and prior checks and were scored.
    ok, reason: reason is "" when ok, else a sentence.
    ambiguity: in [0, 1], the best score (soft count at th_soft) among hypotheses that put the camera
        more than ``distinct_m`` from the winner's position, over the winner's score: near 1, another
        place explains the matches about as well (repeated structure, a symmetric street); 0 when no
        other place gets any support.
    limits: the scale, heading and position limits every pose had to meet, in src / dst coordinates (the
        camera at src's origin), for refits after RANSAC (`dense_refit`); None when not ok.
    rivals: up to ``rivals`` runner-up poses (unbatched SimilarityFit, finished like ``fit``), best first,
        each at another place or heading than ``fit`` and every other rival (``rival_distinct_m``,
        ``rival_distinct_deg``): the candidates a later, denser score may prefer (`dense_refit.refit_best`).
    """

    fit: SimilarityFit
    inliers: torch.Tensor
    residuals: torch.Tensor
    soft_score: float
    n_hypotheses_valid: int
    ok: bool
    reason: str = ""
    ambiguity: float = 0.0
    limits: Optional["PoseLimits"] = None
    rivals: Tuple[SimilarityFit, ...] = ()

    @property
    def heading_deg(self) -> float:
        """Heading of the fit, degrees clockwise from north in [0, 360) (NaN when not ok)."""
        return float(heading_from_rotation(self.fit.R))

    def refitted(self, fit: SimilarityFit, src: torch.Tensor, dst: torch.Tensor, th_inlier: float
                 ) -> "RansacResult":
        """This result with another final ``fit`` (e.g. `dense_refit.refit_best`'s): residuals, inliers and
        soft score of the same correspondences src, dst (N, 2) recomputed under it; the search's own
        numbers (hypotheses, ambiguity) kept."""
        src, dst, _ = _check_inputs(src, dst, None)
        residuals, inliers, soft = _final_scores(fit, src, dst, self.residuals.isfinite(), th_inlier)
        return replace(self, fit=fit, inliers=inliers, residuals=residuals, soft_score=soft)


def ransac_similarity(src: torch.Tensor, dst: torch.Tensor, weights: Optional[torch.Tensor] = None, *,
                      hypotheses: int = 2000, th_inlier: float = 2.5,
                      th_soft: float = 5.0, refine_steps: int = 4, with_scale: bool = True,
                      scale_range: Optional[Tuple[float, float]] = None,
                      heading_prior_deg: Optional[float] = None,
                      heading_tolerance_deg: Optional[float] = None,
                      position_prior: Optional[Tuple[float, float]] = None,
                      position_radius: Optional[float] = None,
                      distinct_m: Optional[float] = None,
                      ray_noise: Optional[RayNoise] = None,
                      rivals: int = 0, rival_distinct_m: float = 4.0, rival_distinct_deg: float = 30.0,
                      generator: Optional[torch.Generator] = None) -> RansacResult:
    """Robust similarity from src (N, 2) to dst (N, 2) with sampling weights (N,) >= 0 (None: uniform).

    Correspondences with a non-finite coordinate or a weight that is not > 0 are ignored. ``th_inlier`` and
    ``th_soft`` are in dst units (m). ``scale_range`` = (min, max) admissible s; ``heading_prior_deg`` (true
    north, clockwise) with ``heading_tolerance_deg`` (None: `defaults.HEADING_TOLERANCE_DEG`) restricts the
    heading;
    ``position_prior`` (2,) dst units with ``position_radius`` restricts where src's origin (the camera)
    may land, so a pose outside the search area is never chosen over a slightly weaker one inside it.
    ``distinct_m`` (default 2 th_soft): how far another hypothesis's camera must be to count as a rival
    place for ``ambiguity``. ``ray_noise``: src's origin is the camera and its points were lifted along rays
    with this noise; the final pose is refitted with it (step 4). ``rivals``: how many runner-up poses to
    finish (steps 3-4) and return besides the best, each with its camera more than ``rival_distinct_m``
    (dst units) or its heading more than ``rival_distinct_deg`` from the best's and every other rival's.
    Never raises on bad data: returns ok=False with a reason.
    """
    src, dst, weights = _check_inputs(src, dst, weights)
    if hypotheses < 1 or refine_steps < 0 or th_inlier <= 0 or th_soft <= 0:
        raise ValueError(
            f"need hypotheses >= 1, refine_steps >= 0 and positive thresholds; got "
            f"hypotheses={hypotheses}, refine_steps={refine_steps}, "
            f"th_inlier={th_inlier}, th_soft={th_soft}")
    if (position_prior is None) != (position_radius is None):
        raise ValueError("position_prior and position_radius go together")
    if generator is None:
        generator = torch.Generator().manual_seed(0)

    n_all = src.shape[0]
    usable = torch.isfinite(src).all(-1) & torch.isfinite(dst).all(-1) & torch.isfinite(weights) & (weights > 0)
    idx_usable = torch.nonzero(usable).flatten()
    n = idx_usable.numel()
    if n < SAMPLE_SIZE:
        return _failed(n_all, 0, f"only {n} usable correspondences (finite, weight > 0) of {n_all}; "
                                 f"RANSAC needs at least {SAMPLE_SIZE}")
    p, q, w = src[idx_usable], dst[idx_usable], weights[idx_usable]

    # centre both point sets: the pose is solved and scored in centred coordinates, then shifted back
    p_mean, q_mean = (w[:, None] * p).sum(0) / w.sum(), (w[:, None] * q).sum(0) / w.sum()
    p, q = p - p_mean, q - q_mean
    accept = PoseLimits(scale_range, heading_prior_deg, heading_tolerance_deg,
                         None if position_prior is None else (-p_mean, torch.as_tensor(
                             position_prior, dtype=q.dtype) - q_mean, float(position_radius)))

    samples = _draw_samples(w, hypotheses, SAMPLE_SIZE, generator)
    if samples.shape[0] == 0:
        return _failed(n_all, 0, "every minimal sample repeated a correspondence: the weights are "
                                 "concentrated on fewer than three matches")
    hyp = procrustes_2d(p[samples], q[samples], with_scale=with_scale)
    valid = hyp.ok & accept(hyp)
    n_valid = int(valid.sum())
    if n_valid == 0:
        why = "no minimal sample gave a non-degenerate similarity"
        if bool(hyp.ok.any()):
            why = f"no hypothesis satisfies {accept.describe()}"
        return _failed(n_all, 0, why)

    scores = _soft_scores(hyp, valid, p, q, th_soft)
    best = int(torch.argmax(scores))
    ambiguity = _ambiguity(hyp, scores, best, -p_mean, 2.0 * th_soft if distinct_m is None else distinct_m)
    uncentred = PoseLimits(scale_range, heading_prior_deg, heading_tolerance_deg,
                           None if position_prior is None else (torch.zeros(2, dtype=dst.dtype), torch.as_tensor(
                               position_prior, dtype=dst.dtype), float(position_radius)))

    src_u, dst_u, w_u = src[idx_usable], dst[idx_usable], weights[idx_usable]  # uncentred, for step 4

    def finish(i: int) -> SimilarityFit:
        """Hypothesis i refined on its inliers (step 3), uncentred, refitted along the rays (step 4)."""
        fit = hyp[i]
        fit = SimilarityFit(fit.R[None], fit.t[None], fit.s[None], fit.ok[None], fit.reason)
        count_prev = 3
        for _ in range(refine_steps):
            inl = _residuals(fit, p, q) <= th_inlier
            count = int(inl.sum())
            if count < 3 or count <= count_prev:
                break
            refit = procrustes_2d(p[None], q[None], inl[None].to(p.dtype), with_scale=with_scale)
            if not bool(refit.ok[0] & accept(refit)[0]):
                break
            fit, count_prev = refit, count
        # back to the original coordinates: q + q_mean = s R (p + p_mean) + t'  =>  t' = t + q_mean - s R p_mean
        t_full = fit.t + q_mean - fit.s[:, None] * (fit.R @ p_mean[:, None])[..., 0]
        fit = SimilarityFit(fit.R[0], t_full[0], fit.s[0], fit.ok[0], ("",))
        if ray_noise is not None:
            inl = _residuals(fit, src_u, dst_u) <= th_inlier
            fit = refine_pose(src_u[inl], dst_u[inl], w_u[inl], fit, ray_noise, accept=lambda f: bool(uncentred(f)))
        return fit

    fit = finish(best)
    finished = [fit]
    for i in _distinct_runners(hyp, scores, best, -p_mean, rivals, rival_distinct_m, rival_distinct_deg):
        rival = finish(i)  # two distinct hypotheses can refine to one pose: keep it once
        if all(apart(rival, other, rival_distinct_m, rival_distinct_deg) for other in finished):
            finished.append(rival)
    residuals, inliers, soft = _final_scores(fit, src, dst, usable, th_inlier)
    return RansacResult(fit=fit, inliers=inliers, residuals=residuals, soft_score=soft,
                        n_hypotheses_valid=n_valid, ok=True, reason="", ambiguity=ambiguity, limits=uncentred,
                        rivals=tuple(finished[1:]))


def _final_scores(fit: SimilarityFit, src: torch.Tensor, dst: torch.Tensor, usable: torch.Tensor,
                  th_inlier: float):
    """Residuals (N,) (NaN where not ``usable``), inliers (N,) bool and the soft inlier count of an unbatched
    ``fit`` over src, dst (N, 2) (`RansacResult`)."""
    residuals = torch.full((src.shape[0],), float("nan"), dtype=src.dtype)
    residuals[usable] = _residuals(fit, src[usable], dst[usable])
    inliers = usable & (residuals <= th_inlier)
    beta = 5.0 / th_inlier
    soft = float(torch.sigmoid(beta * (th_inlier - residuals[usable])).sum())
    return residuals, inliers, soft


def _ambiguity(hyp: SimilarityFit, scores: torch.Tensor, best: int, origin: torch.Tensor,
               distinct_m: float) -> float:
    """Runner-up score at another place over the best score (see `RansacResult.ambiguity`).

    hyp: H hypotheses in centred coordinates, scores (H,) (-inf invalid), origin (2,) the camera (src
    origin) in centred src coordinates.
    """
    cam = _cameras(hyp, origin)
    far = (cam - cam[best]).norm(dim=-1) > distinct_m
    rival = scores[far & torch.isfinite(scores)]
    top = float(scores[best])
    if rival.numel() == 0 or top <= 0:
        return 0.0
    return float(min(1.0, max(0.0, float(rival.max()) / top)))


def _cameras(hyp: SimilarityFit, origin: torch.Tensor) -> torch.Tensor:
    """(H, 2) where each of the H hypotheses puts ``origin`` (2,), the camera in centred src coordinates."""
    return hyp.s[:, None] * (hyp.R @ origin) + hyp.t


def _distinct_runners(hyp: SimilarityFit, scores: torch.Tensor, best: int, origin: torch.Tensor, n: int,
                      distinct_m: float, distinct_deg: float) -> list:
    """Indices of up to n hypotheses, best score first, each distinct from ``best`` and from one another:
    its camera more than distinct_m away or its heading more than distinct_deg off (greedy suppression of
    every hypothesis near one already chosen). hyp, scores, origin as in `_ambiguity`."""
    cam = _cameras(hyp, origin)
    head = heading_from_rotation(hyp.R)                     # (H,)
    left = scores.clone()
    chosen, i = [], best
    while True:
        near = ((cam - cam[i]).norm(dim=-1) <= distinct_m) & (
            _turn_deg(head, head[i]).abs() <= distinct_deg)
        left[near] = -math.inf
        if len(chosen) == n or not bool(torch.isfinite(left).any()):
            return chosen
        i = int(torch.argmax(left))
        chosen.append(i)


def apart(a: SimilarityFit, b: SimilarityFit, distinct_m: float, distinct_deg: float) -> bool:
    """Whether two unbatched, uncentred fits put the camera (src's origin, i.e. t) more than distinct_m
    apart or differ in heading by more than distinct_deg."""
    turn = float(_turn_deg(heading_from_rotation(a.R), heading_from_rotation(b.R)))
    return float((a.t - b.t).norm()) > distinct_m or abs(turn) > distinct_deg


def _turn_deg(a, b) -> torch.Tensor:
    """Signed heading difference a - b in [-180, 180) degrees (tensors or numbers, broadcast)."""
    return torch.remainder(torch.as_tensor(a) - b + 180.0, 360.0) - 180.0


def _check_inputs(src, dst, weights):
    src = torch.as_tensor(src)
    dst = torch.as_tensor(dst)
    if src.ndim != 2 or src.shape[-1] != 2 or dst.shape != src.shape:
        raise ValueError(f"src and dst must both be (N, 2); got {tuple(src.shape)} and {tuple(dst.shape)}")
    if weights is None:
        weights = torch.ones(src.shape[0])
    weights = torch.as_tensor(weights)
    if weights.shape != src.shape[:1]:
        raise ValueError(f"weights must be (N,) = ({src.shape[0]},), got {tuple(weights.shape)}")
    f32 = torch.float32
    return src.detach().to(f32), dst.detach().to(f32), weights.detach().to(f32)


def _failed(n_all: int, n_valid: int, reason: str) -> RansacResult:
    nan = torch.tensor(float("nan"))
    fit = SimilarityFit(R=torch.full((2, 2), float("nan")), t=torch.full((2,), float("nan")), s=nan,
                        ok=torch.tensor(False), reason=(reason,))
    return RansacResult(fit=fit, inliers=torch.zeros(n_all, dtype=torch.bool),
                        residuals=torch.full((n_all,), float("nan")), soft_score=0.0,
                        n_hypotheses_valid=n_valid, ok=False, reason=reason)


def _draw_samples(w: torch.Tensor, hypotheses: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """(<= hypotheses, k) index tuples drawn ∝ w, without a repeated index inside a tuple.

    Draws twice what is needed, then up to three more rounds if the weights are so concentrated that most
    tuples repeat an index; returns what it has after that.
    """
    kept = []
    have = 0
    for _ in range(4):
        draw = max(2 * (hypotheses - have), 16)
        idx = torch.multinomial(w, draw * k, replacement=True, generator=generator).view(draw, k)
        srt = idx.sort(dim=1).values
        distinct = (srt[:, 1:] != srt[:, :-1]).all(1)
        idx = idx[distinct][: hypotheses - have]
        kept.append(idx)
        have += idx.shape[0]
        if have >= hypotheses:
            break
    return torch.cat(kept)


class PoseLimits:
    """Scale range, heading prior and position prior as a per-hypothesis boolean test.

    heading_tolerance_deg: None takes `defaults.HEADING_TOLERANCE_DEG` when there is a heading prior.
    area: None, or (origin (2,) src coordinates, centre (2,) dst coordinates, radius): the fit must map the
    origin (the camera) within radius of the centre.
    """

    def __init__(self, scale_range, heading_prior_deg, heading_tolerance_deg, area=None):
        if heading_prior_deg is not None and heading_tolerance_deg is None:
            heading_tolerance_deg = HEADING_TOLERANCE_DEG
        if scale_range is not None and not (0 < scale_range[0] <= scale_range[1]):
            raise ValueError(f"scale_range must be (min, max) with 0 < min <= max, got {scale_range}")
        self.scale_range = scale_range
        self.heading_prior_deg = heading_prior_deg
        self.heading_tolerance_deg = heading_tolerance_deg
        self.area = area

    def __call__(self, fit: SimilarityFit) -> torch.Tensor:
        ok = torch.ones_like(fit.s, dtype=torch.bool)
        if self.scale_range is not None:
            ok = ok & (fit.s >= self.scale_range[0]) & (fit.s <= self.scale_range[1])
        if self.heading_prior_deg is not None:
            turn = _turn_deg(heading_from_rotation(fit.R), self.heading_prior_deg)
            ok = ok & (turn.abs() <= self.heading_tolerance_deg)
        if self.area is not None:
            origin, centre, radius = self.area
            cam = fit.s[..., None] * (fit.R @ origin.to(fit.R.dtype)) + fit.t
            ok = ok & ((cam - centre).norm(dim=-1) <= radius)
        return ok

    def describe(self) -> str:
        parts = []
        if self.scale_range is not None:
            parts.append(f"the scale range {self.scale_range[0]:g}–{self.scale_range[1]:g}")
        if self.heading_prior_deg is not None:
            parts.append(f"the heading prior {self.heading_prior_deg:g}° ± {self.heading_tolerance_deg:g}°")
        if self.area is not None:
            parts.append(f"the search radius of {self.area[2]:g} m around the prior")
        return " and ".join(parts) or "the constraints"


def _soft_scores(hyp: SimilarityFit, valid: torch.Tensor, p: torch.Tensor, q: torch.Tensor,
                 th_soft: float) -> torch.Tensor:
    """(H,) soft inlier counts of the hypotheses (-inf where not valid) over p, q (N, 2).

    With M = s R, |M p + t - q|² = s²|p|² + |q|² + |t|² - 2 t·q - 2 qᵀ M p + 2 (Mᵀ t)·p: one GEMM of
    (H, 11) coefficients by (11, N) features gives every squared distance.
    """
    M = hyp.s[:, None, None] * hyp.R                       # (H, 2, 2)
    t = hyp.t
    Mt_t = (M.transpose(1, 2) @ t[..., None])[..., 0]       # (H, 2) = Mᵀ t
    ones = torch.ones_like(hyp.s)
    coef = torch.cat([
        (hyp.s ** 2)[:, None], ones[:, None], (t * t).sum(1, keepdim=True), -2.0 * t,
        -2.0 * M.reshape(-1, 4), 2.0 * Mt_t,
    ], dim=1)                                              # (H, 11)
    qp = (q[:, :, None] * p[:, None, :]).reshape(-1, 4)     # q_i p_j, (N, 4), matches M.reshape order
    feats = torch.cat([
        (p * p).sum(1, keepdim=True), (q * q).sum(1, keepdim=True), torch.ones_like(p[:, :1]), q, qp, p,
    ], dim=1).T.contiguous()                               # (11, N)
    # only the valid fits are scored: most minimal samples break a limit (scale, heading, search area)
    rows = torch.nonzero(valid).flatten()
    coef = coef[rows]

    beta = 5.0 / th_soft
    H, N = coef.shape[0], feats.shape[1]
    scores = torch.full((valid.shape[0],), -math.inf, dtype=p.dtype)
    chunk = max(1, _SCORE_ELEMENTS_PER_CHUNK // N)
    buf = torch.empty(min(chunk, H), N, dtype=p.dtype)
    for start in range(0, H, chunk):
        checkpoint()  # a cancel stops between batches of hypotheses (`cancel`)
        stop = min(start + chunk, H)
        d = torch.mm(coef[start:stop], feats, out=buf[: stop - start])
        # sigmoid(β (th - sqrt(d² + eps))), in place
        d.clamp_(min=0.0).add_(_DIST_EPS).sqrt_().mul_(-beta).add_(beta * th_soft).sigmoid_()
        scores[rows[start:stop]] = d.sum(1)
    return scores


def _residuals(fit: SimilarityFit, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """(N,) distances |s R p + t - q| for a fit that is batched with B = 1 or unbatched."""
    pred = fit.apply(p[None] if fit.R.ndim == 3 else p)
    return (pred.reshape(-1, 2) - q).norm(dim=-1)
