"""RANSAC similarity: robustness (property test), priors, determinism, degenerate inputs."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from loc2_engine.ransac import ransac_similarity
from loc2_engine.solver import heading_from_rotation, rotation_from_heading


def _angle_diff(a, b):
    return (a - b + 180.0) % 360.0 - 180.0


def make_problem(heading, scale, tx, ty, seed, n=400, outlier_ratio=0.6, noise_m=0.2):
    """Aerial points dst (n, 2) metres within 40 m of the camera at t, ground points src = their BEV in depth
    units (1 / scale metres), noise on dst, a fraction of dst replaced by uniform points of the 100 m window."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.tensor([tx, ty])
    R = rotation_from_heading(torch.tensor(float(heading)))
    dst_true = t + (torch.rand(n, 2, generator=gen) - 0.5) * 80.0
    src = ((dst_true - t) @ R) / scale  # R⁻¹ = Rᵀ: row-vector form of Rᵀ (dst - t)
    dst = dst_true + noise_m * torch.randn(n, 2, generator=gen)
    outlier = torch.rand(n, generator=gen) < outlier_ratio
    dst[outlier] = t + (torch.rand(int(outlier.sum()), 2, generator=gen) - 0.5) * 100.0
    weights = 0.1 + torch.rand(n, generator=gen)
    return src, dst, weights, outlier


similarity = st.tuples(st.floats(0.0, 360.0, exclude_max=True), st.floats(0.1, 10.0),
                       st.floats(-100.0, 100.0), st.floats(-100.0, 100.0), st.integers(0, 2**31 - 1))


@settings(max_examples=25, deadline=None)
@given(similarity)
def test_recovers_pose_with_60_percent_outliers(params):
    heading, scale, tx, ty, seed = params
    src, dst, w, outlier = make_problem(heading, scale, tx, ty, seed)
    res = ransac_similarity(src, dst, w, generator=torch.Generator().manual_seed(seed))
    assert res.ok, res.reason
    assert float((res.fit.t - torch.tensor([tx, ty])).norm()) <= 0.3
    assert abs(_angle_diff(res.heading_deg, heading)) <= 0.5
    assert float(res.fit.s) == pytest.approx(scale, rel=0.02)
    # inliers are (nearly) the true inliers
    assert int((res.inliers & outlier).sum()) <= 5 and int((~res.inliers & ~outlier).sum()) <= 2


def test_noiseless_without_outliers_is_exact():
    src, dst, w, _ = make_problem(200.0, 3.0, 50.0, -20.0, 1, outlier_ratio=0.0, noise_m=0.0)
    res = ransac_similarity(src, dst, w)
    assert res.ok and res.inliers.all()
    assert torch.allclose(res.fit.t, torch.tensor([50.0, -20.0]), atol=1e-3)
    assert abs(_angle_diff(res.heading_deg, 200.0)) < 1e-3
    assert float(res.residuals.max()) < 1e-3
    # the soft count of a perfect inlier is sigmoid(β th_inlier) = sigmoid(5), as in the reference
    assert res.soft_score == pytest.approx(len(src) / (1 + math.exp(-5.0)), rel=1e-4)


def test_reproducible_with_generator_and_by_default():
    src, dst, w, _ = make_problem(10.0, 1.0, 0.0, 0.0, 2)
    a = ransac_similarity(src, dst, w, generator=torch.Generator().manual_seed(7))
    b = ransac_similarity(src, dst, w, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.fit.t, b.fit.t) and torch.equal(a.inliers, b.inliers)
    assert torch.equal(ransac_similarity(src, dst, w).fit.R, ransac_similarity(src, dst, w).fit.R)


def _two_structures(heading_a, scale_a, heading_b, scale_b):
    """60 % of the points follow pose A, 40 % pose B (same camera position): A wins unless excluded."""
    src_a, dst_a, w_a, _ = make_problem(heading_a, scale_a, 0.0, 0.0, 3, n=300, outlier_ratio=0.0)
    src_b, dst_b, w_b, _ = make_problem(heading_b, scale_b, 0.0, 0.0, 4, n=200, outlier_ratio=0.0)
    return torch.cat([src_a, src_b]), torch.cat([dst_a, dst_b]), torch.cat([w_a, w_b])


