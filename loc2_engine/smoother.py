"""The photos of one capture localized jointly: each photo's own pose evidence under a motion model.

A capture (a 360° camera on a car, a phone taking a frame every few metres) moves smoothly, so a photo
whose own pose is far from where its neighbours put it is probably wrong, and a runner-up pose of that
photo (`result.RivalPose`) that fits the neighbours is probably right. Two stages, pure numpy:

1. **Choice** (a dynamic programme over the sequence): each photo takes one of its candidates (its own
   pose, one of its rivals) or is declared an outlier. A candidate costs its negative log-probability
   (`PhotoEvidence.from_pose`: the confidence for the own pose, the rest shared among the rivals by their
   rank gaps); an outlier costs ``outlier_cost`` and drops out of the chain, its neighbours then being
   linked to each other across it. Consecutive chosen candidates pay for a step whose length departs
   from the capture's typical speed and for a heading that turns faster than ``turn_rate_deg_s``; both
   terms are capped so that a stop or a corner costs a bounded amount. The typical speed is chosen with
   the candidates: the programme runs for each speed of a geometric grid (``min_speed_mps`` to
   ``max_speed_mps``) and the speed whose best chain costs least wins. The step term carries its
   likelihood's normalisation (a faster speed widens the spread, which is paid for), so the speeds compare
   fairly, and wrong single-photo poses, whose steps are long and random, do not make a capture look fast.
2. **Smoothing** (iteratively reweighted least squares): positions minimise the chosen candidates'
   squared errors (per-axis ``sigma_m``) plus a constant-velocity prior (velocity changes between
   consecutive steps, ``accel_sigma`` m/s per √s) and a weak maximum-speed prior, each term re-weighted by a
   Cauchy weight of its residual, so a leftover outlier or a sharp corner is down-weighted rather than
   averaged in. Headings are smoothed the same way (unwrapped along the chain) with a first-order prior.
   Outliers and photos without a pose get the position the motion model interpolates; every photo's
   sigma is the posterior per-axis standard deviation of the last system.

Frame: positions in metres of one east-north frame (``sequences`` uses the local true-north frame,
`georef.LocalFrame`), headings in degrees clockwise from that frame's north, times in seconds.
A photo is **overruled** when the sequence picked one of its rivals or declared it an outlier, or moved its
position farther than its 68 % radius (`confidence.RADIUS_68` · sigma_m, at least ``overrule_min_m``) or
its heading by more than ``overrule_heading_deg``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from .confidence import RADIUS_68

#: `SmoothedSequence.choice` of a photo the sequence declared an outlier, and of a photo without a pose
OUTLIER, NO_POSE = -1, -2


@dataclass(frozen=True)
class SmootherConfig:
    """Knobs of `smooth_sequence`; costs are negative log-likelihoods (nats)."""

    outlier_cost: float = 3.0          # declaring a photo with a pose an outlier
    max_skip: int = 12                 # consecutive photos the choice may skip (outliers, failures)
    speed_mps: Optional[float] = None  # the capture's typical speed; None: chosen with the candidates
    min_speed_mps: float = 0.5         # slowest speed of the grid the choice tries, m/s (the fastest: max_speed_mps)
    speed_step: float = 1.25           # ratio of consecutive speeds of that grid (below 1 + speed_tolerance)
    speed_tolerance: float = 0.5       # relative spread of a step's length around speed · dt
    step_sigma_m: float = 1.5          # floor of that spread, metres
    step_cost_cap: float = 8.0         # most a single step costs (a stop, a speed change)
    heading_continuity: bool = True    # the camera's heading follows the capture (off: headings independent)
    heading_sigma_deg: float = 5.0     # heading noise of one photo's pose
    turn_rate_deg_s: float = 30.0      # heading change per second that costs nothing
    turn_cost_cap: float = 1.5         # most a single turn costs (a corner: less than an outlier)
    accel_sigma: float = 3.0           # velocity random walk, m/s per √s (constant-velocity prior; loose: turns)
    max_speed_mps: float = 30.0        # weak prior: steps much faster than this are unlikely
    cauchy_scale: float = 2.0          # residual (in sigmas) at which a term's weight halves
    iterations: int = 10               # IRLS iterations
    overrule_min_m: float = 1.0        # a shift below this never overrules a photo, metres
    overrule_heading_deg: float = 20.0  # a heading change above this overrules a photo


@dataclass(frozen=True)
class PhotoEvidence:
    """One photo's own answer as the smoother weighs it; K candidates, K = 0 for a photo without a pose.

    poses (K, 3): x, y (metres), heading (degrees clockwise from north), the photo's own pose first, then its
    rivals; sigma_m (K,): per-axis 1-σ position uncertainty, metres; cost (K,): negative log-probability
    that the candidate is right.
    """

    poses: np.ndarray
    sigma_m: np.ndarray
    cost: np.ndarray

    @classmethod
    def from_pose(cls, x: float, y: float, heading_deg: float, sigma_m: float, confidence: float,
                  rivals=(), floor: float = 0.02) -> "PhotoEvidence":
        """The evidence of a localized photo: its pose (x, y metres, heading degrees), sigma_m, confidence
        (0-1, the probability that its pose is right) and rivals (R, 4): x, y, heading, rank gap
        (`result.RivalPose.gap`, <= about 0). The own pose costs -log(confidence); the rest of the probability
        is shared among the rivals in proportion to exp(gap). Confidence is clipped to [floor, 1 - floor]."""
        p = min(max(float(confidence), floor), 1.0 - floor)
        rivals = np.asarray(rivals, np.float64).reshape(-1, 4)
        poses = np.vstack([[[x, y, heading_deg]], rivals[:, :3]])
        share = np.exp(rivals[:, 3] - rivals[:, 3].max()) if len(rivals) else np.zeros(0)
        share = share / share.sum() if len(rivals) else share
        cost = np.concatenate([[-math.log(p)], -np.log((1.0 - p) * share)])
        sigma = float(sigma_m) if math.isfinite(sigma_m) and sigma_m > 0 else 1.0
        return cls(poses, np.full(len(poses), sigma), cost)

    @classmethod
    def none(cls) -> "PhotoEvidence":
        """A photo without a pose (its localization failed)."""
        return cls(np.zeros((0, 3)), np.zeros(0), np.zeros(0))


@dataclass(frozen=True)
class SmoothedSequence:
    """The sequence's answer, N photos in time order.

    x, y (N,) metres, heading_deg (N,) degrees in [0, 360), sigma_m (N,) per-axis 1-σ, metres (NaN when the
    sequence has no pose at all); choice (N,) int: the candidate taken (0 own pose, k >= 1 its k-th rival),
    OUTLIER or NO_POSE; overruled (N,) bool (module docstring); speed_mps: the typical speed used.
    """

    x: np.ndarray
    y: np.ndarray
    heading_deg: np.ndarray
    sigma_m: np.ndarray
    choice: np.ndarray
    overruled: np.ndarray
    speed_mps: float


def smooth_sequence(times_s, evidence: Sequence[PhotoEvidence],
                    config: SmootherConfig = SmootherConfig()) -> SmoothedSequence:
    """Joint poses of one capture: times_s (N,) seconds, non-decreasing; evidence: N `PhotoEvidence`.

    Raises ValueError when the lengths differ or the times are not finite and sorted.
    """
    t = np.asarray(times_s, np.float64).reshape(-1)
    n = len(t)
    if len(evidence) != n:
        raise ValueError(f"{n} times but {len(evidence)} photos' evidence; give one time per photo")
    if not np.isfinite(t).all() or np.any(np.diff(t) < 0):
        raise ValueError("the times of a sequence must be finite and sorted (non-decreasing)")
    if config.speed_mps is not None:
        speed, choice = config.speed_mps, choose_candidates(t, evidence, config.speed_mps, config)
    else:
        speed, choice = choose_speed_and_candidates(t, evidence, config)
    inlier = choice >= 0
    if not inlier.any():
        nan = np.full(n, np.nan)
        return SmoothedSequence(nan, nan.copy(), nan.copy(), nan.copy(), choice, np.zeros(n, bool), speed)
    z = np.array([evidence[i].poses[c] if c >= 0 else (np.nan,) * 3 for i, c in enumerate(choice)])
    z_sigma = np.array([evidence[i].sigma_m[c] if c >= 0 else np.nan for i, c in enumerate(choice)])
    xy, sigma = _smooth_positions(t, z[:, :2], z_sigma, inlier, config)
    heading = _smooth_headings(t, z[:, 2], inlier, config)
    overruled = _overruled(evidence, choice, xy, heading, config)
    return SmoothedSequence(xy[:, 0], xy[:, 1], heading, sigma, choice, overruled, speed)


def candidate_speeds(config: SmootherConfig = SmootherConfig()) -> np.ndarray:
    """(S,) m/s: the geometric grid of typical speeds the choice tries, ``min_speed_mps`` to ``max_speed_mps``,
    consecutive speeds at most ``speed_step`` apart."""
    lo, hi = config.min_speed_mps, max(config.max_speed_mps, config.min_speed_mps)
    count = int(math.ceil(math.log(hi / lo) / math.log(config.speed_step))) + 1 if hi > lo else 1
    return np.geomspace(lo, hi, count)


def choose_speed_and_candidates(times_s: np.ndarray, evidence: Sequence[PhotoEvidence],
                                config: SmootherConfig = SmootherConfig()):
    """(speed m/s, (N,) choice as `choose_candidates`): the speed of `candidate_speeds` whose best chain
    costs least, and that chain. The costs of different speeds compare because the step term is normalised
    (`pair_cost`); all speeds run in one programme."""
    speeds = candidate_speeds(config)
    choices, totals = _best_chains(times_s, evidence, speeds, config)
    s = int(np.argmin(totals))
    return float(speeds[s]), choices[s]


def choose_candidates(times_s: np.ndarray, evidence: Sequence[PhotoEvidence], speed_mps: float,
                      config: SmootherConfig = SmootherConfig()) -> np.ndarray:
    """(N,) int: each photo's candidate (0 own, k >= 1 rival k), OUTLIER or NO_POSE, minimising the
    candidates' costs + outliers' costs + the capped step and turn costs between consecutive chosen
    candidates (skipped photos in between), by dynamic programming; at most ``max_skip`` photos in a row are
    skipped between two chosen ones."""
    return _best_chains(times_s, evidence, np.array([float(speed_mps)]), config)[0][0]


def _best_chains(times_s, evidence, speeds: np.ndarray, config: SmootherConfig):
    """`choose_candidates` for each of S typical speeds (S,) m/s at once: (choices (S, N) int, their total
    costs (S,))."""
    n, m = len(evidence), len(speeds)
    # skipping a photo with a pose costs outlier_cost; a photo without one is skipped for free
    skip = np.array([config.outlier_cost if len(e.poses) else 0.0 for e in evidence])
    before = np.concatenate([[0.0], np.cumsum(skip)])  # before[i] = cost of skipping photos 0 .. i-1
    rows = np.arange(m)
    best = [np.zeros((m, 0))] * n          # (S, K_i) least cost of a chain ending at candidate k of photo i
    back = [np.zeros((m, 0, 2), int)] * n  # (S, K_i, 2) (previous photo, its candidate) or (-1, -1): starts
    for i, e in enumerate(evidence):
        k = len(e.poses)
        if k == 0:
            continue
        cost = np.full((m, k), before[i])  # all photos before are skipped
        prev = np.full((m, k, 2), -1)
        for j in range(max(0, i - config.max_skip - 1), i):
            if len(evidence[j].poses) == 0:
                continue
            link = best[j][:, :, None] + pair_cost(evidence[j], e, times_s[i] - times_s[j], speeds,
                                                   config) + (before[i] - before[j + 1])
            a = np.argmin(link, axis=1)  # (S, K_i)
            value = np.take_along_axis(link, a[:, None, :], axis=1)[:, 0]
            better = value < cost
            cost[better] = value[better]
            prev[better] = np.stack([np.full(better.sum(), j), a[better]], axis=1)
        best[i], back[i] = cost + e.cost, prev
    choices = np.tile(np.where(skip > 0, OUTLIER, NO_POSE), (m, 1))
    finish = np.full(m, before[n])  # every photo skipped
    end = np.full((m, 2), -1)
    for i in range(n):
        if best[i].shape[1]:
            k = np.argmin(best[i], axis=1)
            total = best[i][rows, k] + before[n] - before[i + 1]
            better = total < finish
            finish[better] = total[better]
            end[better] = np.stack([np.full(better.sum(), i), k[better]], axis=1)
    for s in range(m):
        i, k = end[s]
        while i >= 0:
            choices[s, i] = k
            i, k = back[i][s, k]
    return choices, finish


def pair_cost(a: PhotoEvidence, b: PhotoEvidence, dt_s: float, speed_mps,
              config: SmootherConfig = SmootherConfig()) -> np.ndarray:
    """(K_a, K_b) cost of a step from each candidate of ``a`` to each of ``b``, dt_s seconds later, at the
    typical speed speed_mps (m/s; an array of S speeds gives (S, K_a, K_b)): the step length against
    speed · dt (spread ``speed_tolerance`` of it, the candidates' sigmas and ``step_sigma_m``), and the
    heading change beyond ``turn_rate_deg_s`` · dt, each capped.

    The step term is a Gaussian's negative log-likelihood including log(spread / spread at rest): without it
    a faster speed, whose spread is wider, would make every step cheaper and always win the speed choice."""
    dt = max(float(dt_s), 1e-3)
    d = np.hypot(*(b.poses[None, :, :2] - a.poses[:, None, :2]).transpose(2, 0, 1))
    expected = np.asarray(speed_mps, np.float64)[..., None, None] * dt
    at_rest2 = a.sigma_m[:, None] ** 2 + b.sigma_m[None, :] ** 2 + config.step_sigma_m ** 2
    spread2 = at_rest2 + (config.speed_tolerance * expected) ** 2
    cost = np.minimum(0.5 * (d - expected) ** 2 / spread2 + 0.5 * np.log(spread2 / at_rest2),
                      config.step_cost_cap)
    if config.heading_continuity:
        turn = np.abs(wrap_deg(b.poses[None, :, 2] - a.poses[:, None, 2]))
        excess = np.maximum(turn - config.turn_rate_deg_s * dt, 0.0)
        cost = cost + np.minimum(0.5 * (excess / config.heading_sigma_deg) ** 2, config.turn_cost_cap)
    return cost


def wrap_deg(angle):
    """Angles (any shape, degrees) wrapped into [-180, 180)."""
    return np.remainder(np.asarray(angle, np.float64) + 180.0, 360.0) - 180.0


def _cauchy(residual: np.ndarray, scale: float) -> np.ndarray:
    """Cauchy IRLS weights 1 / (1 + (r / scale)²) of normalised residuals r."""
    return 1.0 / (1.0 + (residual / scale) ** 2)


def _differences(t: np.ndarray):
    """(F (N-1, N) first differences / dt, S (N-2, N) velocity changes of consecutive steps, dt (N-1,) s)."""
    n = len(t)
    dt = np.maximum(np.diff(t), 1e-3)
    F = np.zeros((n - 1, n))
    F[np.arange(n - 1), np.arange(n - 1)] = -1.0 / dt
    F[np.arange(n - 1), np.arange(1, n)] = 1.0 / dt
    S = F[1:] - F[:-1] if n > 2 else np.zeros((0, n))
    return F, S, dt


def _smooth_positions(t, z_xy, z_sigma, inlier, config: SmootherConfig):
    """IRLS of the positions: ((N, 2) metres, (N,) posterior per-axis sigma, metres)."""
    n = len(t)
    F, S, dt = _differences(t)
    sigma_v = np.maximum(config.max_speed_mps, 1e-3)  # per step of F: a velocity, m/s
    sigma_dv = config.accel_sigma * np.sqrt(0.5 * (dt[1:] + dt[:-1])) if n > 2 else np.zeros(0)
    obs_w = np.where(inlier, 1.0, 0.0)
    motion_w = np.ones(len(S))
    z = np.where(inlier[:, None], z_xy, 0.0)
    inv_var = np.where(inlier, 1.0 / np.where(inlier, z_sigma, 1.0) ** 2, 0.0)
    xy = z.copy()
    for _ in range(max(1, config.iterations)):
        A = (np.diag(obs_w * inv_var) + F.T @ F / sigma_v ** 2
             + S.T @ ((motion_w / np.maximum(sigma_dv, 1e-6) ** 2)[:, None] * S))
        xy = np.linalg.solve(A, (obs_w * inv_var)[:, None] * z)
        obs_res = np.hypot(*(xy - z).T) * np.sqrt(inv_var)
        obs_w = np.where(inlier, _cauchy(obs_res, config.cauchy_scale), 0.0)
        if len(S):
            motion_w = _cauchy(np.hypot(*(S @ xy).T) / np.maximum(sigma_dv, 1e-6), config.cauchy_scale)
    sigma = np.sqrt(np.clip(np.diag(np.linalg.inv(A)), 0.0, None))
    return xy, sigma


def _smooth_headings(t, z_heading, inlier, config: SmootherConfig) -> np.ndarray:
    """IRLS of the headings unwrapped along the chosen candidates, first-order prior: (N,) degrees [0, 360)."""
    idx = np.flatnonzero(inlier)
    unwrapped = np.full(len(t), np.nan)
    unwrapped[idx] = z_heading[idx[0]] + np.concatenate([[0.0], np.cumsum(wrap_deg(np.diff(z_heading[idx])))])
    F, _, dt = _differences(t)
    sigma_turn = np.maximum(config.turn_rate_deg_s * dt, config.heading_sigma_deg) / dt  # deg/s per step
    obs_w = inlier.astype(np.float64)
    turn_w = np.ones(len(dt))
    z = np.where(inlier, unwrapped, 0.0)
    inv_var = 1.0 / config.heading_sigma_deg ** 2
    h = z
    for _ in range(max(1, config.iterations)):
        A = np.diag(obs_w * inv_var) + F.T @ ((turn_w / sigma_turn ** 2)[:, None] * F)
        A += np.eye(len(t)) * 1e-9  # a single photo with its own heading only
        h = np.linalg.solve(A, obs_w * inv_var * z)
        obs_w = np.where(inlier, _cauchy(np.abs(h - z) / config.heading_sigma_deg, config.cauchy_scale), 0.0)
        turn_w = _cauchy(np.abs(F @ h) / sigma_turn, config.cauchy_scale)
    return np.remainder(h, 360.0)


def _overruled(evidence, choice, xy, heading, config: SmootherConfig) -> np.ndarray:
    """(N,) bool: a rival or outlier chosen, or the own pose moved beyond its 68 % radius or turned."""
    out = np.zeros(len(evidence), bool)
    for i, e in enumerate(evidence):
        if len(e.poses) == 0:
            continue
        own = e.poses[0]
        shift = math.hypot(xy[i, 0] - own[0], xy[i, 1] - own[1])
        limit = max(RADIUS_68 * float(e.sigma_m[0]), config.overrule_min_m)
        turned = abs(float(wrap_deg(heading[i] - own[2])))
        out[i] = choice[i] != 0 or shift > limit or turned > config.overrule_heading_deg
    return out
