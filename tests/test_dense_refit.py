"""The last refit of the pose against the whole matching probability matrix (`dense_refit`), and the choice
between RANSAC's pose and its rivals by the matching mass they explain."""

import math

import pytest
import torch

from loc2_engine.dense_refit import (DEFAULT_SIGMAS_M, RIVAL_GAP_CAP, DenseMass, RefitSettings, refit_best,
                                    sharpness)
from loc2_engine.ransac import PoseLimits, ransac_similarity
from loc2_engine.solver import SimilarityFit, heading_from_rotation, rotation_from_heading

CELL_M = 2.0
#: the isotropic refit of heading and position, and of the position alone
TURN = RefitSettings(DEFAULT_SIGMAS_M, 0.0, turn=True)
STILL = RefitSettings(DEFAULT_SIGMAS_M, 0.0, turn=False)


def _scene(seed=0, heading=30.0, t=(3.0, -2.0), scale=1.2, n_tokens=150, spread_m=1.5):
    """Tokens lifted around a camera, a 2 m cell grid, and P spreading each token's mass over the cells
    near where the true pose puts it (Gaussian, ``spread_m``), plus a uniform floor of clutter."""
    g = torch.Generator().manual_seed(seed)
    angle = torch.rand(n_tokens, generator=g) * 2 * math.pi
    dist = 3.0 + 20.0 * torch.rand(n_tokens, generator=g)
    bev = torch.stack([dist * torch.cos(angle), dist * torch.sin(angle)], -1) / scale
    axis = (torch.arange(56, dtype=torch.float64) + 0.5 - 28.0) * CELL_M
    cells = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)
    truth = SimilarityFit(rotation_from_heading(torch.tensor(heading, dtype=torch.float64)),
                          torch.tensor(t, dtype=torch.float64), torch.tensor(scale, dtype=torch.float64),
                          torch.tensor(True), ("",))
    where = scale * bev.double() @ truth.R.T + truth.t
    d2 = ((cells[:, None, :] - where[None]) ** 2).sum(-1)
    P = torch.exp(-d2 / (2 * spread_m ** 2)) + 1e-4 * torch.rand(d2.shape, generator=g, dtype=torch.float64)
    P = P / P.sum() * n_tokens * 0.5
    return P.float(), cells.float(), bev.float(), truth


def _start(truth, dh=4.0, dt=(1.6, -1.2)):
    h = float(heading_from_rotation(truth.R)) + dh
    return SimilarityFit(rotation_from_heading(torch.tensor(h)), (truth.t + torch.tensor(dt)).float(),
                         truth.s.float(), torch.tensor(True), ("",))


def test_the_refit_climbs_to_the_pose_the_probabilities_support():
    P, cells, bev, truth = _scene()
    start = _start(truth)
    fit = DenseMass(P, cells, bev).refit(start, TURN)
    assert float((fit.t - truth.t.float()).norm()) < 0.15
    assert abs(float(heading_from_rotation(fit.R)) - 30.0) < 0.3
    assert float(fit.s) == float(start.s)  # the scale is RANSAC's
    assert float((start.t - truth.t.float()).norm()) > 1.9  # it had somewhere to go


def test_a_pinhole_refit_moves_the_position_and_keeps_the_heading():
    P, cells, bev, truth = _scene(heading=250.0)
    start = _start(truth, dh=0.0)
    fit = DenseMass(P, cells, bev).refit(start, STILL)
    torch.testing.assert_close(fit.R, start.R)
    assert float((fit.t - truth.t.float()).norm()) < 0.15