def test_heading_prior_selects_the_structure():
    src, dst, w = _two_structures(30.0, 1.0, 200.0, 1.0)
    assert abs(_angle_diff(ransac_similarity(src, dst, w).heading_deg, 30.0)) < 0.5
    res = ransac_similarity(src, dst, w, heading_prior_deg=190.0, heading_tolerance_deg=15.0)
    assert res.ok and abs(_angle_diff(res.heading_deg, 200.0)) < 0.5
    # default tolerance (20°) applies when only the prior is given
    assert abs(_angle_diff(ransac_similarity(src, dst, w, heading_prior_deg=185.0).heading_deg, 200.0)) < 0.5


def test_scale_range_selects_the_structure():
    src, dst, w = _two_structures(30.0, 1.0, 30.0, 3.0)
    assert float(ransac_similarity(src, dst, w).fit.s) == pytest.approx(1.0, rel=0.01)
    res = ransac_similarity(src, dst, w, scale_range=(2.0, 5.0))
    assert res.ok and float(res.fit.s) == pytest.approx(3.0, rel=0.01)


def test_position_prior_selects_the_structure():
    """Two camera positions 30 m apart: the stronger one wins, unless the search area excludes it."""
    src_a, dst_a, w_a, _ = make_problem(30.0, 1.0, 0.0, 0.0, 3, n=300, outlier_ratio=0.0)
    src_b, dst_b, w_b, _ = make_problem(30.0, 1.0, 30.0, 0.0, 4, n=200, outlier_ratio=0.0)
    src, dst, w = torch.cat([src_a, src_b]), torch.cat([dst_a, dst_b]), torch.cat([w_a, w_b])
    assert float(ransac_similarity(src, dst, w).fit.t.norm()) < 0.1
    res = ransac_similarity(src, dst, w, position_prior=(25.0, 5.0), position_radius=10.0)
    assert res.ok and float((res.fit.t - torch.tensor([30.0, 0.0])).norm()) < 0.1
    far = ransac_similarity(src, dst, w, position_prior=(-200.0, 0.0), position_radius=10.0)
    assert not far.ok and "search radius of 10 m" in far.reason
    with pytest.raises(ValueError):
        ransac_similarity(src, dst, w, position_prior=(0.0, 0.0))


def test_ambiguity_measures_a_rival_place():
    src_a, dst_a, w_a, _ = make_problem(30.0, 1.0, 0.0, 0.0, 3, n=300, outlier_ratio=0.0)
    src_b, dst_b, w_b, _ = make_problem(30.0, 1.0, 30.0, 0.0, 4, n=200, outlier_ratio=0.0)
    rival = ransac_similarity(torch.cat([src_a, src_b]), torch.cat([dst_a, dst_b]), torch.cat([w_a, w_b]))
    assert 0.5 < rival.ambiguity < 0.8  # ~200 / 300 points support the other place
    src, dst, w, _ = make_problem(30.0, 1.0, 0.0, 0.0, 5, n=500, outlier_ratio=0.4)
    assert ransac_similarity(src, dst, w).ambiguity < 0.3
    assert ransac_similarity(src_a, dst_a, w_a).ambiguity < 0.1  # no outliers: nothing else fits


def test_rivals_are_the_runner_up_poses_at_other_places_or_headings():
    """Three structures: A (300 points) wins; B (200 points) 30 m away and C (150 points) at A's place but
    turned 120 degrees are its rivals, each finished to its own exact pose; near-copies of A are not."""
    src_a, dst_a, w_a, _ = make_problem(30.0, 1.0, 0.0, 0.0, 3, n=300, outlier_ratio=0.0)
    src_b, dst_b, w_b, _ = make_problem(30.0, 1.0, 30.0, 0.0, 4, n=200, outlier_ratio=0.0)
    src_c, dst_c, w_c, _ = make_problem(150.0, 1.0, 0.0, 0.0, 5, n=150, outlier_ratio=0.0)
    src, dst, w = torch.cat([src_a, src_b, src_c]), torch.cat([dst_a, dst_b, dst_c]), torch.cat([w_a, w_b, w_c])
    assert ransac_similarity(src, dst, w).rivals == ()
    res = ransac_similarity(src, dst, w, hypotheses=4000, rivals=4)
    assert float(res.fit.t.norm()) < 0.1 and abs(_angle_diff(res.heading_deg, 30.0)) < 0.5
    assert 1 <= len(res.rivals) <= 4
    poses = [(f.t, float(heading_from_rotation(f.R))) for f in (res.fit,) + res.rivals]
    for i, (t_i, h_i) in enumerate(poses):
        for t_j, h_j in poses[:i]:
            assert float((t_i - t_j).norm()) > 4.0 or abs(_angle_diff(h_i, h_j)) > 30.0
    def found(t, heading):
        return any(float((f.t - torch.tensor(t)).norm()) < 0.1 and abs(_angle_diff(
            float(heading_from_rotation(f.R)), heading)) < 0.5 for f in res.rivals)
    assert found((30.0, 0.0), 30.0) and found((0.0, 0.0), 150.0)
    # rivals keep to the same limits as the winner
    bounded = ransac_similarity(src, dst, w, hypotheses=4000, rivals=4, position_prior=(0.0, 0.0),
                                position_radius=10.0)
    assert bounded.rivals and all(float(f.t.norm()) <= 10.0 for f in bounded.rivals)


