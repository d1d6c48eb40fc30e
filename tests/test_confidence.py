"""Pose quality: confidence monotone and bounded, residual RMS, sigma_m calibrated on independent noise."""

import math

import pytest
import torch

from loc2_engine.confidence import (MAX_INDEPENDENT_INLIERS, UNINFORMED_PRIOR_OFFSET, confidence_from, pose_quality,
                                    quality_features, status_from)
from loc2_engine.solver import procrustes_2d, rotation_from_heading


def _conf(inliers, ratio, ambiguity=0.0, sigma_m=1.0, share=0.5, calibration=None):
    return confidence_from(quality_features(inliers, ratio, ambiguity, sigma_m, share), calibration)


def test_heuristic_confidence_bounded_and_monotone():
    counts = [0, 1, 3, 5, 10, 30, 100, 1000, 8000]
    ratios = [0.0, 0.01, 0.03, 0.05, 0.1, 0.2, 0.5, 1.0]
    grid = [[_conf(k, r) for r in ratios] for k in counts]
    for i, row in enumerate(grid):
        assert all(0.0 <= c <= 1.0 for c in row)
        assert row == sorted(row)  # non-decreasing in the ratio
        if i:
            assert all(a >= b for a, b in zip(row, grid[i - 1]))  # and in the count
    assert _conf(0, 0.5) == 0.0 and _conf(100, 0.0) == 0.0 and _conf(2, 0.9) == 0.0
    assert _conf(20, 0.01) < 0.05 < 0.9 < _conf(200, 0.3)
    # another place that explains the matches as well makes the pose a guess
    assert _conf(200, 0.3, ambiguity=0.95) < 0.1 < _conf(200, 0.3, ambiguity=0.2)


def test_calibrated_confidence_is_the_logistic_of_the_features():
    cal = {"intercept": -4.0, "log_inliers": 1.0, "soft_ratio": 5.0, "ambiguity": -3.0, "log_sigma": -1.0,
           "inlier_weight_share": 2.0, "panorama": 0.5, "heading_prior": 0.25}
    f = quality_features(40, 0.2, 0.3, 2.0, 0.6, panorama=True, heading_prior=False)
    z = -4.0 + math.log(41) + 5.0 * 0.2 - 3.0 * 0.3 - math.log(2.0) + 2.0 * 0.6 + 0.5
    assert confidence_from(f, cal) == pytest.approx(1 / (1 + math.exp(-z)))
    assert _conf(40, 0.2, 0.3, 2.0, 0.6, cal) > _conf(40, 0.2, 0.3, 8.0, 0.6, cal)  # larger sigma: lower
    assert _conf(2, 0.9, calibration=cal) == 0.0
    # sigma_m NaN (fewer than 3 inliers) and absurd values are clipped, never NaN
    assert 0.0 <= _conf(3, 0.5, 0.0, float("nan"), 0.5, cal) < _conf(3, 0.5, 0.0, 1.0, 0.5, cal)
    # a calibration from before the dense features gives them no weight; a newer one weighs them
    dense = quality_features(40, 0.2, 0.3, 2.0, 0.6, True, False, dense_share=0.4, sharpness=-0.7)
    assert confidence_from(dense, cal) == pytest.approx(1 / (1 + math.exp(-z)))
    newer = {**cal, "dense_share": 3.0, "sharpness": 1.5}
    assert confidence_from(dense, newer) == pytest.approx(1 / (1 + math.exp(-(z + 3.0 * 0.4 - 1.5 * 0.7))))
    # no mass near the pose: sharpness -inf is clipped, never NaN
    assert math.isfinite(confidence_from(quality_features(40, 0.2, 0.3, 2.0, 0.6, sharpness=-math.inf), newer))


def test_the_depth_scale_is_a_feature_in_logarithms_clipped_and_weighed_by_a_calibration():
    f = quality_features(40, 0.2, 0.3, 2.0, 0.6, scale=0.85)
    assert f["log_scale"] == pytest.approx(math.log(0.85))
    assert quality_features(40, 0.2, 0.3, 2.0, 0.6)["log_scale"] == 0.0  # the rigid fit's scale, 1
    assert quality_features(40, 0.2, 0.3, 2.0, 0.6, scale=float("nan"))["log_scale"] == 0.0
    assert quality_features(40, 0.2, 0.3, 2.0, 0.6, scale=1e-9)["log_scale"] == pytest.approx(math.log(0.1))
    cal = {"intercept": 0.0, "log_scale": 4.0}
    low, high = (confidence_from(quality_features(40, 0.2, 0.3, 2.0, 0.6, scale=s), cal) for s in (0.85, 1.2))
    assert low == pytest.approx(1 / (1 + 0.85 ** -4.0)) and low < high
    # through pose_quality, as the pipeline passes the fitted scale
    q = pose_quality(torch.tensor([0.3, 0.4, 1.2]), torch.ones(3, dtype=torch.bool), torch.ones(3), 2.5, 3,
                     scale=1.3)
    assert q["features"]["log_scale"] == pytest.approx(math.log(1.3))


