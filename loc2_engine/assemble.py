"""The last stage: a `PoseEstimate` becomes a `Result`, with its confidence, status, the pose in the raster's
CRS and WGS84, both headings, and the explanation arrays (matches, inliers, the ground layout placed by the
pose). A failed photo's `Result` carries what was known when it failed, and nothing else.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .confidence import pose_quality, status_from
from .dense_refit import SCORE_SIGMA_M, sharpness
from .lifting import LiftedTokens
from .orientation import unroll_uv
from .pose import PoseEstimate
from .probabilities import Matches
from .result import Result, RivalPose
from .search_area import SearchArea
from .solver import heading_from_rotation


def assemble_result(photo_id: str, ground, ground_in, area: SearchArea, lifted: LiftedTokens, matches: Matches,
                    pose: PoseEstimate, matcher, depth_kind: str, runtime_s: float, **provenance) -> Result:
    """The `Result` of a localized photo.

    ground: the `GroundImage` (EXIF orientation applied); ground_in: its `ground.ModelInput`; depth_kind: the
    depth provider's kind (the tokens' photo pixels depend on it); provenance: ``model``, ``depth`` names.
    """
    ransac, fit, frame = pose.ransac, pose.ransac.fit, area.frame
    camera, s = ground.camera, float(fit.s)
    t_local = fit.t.detach().double().numpy().reshape(2)
    quality = pose_quality(ransac.residuals, ransac.inliers, pose.weights, ransac.soft_score, len(pose.weights),
                           ambiguity=ransac.ambiguity, panorama=camera.kind == "pano",
                           heading_prior=area.prior.heading_deg is not None,
                           dst=pose.xy_aerial, position=fit.t.detach().float(),
                           dense_share=pose.mass.share(fit, SCORE_SIGMA_M),
                           sharpness=sharpness(pose.mass, fit, SCORE_SIGMA_M), agreement=matches.agreement,
                           matched_share=matches.matched_share, rival_gap=pose.rival_gap,
                           scale=s, prior_offset=prior_offset(t_local, area),
                           calibration=matcher.confidence_calibration)
    heading = float(heading_from_rotation(fit.R.detach().double()))
    xy_crs = frame.from_local(t_local[None])[0]
    lon, lat = frame.local_to_lonlat(t_local[None])[0]
    valid = lifted.valid
    layout_xy = (s * lifted.xy_bev[valid] @ fit.R.detach().float().T + fit.t.detach().float()).numpy()
    # the tokens' pixels on the photo as loaded, a rolled canonical view turned back
    uv_photo = matcher.ground_tokens(camera, depth_kind, ground_in.rows)[0].float()
    roll = area.view.roll
    uv_photo = unroll_uv(uv_photo, roll, ground_in.image.shape[1], camera.width).numpy() if roll else uv_photo.numpy()
    return Result(
        photo=photo_id, status=status_from(quality["confidence"], quality["inliers"]), error="",
        x=float(xy_crs[0]), y=float(xy_crs[1]), lon=float(lon), lat=float(lat), heading_deg=heading,
        heading_grid_deg=float(frame.true_to_grid_heading(heading, xy_crs)), scale=s,
        matches=int(quality["matches"]), inliers=int(quality["inliers"]),
        inlier_ratio=float(quality["inlier_ratio"]), confidence=float(quality["confidence"]),
        residual_m=float(quality["residual_m"]), sigma_m=float(quality["sigma_m"]),
        ambiguity=float(ransac.ambiguity), quality_features=quality["features"], runtime_s=runtime_s,
        rivals=rival_poses(pose, frame),
        uv_ground=uv_photo[matches.idx_g.numpy()], xy_bev=pose.xy_bev.numpy(), xy_aerial=pose.xy_aerial.numpy(),
        weights=pose.weights.numpy(), inlier_mask=ransac.inliers.cpu().numpy().astype(bool),
        residuals_m=ransac.residuals.detach().cpu().float().numpy(),
        layout_uv=uv_photo[valid.numpy()], layout_xy=layout_xy,
        **provenance, **photo_fields(ground), **area_fields(area))


def prior_offset(t_local: np.ndarray, area: SearchArea) -> Optional[float]:
    """The camera position ``t_local`` (2,) local metres from the prior position, over the search radius; None
    when the prior position is no estimate of the camera's (`search_area.Prior.is_estimate`)."""
    if not area.prior.is_estimate:
        return None
    return float(np.hypot(*(t_local - area.prior_local))) / float(area.prior.radius_m)


def rival_poses(pose: PoseEstimate, frame) -> tuple:
    """The pose's distinct runner-ups as `RivalPose` in the raster CRS (true-north headings), best first."""
    out = []
    for fit, gap in pose.rivals:
        xy = frame.from_local(fit.t.detach().double().numpy().reshape(1, 2))[0]
        out.append(RivalPose(float(xy[0]), float(xy[1]), float(heading_from_rotation(fit.R.detach().double())),
                             float(gap)))
    return tuple(out)


def photo_fields(ground) -> dict:
    """The `Result` fields known once the photo is read (None: not read)."""
    if ground is None:
        return {}
    return {"camera": ground.camera.kind, "hfov_deg": float(ground.camera.hfov_deg)}


def area_fields(area: Optional[SearchArea]) -> dict:
    """The `Result` fields known once the aerial window is cut (None: not cut)."""
    if area is None:
        return {}
    return {"crs": area.frame.crs.to_string(), "window": area.window, "frame": area.frame}
