"""The along-ray refit (refine.py) and RANSAC's use of it: exact on exact data, better than the isotropic
Procrustes when the depth is what is wrong, and held to RANSAC's limits."""

import math

import torch

from loc2_engine.ransac import ransac_similarity
from loc2_engine.ray_noise import RayNoise
from loc2_engine.refine import refine_pose
from loc2_engine.solver import SimilarityFit, heading_from_rotation, procrustes_2d, rotation_from_heading

NOISE = RayNoise.of_cells(cell_m=2.0, token_rad=2 * math.pi / 32, depth_rel=0.2)


def _scene(n=300, depth_err=0.0, seed=0, s=1.3, heading=37.0, t=(4.0, -2.5)):
    """BEV points all round a camera (depth units), their true local positions, and a copy of the BEV
    points whose depth is off by a factor 1 + depth_err·N(0, 1) along each ray."""
    g = torch.Generator().manual_seed(seed)
    az = 2 * math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    d = 4.0 + 26.0 * torch.rand(n, generator=g, dtype=torch.float64)
    bev = torch.stack([d * torch.sin(az), d * torch.cos(az)], -1)
    R = torch.as_tensor(rotation_from_heading(heading), dtype=torch.float64)
    local = s * bev @ R.T + torch.tensor(t, dtype=torch.float64)
    lifted = bev * (1.0 + depth_err * torch.randn(n, 1, generator=g, dtype=torch.float64))
    return lifted, local


def _fit(heading, s, t):
    R = torch.as_tensor(rotation_from_heading(heading), dtype=torch.float64)
    return SimilarityFit(R, torch.tensor(t, dtype=torch.float64), torch.tensor(s, dtype=torch.float64),
                         torch.tensor(True), ("",))


def _errors(fit, heading=37.0, t=(4.0, -2.5)):
    dh = (float(heading_from_rotation(fit.R)) - heading + 180.0) % 360.0 - 180.0
    return abs(dh), float((fit.t.double() - torch.tensor(t, dtype=torch.float64)).norm())


def test_exact_matches_give_the_exact_pose_from_a_wrong_start():
    src, dst = _scene()
    fit = refine_pose(src, dst, torch.ones(len(src)), _fit(45.0, 1.0, (6.0, 0.0)), NOISE, iterations=5)
    dh, dt = _errors(fit)
    assert dh < 1e-6 and dt < 1e-6 and abs(float(fit.s) - 1.3) < 1e-9


def test_depth_errors_along_the_rays_move_the_pose_less_than_in_the_isotropic_fit():
    iso_err, ray_err = torch.zeros(2), torch.zeros(2)
    for seed in range(6):  # 20 % depth errors; on average over scenes:
        src, dst = _scene(depth_err=0.2, seed=seed)
        w = torch.ones(len(src), dtype=torch.float64)
        iso = procrustes_2d(src[None], dst[None], w[None])[0]
        ray = refine_pose(src, dst, w, iso, NOISE)
        iso_err += torch.tensor(_errors(iso)) / 6
        ray_err += torch.tensor(_errors(ray)) / 6
    assert ray_err[1] < 0.1 and ray_err[1] < 0.5 * iso_err[1]  # the bearings pin the position (~0.27 m -> 0.07 m)
    assert ray_err[0] < iso_err[0]  # and the heading


def test_a_refused_step_keeps_the_last_accepted_pose():
    src, dst = _scene(depth_err=0.2)
    start = _fit(40.0, 1.2, (3.0, -2.0))
    assert refine_pose(src, dst, torch.ones(len(src)), start, NOISE, accept=lambda f: False) is start
    # a scale limit below the true 1.3 stops the refinement before it leaves the limit
    fit = refine_pose(src, dst, torch.ones(len(src)), start, NOISE, accept=lambda f: float(f.s) <= 1.25)
    assert float(fit.s) <= 1.25


def test_ransac_refits_along_the_rays_and_reports_that_fit():
    src, dst = _scene(n=400, depth_err=0.15, seed=3)
    g = torch.Generator().manual_seed(9)
    dst = dst.clone()
    dst[:120] = dst[:120] + 30.0 * (torch.rand(120, 2, generator=g, dtype=torch.float64) - 0.5) * 2  # outliers
    kw = dict(hypotheses=3000, th_inlier=2.5, position_prior=(4.0, -2.5), position_radius=25.0)
    plain = ransac_similarity(src.float(), dst.float(), generator=torch.Generator().manual_seed(0), **kw)
    ray = ransac_similarity(src.float(), dst.float(), ray_noise=NOISE, generator=torch.Generator().manual_seed(0),
                            **kw)
    assert plain.ok and ray.ok
    assert _errors(ray.fit)[1] < _errors(plain.fit)[1] and _errors(ray.fit)[1] < 0.5
    pred = ray.fit.s * src.float() @ ray.fit.R.T + ray.fit.t
    assert torch.allclose(ray.residuals, (pred - dst.float()).norm(dim=-1), atol=1e-4)
    assert torch.equal(ray.inliers, ray.residuals <= 2.5)
    # held to the same limits as the hypotheses
    capped = ransac_similarity(src.float(), dst.float(), ray_noise=NOISE, scale_range=(0.8, 1.25),
                               generator=torch.Generator().manual_seed(0), **kw)
    assert float(capped.fit.s) <= 1.25
