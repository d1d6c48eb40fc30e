"""The capture smoother: a wrong photo replaced by its right rival, an outlier overruled, a clean sequence left
nearly as it was, headings across north, and photos without a pose placed by their neighbours."""

import numpy as np
import pytest

from loc2_engine.smoother import (NO_POSE, OUTLIER, PhotoEvidence, SmootherConfig, candidate_speeds,
                                  choose_candidates, smooth_sequence, wrap_deg)


def street(n=24, step_m=5.0, dt_s=2.0, corner=12):
    """(t (N,) s, xy (N, 2) m, heading (N,) deg): east along a street, then north after a corner."""
    t = np.arange(n) * dt_s
    xy = np.array([(k * step_m, 0.0) if k <= corner else (corner * step_m, (k - corner) * step_m) for k in range(n)])
    heading = np.array([90.0 if k < corner else 0.0 for k in range(n)])
    if corner < n:
        heading[corner] = 45.0  # turning at the corner
    return t, xy, heading


def noisy(xy, heading, rng, sigma=0.5, confidence=0.95, rivals=True):
    """Evidence of photos localized near the truth, each with a decoy rival (heading flipped, elsewhere)."""
    out = []
    for (x, y), h in zip(xy, heading):
        p = np.array([x, y]) + rng.normal(0, sigma, 2)
        decoy = [(x + rng.uniform(-20, 20), y + rng.uniform(-20, 20), (h + 180) % 360, -0.6)] if rivals else ()
        out.append(PhotoEvidence.from_pose(p[0], p[1], h + rng.normal(0, 2), sigma, confidence, decoy))
    return out


def test_clean_sequence_is_left_nearly_unchanged():
    rng = np.random.default_rng(0)
    t, xy, heading = street()
    evidence = noisy(xy, heading, rng)
    out = smooth_sequence(t, evidence)
    assert (out.choice == 0).all() and not out.overruled.any()
    own = np.array([e.poses[0] for e in evidence])
    assert np.hypot(out.x - own[:, 0], out.y - own[:, 1]).max() < 1.0
    assert np.abs(wrap_deg(out.heading_deg - own[:, 2])).max() < 5.0
    assert np.median(np.hypot(out.x - xy[:, 0], out.y - xy[:, 1])) < 0.7  # no worse than the photos
    assert (out.sigma_m > 0).all() and (out.sigma_m <= 0.5 + 1e-9).all()
    assert out.speed_mps == pytest.approx(2.5, abs=0.4)


def test_wrong_photo_takes_its_right_rival():
    rng = np.random.default_rng(1)
    t, xy, heading = street()
    evidence = noisy(xy, heading, rng)
    x, y = xy[6]
    evidence[6] = PhotoEvidence.from_pose(x + 17.0, y - 9.0, 250.0, 0.5, 0.8, [(x + 0.3, y - 0.2, 91.0, -0.3)])
    out = smooth_sequence(t, evidence)
    assert out.choice[6] == 1 and out.overruled[6]
    assert np.hypot(out.x[6] - x, out.y[6] - y) < 1.0
    assert abs(wrap_deg(out.heading_deg[6] - 90.0)) < 5.0
    assert out.overruled.sum() == 1


def test_outlier_without_a_good_rival_is_overruled_and_not_averaged_in():
    rng = np.random.default_rng(2)
    t, xy, heading = street()
    evidence = noisy(xy, heading, rng)
    x, y = xy[17]
    evidence[17] = PhotoEvidence.from_pose(x - 25.0, y + 4.0, heading[17], 0.5, 0.9)
    out = smooth_sequence(t, evidence)
    assert out.choice[17] == OUTLIER and out.overruled[17]
    assert np.hypot(out.x[17] - x, out.y[17] - y) < 1.5  # placed by its neighbours
    assert out.sigma_m[17] > out.sigma_m[16]  # less sure where it has no evidence of its own
    assert np.hypot(out.x[16] - xy[16, 0], out.y[16] - xy[16, 1]) < 1.5  # neighbours not dragged
    assert out.overruled.sum() == 1


def test_failed_photo_is_placed_between_its_neighbours():
    rng = np.random.default_rng(3)
    t, xy, heading = street()
    evidence = noisy(xy, heading, rng)
    evidence[4] = PhotoEvidence.none()
    out = smooth_sequence(t, evidence)
    assert out.choice[4] == NO_POSE and not out.overruled[4]
    assert np.hypot(out.x[4] - xy[4, 0], out.y[4] - xy[4, 1]) < 1.5
    assert abs(wrap_deg(out.heading_deg[4] - 90.0)) < 5.0


