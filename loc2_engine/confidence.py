"""Quality of a RANSAC pose: inlier statistics, a confidence in [0, 1], residual RMS and a 1-σ position error.

Confidence. A model file may carry a calibration (safetensors metadata key ``confidence``, written by
``scripts/calibrate_confidence.py``): logistic weights over the pose's quality features (`FEATURE_NAMES`),
fitted on localized photos with truth, so that the confidence *is* the estimated probability that the
position is within `HIT_RADIUS_M` of the truth:

    confidence = sigmoid(intercept + Σ_k w_k feature_k)

Features: log(1 + inliers); soft_ratio = soft_score / matches (the reference's soft inlier count at
th_inlier, per match); ambiguity (RANSAC: best support at another place over the winner's, see
`ransac.RansacResult.ambiguity`); log sigma_m; inlier_weight_share (Σ inlier match probabilities / Σ all);
dense_share (the share of the matching mass, each token's most probable cells, that lies within the last
kernel width of where the pose puts its token, `dense_refit.DenseMass.share`) and sharpness (log of the
mass within that width over the mass within four times it, `dense_refit.sharpness`): how much of all of P,
not only of the drawn matches, the pose explains, and how tightly. Three more say when the matcher is out of
its depth, as on a kind of place or a look it was not trained on: agreement (how much the test-time ensemble's
members agree on where each token matches, `probabilities.Matches.agreement`), matched_share (how much of
the photo the matcher dares to match at all) and rival_gap (how much more tightly the pose explains P than
the best pose at another place or heading, `dense_refit.Choice`). And log_scale, the log of the depth scale
the pose needed (aerial metres per metre of lifted depth): at the wrong place the matches are noise to the
similarity, and a similarity fitted to noise shrinks (its scale is the cross-covariance of the two point sets
over the spread of one, near zero without correspondence), so wrong poses sit low in the scale range
(held-out kinds of place, three seeds: median scale 0.93 for panorama poses beyond 5 m against 1.08 within,
pinholes 0.88 against 0.92). And prior_offset, (distance of the pose from the prior position / the search radius)²,
clipped to 1: the prior is evidence too. A right pose lies about as far from the prior as the prior is from the
truth, a pose at the wrong place anywhere in the search circle (the squared offset of a point uniform in the
circle averages 1/2; a log-odds linear in it is a Gaussian prior on the position). Where the prior position only
centres a search tile (`search_area.Prior.is_estimate` False: an extent's windows) it says nothing, and the
feature takes that uninformed 1/2. A calibration without a feature (one fitted before it existed) gives it no
weight.

Without a calibration (e.g. the official checkpoints) a monotone heuristic stands in, and is only a ranking:

    confidence = (1 - exp(-inliers / COUNT_SCALE)) * (1 - exp(-(soft_ratio / RATIO_SCALE)²)) * (1 - ambiguity)

The first factor says "enough inliers to pin a similarity down" (8 inliers -> 0.63, 25 -> 0.96); the second
"more agreement than chance" (ratio 0.05 -> 0.32, 0.08 -> 0.63, 0.15 -> 0.97); the third "no other place
fits as well". Both forms give 0 below 3 inliers.

1-σ position uncertainty ``sigma_m`` (metres, radial RMS of the camera position): with k inliers of RMS
residual r (dst units, each a 2-D vector), the per-coordinate noise is σ² = Σ|r|² / (2k - 4) (4 parameters).
The camera position is the fitted similarity evaluated at the BEV origin, extrapolated from the inliers'
centroid c (its offset from the camera, metres) with the inliers' RMS spread ρ around c (linear regression
prediction variance):

    sigma_m = sqrt(2 σ² (1 + |c|² / ρ²) / k_eff),   k_eff = min(k, MAX_INDEPENDENT_INLIERS)

k_eff caps the count because sampled correspondences repeat ground tokens and neighbouring tokens have
correlated errors: without the cap 2000 inliers of 1 m residual would claim 2 cm. Without the inlier points
(``dst``/``position`` not given) the lever-arm term is left out and sigma_m is a lower bound.

That formula only sees the inliers' spread, not whether the matcher matched the right place, and it
promises far too little error. A calibration may carry ``sigma``: weights of log sigma_m over the same
features (`sigma_from`), fitted on photos with truth so that the position error is within
`RADIUS_68` · sigma_m for 68 % of the poses, as for a 2-D Gaussian error of per-axis σ = sigma_m. The
reported sigma_m is then that per-axis σ; the formula's value stays a feature (log_sigma).
"""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch

COUNT_SCALE = 8.0
RATIO_SCALE = 0.08
MAX_INDEPENDENT_INLIERS = 50

#: the confidence of a calibrated model is the probability that the position error is at most this, metres
HIT_RADIUS_M = 5.0
#: a 2-D Gaussian error of per-axis σ lies within this many σ of the truth with probability 68 %
RADIUS_68 = math.sqrt(-2.0 * math.log(1.0 - 0.68))
#: log sigma_m of a calibrated model is clipped to this range (sigma_m 0.05 m to 400 m)
_LOG_SIGMA_CLIP = (math.log(0.05), math.log(400.0))
#: quality features a calibration weighs, in order (see the module docstring)
FEATURE_NAMES = ("log_inliers", "soft_ratio", "ambiguity", "log_sigma", "inlier_weight_share", "panorama",
                 "heading_prior", "dense_share", "sharpness", "agreement", "matched_share", "rival_gap",
                 "log_scale", "prior_offset")
#: sharpness (a log ratio, <= 0, -inf without mass near the pose) is clipped below at this
_SHARPNESS_FLOOR = -5.0
#: sigma_m is clipped to this range (metres) before its logarithm: beyond it the pose is equally good or bad
_SIGMA_CLIP_M = (0.05, 200.0)
#: the depth scale is clipped to this range before its logarithm (relative depth may need any scale)
_SCALE_CLIP = (0.1, 10.0)
#: prior_offset without an informative prior position: the mean squared offset of a point uniform in the circle
UNINFORMED_PRIOR_OFFSET = 0.5

#: status thresholds: below either, the pose is reported as "low_confidence". For a calibrated model 0.9
#: means "at least 9 chances in 10 of being within HIT_RADIUS_M"; 0.8 let poses 10-30 m off through on kinds
#: of place the calibration had not seen (docs/evaluation.md, "Confidence on held-out kinds of place")
MIN_CONFIDENCE = 0.9
MIN_INLIERS = 10


def quality_features(inliers: int, soft_ratio: float, ambiguity: float, sigma_m: float,
                     inlier_weight_share: float, panorama: bool = True, heading_prior: bool = False,
                     dense_share: float = 0.0, sharpness: float = _SHARPNESS_FLOOR, agreement: float = 1.0,
                     matched_share: float = 0.0, rival_gap: float = 0.0, scale: float = 1.0,
                     prior_offset: Optional[float] = None) -> Dict[str, float]:
    """The `FEATURE_NAMES` of one pose (sigma_m NaN, i.e. fewer than 3 inliers, counts as the clip maximum).

    panorama / heading_prior: the camera type and whether the heading was constrained, because the same
    inlier numbers mean more for a 360° view and for a search over ±20° than over the full circle.
    dense_share in [0, 1] and sharpness <= 0: the pose against the whole of P (module docstring); their
    defaults are those of a pose that explains none of it. agreement, matched_share, rival_gap: the matcher's
    own doubt (module docstring). scale: the pose's depth scale (aerial metres per depth metre; NaN counts as
    1, the rigid fit's). prior_offset: the pose's distance from the prior position over the search radius
    (None: the prior position is no estimate of the camera's, `UNINFORMED_PRIOR_OFFSET`).
    """
    scale = min(max(scale, _SCALE_CLIP[0]), _SCALE_CLIP[1]) if math.isfinite(scale) else 1.0
    sigma = _SIGMA_CLIP_M[1] if not math.isfinite(sigma_m) else min(max(sigma_m, _SIGMA_CLIP_M[0]), _SIGMA_CLIP_M[1])
    offset2 = UNINFORMED_PRIOR_OFFSET if prior_offset is None else min(float(prior_offset), 1.0) ** 2
    return {"log_inliers": math.log1p(max(inliers, 0)), "soft_ratio": float(soft_ratio),
            "ambiguity": float(ambiguity), "log_sigma": math.log(sigma),
            "inlier_weight_share": float(inlier_weight_share), "panorama": float(bool(panorama)),
            "heading_prior": float(bool(heading_prior)), "dense_share": float(dense_share),
            "sharpness": max(float(sharpness), _SHARPNESS_FLOOR), "agreement": float(agreement),
            "matched_share": float(matched_share), "rival_gap": float(rival_gap), "log_scale": math.log(scale),
            "prior_offset": offset2}