def test_unsatisfiable_prior_fails_with_reason():
    src, dst, w, _ = make_problem(0.0, 1.0, 0.0, 0.0, 5, outlier_ratio=0.0)
    res = ransac_similarity(src, dst, w, scale_range=(50.0, 60.0))
    assert not res.ok and "scale range" in res.reason
    assert math.isnan(res.heading_deg) and torch.isnan(res.residuals).all() and not res.inliers.any()


def test_unusable_correspondences_are_ignored():
    src, dst, w, _ = make_problem(45.0, 2.0, 5.0, 5.0, 6, outlier_ratio=0.3)
    src[0, 0] = float("nan")
    dst[1, 1] = float("inf")
    w[2] = 0.0
    w[3] = float("nan")
    res = ransac_similarity(src, dst, w)
    assert res.ok
    assert torch.isnan(res.residuals[:4]).all() and not res.inliers[:4].any()
    assert torch.isfinite(res.residuals[4:]).all()


P = [[0.0, 0.0], [4.0, 1.0], [2.0, 5.0], [-3.0, 2.0], [1.0, -4.0]]


@pytest.mark.parametrize("src,dst,w,reason", [
    (P[:2], P[:2], None, "only 2 usable"),
    (P, P, [1.0, 1.0, 0.0, 0.0, 0.0], "only 2 usable"),
    (P, P, [0.0] * 5, "only 0 usable"),
    ([[float("nan"), 0.0]] * 5, P, None, "only 0 usable"),
    ([[1.0, 1.0]] * 5, P, None, "non-degenerate"),  # fewer than two distinct points
    ([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]], P, None, "non-degenerate"),  # collinear
    (P, P, [1.0, 1.0, 1e-30, 1e-30, 1e-30], "concentrated"),
])
def test_degenerate_inputs_fail_with_reason(src, dst, w, reason):
    res = ransac_similarity(torch.tensor(src), torch.tensor(dst), None if w is None else torch.tensor(w),
                            hypotheses=50)
    assert not res.ok and reason in res.reason
    assert not bool(res.fit.ok) and torch.isnan(res.fit.t).all()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="N, 2"):
        ransac_similarity(torch.zeros(5, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="weights"):
        ransac_similarity(torch.zeros(5, 2), torch.zeros(5, 2), torch.ones(4))
    with pytest.raises(ValueError, match="scale_range"):
        ransac_similarity(torch.zeros(5, 2), torch.zeros(5, 2), scale_range=(2.0, 1.0))


def test_soft_scores_equal_the_plain_formula_and_skip_invalid_fits():
    """Every valid hypothesis's score is Σ sigmoid(β (th - |s R p + t - q|)); an invalid one is -inf, even
    when its fit is NaN."""
    from loc2_engine.ransac import _soft_scores
    from loc2_engine.solver import SimilarityFit

    gen = torch.Generator().manual_seed(3)
    H, N, th = 50, 300, 5.0
    p, q = torch.randn(N, 2, generator=gen) * 20.0, torch.randn(N, 2, generator=gen) * 20.0
    R = rotation_from_heading(torch.rand(H, generator=gen) * 360.0)
    t, s = torch.randn(H, 2, generator=gen) * 5.0, 0.5 + torch.rand(H, generator=gen)
    valid = torch.rand(H, generator=gen) < 0.3
    t[~valid] = float("nan")
    hyp = SimilarityFit(R=R, t=t, s=s, ok=valid, reason=("",) * H)
    scores = _soft_scores(hyp, valid, p, q, th)
    pred = s[:, None, None] * torch.einsum("hij,nj->hni", R, p) + t[:, None, :]
    plain = torch.sigmoid(5.0 / th * (th - (pred - q).norm(dim=-1))).sum(1)
    assert torch.isneginf(scores[~valid]).all()
    torch.testing.assert_close(scores[valid], plain[valid], rtol=1e-4, atol=1e-3)
