"""Weighted, scale-aware 2-D Procrustes (Umeyama), batched and differentiable; heading <-> rotation.

Model (docs/method.md §4.1): ``dst ≈ s R src + t`` with ``src`` the ground BEV points (depth units) and ``dst``
their aerial matches (local metres). In 2-D the Umeyama SVD solution has a closed form: with centred points
g̃, ã and normalised weights ŵ,

    c = Σ ŵ g̃·ã,   k = Σ ŵ (g̃ × ã),   r = sqrt(c² + k²)
    R = [[c, -k], [k, c]] / r              (= V D Uᵀ of the SVD of H = Σ w g̃ ãᵀ, always a proper rotation)
    s = r / Σ ŵ |g̃|²                      (= tr(DΣ) / Σ w |g̃|², Umeyama's scale)
    t = ā - s R ḡ

It is used instead of a 2×2 SVD because it is exact, cheap, and its gradient stays finite when the two
singular values coincide (where the SVD backward divides by their difference).

Degenerate inputs are reported per batch element with ``ok = False`` and a ``reason``; their R, t, s are NaN
so that they cannot be used by mistake:
    * a point with positive weight has a non-finite coordinate, or a weight is non-finite or negative;
    * fewer than two distinct points carry weight (including all weights zero);
    * the source or destination points are collinear (rank(H) < 2, as the reference rejects them).
Points with weight 0 are ignored whatever their coordinates (NaN sky points may be masked that way).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np
import torch

#: det/trace² of the weighted 2×2 covariance below which a point set counts as collinear; it is
#: λmin/λmax / (1 + λmin/λmax)², i.e. an aspect ratio (std along / across) of about 1000:1
COLLINEAR_RATIO = 1e-6


@dataclass
class SimilarityFit:
    """Fitted similarities ``dst ≈ s R src + t``, batched over a leading dimension B (or unbatched).

    R (B, 2, 2), t (B, 2) [dst units], s (B,) [dst units per src unit], ok (B,) bool,
    reason: tuple of B strings, "" where ok. Non-ok entries have NaN R, t, s.
    """

    R: torch.Tensor
    t: torch.Tensor
    s: torch.Tensor
    ok: torch.Tensor
    reason: Tuple[str, ...] = field(default_factory=tuple)

    @property
    def heading_deg(self) -> torch.Tensor:
        """(B,) heading in degrees clockwise from north, [0, 360) (NaN where not ok)."""
        return heading_from_rotation(self.R)

    def apply(self, src: torch.Tensor) -> torch.Tensor:
        """Map src points: (B, N, 2) for a batched fit or (N, 2) for an unbatched one -> same shape."""
        return self.s[..., None, None] * (src @ self.R.transpose(-1, -2)) + self.t[..., None, :]

    def __getitem__(self, i: int) -> "SimilarityFit":
        """The i-th fit, unbatched: R (2, 2), t (2,), s (), ok ()."""
        return SimilarityFit(self.R[i], self.t[i], self.s[i], self.ok[i], (self.reason[i],))


def procrustes_2d(src: torch.Tensor, dst: torch.Tensor, weights: Optional[torch.Tensor] = None,
                  with_scale: bool = True) -> SimilarityFit:
    """Weighted least-squares similarity (or rigid, ``with_scale=False``) from ``src`` to ``dst``.

    src (B, N, 2) source points (e.g. BEV, depth units); dst (B, N, 2) targets (e.g. local metres);
    weights (B, N) >= 0 or None (all 1). Minimises Σ w |s R src + t - dst|². Differentiable w.r.t. all
    inputs where ok. Returns a SimilarityFit with batch size B.
    """
    if src.shape != dst.shape or src.ndim != 3 or src.shape[-1] != 2:
        raise ValueError(f"src and dst must both be (B, N, 2); got {tuple(src.shape)} and {tuple(dst.shape)}")
    if weights is None:
        weights = torch.ones(src.shape[:2], dtype=src.dtype, device=src.device)
    if weights.shape != src.shape[:2]:
        raise ValueError(f"weights must be (B, N) = {tuple(src.shape[:2])}, got {tuple(weights.shape)}")
    dtype = src.dtype
    weights = weights.to(dtype)
    eps = torch.finfo(dtype).eps
    tiny = torch.finfo(dtype).tiny

    used = weights != 0
    bad_point = used & ~(torch.isfinite(src).all(-1) & torch.isfinite(dst).all(-1))
    bad = bad_point.any(-1) | ~torch.isfinite(weights).all(-1) | (weights < 0).any(-1)
    # zero the unused / bad entries so that nothing non-finite enters the sums (nor their gradients)
    keep = used & ~bad_point & torch.isfinite(weights)
    w = torch.where(keep, weights, torch.zeros_like(weights))
    g = torch.where(keep[..., None], src, torch.zeros_like(src))
    a = torch.where(keep[..., None], dst, torch.zeros_like(dst))

    w_sum = w.sum(-1)
    w_hat = w / w_sum.clamp_min(tiny)[..., None]
    g_bar = (w_hat[..., None] * g).sum(-2)
    a_bar = (w_hat[..., None] * a).sum(-2)
    gc = g - g_bar[..., None, :]
    ac = a - a_bar[..., None, :]

    var_g, aniso_g = _spread(gc, w_hat)
    var_a, aniso_a = _spread(ac, w_hat)
    # "distinct" relative to the coordinates' magnitude: float rounding of identical far-away points
    mag_g = (w_hat * (g * g).sum(-1)).sum(-1)
    mag_a = (w_hat * (a * a).sum(-1)).sum(-1)
    same_g = var_g <= (100 * eps) ** 2 * mag_g + tiny
    same_a = var_a <= (100 * eps) ** 2 * mag_a + tiny

    c = (w_hat * (gc * ac).sum(-1)).sum(-1)
    k = (w_hat * (gc[..., 0] * ac[..., 1] - gc[..., 1] * ac[..., 0])).sum(-1)
    r = torch.sqrt(c * c + k * k)
    r_safe = r.clamp_min(tiny)
    cos, sin = c / r_safe, k / r_safe
    R = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    s = r / var_g.clamp_min(tiny) if with_scale else torch.ones_like(r)
    t = a_bar - s[..., None] * (R @ g_bar[..., None])[..., 0]

    n_used = keep.sum(-1)
    checks = [
        (bad, "non-finite coordinates, or non-finite or negative weights, among the weighted points"),
        (n_used < 2, "fewer than two points with positive weight"),
        (same_g, "fewer than two distinct source points"),
        (same_a, "fewer than two distinct destination points"),
        (aniso_g < COLLINEAR_RATIO, "source points are collinear"),
        (aniso_a < COLLINEAR_RATIO, "destination points are collinear"),
        (~(torch.isfinite(R).flatten(-2).all(-1) & torch.isfinite(t).all(-1) & torch.isfinite(s) & (s > 0)),
         "the fit is not finite"),
    ]
    ok = torch.ones_like(w_sum, dtype=torch.bool)
    reasons = [""] * src.shape[0]
    for failed, why in checks:
        for i in torch.nonzero(failed & ok).flatten().tolist():
            reasons[i] = why
        ok = ok & ~failed

    nan = torch.full_like(s, float("nan"))
    R = torch.where(ok[..., None, None], R, nan[..., None, None])
    t = torch.where(ok[..., None], t, nan[..., None])
    s = torch.where(ok, s, nan)
    return SimilarityFit(R=R, t=t, s=s, ok=ok, reason=tuple(reasons))


def _spread(centred: torch.Tensor, w_hat: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Weighted variance Σ ŵ|p̃|² (B,) and isotropy det/trace² of the 2×2 covariance (B,), in [0, 1/4]."""
    cxx = (w_hat * centred[..., 0] ** 2).sum(-1)
    cyy = (w_hat * centred[..., 1] ** 2).sum(-1)
    cxy = (w_hat * centred[..., 0] * centred[..., 1]).sum(-1)
    trace = cxx + cyy
    det = cxx * cyy - cxy * cxy
    return trace, det / (trace * trace).clamp_min(torch.finfo(trace.dtype).tiny)


def heading_from_rotation(R):
    """Heading in degrees clockwise from north, [0, 360), of rotation(s) R (..., 2, 2) -> (...).

    Convention (docs/ENGINEERING.md): R = [[cos h, sin h], [-sin h, cos h]]. Accepts torch or numpy.
    """
    if isinstance(R, np.ndarray):
        return np.mod(-np.degrees(np.arctan2(R[..., 1, 0], R[..., 0, 0])), 360.0) % 360.0
    return torch.remainder(-torch.rad2deg(torch.atan2(R[..., 1, 0], R[..., 0, 0])), 360.0) % 360.0


def rotation_from_heading(heading_deg):
    """Rotation(s) (..., 2, 2) for heading(s) in degrees clockwise from north (...). Torch or numpy/float."""
    if isinstance(heading_deg, torch.Tensor):
        h = torch.deg2rad(heading_deg)
        c, s = torch.cos(h), torch.sin(h)
        return torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)
    h = np.radians(np.asarray(heading_deg, dtype=np.float64))
    c, s = np.cos(h), np.sin(h)
    return np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)], -2)
