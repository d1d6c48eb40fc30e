"""Quality of a RANSAC pose: inlier statistics, a confidence in [0, 1], residual RMS and a 1-σ position error.

Confidence (heuristic, monotone, to be calibrated on the benchmark; the constants are module-level):

    confidence = (1 - exp(-inliers / COUNT_SCALE)) * (1 - exp(-(soft_ratio / RATIO_SCALE)²))

with ``soft_ratio = soft_score / matches`` (the reference's soft inlier count at th_inlier, per match). The
first factor says "enough inliers to pin a similarity down" (8 inliers -> 0.63, 25 -> 0.96); the second
"more agreement than chance": a wrong pose collects inliers only by accident, a few per cent of the matches
at most, while a correct one typically explains >= 15 % (ratio 0.05 -> 0.32, 0.08 -> 0.63, 0.15 -> 0.97).
Non-decreasing in the inlier count and in the soft score, 0 with no inliers, 1 only in the limit.

1-σ position uncertainty ``sigma_m`` (metres, radial RMS of the camera position): with k inliers of RMS
residual r (dst units, each a 2-D vector), the per-coordinate noise is σ² = Σ|r|² / (2k - 4) (4 parameters).
The camera position is the fitted similarity evaluated at the BEV origin, extrapolated from the inliers'
centroid c (its offset from the camera, metres) with the inliers' RMS spread ρ around c (linear regression
prediction variance):

    sigma_m = sqrt(2 σ² (1 + |c|² / ρ²) / k_eff),   k_eff = min(k, MAX_INDEPENDENT_INLIERS)

k_eff caps the count because sampled correspondences repeat ground tokens and neighbouring tokens have
correlated errors: without the cap 2000 inliers of 1 m residual would claim 2 cm. Without the inlier points
(``dst``/``position`` not given) the lever-arm term is left out and sigma_m is a lower bound.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

COUNT_SCALE = 8.0
RATIO_SCALE = 0.08
MAX_INDEPENDENT_INLIERS = 50

#: status thresholds: below either, the pose is reported as "low_confidence"
MIN_CONFIDENCE = 0.5
MIN_INLIERS = 10


def confidence_from(inliers: int, soft_ratio: float) -> float:
    """Confidence in [0, 1] from the hard inlier count and the soft inlier ratio (see module docstring)."""
    if inliers <= 0 or not soft_ratio > 0:
        return 0.0
    return float((1.0 - math.exp(-inliers / COUNT_SCALE)) * (1.0 - math.exp(-(soft_ratio / RATIO_SCALE) ** 2)))


def pose_quality(residuals: torch.Tensor, inliers: torch.Tensor, weights: torch.Tensor, soft_score: float,
                 n: int, *, dst: Optional[torch.Tensor] = None,
                 position: Optional[torch.Tensor] = None) -> dict:
    """Quality numbers of one pose for the ``camera_poses`` layer.

    residuals (N,) m (NaN = unusable), inliers (N,) bool, weights (N,) match probabilities, soft_score the
    RANSAC soft inlier count, n the number of matches the pose was fitted on. Optional dst (N, 2) local
    metres of the matches and position (2,) of the camera add the lever-arm term to sigma_m.

    Returns dict(matches int, inliers int, inlier_ratio, confidence, residual_m (inlier RMS, NaN if none),
    sigma_m (NaN if fewer than 3 inliers), inlier_weight_share (Σ inlier weights / Σ weights)).
    """
    inl = inliers.bool() & torch.isfinite(residuals)
    k = int(inl.sum())
    matches = int(n)
    r = residuals[inl].double()
    residual_m = float(r.pow(2).mean().sqrt()) if k else math.nan
    w = torch.nan_to_num(weights.double(), nan=0.0).clamp_min(0.0)
    w_total = float(w.sum())
    return dict(
        matches=matches,
        inliers=k,
        inlier_ratio=k / matches if matches else 0.0,
        confidence=confidence_from(k, soft_score / matches if matches else 0.0),
        residual_m=residual_m,
        sigma_m=_sigma_m(r, dst[inl].double() if dst is not None else None, position),
        inlier_weight_share=float(w[inl].sum()) / w_total if w_total > 0 else 0.0,
    )


def _sigma_m(r: torch.Tensor, dst_inl: Optional[torch.Tensor], position: Optional[torch.Tensor]) -> float:
    """1-σ radial position error (m) from inlier residuals r (k,) and optionally their positions (k, 2)."""
    k = r.numel()
    if k < 3:
        return math.nan
    two_sigma2 = float(r.pow(2).sum()) / (k - 2)  # 2 σ² = Σ|r|² / (k - 2)
    lever = 0.0
    if dst_inl is not None and position is not None:
        c = dst_inl.mean(0)
        rho2 = float((dst_inl - c).pow(2).sum(1).mean())
        offset2 = float((c - torch.as_tensor(position, dtype=c.dtype)).pow(2).sum())
        lever = offset2 / rho2 if rho2 > 0 else math.inf
    return math.sqrt(two_sigma2 * (1.0 + lever) / min(k, MAX_INDEPENDENT_INLIERS))


def status_from(confidence: float, inliers: int) -> str:
    """'ok' if confidence >= MIN_CONFIDENCE and inliers >= MIN_INLIERS, else 'low_confidence'."""
    return "ok" if confidence >= MIN_CONFIDENCE and inliers >= MIN_INLIERS else "low_confidence"