def confidence_from(features: Dict[str, float], calibration: Optional[Dict[str, float]] = None) -> float:
    """Confidence in [0, 1] of a pose's `quality_features` (module docstring); 0 below 3 inliers."""
    inliers = math.expm1(features["log_inliers"])
    if inliers < 2.5 or not features["soft_ratio"] > 0:
        return 0.0
    if calibration:
        z = calibration["intercept"] + sum(calibration.get(k, 0.0) * features[k] for k in FEATURE_NAMES)
        return float(1.0 / (1.0 + math.exp(-min(max(z, -50.0), 50.0))))
    return float((1.0 - math.exp(-inliers / COUNT_SCALE))
                 * (1.0 - math.exp(-(features["soft_ratio"] / RATIO_SCALE) ** 2))
                 * (1.0 - min(max(features["ambiguity"], 0.0), 1.0)))


def pose_quality(residuals: torch.Tensor, inliers: torch.Tensor, weights: torch.Tensor, soft_score: float,
                 n: int, *, ambiguity: float = 0.0, panorama: bool = True, heading_prior: bool = False,
                 dst: Optional[torch.Tensor] = None, position: Optional[torch.Tensor] = None,
                 dense_share: float = 0.0, sharpness: float = _SHARPNESS_FLOOR, agreement: float = 1.0,
                 matched_share: float = 0.0, rival_gap: float = 0.0, scale: float = 1.0,
                 prior_offset: Optional[float] = None, calibration: Optional[Dict[str, float]] = None) -> dict:
    """Quality numbers of one pose for the ``camera_poses`` layer.

    residuals (N,) m (NaN = unusable), inliers (N,) bool, weights (N,) match probabilities, soft_score the
    RANSAC soft inlier count, n the number of matches the pose was fitted on, ambiguity from RANSAC,
    panorama / heading_prior: the camera type and whether a heading prior constrained the fit.
    Optional dst (N, 2) local metres of the matches and position (2,) of the camera add the lever-arm term
    to sigma_m. dense_share, sharpness: the pose against the whole of P; agreement, matched_share, rival_gap:
    the matcher's doubt; scale: the pose's depth scale; prior_offset: its distance from an informative prior
    position over the search radius, None without one (`quality_features`).
    calibration: the model's logistic weights, and its ``sigma`` weights (None: the heuristic and the
    formula's sigma_m).

    Returns dict(matches int, inliers int, inlier_ratio, confidence, residual_m (inlier RMS, NaN if none),
    sigma_m (NaN if fewer than 3 inliers), inlier_weight_share (Σ inlier weights / Σ weights), features).
    """
    inl = inliers.bool() & torch.isfinite(residuals)
    k = int(inl.sum())
    matches = int(n)
    r = residuals[inl].double()
    residual_m = float(r.pow(2).mean().sqrt()) if k else math.nan
    w = torch.nan_to_num(weights.double(), nan=0.0).clamp_min(0.0)
    w_total = float(w.sum())
    sigma_m = _sigma_m(r, dst[inl].double() if dst is not None else None, position)
    share = float(w[inl].sum()) / w_total if w_total > 0 else 0.0
    features = quality_features(k, soft_score / matches if matches else 0.0, ambiguity, sigma_m, share,
                                panorama, heading_prior, dense_share, sharpness, agreement, matched_share,
                                rival_gap, scale, prior_offset)
    return dict(
        matches=matches,
        inliers=k,
        inlier_ratio=k / matches if matches else 0.0,
        confidence=confidence_from(features, calibration),
        residual_m=residual_m,
        sigma_m=sigma_from(features, calibration, sigma_m),
        inlier_weight_share=share,
        features=features,
    )


def sigma_from(features: Dict[str, float], calibration: Optional[Dict], formula_sigma_m: float) -> float:
    """sigma_m of a pose (metres): exp(intercept + Σ_k w_k feature_k) with the calibration's ``sigma`` weights,
    else ``formula_sigma_m`` (module docstring)."""
    weights = (calibration or {}).get("sigma")
    if not weights or not math.isfinite(formula_sigma_m):
        return formula_sigma_m
    z = weights["intercept"] + sum(weights.get(k, 0.0) * features[k] for k in FEATURE_NAMES)
    return float(math.exp(min(max(z, _LOG_SIGMA_CLIP[0]), _LOG_SIGMA_CLIP[1])))


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