def test_heading_wraps_around_north():
    """A capture heading north, its photos' headings on both sides of 0°: smoothed near 0, not near 180."""
    rng = np.random.default_rng(4)
    n = 16
    t = np.arange(n) * 1.5
    xy = np.c_[np.zeros(n), np.arange(n) * 4.0]
    heading = np.where(np.arange(n) % 2 == 0, 357.0, 3.0)
    evidence = noisy(xy, heading, rng, rivals=False)
    evidence[7] = PhotoEvidence.none()  # between two near 357°, across the 3° ones: not through 180°
    out = smooth_sequence(t, evidence)
    assert abs(wrap_deg(out.heading_deg[7])) < 6.0
    assert np.abs(wrap_deg(out.heading_deg)).max() < 9.0
    assert ((out.heading_deg >= 0) & (out.heading_deg < 360)).all()


def test_flipped_heading_is_replaced_by_the_rival_at_the_same_place():
    rng = np.random.default_rng(5)
    t, xy, heading = street()
    evidence = noisy(xy, heading, rng, rivals=False)
    x, y = xy[3]
    evidence[3] = PhotoEvidence.from_pose(x, y, 270.0, 0.5, 0.7, [(x, y, 90.0, -0.2)])
    out = smooth_sequence(t, evidence)
    assert out.choice[3] == 1 and out.overruled[3]
    assert abs(wrap_deg(out.heading_deg[3] - 90.0)) < 5.0


def test_choice_alone_and_bad_input():
    t, xy, heading = street(n=6)
    evidence = noisy(xy, heading, np.random.default_rng(6), rivals=False)
    assert (choose_candidates(t, evidence, 2.5) == 0).all()
    assert (choose_candidates(t, [PhotoEvidence.none()] * 6, 2.5) == NO_POSE).all()
    with pytest.raises(ValueError, match="sorted"):
        smooth_sequence(t[::-1], evidence)
    with pytest.raises(ValueError, match="one time per photo"):
        smooth_sequence(t[:3], evidence)
    nothing = smooth_sequence(t, [PhotoEvidence.none()] * 6)
    assert np.isnan(nothing.x).all() and not nothing.overruled.any()
    single = smooth_sequence(t[:1], evidence[:1], SmootherConfig())
    assert (single.x[0], single.y[0]) == pytest.approx(tuple(evidence[0].poses[0, :2]), abs=1e-6)


def test_rival_costs_follow_confidence_and_gap():
    e = PhotoEvidence.from_pose(0, 0, 0, 1.0, 0.9, [(5, 0, 0, -0.1), (9, 0, 0, -2.0)])
    assert e.cost[0] < e.cost[1] < e.cost[2]
    assert np.exp(-e.cost).sum() == pytest.approx(1.0)


def test_capture_of_mostly_wrong_photos_keeps_a_plausible_speed():
    """Two thirds of the photos weakly confident and far off, each with its right pose among its rivals:
    the speed is chosen with the candidates, not read off the long, random steps of the wrong poses."""
    rng = np.random.default_rng(7)
    t, xy, heading = street()
    evidence = []
    for k, ((x, y), h) in enumerate(zip(xy, heading)):
        right = (x + rng.normal(0, 0.5), y + rng.normal(0, 0.5), h + rng.normal(0, 2))
        if k % 3 == 0:  # right but weak, with a decoy rival
            decoy = (x + rng.uniform(-30, 30), y + rng.uniform(-30, 30), (h + 180) % 360, -0.5)
            evidence.append(PhotoEvidence.from_pose(*right, 0.5, 0.3, [decoy]))
        else:  # wrong, with the right pose as its runner-up
            angle = rng.uniform(0, 2 * np.pi)
            wrong = (x + 30 * np.cos(angle), y + 30 * np.sin(angle), rng.uniform(0, 360))
            evidence.append(PhotoEvidence.from_pose(*wrong, 0.5, 0.25, [(*right, -0.3)]))
    own = np.array([e.poses[0, :2] for e in evidence])
    assert np.median(np.hypot(*np.diff(own, axis=0).T) / np.diff(t)) > 8.0  # the own poses' steps: far too fast
    out = smooth_sequence(t, evidence)
    assert 1.8 < out.speed_mps < 3.5  # the capture moves at 2.5 m/s
    assert np.median(np.hypot(out.x - xy[:, 0], out.y - xy[:, 1])) < 1.5
    assert (out.choice[::3] == 0).all()  # the right but weak photos keep their own pose
    fixed = smooth_sequence(t, evidence, SmootherConfig(speed_mps=2.5))
    assert (fixed.choice == out.choice).all()


def test_candidate_speeds_span_the_grid():
    speeds = candidate_speeds(SmootherConfig(min_speed_mps=0.5, max_speed_mps=30.0, speed_step=1.25))
    assert speeds[0] == pytest.approx(0.5) and speeds[-1] == pytest.approx(30.0)
    assert (speeds[1:] / speeds[:-1] <= 1.25 + 1e-9).all()