def test_the_offset_from_an_informative_prior_is_a_squared_feature():
    assert quality_features(40, 0.2, 0.3, 2.0, 0.6, prior_offset=0.4)["prior_offset"] == pytest.approx(0.16)
    assert quality_features(40, 0.2, 0.3, 2.0, 0.6, prior_offset=1.3)["prior_offset"] == 1.0  # the circle's edge
    # without an informative prior position: the mean of a point uniform in the circle
    assert quality_features(40, 0.2, 0.3, 2.0, 0.6)["prior_offset"] == UNINFORMED_PRIOR_OFFSET == 0.5
    cal = {"intercept": 1.0, "prior_offset": -2.0}
    near, far = (confidence_from(quality_features(40, 0.2, 0.3, 2.0, 0.6, prior_offset=d), cal) for d in (0.2, 0.9))
    assert near == pytest.approx(1 / (1 + math.exp(-(1.0 - 2.0 * 0.04)))) and far < near
    q = pose_quality(torch.tensor([0.3, 0.4, 1.2]), torch.ones(3, dtype=torch.bool), torch.ones(3), 2.5, 3,
                     prior_offset=0.5)
    assert q["features"]["prior_offset"] == pytest.approx(0.25)


def test_pose_quality_numbers():
    residuals = torch.tensor([0.3, 0.4, 1.2, 5.0, 9.0, float("nan")])
    inliers = torch.tensor([True, True, True, False, False, False])
    weights = torch.tensor([1.0, 1.0, 2.0, 1.0, 5.0, 0.0])
    q = pose_quality(residuals, inliers, weights, soft_score=2.8, n=6, ambiguity=0.25, dense_share=0.3,
                     sharpness=-1.2)
    assert (q["matches"], q["inliers"]) == (6, 3)
    assert q["inlier_ratio"] == pytest.approx(0.5)
    assert q["residual_m"] == pytest.approx(math.sqrt((0.09 + 0.16 + 1.44) / 3))
    assert q["sigma_m"] == pytest.approx(math.sqrt((0.09 + 0.16 + 1.44) / 1 / 3))
    assert q["inlier_weight_share"] == pytest.approx(0.4)
    assert q["features"] == quality_features(3, 2.8 / 6, 0.25, q["sigma_m"], 0.4, True, False, 0.3, -1.2)
    assert q["confidence"] == pytest.approx(confidence_from(q["features"]))


def test_a_calibrated_sigma_is_the_exponential_of_its_weights_and_the_formula_stays_a_feature():
    residuals = torch.tensor([0.3, 0.4, 1.2, 5.0])
    inliers = torch.tensor([True, True, True, False])
    args = (residuals, inliers, torch.ones(4), 2.8, 4)
    formula = pose_quality(*args, rival_gap=0.5)
    sigma = {"intercept": 0.2, "rival_gap": -0.4, "log_sigma": 0.5}
    calibrated = pose_quality(*args, rival_gap=0.5, calibration={"intercept": 0.0, "sigma": sigma})
    assert calibrated["features"] == formula["features"]  # log_sigma is the formula's, whatever is reported
    expected = math.exp(0.2 - 0.4 * 0.5 + 0.5 * formula["features"]["log_sigma"])
    assert calibrated["sigma_m"] == pytest.approx(expected) and calibrated["sigma_m"] != formula["sigma_m"]
    # an absurd calibration is clipped, and fewer than 3 inliers still have no sigma
    huge = pose_quality(*args, calibration={"intercept": 0.0, "sigma": {"intercept": 50.0}})
    assert huge["sigma_m"] == pytest.approx(400.0)
    none = pose_quality(residuals, torch.tensor([True, True, False, False]), torch.ones(4), 1.0, 4,
                        calibration={"intercept": 0.0, "sigma": sigma})
    assert math.isnan(none["sigma_m"])


def test_pose_quality_without_inliers():
    q = pose_quality(torch.tensor([9.0, 8.0]), torch.tensor([False, False]), torch.ones(2), 0.1, 2)
    assert q["inliers"] == 0 and q["confidence"] == 0.0
    assert math.isnan(q["residual_m"]) and math.isnan(q["sigma_m"])


def test_sigma_m_matches_monte_carlo_position_error():
    """Independent noise, k < MAX_INDEPENDENT_INLIERS: sigma_m ≈ the RMS error of the fitted camera position."""
    trials, k, noise = 400, 20, 0.5
    assert k < MAX_INDEPENDENT_INLIERS
    gen = torch.Generator().manual_seed(0)
    # a pinhole-like layout: points 10-40 m ahead, so the camera is extrapolated from their centroid
    src = torch.stack([torch.rand(k, generator=gen, dtype=torch.float64) * 30 - 15,
                       torch.rand(k, generator=gen, dtype=torch.float64) * 30 + 10], -1)
    R = rotation_from_heading(torch.tensor(60.0, dtype=torch.float64))
    t = torch.tensor([5.0, -3.0], dtype=torch.float64)
    dst_true = src @ R.T + t
    dst = dst_true + noise * torch.randn(trials, k, 2, generator=gen, dtype=torch.float64)
    fit = procrustes_2d(src.expand(trials, k, 2), dst)
    rms_error = float((fit.t - t).pow(2).sum(-1).mean().sqrt())
    sigmas = []
    for i in range(0, trials, 20):
        residuals = (fit[i].apply(src) - dst[i]).norm(dim=-1)
        q = pose_quality(residuals, torch.ones(k, dtype=torch.bool), torch.ones(k), float(k), k,
                         dst=dst[i], position=fit.t[i])
        sigmas.append(q["sigma_m"])
    assert sum(sigmas) / len(sigmas) == pytest.approx(rms_error, rel=0.25)
    # without the lever arm it is only a lower bound
    q = pose_quality(residuals, torch.ones(k, dtype=torch.bool), torch.ones(k), float(k), k)
    assert q["sigma_m"] < 0.5 * rms_error


def test_status():
    assert status_from(0.9, 50) == "ok"
    assert status_from(0.2, 50) == "low_confidence"
    assert status_from(0.9, 4) == "low_confidence"
