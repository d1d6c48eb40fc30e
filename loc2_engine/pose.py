"""The pose stage: the camera's position, heading and depth scale from the lifted tokens and their matches.

1. RANSAC (`ransac`) over the matches drawn from P, inside the priors' limits (depth scale range, heading
   prior, search radius), each finished pose refitted with its matches' errors weighed along and across
   their rays (`refine`);
2. RANSAC's pose and its runner-up poses at other places or headings refitted to the whole of P
   (`dense_refit`), and the one that explains P most tightly kept.

Both refits weigh a lifted point's error with the one noise model of `ray_noise`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from .config import PoseConfig
from .dense_refit import KIND_SETTINGS, DenseMass, refit_best
from .errors import LocalizationError
from .lifting import LiftedTokens
from .probabilities import Matches
from .ransac import RansacResult, ransac_similarity
from .ray_noise import RayNoise
from .search_area import SearchArea
from .solver import SimilarityFit


@dataclass(frozen=True)
class PoseEstimate:
    """ransac: the search's result with the final pose (``ransac.fit``: xy_local = s R xy_bev + t) and the
    residuals and inliers of the matches under it; mass: P as the refit saw it (`dense_refit.DenseMass`);
    xy_bev (N, 2) depth units and xy_aerial (N, 2) local metres: the matched points; weights (N,) float32;
    rival_gap: how much more tightly the pose explains P than its best rival, rivals: the distinct runner-up
    poses with their rank gaps (`dense_refit.Choice`)."""

    ransac: RansacResult
    mass: DenseMass
    xy_bev: torch.Tensor
    xy_aerial: torch.Tensor
    weights: torch.Tensor
    rival_gap: float
    rivals: Tuple[Tuple[SimilarityFit, float], ...] = ()


def estimate_pose(lifted: LiftedTokens, matches: Matches, area: SearchArea, camera, matcher,
                  depth_scale_range, config: PoseConfig, seed: int) -> PoseEstimate:
    """The pose of the photo seen by ``camera`` (its kind and field of view), matched by ``matcher`` (whose
    token grid and aerial cells set how precise a match is).

    depth_scale_range: (min, max) plausible scale of metric depth, None for relative depth; config: resolved
    (`config.LocalizerConfig.resolved`); seed: RANSAC's generator. Raises LocalizationError when no pose meets
    the limits.
    """
    xy_bev, xy_aerial, w = lifted.xy_bev[matches.idx_g], matches.cells_xy[matches.idx_a], matches.weights
    prior = area.prior
    cell_m = float(matcher.aerial_size_m) / math.sqrt(matches.cells_xy.shape[0])
    token_columns = matcher.token_grid(camera.kind)[1]
    ransac = ransac_similarity(
        xy_bev, xy_aerial, w, hypotheses=int(config.hypotheses), th_inlier=config.th_inlier_m,
        th_soft=config.th_soft_m, with_scale=bool(config.with_scale), scale_range=depth_scale_range,
        heading_prior_deg=None if prior.heading_deg is None else float(prior.heading_deg) % 360.0,
        heading_tolerance_deg=prior.heading_tolerance_deg,
        position_prior=tuple(map(float, area.prior_local)), position_radius=float(prior.radius_m),
        ray_noise=_ray_noise(camera, token_columns, cell_m, config), rivals=int(config.rivals),
        generator=torch.Generator().manual_seed(int(seed)))
    if not ransac.ok:
        raise LocalizationError(f"No consistent pose from {len(w)} matches: {ransac.reason}")
    valid = lifted.valid
    mass = DenseMass(matches.P[:, valid], matches.cells_xy, lifted.xy_bev[valid])
    choice = refit_best(mass, (ransac.fit,) + ransac.rivals, KIND_SETTINGS[camera.kind],
                        accept=lambda f: bool(ransac.limits(f)))
    return PoseEstimate(ransac.refitted(choice.fit, xy_bev, xy_aerial, config.th_inlier_m), mass, xy_bev,
                        xy_aerial, w, choice.rival_gap, choice.rivals)


def _ray_noise(camera, token_columns: int, cell_m: float, config: PoseConfig) -> Optional[RayNoise]:
    """The noise of a match for RANSAC's last refit (`refine`), with aerial cells cell_m apart; None (the plain
    Procrustes) when ``ray_depth_rel`` is 0 or in the rigid ablation (no scale)."""
    if not config.ray_depth_rel or not config.with_scale:
        return None
    span = 2.0 * math.pi if camera.kind == "pano" else math.radians(camera.hfov_deg)
    return RayNoise.of_cells(cell_m, token_rad=span / token_columns, depth_rel=float(config.ray_depth_rel))