def test_the_refit_stays_inside_the_limits():
    """A search circle that excludes the supported pose: every step is refused, RANSAC's pose stays."""
    P, cells, bev, truth = _scene()
    start = _start(truth)
    limits = PoseLimits(None, None, None, (torch.zeros(2), start.t, 0.01))
    fit = DenseMass(P, cells, bev).refit(start, TURN, accept=lambda f: bool(limits(f)))
    torch.testing.assert_close(fit.t, start.t)
    torch.testing.assert_close(fit.R, start.R)
    heading = PoseLimits(None, float(heading_from_rotation(start.R)), 1.0)
    fit = DenseMass(P, cells, bev).refit(start, TURN, accept=lambda f: bool(heading(f)))
    assert abs(float(heading_from_rotation(fit.R)) - float(heading_from_rotation(start.R))) <= 1.0


def test_a_refitted_ransac_result_scores_the_matches_under_the_new_pose():
    P, cells, bev, truth = _scene(spread_m=0.5)
    flat = P.flatten()
    pick = torch.multinomial(flat, 600, replacement=True, generator=torch.Generator().manual_seed(1))
    src, dst = bev[pick % P.shape[1]], cells[pick // P.shape[1]]
    result = ransac_similarity(src, dst, torch.ones(len(src)), hypotheses=500)
    moved = _start(truth, dh=10.0, dt=(6.0, 0.0))
    again = result.refitted(moved, src, dst, 2.5)
    residuals = (moved.s * src @ moved.R.T + moved.t - dst).norm(dim=-1)
    torch.testing.assert_close(again.residuals, residuals)
    assert torch.equal(again.inliers, residuals <= 2.5)
    assert again.inliers.sum() < result.inliers.sum() and again.soft_score < result.soft_score
    assert again.ambiguity == result.ambiguity and again.fit is moved
    # the limits RANSAC kept to are handed on for the refit: the moved pose leaves a 3 m search circle
    bounded = ransac_similarity(src, dst, torch.ones(len(src)), hypotheses=500,
                                position_prior=tuple(truth.t.tolist()), position_radius=3.0)
    assert bool(bounded.limits(bounded.fit)) and not bool(bounded.limits(moved))


@pytest.mark.parametrize("turn", [True, False])
def test_nothing_to_refit_against_leaves_the_pose(turn):
    _, cells, bev, truth = _scene()
    start = _start(truth)
    fit = DenseMass(torch.zeros(cells.shape[0], bev.shape[0]), cells, bev).refit(start, TURN if turn else STILL)
    torch.testing.assert_close(fit.t, start.t)


def test_the_sharpest_pose_is_chosen_among_the_rivals_and_ransacs_own_wins_a_tie():
    """P supports the true pose tightly and a turned one 15 m away loosely, with more mass within 1.5 m of
    it: from starts near each, the refit of the tight one wins in either order. Two poses supported alike:
    the first candidate (RANSAC's own) keeps its place."""
    P, cells, bev, truth = _scene(spread_m=0.8)
    P_loose, _, _, other = _scene(heading=150.0, t=(-12.0, 9.0), spread_m=3.0)
    mass = DenseMass(P + 4.0 * P_loose, cells, bev)
    near_truth, near_other = _start(truth), _start(other)
    for order in [(near_other, near_truth), (near_truth, near_other)]:
        assert float((refit_best(mass, order, TURN).fit.t - truth.t.float()).norm()) < 0.2
    assert (sharpness(mass, refit_best(mass, [near_other], TURN).fit, 1.5)
            < sharpness(mass, refit_best(mass, [near_truth], TURN).fit, 1.5))
    P_alike, _, _, _ = _scene(heading=150.0, t=(-12.0, 9.0), spread_m=0.8)
    alike = DenseMass(P + P_alike, cells, bev)
    assert float((refit_best(alike, (near_other, near_truth), TURN).fit.t - other.t.float()).norm()) < 0.2
    assert float((refit_best(alike, (near_truth, near_other), TURN).fit.t - truth.t.float()).norm()) < 0.2
    # a margin against RANSAC's own pose hands the tie to the rival
    tie = refit_best(alike, (near_other, near_truth), TURN, margin=-1.0)
    assert float((tie.fit.t - truth.t.float()).norm()) < 0.2
    # the rival gap: small for two places supported alike, clear for a tight pose against a loose one, and
    # the cap without a rival
    assert abs(tie.rival_gap) < 0.3
    clear = refit_best(mass, (near_truth, near_other), TURN)
    assert clear.rival_gap > 0.5 + abs(tie.rival_gap)
    assert refit_best(mass, (near_truth,), TURN).rival_gap == RIVAL_GAP_CAP
    # a little sharper with a third of the mass is not enough: without a margin the heavier pose wins in
    # either order
    P_wide, _, _, _ = _scene(spread_m=1.0)
    P_light, _, _, _ = _scene(heading=150.0, t=(-12.0, 9.0), spread_m=0.5)
    heavier = DenseMass(P_wide + 0.3 * P_light, cells, bev)
    assert (sharpness(heavier, heavier.refit(near_other, TURN), 1.5)
            > sharpness(heavier, heavier.refit(near_truth, TURN), 1.5))
    for order in [(near_other, near_truth), (near_truth, near_other)]:
        assert float((refit_best(heavier, order, TURN, margin=0.0).fit.t - truth.t.float()).norm()) < 0.2
    not_ok = SimilarityFit(near_truth.R, near_truth.t, near_truth.s, torch.tensor(False), ("",))
    assert mass.score(not_ok, 1.5) == 0.0 and sharpness(mass, not_ok, 1.5) == -math.inf


def test_the_share_is_the_part_of_the_mass_a_pose_explains():
    P, cells, bev, truth = _scene(spread_m=0.8)
    mass = DenseMass(P, cells, bev)
    at_truth = mass.share(mass.refit(_start(truth), TURN), 1.5)
    assert 0.5 < at_truth <= 1.0
    assert mass.share(_start(truth, dh=90.0, dt=(15.0, 0.0)), 1.5) < 0.1 * at_truth
    assert DenseMass(torch.zeros_like(P), cells, bev).share(_start(truth), 1.5) == 0.0


@pytest.mark.parametrize("turn", [True, False])
def test_a_kernel_long_along_the_rays_absorbs_a_one_sided_depth_error(turn):
    """Depth 30 % too far on one side of the camera and too near on the other (a monocular depth map's
    correlated error): the isotropic kernel pulls the position sideways to absorb it, the kernel that allows
    the depth error along each ray leaves the bearings to place the camera."""
    P, cells, bev, truth = _scene(spread_m=1.0)
    bev_wrong = bev * (1.0 + 0.3 * torch.sin(torch.atan2(bev[:, 1], bev[:, 0])))[:, None]
    start = _start(truth, dh=4.0 if turn else 0.0)
    mass = DenseMass(P, cells, bev_wrong)
    fits = {rel: mass.refit(start, RefitSettings((3.0, 2.0, 1.5, 1.0), rel, turn)) for rel in (0.0, 0.2)}
    off = {rel: float((fit.t - truth.t.float()).norm()) for rel, fit in fits.items()}
    assert off[0.0] > 0.8 and off[0.2] < 0.75 * off[0.0]
    fit = fits[0.2]
    if turn:
        assert abs(float(heading_from_rotation(fit.R)) - 30.0) < 0.3
    else:
        torch.testing.assert_close(fit.R, start.R)
    # without the error both kernels find the pose
    exact = DenseMass(P, cells, bev).refit(start, RefitSettings(DEFAULT_SIGMAS_M, 0.2, turn))
    assert float((exact.t - truth.t.float()).norm()) < 0.15


def test_written_out_dot_products_equal_the_reduction_bit_for_bit():
    from loc2_engine.dense_refit import _dot

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(32, 77, 2, dtype=torch.float64, generator=gen)
    b = torch.randn(32, 77, 2, dtype=torch.float64, generator=gen)
    assert torch.equal(_dot(a, b), (a * b).sum(-1))
    assert torch.equal(_dot(a, a), (a ** 2).sum(-1))
