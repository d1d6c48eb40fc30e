"""Street captures for `loc2 synth --sequences`: frames every few metres along a walk over a town's streets.

A capture follows the street centre lines (``town.roads``, noded at their crossings) inside the square where
cameras may stand, going on at each crossing straight ahead or turning (a U-turn only at a dead end), and
keeps to one side of the street (a fixed offset to the right, moved sideways where a parked car or a tree
is in the way: every frame stands on ``town.walkable``). Frames are ``spacing_m`` apart (drawn from 2-10 m
per capture), the heading is the direction of travel over ±3 m (so it turns through a corner, not at it) with
a little jitter, and the time is the distance over the capture's speed (walking to driving).

Frames are in local grid metres (x east, y north of the town's grid), headings clockwise from grid north,
times in seconds from the capture's start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np
from shapely.geometry import LineString, Point, box
from shapely.ops import unary_union
from shapely.prepared import prep

#: distance between frames (m) and speed (m/s) drawn per capture
SPACING_M = (2.0, 10.0)
SPEED_MPS = (1.3, 9.0)
#: the heading is the direction of travel over ± this many metres
TANGENT_M = 3.0


@dataclass(frozen=True)
class Frame:
    """One photo of a capture: x, y local grid metres, heading_grid degrees, t_s seconds from its start."""

    x: float
    y: float
    heading_grid: float
    t_s: float


def capture(town, half: float, n_frames: int, rng) -> List[Frame]:
    """``n_frames`` frames of one capture inside the square [-half, half]² of ``town``; fewer when the
    streets there are too short or blocked."""
    spacing = float(rng.uniform(*SPACING_M))
    speed = float(rng.uniform(*SPEED_MPS))
    path = _walk(town, half, spacing * (n_frames + 1) + 2 * TANGENT_M, rng)
    if path is None:
        return []
    walkable = prep(town.walkable)
    side = float(rng.uniform(0.5, 2.5))  # to the right of the centre line
    frames: List[Frame] = []
    s = TANGENT_M
    while len(frames) < n_frames and s < path.length - TANGENT_M:
        a, b = path.interpolate(s - TANGENT_M), path.interpolate(s + TANGENT_M)
        dx, dy = b.x - a.x, b.y - a.y
        norm = math.hypot(dx, dy)
        if norm > 1e-6:
            centre = path.interpolate(s)
            spot = _stand(walkable, np.array([centre.x, centre.y]), np.array([dy, -dx]) / norm, side)
            if spot is not None:
                heading = (math.degrees(math.atan2(dx, dy)) + rng.normal(0.0, 2.0)) % 360.0
                t = max((s - TANGENT_M) / speed + rng.normal(0.0, 0.02), frames[-1].t_s + 0.05 if frames else 0.0)
                frames.append(Frame(float(spot[0]), float(spot[1]), float(heading), float(t)))
        s += spacing + rng.uniform(-0.1, 0.1) * spacing
    return frames


def _stand(walkable, centre: np.ndarray, right: np.ndarray, side: float):
    """(2,) the first walkable spot ``side`` metres right of ``centre``, moved sideways up to 3 m; or None."""
    for shift in (0.0, -1.0, 1.0, -2.0, 2.0, -3.0):
        spot = centre + right * (side + shift)
        if walkable.contains(Point(*spot)):
            return spot
    return None


def _walk(town, half: float, length_m: float, rng):
    """A LineString at least ``length_m`` long (if the streets allow) over the noded street centre lines
    inside the square, or None when no street crosses it."""
    square = box(-half, -half, half, half)
    noded = unary_union([r.line for r in town.roads]).intersection(square)
    edges = [e for e in getattr(noded, "geoms", [noded]) if isinstance(e, LineString) and e.length > 1.0]
    if not edges:
        return None
    ends: Dict[Tuple[float, float], List[int]] = {}
    for i, e in enumerate(edges):
        for p in (e.coords[0], e.coords[-1]):
            ends.setdefault(_key(p), []).append(i)
    i = int(rng.integers(len(edges)))
    coords = list(edges[i].coords) if rng.random() < 0.5 else list(edges[i].coords)[::-1]
    total = edges[i].length
    for _ in range(200):
        if total >= length_m:
            break
        here = coords[-1]
        incoming = np.subtract(coords[-1], coords[-2])
        options = []
        for j in ends.get(_key(here), []):
            if j == i:
                continue
            c = list(edges[j].coords)
            c = c if _key(c[0]) == _key(here) else c[::-1]
            out = np.subtract(c[1], c[0])
            turn = abs(_angle(incoming, out))
            options.append((turn, j, c))
        if not options:  # a dead end at the square's edge: back the way it came
            c = list(edges[i].coords)
            j, c = i, (c if _key(c[0]) == _key(here) else c[::-1])
        else:
            options.sort(key=lambda o: o[0])
            straight = rng.random() < 0.6
            _, j, c = options[0] if straight or len(options) == 1 else options[1 + int(rng.integers(len(options) - 1))]
        coords += c[1:]
        total += edges[j].length
        i = j
    return LineString(coords)


def _key(p) -> Tuple[float, float]:
    return (round(p[0], 3), round(p[1], 3))


def _angle(a, b) -> float:
    """Signed angle from vector a to vector b, degrees."""
    return math.degrees(math.atan2(a[0] * b[1] - a[1] * b[0], a[0] * b[0] + a[1] * b[1]))
