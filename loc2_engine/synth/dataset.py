"""Generate a dataset folder (docs/manifest.md): aerial/<town>.tif, photos/*.jpg, depth/*.npy, manifest.csv.

Deterministic: every random draw comes from generators seeded by (preset seed offset, --seed, town index),
and towns are written in a fixed order whatever the number of worker processes.

Truth conventions in the manifest: ``true_x/true_y`` = camera centre in the row's CRS (the town's UTM zone);
``true_heading_deg`` from TRUE north (grid heading + meridian convergence via georef.LocalFrame); for a
photo stored rotated with an EXIF Orientation tag, heading, hfov and depth refer to the UPRIGHT image.
Depth: float32 (H, W) range in metres (Euclidean distance from the camera centre), NaN for sky.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from multiprocessing import Pool
from typing import Dict, List, Optional, Tuple

import numpy as np
import pyproj
from shapely.geometry import Point, box
from shapely.prepared import prep

from ..georef import LocalFrame
from ..manifest import write_manifest
from .albedo import make_albedo
from .mesh import build_mesh
from .lens import Lens, draw_lens
from .ortho import draw_aerial_camera, ortho_transform, render_ortho, write_geotiff
from .photos import camera_response, exif_bytes, photometric, rotate_for_orientation, save_jpeg
from .presets import Preset, TownSpec
from .render import Renderer
from .town import Town, default_style, draw_sun_strength, make_town

#: the camera clock of the first capture of town 0 (`loc2 synth --sequences`); town i starts i hours later
CAPTURE_START = datetime(2024, 6, 1, 10, 0, 0)


def utm_crs(lon: float, lat: float) -> str:
    """EPSG code string of the standard UTM zone of a lon/lat (no Norway/Svalbard exceptions)."""
    zone = int((lon + 180.0) // 6) + 1
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def town_origin(spec: TownSpec):
    """(crs, origin_xy) of a town: UTM position of its lon/lat, rounded to 10 m (whole ortho pixels)."""
    crs = utm_crs(spec.lon, spec.lat)
    x, y = pyproj.Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(spec.lon, spec.lat)
    return crs, (round(x / 10.0) * 10.0, round(y / 10.0) * 10.0)


def town_seed(preset: Preset, seed: int, index: int) -> int:
    return preset.seed_offset + seed * 1000 + index


def build_town(preset: Preset, spec: TownSpec, seed: int, index: int) -> Town:
    crs, origin = town_origin(spec)
    town = make_town(spec.name, spec.style, town_seed(preset, seed, index), crs, origin, preset.size_m,
                     default_style(spec.style, preset.variant), preset.sun_azimuth_deg, preset.sun_elevation_deg,
                     preset.terrain, preset.marking_styles)
    # a stream of its own: the town, its views and photo noise stay those of the seed, overcast or not
    town.sun_strength = draw_sun_strength(np.random.default_rng(town.seed + 303), preset.overcast)
    return town


@dataclass
class View:
    """One camera in local grid metres; heading from grid north; ``z`` above the ground under it (`centre`)."""
    camera: str         # pano | pinhole
    x: float
    y: float
    z: float
    heading_grid: float
    hfov: Optional[float] = None
    pitch: float = 0.0
    roll: float = 0.0

    def centre(self, town: Town) -> Tuple[float, float, float]:
        """Camera centre in local grid metres: ``z`` (camera_height_m) above the ground under the camera."""
        return (self.x, self.y, float(town.ground_height(self.x, self.y)) + self.z)


def sample_views(town: Town, renderer: Renderer, preset: Preset, rng, n_pano: int, n_pinhole: int) -> List[View]:
    """Cameras on sidewalks and lanes inside the central square, never inside obstacles; pinholes re-aim
    (up to 8 tries) until the median range of the view exceeds 8 m, so few photos show only a wall."""
    half = preset.size_m / 2 - preset.camera_margin_m
    area = prep(town.walkable.intersection(box(-half, -half, half, half)))
    views = []
    for k in range(n_pano + n_pinhole):
        while True:
            x, y = rng.uniform(-half, half, 2)
            if area.contains(Point(x, y)):
                break
        z = float(rng.uniform(*preset.camera_height_m))
        if k < n_pano:
            views.append(View("pano", float(x), float(y), z, float(rng.uniform(0, 360))))
            continue
        hfov = float(rng.uniform(*preset.hfov_deg))
        for _ in range(8):
            h = float(rng.uniform(0, 360))
            if renderer.openness((x, y, float(town.ground_height(x, y)) + z), h, hfov) > 8.0:
                break
        pitch = float(rng.uniform(-preset.pitch_deg, preset.pitch_deg))
        views.append(View("pinhole", float(x), float(y), z, h, hfov, pitch,
                          float(rng.uniform(-preset.roll_deg, preset.roll_deg))))
    return views


def capture_views(town: Town, preset: Preset, rng) -> Tuple[List[View], List[float], List[int]]:
    """(views, seconds from the town's first photo, capture index) of two street captures (`captures`): the
    panoramas, then the pinholes five minutes after the first capture ends, each looking along the street."""
    from .captures import capture

    half = preset.size_m / 2 - preset.camera_margin_m
    views, times, which = [], [], []
    start = 0.0
    for k, (camera, n) in enumerate((("pano", preset.n_pano), ("pinhole", preset.n_pinhole))):
        frames = capture(town, half, n, rng) if n else []
        for f in frames:
            z = float(rng.uniform(*preset.camera_height_m))
            if camera == "pano":
                views.append(View("pano", f.x, f.y, z, f.heading_grid))
            else:
                views.append(View("pinhole", f.x, f.y, z, f.heading_grid, float(rng.uniform(*preset.hfov_deg)),
                                  float(rng.uniform(-preset.pitch_deg, preset.pitch_deg)),
                                  float(rng.uniform(-preset.roll_deg, preset.roll_deg))))
            times.append(start + f.t_s)
            which.append(k)
        start = (times[-1] if times else start) + 300.0
    return views, times, which


def _fmt(v, digits=3) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def photo_sun_town(town: Town, preset: Preset) -> Town:
    """``town`` under a sun drawn apart from its own, from the preset's ranges, with a stream of its own (the
    town, its views and photo noise stay those of the seed)."""
    rng = np.random.default_rng(town.seed + 202)
    return replace(town, sun_az_deg=float(rng.uniform(*preset.sun_azimuth_deg)) % 360.0,
                   sun_el_deg=float(rng.uniform(*preset.sun_elevation_deg)),
                   sun_strength=draw_sun_strength(rng, preset.overcast))


def _feature_counts(town: Town) -> Dict[str, Dict[str, float]]:
    """{"features": the numbers among ``town.features``} (squares, bays, farms...), or {} for the towns of the
    three training styles, whose json stays as it was."""
    counts = {k: v for k, v in town.features.items() if isinstance(v, (int, float))}
    return {"features": counts} if counts else {}


def _markings(town: Town) -> Dict[str, str]:
    """{"markings": the road marking style drawn for the town}, or {} for the default markings, whose json
    stays as it was."""
    return {"markings": town.markings.style} if town.markings is not None else {}


def _aerial_camera(aerial) -> Dict[str, Dict[str, object]]:
    """{"aerial_camera": nadir point (local grid metres) and flying height} of an ordinary orthophoto, or {} for
    a true one, whose json stays as it was."""
    if aerial is None:
        return {}
    return {"aerial_camera": {"nadir_xy": list(aerial.nadir_xy), "flying_height_m": aerial.flying_height_m}}


def _lens_columns(lens: Lens) -> Dict[str, str]:
    """Manifest extras of a pinhole through a lens: its coefficients (lens.py: half-diagonal units)."""
    return {f"lens_{k}": f"{getattr(lens, k):.6f}" for k in ("k1", "k2", "p1", "p2")}


def generate_town(job) -> List[Dict[str, str]]:
    """Render one town's orthophoto and views into ``out_dir``; returns its manifest rows (in order)."""
    preset, spec, seed, index, out_dir, sequences = job
    t0 = time.perf_counter()
    town = build_town(preset, spec, seed, index)
    renderer = Renderer(town, build_mesh(town), make_albedo(town))
    aerial_rel = f"aerial/{spec.name}.tif"
    lit = photo_sun_town(town, preset) if preset.photo_sun == "independent" else town  # the photos' sun
    # streams of their own: the town, its views and photo noise stay those of the seed, with lean or lenses or not
    aerial = draw_aerial_camera(town, np.random.default_rng(town.seed + 505), preset.ortho_flying_height_m) \
        if preset.ortho_flying_height_m else None
    lens_rng = np.random.default_rng(town.seed + 707) if preset.lens_k1_range else None
    write_geotiff(os.path.join(out_dir, aerial_rel), render_ortho(renderer, preset.gsd, aerial=aerial),
                  ortho_transform(town, preset.gsd), town.crs)
    with open(os.path.join(out_dir, f"aerial/{spec.name}.json"), "w") as f:
        json.dump({"name": spec.name, "style": spec.style, "seed": town.seed, "crs": town.crs,
                   "origin_xy": town.origin_xy, "lonlat": [spec.lon, spec.lat], "size_m": town.size_m,
                   "gsd": preset.gsd, "sun_grid_azimuth_deg": town.sun_az_deg, "sun_elevation_deg": town.sun_el_deg,
                   "sun_strength": town.sun_strength, "photo_sun_strength": lit.sun_strength,
                   "buildings": len(town.buildings), "trees": len(town.trees),
                   "photo_sun_grid_azimuth_deg": lit.sun_az_deg, "photo_sun_elevation_deg": lit.sun_el_deg,
                   **_feature_counts(town), **_aerial_camera(aerial), **_markings(town)}, f, indent=1)
    renderer.light(lit)
    frame = LocalFrame(town.crs, town.origin_xy)
    to_lonlat = pyproj.Transformer.from_crs(town.crs, "EPSG:4326", always_xy=True)
    rng = np.random.default_rng(town.seed + 101)
    if sequences:  # a stream of its own: the photos' noise stays that of the seed
        views, times, which = capture_views(town, preset, np.random.default_rng(town.seed + 404))
        start = CAPTURE_START + timedelta(hours=index)
    else:
        views = sample_views(town, renderer, preset, rng, preset.n_pano, preset.n_pinhole)
    rows = []
    n_rotated = 0
    t_views = time.perf_counter()
    for k, v in enumerate(views):
        name = f"{spec.name}_{k:04d}"
        pos = v.centre(town)
        lens = draw_lens(lens_rng, preset.lens_k1_range) if lens_rng and v.camera == "pinhole" else None
        if v.camera == "pano":
            H, W = preset.pano_hw
            rgb, rng_m = renderer.panorama(pos, v.heading_grid, H, W, preset.supersample)
        else:
            H, W = preset.pinhole_hw
            rgb, rng_m = renderer.pinhole(pos, v.heading_grid, v.hfov, H, W, v.pitch, v.roll,
                                              preset.supersample, lens)
        img = (camera_response if preset.phone_camera else photometric)(rgb, rng, v.camera == "pano")
        orientation = 1
        if v.camera == "pinhole" and preset.rotated_pinholes and (n_rotated < 2 or rng.random() < 0.1):
            orientation = (6, 8)[n_rotated % 2]
            n_rotated += 1
        stored = rotate_for_orientation(img, orientation)
        true_xy = np.array([town.origin_xy[0] + v.x, town.origin_xy[1] + v.y])
        true_heading = float(frame.grid_to_true_heading(v.heading_grid, true_xy))
        dist, ang = rng.uniform(*preset.prior_noise_m), rng.uniform(0, 2 * math.pi)
        prior = true_xy + dist * np.array([math.cos(ang), math.sin(ang)])
        heading_prior = tol = None
        if rng.random() < preset.known_heading_fraction:
            tol = preset.heading_tolerance_deg
            heading_prior = (true_heading + float(np.clip(rng.normal(0, tol / 2.5), -tol, tol))) % 360.0
        compass = (true_heading + rng.normal(0, 8.0)) % 360.0 if rng.random() < preset.compass_fraction else None
        lon, lat = to_lonlat.transform(prior[0], prior[1])
        taken = start + timedelta(seconds=times[k]) if sequences else None
        exif = exif_bytes((lon, lat), 400.0 + pos[2], v.hfov, (W, H), (stored.shape[1], stored.shape[0]),
                          orientation, compass, taken)
        photo_rel, depth_rel = f"photos/{name}.jpg", f"depth/{name}.npy"
        save_jpeg(os.path.join(out_dir, photo_rel), stored, exif, int(rng.integers(*preset.jpeg_quality)))
        np.save(os.path.join(out_dir, depth_rel), rng_m.astype(np.float32))
        rows.append({"photo": photo_rel, "aerial": aerial_rel, "camera": v.camera, "hfov_deg": _fmt(v.hfov, 4),
                     "crs": town.crs, "prior_x": _fmt(prior[0]), "prior_y": _fmt(prior[1]),
                     "radius_m": _fmt(preset.radius_m, 1), "heading_prior_deg": _fmt(heading_prior, 3),
                     "heading_tolerance_deg": _fmt(tol, 1), "true_x": _fmt(true_xy[0]), "true_y": _fmt(true_xy[1]),
                     "true_heading_deg": _fmt(true_heading, 4), "depth": depth_rel,
                     # extras (ignored by readers that do not know them)
                     "town": spec.name, "style": spec.style, "camera_height_m": _fmt(v.z, 3),
                     "pitch_deg": _fmt(v.pitch, 3), "roll_deg": _fmt(v.roll, 3), "exif_orientation": str(orientation),
                     "grid_heading_deg": _fmt(v.heading_grid % 360.0, 4),
                     **({"sequence": f"{spec.name}_{which[k]}", "time": taken.isoformat(timespec="milliseconds")}
                        if sequences else {}),
                     **(_lens_columns(lens) if lens else {})})
    t_end = time.perf_counter()
    print(f"[synth] {spec.name} ({spec.style}): town+ortho {t_views - t0:.1f} s, {len(views)} views "
          f"{(t_end - t_views) / max(len(views), 1):.3f} s/view", flush=True)
    return rows


def generate(out_dir: str, preset: Preset, seed: int = 0, towns: Optional[int] = None, workers: int = 1,
             sequences: bool = False) -> List[Dict]:
    """Write the whole dataset; ``towns`` limits the number of towns (first N of the preset); ``sequences``:
    the views are street captures (`capture_views`), with times in EXIF and the manifest."""
    if preset.photo_sun not in ("same", "independent"):
        raise ValueError(f"photo_sun must be 'same' or 'independent', got {preset.photo_sun!r}")
    specs = preset.towns[: towns or len(preset.towns)]
    for sub in ("aerial", "photos", "depth"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    jobs = [(preset, spec, seed, i, out_dir, sequences) for i, spec in enumerate(specs)]
    if workers > 1 and len(jobs) > 1:
        with Pool(min(workers, len(jobs))) as pool:
            per_town = pool.map(generate_town, jobs, chunksize=1)
    else:
        per_town = [generate_town(j) for j in jobs]
    rows = [r for town_rows in per_town for r in town_rows]
    write_manifest(os.path.join(out_dir, "manifest.csv"), rows)
    return rows
