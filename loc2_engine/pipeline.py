"""The one entry point: `Localizer(...).localize(photo, aerial, prior)` -> `Result` (DESIGN.md §1).

The CLI, `batch`, the Processing algorithm and the QGIS plugin all call `Localizer.localize`; nothing else
runs the method. Steps for one photo:

  1. `GroundImage` (EXIF orientation applied, camera model) -> fitted to the model's ground input (a pinhole
     photo wider than it letterboxed, `GroundImage.fitted`; a known-orientation model's panorama is rolled
     so that north is at its centre, see `orientation`);
  2. prior: the argument, else the photo's EXIF GPS (`PriorError` when neither);
  3. `AerialWindow` of the model's size and gsd centred on the prior (a known-orientation pinhole model's is
     √2 wider, turned so that the heading prior points east and centre-cropped, see `orientation`); its
     features are cached (LRU, by ``window.key`` and that turn) so photos sharing a window encode it once;
  4. depth provider -> depth map (its own resolution, photo aspect) -> depth at each ground token (bilinear
     at the token's position in that grid); tokens without depth (sky, above the horizon, metric depth
     beyond the model's depth limit or half the window) are masked out of the matching;
  5. matcher (the model's expert for the photo's camera kind, if it has one, `Matcher.for_kind`):
     probabilities P (aerial cells x ground tokens) -> correspondences sampled ∝ P;
  6. ground tokens lifted to the camera BEV frame (``xy_bev = depth * lift_coef``);
  7. weighted scale-aware RANSAC (`ransac.ransac_similarity`) -> ``xy_local = s R xy_bev + t``, then its pose
     and its runner-up poses at other places refitted to the whole of P near each, and the one that
     explains P most tightly kept (`dense_refit`);
  8. confidence, status, and the explanation arrays; x, y in the raster CRS, lon/lat, headings.

Expected failures (`Loc2Error`) become ``Result.failure`` with the error's sentence; anything else is a bug
and propagates.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch

from .aerial import AerialWindow
from .confidence import pose_quality, status_from
from .dense_refit import KIND_SETTINGS, SCORE_SIGMA_M, DenseMass, refit_best, sharpness
from .depth import DepthProvider, as_depth_map, get_depth_provider
from .errors import AerialError, LocalizationError, Loc2Error, PriorError
from .georef import transform_points
from .lifting import sample_depth_at
from .matching import sample_correspondences
from .models import load_model
from .models.base import AerialFeatures, GroundFeatures, Matcher, to_input
from .orientation import (CanonicalView, canonical_view, rolled_depth, turned_px, turned_tile, unroll_bev,
                          unroll_uv, unturn)
from .ransac import ransac_similarity
from .refine import RayNoise
from .result import Result
from .solver import heading_from_rotation

#: search radius when the prior does not say, metres (a consumer GPS fix in a street canyon)
DEFAULT_RADIUS_M = 25.0
#: the window must show at least this much ground beyond the search radius, metres
MIN_VISIBLE_RANGE_M = 10.0
#: relative depth error assumed by RANSAC's last refit (`refine`). On data/bench, calib and calib2 with the
#: default model (3 seeds each), 0.2 cut the unknown-orientation panorama medians by 3-17 % (1.85 -> 1.80,
#: 1.44 -> 1.20, 2.17 -> 2.00 m); the other groups moved within the seeds' noise
DEFAULT_RAY_DEPTH_REL = 0.2
#: ground tokens with depth needed before matching is attempted (3 fix a similarity; more to vote)
MIN_VALID_TOKENS = 8

#: what a known-orientation model's heading prior is, and the checkpoint that needs none, per camera kind
_KNOWN_ORIENTATION_HELP = {
    "pano": ("of the panorama's centre column", "an unknown-orientation checkpoint (loc2-vigor, unknown_ori)"),
    "pinhole": ("the camera looks", "an any-orientation checkpoint (loc2-kitti, ori_noise180)"),
}

#: defaults of the tunable settings (``Localizer(**conf)`` overrides them)
DEFAULT_CONF = {
    # correspondences sampled from P and RANSAC hypotheses: the reference draws 1024 for a single fit and
    # 20 x 8192 for RANSAC; on data/bench with the default model, 4096 x 20000 hypotheses cut the median
    # error by ~10-30 % against 1024 x 1000 for +0.14 s per photo (8192 x 40000 gained nothing more)
    "n_matches": 4096,
    "hypotheses": 20000,
    "sample_size": 3,           # RANSAC minimal sample: 3 as the reference, or 2 (exact two-point similarity)
    "th_inlier_m": 2.5,         # hard inlier distance, metres (method.md §4.2)
    "th_soft_m": 5.0,           # soft-score distance, metres
    # relative depth error for RANSAC's last refit, which weighs a match's error along its ray apart from the
    # error across it (`refine`); 0: the plain Procrustes; None: the matcher's ``ray_depth_rel`` (0 for the
    # official checkpoints, as in the reference), else DEFAULT_RAY_DEPTH_REL
    "ray_depth_rel": None,
    "with_scale": True,         # False: rigid fit (the "no scale" ablation)
    "seed": 0,                  # sampling and RANSAC are deterministic for a seed
    "cache_size": 8,            # aerial windows whose features are kept
    # window centres snap to a grid this wide (true metres), so photos a few metres apart share a window and
    # its cached features; 0: each window centred on its prior. Off by default: on data/bench 8 m shares 4
    # windows in 100 (priors ~11 m apart) at equal medians, but moves single poses of the default model by
    # metres (the demo scene's pano median 4.3 -> 8.2 m), so it is a choice for dense photo series
    "window_snap_m": 0.0,
    # panoramas: matching probabilities averaged over this many rolls of the photo (None: the matcher's
    # `pano_rolls`, 1 for every shipped model); a known-orientation model's canonical roll is never ensembled
    "pano_rolls": None,
    # matching probabilities averaged with those of the east-west mirrored world (photo and aerial window
    # flipped, the matcher's answer flipped back): a test-time ensemble over the world's mirror symmetry;
    # None: the matcher's `mirror_tta` (True for the default model, False for the official ones). Default
    # model, 800 bench-style photos x 3 seeds, single pass -> ensemble: median 2.63 -> 2.50 m, within 5 m
    # 66 -> 69 % (90 % bootstrap interval of the change [+2, +5] points), pinholes without a heading prior
    # 6.42 -> 5.63 m, panoramas without one 1.74 -> 1.48 m; both encoders run twice (0.23 -> 0.29 s/photo)
    "mirror_tta": None,
    # matching probabilities averaged over 1, 2 or 4 quarter turns of the aerial window (each turned window
    # encoded, its cells turned back): a test-time ensemble over the directions the sun can shine from, for
    # a matcher trained on turned worlds (`loc2 train --turn`); None: the matcher's `aerial_quarters` (4 for
    # weights trained with --turn, else 1). Only for unknown-orientation inputs (no canonical roll or turn).
    # Default model, seed 0, 1 -> 4: 800 bench-style photos 2.40 -> 2.36 m (R@5m 72 -> 71 %), the same towns
    # under a sun from anywhere 2.12 -> 2.02 m (70 -> 74 %), with a photo sun of their own 2.71 -> 2.46 m
    # (65 -> 67 %); about 0.35 -> 0.5 s per photo. On weights that never saw a turned world it hurts (em:
    # 1.93 -> 2.29 m on data/bench): they read north from the shadows
    "aerial_quarters": None,
    # camera height above the ground, metres, for depth measured on the ground plane (plane, and relative
    # depth put in metres from it); None: the providers' default (depth.DEFAULT_CAMERA_HEIGHT_M, 1.6 m)
    "camera_height_m": None,
    "max_range_m": None,        # metric depth at or beyond this is masked; None: the matcher's own limit
                                # (max_depth_m, official models), else half the window
    "camera": "auto",           # camera model for photos given as paths
    "hfov_deg": None,           # pinhole HFOV for photos given as paths (None: EXIF)
    "radius_m": DEFAULT_RADIUS_M,  # search radius for priors read from EXIF
    # fewest expected matches (sum of P over cells x tokens, outside the dustbin). Only a matcher that puts
    # (almost) everything in its dustbin, or a fully masked window, falls below it: random descriptors give
    # ~1 and trained ones little more (the dual softmax spreads mass), so weak but real matches are left
    # to RANSAC and the confidence, which mark them low_confidence
    "min_expected_matches": 0.25,
    # kernel widths (m) of the last refit of RANSAC's pose against the whole matching probability matrix
    # (`dense_refit`: EM on P's mass near where the pose puts each token; panoramas' heading and position,
    # pinholes' position); empty: RANSAC's pose as it is; None: per camera kind (`dense_refit.KIND_SETTINGS`,
    # a panorama's narrowing on to 1 m). Default model (of the ninth session), seed 0,
    # 800 bench-style photos (data/bench, calib..calib5), RANSAC -> refit: median 2.36 -> 1.95 m (90 %
    # bootstrap interval of the change [-0.54, -0.29]), within 1 m 25 -> 30 %, within 5 m 71 -> 73 %;
    # panoramas with a heading prior 1.41 -> 1.07 m, without 1.47 -> 1.15 m; pinholes with 2.98 -> 2.81 m,
    # without 4.11 -> 3.82 m. Settings chosen on 300 of them (kernel widths; the scale kept: refitting it too
    # made pinholes worse, 3.07 -> 3.92 m; pinholes' heading kept), confirmed on the other 500
    "dense_sigmas_m": None,
    # relative depth error the refit's kernel allows along each ray (0: isotropic); None: per camera kind
    # (`dense_refit.KIND_SETTINGS`: 0.2 for panoramas, 0 for pinholes; measurements in `dense_refit`)
    "dense_ray_rel": None,
    # RANSAC's runner-up poses at other places or headings (`ransac.RansacResult.rivals`), refitted to P
    # like its own; the sharpest wins (`dense_refit.refit_best`; needs dense_sigmas_m; 0: RANSAC's pose).
    # Default model, seed 0, 800 bench-style photos, 0 -> 8: median 1.85 -> 1.67 m (90 % bootstrap interval
    # of the change [-0.29, -0.09]), within 5 m 74.0 -> 77.9 %; pinholes with a heading prior 3.02 -> 2.67 m,
    # without 4.16 -> 3.74 m; panoramas within 5 m +3 points each
    "rivals": 8,
}


@dataclass
class Prior:
    """Where to search: a position, a radius, and optionally a heading.

    x, y: position in ``crs`` units (None, None: take the photo's EXIF GPS, keeping radius and heading);
    crs: anything pyproj accepts (None: the aerial raster's CRS); radius_m: search radius, metres;
    heading_deg: heading prior clockwise from true north (None: unknown orientation, full 360°);
    heading_tolerance_deg: half-width of the allowed heading interval (None: `ransac`'s default).
    """

    x: Optional[float] = None
    y: Optional[float] = None
    crs: object = None
    radius_m: float = DEFAULT_RADIUS_M
    heading_deg: Optional[float] = None
    heading_tolerance_deg: Optional[float] = None

    @property
    def has_position(self) -> bool:
        return self.x is not None and self.y is not None


class Localizer:
    """Loads a matcher and a depth provider once; `localize` runs the method on one photo.

    model: registry name, weight file path, or a `Matcher` instance (used as is, e.g. by tests);
    depth: depth provider name or folder, or a `DepthProvider` instance; None = the model's default
        (``matcher.default_depth`` if it has one, else "mono");
    device: "cpu" / "cuda"; None = cuda when available; weights/backbone: files for the official models;
    conf: overrides of `DEFAULT_CONF`.
    Raises ModelError / DepthError here (not in `localize`) when the model or depth cannot be set up.
    """

    def __init__(self, model="default", depth=None, device=None, weights=None, backbone=None, **conf):
        unknown = set(conf) - set(DEFAULT_CONF)
        if unknown:
            raise TypeError(f"unknown Localizer settings {sorted(unknown)}; known: {sorted(DEFAULT_CONF)}")
        self.conf = {**DEFAULT_CONF, **conf}
        if self.conf["aerial_quarters"] not in (None, 1, 2, 4):
            raise ValueError(f"aerial_quarters must be 1, 2 or 4 (quarter turns that form a group), got "
                             f"{self.conf['aerial_quarters']!r}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if isinstance(model, Matcher):
            self.matcher, self.model_name = model, getattr(model, "name", type(model).__name__)
        else:
            self.matcher = load_model(model, device=self.device, weights=weights, backbone=backbone)
            self.model_name = os.path.basename(os.fspath(model))
        self.matcher.to(self.device).eval()
        if isinstance(depth, DepthProvider):
            self.depth = depth
        else:
            height = self.conf["camera_height_m"]
            self.depth = get_depth_provider(depth or getattr(self.matcher, "default_depth", "mono"),
                                            device=self.device,
                                            **({} if height is None else {"camera_height_m": float(height)}))
        self._features: "OrderedDict[str, object]" = OrderedDict()
        self._cache_lock = threading.Lock()  # the plugin localizes from worker threads

    # -- aerial -------------------------------------------------------------------------------------------
    @property
    def mirror_tta(self) -> bool:
        """Whether matching averages in the mirrored world (conf ``mirror_tta``, else the matcher's own)."""
        own = self.conf["mirror_tta"]
        return bool(getattr(self.matcher, "mirror_tta", False) if own is None else own)

    @property
    def aerial_quarters(self) -> int:
        """Quarter turns of the aerial window that matching averages over (conf, else the matcher's own)."""
        own = self.conf["aerial_quarters"]
        return int(getattr(self.matcher, "aerial_quarters", 1) if own is None else own)

    @property
    def window_size_m(self) -> float:
        return float(self.matcher.aerial_size_m)

    def aerial_window(self, aerial, prior: Prior, turned: bool = False) -> AerialWindow:
        """The model's window around ``prior`` (position in ``prior.crs``); turned: the `turned_px` wider one
        that the model's tile is turned out of (`CanonicalView.aerial_turn_deg`).

        aerial: an `AerialWindow` (used as is; it must have the model's gsd and size, or the wider one when
        turned), a raster path, a callable ``aerial(center_xy, center_crs, size_m, gsd) -> AerialWindow``,
        or an object with a method
        ``window(center_xy, center_crs, size_m, gsd)`` (e.g. the plugin's renderer of a QGIS layer).
        With ``window_snap_m`` > 0, built windows are centred on the node of that grid nearest the prior
        (`aerial.snap_center`), close enough that the search circle stays ``MIN_VISIBLE_RANGE_M`` inside.
        """
        from .aerial import window_around

        gsd = float(self.matcher.aerial_gsd)
        n = int(self.matcher.aerial_size_px)
        n = turned_px(n) if turned else n
        size_m = n * gsd
        if isinstance(aerial, AerialWindow):
            window = aerial
        else:  # centred on a grid node near the prior (snapping on): nearby photos share window and features
            window = window_around(aerial, (float(prior.x), float(prior.y)), prior.crs, size_m, gsd,
                                   snap_m=float(self.conf["window_snap_m"]),
                                   max_offset_m=self.window_size_m / 2.0 - prior.radius_m - MIN_VISIBLE_RANGE_M)
        if window.image.shape[:2] != (n, n) or not math.isclose(window.gsd, gsd, rel_tol=1e-6):
            raise AerialError(
                f"The aerial window is {window.image.shape[1]} px at {window.gsd:g} m/px but the model "
                f"{self.model_name} needs {n} px at {gsd:g} m/px; build it {size_m:g} m wide at the model's "
                "aerial_gsd.")
        return window

    def _aerial_features(self, window: AerialWindow, turn_deg: Optional[float] = None, mirrored: bool = False,
                         quarters: int = 0, kind: Optional[str] = None):
        """Features of ``window`` (cached by ``window.key``, ``turn_deg``, ``mirrored``, ``quarters`` and the network)
        and the (Na,) validity of its cells.

        kind: the camera kind whose network (`Matcher.for_kind`) encodes the window; None: the model's own.

        turn_deg: the model sees the window's centre turned that many degrees clockwise (`turned_tile`) and
        places its cells in that tile's frame, which are turned back into the window's local frame.
        mirrored: the model sees the tile flipped east–west; quarters: then turned that many quarter turns
        counter-clockwise (exact on the square tile). The descriptors are turned and flipped back, so cell i
        is the same place whatever the model saw.
        """
        key = window.key if turn_deg is None else f"{window.key}|turned {turn_deg:.9g}"
        key += "|mirrored" if mirrored else ""
        key += f"|quarters {quarters}" if quarters else ""
        matcher = self.matcher if kind is None else self.matcher.for_kind(kind)
        key += f"|{kind} expert" if matcher is not self.matcher else ""
        with self._cache_lock:
            if key in self._features:
                self._features.move_to_end(key)
                return self._features[key]
        n = int(self.matcher.aerial_size_px)
        image = window.image if turn_deg is None else turned_tile(window, turn_deg, n)
        x = to_input(image).to(self.device)
        x = torch.rot90(x.flip(-1) if mirrored else x, quarters, dims=(-2, -1)).contiguous()
        with torch.no_grad():
            feats = matcher.encode_aerial(x)
        desc = torch.rot90(feats.desc, -quarters, dims=(-2, -1))
        feats = AerialFeatures((desc.flip(-1) if mirrored else desc).contiguous(), feats.xy_local)
        if turn_deg is not None:
            feats = AerialFeatures(feats.desc, unturn(feats.xy_local, turn_deg))
        # a cell is usable when the raster has data at its centre
        rc = window.local_to_pixel(feats.xy_local.detach().cpu().numpy().astype(np.float64))
        h, w = window.valid.shape
        rows = np.clip(np.round(rc[:, 0]).astype(int), 0, h - 1)
        cols = np.clip(np.round(rc[:, 1]).astype(int), 0, w - 1)
        cell_valid = torch.from_numpy(window.valid[rows, cols]).to(self.device)[None]
        with self._cache_lock:
            self._features[key] = (feats, cell_valid)
            # the ensembles keep a feature set per mirror and quarter turn of each window and network
            per_window = (2 if self.mirror_tta else 1) * self.aerial_quarters * (1 + len(self.matcher.expert_kinds))
            while len(self._features) > max(1, int(self.conf["cache_size"])) * per_window:
                self._features.popitem(last=False)
        return feats, cell_valid

    # -- one photo ---------------------------------------------------------------------------------------
    def localize(self, photo, aerial, prior: Optional[Prior] = None, depth_map=None) -> Result:
        """Localize one photo; never raises `Loc2Error` (a failed `Result` carries the sentence).

        photo: a `GroundImage` or a path; aerial: see `aerial_window`; prior: `Prior` (None: EXIF GPS);
        depth_map: ground-truth range for this photo (.npy path or (H, W) array), read only by the
        ``truth`` provider.
        """
        start = time.perf_counter()
        photo_id = os.fspath(photo) if isinstance(photo, (str, os.PathLike)) else os.fspath(photo.path)
        info = {"model": self.model_name, "depth": self.depth.name}
        try:
            return self._localize(photo, aerial, prior, depth_map, photo_id, info, start)
        except Loc2Error as exc:
            return Result.failure(photo_id, exc, runtime_s=time.perf_counter() - start, **info)

    def _localize(self, photo, aerial, prior, depth_map, photo_id, info, start) -> Result:
        from .ground import GroundImage  # io module; imported here so tests can stub a photo object

        ground = photo if not isinstance(photo, (str, os.PathLike)) else GroundImage.load(
            photo, camera=self.conf["camera"], hfov_deg=self.conf["hfov_deg"])
        kind = ground.camera.kind
        info.update(camera=kind, hfov_deg=float(ground.camera.hfov_deg))
        prior = self._resolve_prior(ground, prior, aerial)
        view = self._canonical_view(prior, kind)
        roll = view.roll
        if self.window_size_m / 2.0 - prior.radius_m < MIN_VISIBLE_RANGE_M:
            raise PriorError(
                f"The search radius {prior.radius_m:g} m is too large for the model {self.model_name}, whose "
                f"aerial window is {self.window_size_m:g} m wide; use a radius of at most "
                f"{self.window_size_m / 2.0 - MIN_VISIBLE_RANGE_M:g} m.")
        window = self.aerial_window(aerial, prior, turned=view.aerial_turn_deg is not None)
        frame = window.frame
        info.update(crs=frame.crs.to_string(), window=window, frame=frame)

        H, W = self.matcher.ground_input_size_for(kind)
        ground_in = ground.fitted(W, H, letterbox=getattr(self.matcher, "letterbox", True))
        xy_bev_tok, valid = self._lifted_tokens(ground_in, depth_map, roll)
        P, cells, idx_a, idx_g, w = self._correspondences(window, ground_in, valid, view)
        xy_bev, xy_aerial = xy_bev_tok[idx_g], cells[idx_a]
        cell_m = self.window_size_m / math.sqrt(cells.shape[0])

        prior_local = frame.to_local(transform_points([[prior.x, prior.y]], prior.crs, frame.crs))[0]
        sigmas_m, ray_rel = KIND_SETTINGS[kind]
        if self.conf["dense_sigmas_m"] is not None:
            sigmas_m = tuple(self.conf["dense_sigmas_m"])
        if self.conf["dense_ray_rel"] is not None:
            ray_rel = float(self.conf["dense_ray_rel"])
        ransac = ransac_similarity(
            xy_bev, xy_aerial, w, hypotheses=int(self.conf["hypotheses"]),
            sample_size=int(self.conf["sample_size"]), th_inlier=self.conf["th_inlier_m"],
            th_soft=self.conf["th_soft_m"], with_scale=bool(self.conf["with_scale"]),
            scale_range=self.depth.scale_range if self.depth.metric else None,
            heading_prior_deg=None if prior.heading_deg is None else float(prior.heading_deg) % 360.0,
            heading_tolerance_deg=prior.heading_tolerance_deg,  # None: ransac's default
            position_prior=tuple(map(float, prior_local)), position_radius=float(prior.radius_m),
            ray_noise=self._ray_noise(ground.camera, cell_m),
            rivals=int(self.conf["rivals"]) if sigmas_m else 0,
            generator=torch.Generator().manual_seed(int(self.conf["seed"])))
        if not ransac.ok:
            raise LocalizationError(f"No consistent pose from {len(w)} matches: {ransac.reason}")
        mass = DenseMass(P[:, valid], cells, xy_bev_tok[valid])
        if sigmas_m:
            fit = refit_best(mass, (ransac.fit,) + ransac.rivals, turn=kind == "pano", sigmas_m=sigmas_m,
                             accept=lambda f: bool(ransac.limits(f)), ray_rel=ray_rel)
            ransac = ransac.refitted(fit, xy_bev, xy_aerial, self.conf["th_inlier_m"])
        fit = ransac.fit
        t_local = fit.t.detach().double().numpy().reshape(2)

        quality = pose_quality(ransac.residuals, ransac.inliers, w, ransac.soft_score, len(w),
                               ambiguity=ransac.ambiguity, panorama=kind == "pano",
                               heading_prior=prior.heading_deg is not None,
                               dst=xy_aerial, position=fit.t.detach().float(),
                               dense_share=mass.share(fit, SCORE_SIGMA_M),
                               sharpness=sharpness(mass, fit, SCORE_SIGMA_M),
                               calibration=getattr(self.matcher, "confidence_calibration", None))
        heading = float(heading_from_rotation(fit.R.detach().double()))
        xy_crs = frame.from_local(t_local[None])[0]
        lon, lat = frame.local_to_lonlat(t_local[None])[0]
        s = float(fit.s)
        layout_xy = (s * xy_bev_tok[valid] @ fit.R.detach().float().T + fit.t.detach().float()).numpy()
        uv_photo = self.matcher.ground_tokens(ground.camera, self.depth.kind, ground_in.rows)[0].float()
        uv_photo = unroll_uv(uv_photo, roll, W, ground.camera.width).numpy() if roll else uv_photo.numpy()
        return Result(
            photo=photo_id, status=status_from(quality["confidence"], quality["inliers"]), error="",
            x=float(xy_crs[0]), y=float(xy_crs[1]), lon=float(lon), lat=float(lat), heading_deg=heading,
            heading_grid_deg=float(frame.true_to_grid_heading(heading, xy_crs)), scale=s,
            matches=int(quality["matches"]), inliers=int(quality["inliers"]),
            inlier_ratio=float(quality["inlier_ratio"]), confidence=float(quality["confidence"]),
            residual_m=float(quality["residual_m"]), sigma_m=float(quality["sigma_m"]),
            ambiguity=float(ransac.ambiguity), quality_features=quality["features"],
            runtime_s=time.perf_counter() - start,
            uv_ground=uv_photo[idx_g.numpy()], xy_bev=xy_bev.numpy(), xy_aerial=xy_aerial.numpy(),
            weights=w.numpy(), inlier_mask=ransac.inliers.cpu().numpy().astype(bool),
            residuals_m=ransac.residuals.detach().cpu().float().numpy(),
            layout_uv=uv_photo[valid.numpy()], layout_xy=layout_xy, **info)

    def _lifted_tokens(self, ground_in, depth_map, roll: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
        """Each ground token lifted to the BEV: xy_bev (Ng, 2) float32 depth units, valid (Ng,) bool.

        ground_in: the `ground.ModelInput`; depth is taken of its content (the photo without letterbox
        padding) and the tokens read it where they fall on the photo.
        roll: columns the matcher's input is rolled right (`_canonical_view`): the depth is rolled with it
        (after the official nearest resize to the input) and the points turned back into the photo's frame.

        Invalid: no depth (sky, above the horizon, letterbox padding) or, for metric depth, at or beyond conf
        ``max_range_m``, else the matcher's own clip ``max_depth_m`` on its ``max_depth_kind`` (official models:
        35 m of range VIGOR / 40 m of z-depth KITTI, method.md §3), else half the window (farther than it can
        show).
        Raises LocalizationError when too few tokens remain (an all-sky photo).
        """
        photo = ground_in.content
        depth = self._depth(photo, depth_map)
        if roll:
            depth = rolled_depth(depth, photo.image.shape[:2], roll)
        # tokens where the depth map's own grid has them (no resampling of depth, see depth.as_depth_map)
        depth_camera = photo.camera.resized(depth.shape[1], depth.shape[0])
        uv_depth, coef = self.matcher.ground_tokens(depth_camera, self.depth.kind, ground_in.rows)  # (Ng, 2) each
        # bilinear: token centres fall between pixels; an exact pixel (official grids) reads that pixel
        depth_tok = sample_depth_at(torch.from_numpy(depth)[None].double(), uv_depth[None].double(),
                                    mode="bilinear")[0]  # (Ng,)
        valid = torch.isfinite(depth_tok) & (depth_tok > 0)
        xy_bev = depth_tok[:, None] * coef.double()  # (Ng, 2)
        own_limit = getattr(self.matcher, "max_depth_m", None)
        if self.depth.metric and self.conf["max_range_m"] is None and own_limit is not None:
            # a pinhole's z-depth is its forward BEV coordinate, whatever kind of depth the provider gives
            along_z = getattr(self.matcher, "max_depth_kind", "range") == "z"
            valid &= (xy_bev[:, 1] if along_z else depth_tok) < own_limit
        elif self.depth.metric:
            valid &= depth_tok < (self.conf["max_range_m"] or self.window_size_m / 2.0)
        if int(valid.sum()) < MIN_VALID_TOKENS:
            raise LocalizationError(
                f"The photo shows no usable ground: only {int(valid.sum())} of {len(valid)} image regions have "
                f"depth from '{self.depth.name}' (the rest is sky, above the horizon, or too far); there is "
                "nothing to match against the aerial image.")
        return unroll_bev(xy_bev, roll, photo.image.shape[1]).float(), valid

    def _correspondences(self, window, ground_in, valid, view: CanonicalView = CanonicalView()):
        """The matching probabilities and matches sampled from them: P (Na, Ng) float32, the cells' centres
        (Na, 2) local m, idx_a (N,), idx_g (N,) long, weights (N,) float32 (all on the CPU).

        Raises LocalizationError when P's total mass (expected matches) is below min_expected_matches: the
        photo and the window have nothing in common, and any pose would be a guess.
        view: how the inputs are turned before encoding (`_canonical_view`).
        """
        kind = ground_in.content.camera.kind
        feats_a, _ = self._aerial_features(window, view.aerial_turn_deg, kind=kind)
        P = self._probabilities(window, ground_in, valid, view)
        expected, needed = float(P.sum()), float(self.conf["min_expected_matches"])
        if expected < needed:
            raise LocalizationError(
                f"No usable matches between the photo and the aerial image: the matcher expects {expected:.1f} "
                f"matched image regions (at least {needed:g} are needed) and puts the rest in its "
                "dustbin; the photo may not show this place, or the aerial image may be too different.")
        generator = torch.Generator(device=P.device).manual_seed(int(self.conf["seed"]))
        idx_a, idx_g, w = (t[0].cpu() for t in sample_correspondences(P, self.conf["n_matches"], generator))
        drawn = w > 0  # zero-probability pairs are only drawn when fewer than n_matches are positive
        idx_a, idx_g = idx_a[drawn], idx_g[drawn]
        return P[0].cpu().float(), feats_a.xy_local.detach().cpu().float(), idx_a, idx_g, w[drawn].float()

    def _probabilities(self, window, ground_in, valid, view: CanonicalView = CanonicalView()) -> torch.Tensor:
        """Matching probabilities P (1, Na, Ng) of ``window``'s cells and the ground tokens (in the order of the
        photo as the matcher sees it, rolled by ``view.roll``); valid (Ng,) bool marks tokens with depth.

        With conf ``mirror_tta``, P is averaged with the P of the east–west mirrored world (window and photo
        flipped, the answer flipped back), and with ``aerial_quarters`` over the window turned by quarter turns
        (the photo, which does not know north, unchanged): the matcher is equivariant to neither, and the
        answers differ where it is unsure. A canonical view (known orientation) is never turned.
        """
        total = 0.0
        kind = ground_in.content.camera.kind
        mirrors = (False, True) if self.mirror_tta else (False,)
        canonical = view.roll or view.aerial_turn_deg is not None
        quarters = range(1 if canonical else self.aerial_quarters)
        for mirrored in mirrors:
            aerials = [self._aerial_features(window, view.aerial_turn_deg, mirrored, q, kind) for q in quarters]
            total = total + self._rolled_probabilities(aerials, ground_in, valid, view.roll, mirrored)
        return total / len(mirrors)

    def _rolled_probabilities(self, aerials, ground_in, valid, roll: int, mirrored: bool = False) -> torch.Tensor:
        """Matching probabilities P (1, Na, Ng) of the network for the photo's camera kind (`Matcher.for_kind`),
        averaged over ``aerials``, a list of (that network's aerial features, (1, Na) cell validity) of one
        window, ground tokens in the photo's token order.

        A panorama is also matched rolled by i/n of its width (i < n = ``pano_rolls``, whole tokens) and the
        n P's, rolled back, are averaged: a test-time ensemble over the one symmetry of a 360° view, which
        evens out the matcher's dependence on where in the image a facade falls. On data/bench, 4 rolls
        helped the default model's step-2962 weights (panorama medians 1.98 -> 1.33 m known orientation,
        3.51 -> 3.22 m unknown) but not the shipped step-6101 weights (2.01 -> 1.77 m and 1.68 -> 1.66 m,
        median heading error 1.4 -> 2.4° and 3.2 -> 3.8°), so it is off unless asked for.
        mirrored: the matcher sees the photo flipped left–right (with ``aerials`` of the flipped window) and
        its token descriptors are flipped back into the photo's token order.
        """
        kind = ground_in.content.camera.kind
        matcher = self.matcher.for_kind(kind)
        n = self.conf["pano_rolls"] or getattr(self.matcher, "pano_rolls", 1)
        n = int(n) if kind == "pano" and roll == 0 else 1
        x = to_input(ground_in.image).to(self.device)  # (1, 3, H, W)
        valid = valid.to(self.device)
        grid = self.matcher.token_grid(kind) if n > 1 else (1, valid.numel())
        total = None
        with torch.no_grad():
            for i in range(n):
                cols = grid[1] * i // n  # tokens the photo is rolled right by
                shift = roll + (cols * self.matcher.token_stride if cols else 0)
                x_i = torch.roll(x, shift, dims=-1)
                feats_g = matcher.encode_ground(x_i.flip(-1) if mirrored else x_i, kind)
                if mirrored:
                    feats_g = GroundFeatures(feats_g.desc.flip(-1), feats_g.uv, feats_g.input_size)
                valid_i = torch.roll(valid.view(grid), cols, dims=1).reshape(1, -1)
                for feats_a, cell_valid in aerials:
                    P = matcher.match(feats_a, feats_g, valid_i, cell_valid)  # (1, Na, Ng), rolled order
                    P = torch.roll(P.view(1, -1, *grid), -cols, dims=-1).reshape(P.shape)
                    total = P if total is None else total + P
        return total / (n * len(aerials))

    # -- helpers ---------------------------------------------------------------------------------------------
    def _ray_noise(self, camera, cell_m: float) -> Optional[RayNoise]:
        """How uncertain a lifted match is along and across its ray (`refine`), for RANSAC's last refit, with
        aerial cells cell_m apart; None (plain Procrustes) when off or in the rigid ablation (no scale)."""
        depth_rel = self.conf["ray_depth_rel"]
        if depth_rel is None:
            depth_rel = getattr(self.matcher, "ray_depth_rel", DEFAULT_RAY_DEPTH_REL)
        if not depth_rel or not self.conf["with_scale"]:
            return None
        span = 2.0 * math.pi if camera.kind == "pano" else math.radians(camera.hfov_deg)
        return RayNoise(cell_m=cell_m, token_rad=span / self.matcher.token_grid(camera.kind)[1],
                        depth_rel=float(depth_rel))

    def _resolve_prior(self, ground, prior: Optional[Prior], aerial) -> Prior:
        """A Prior with a position: the given one, else EXIF GPS (WGS84), else PriorError."""
        prior = prior or Prior(radius_m=self.conf["radius_m"])
        if prior.has_position:
            if prior.crs is None:
                prior = Prior(**{**prior.__dict__, "crs": self._aerial_crs(aerial)})
            return prior
        lonlat = getattr(ground.exif, "lonlat", None) if ground.exif is not None else None
        if lonlat is None:
            raise PriorError(
                f"The photo {os.path.basename(os.fspath(ground.path))} has no GPS position in its EXIF and no "
                "prior position was given; give one (--prior X Y, a map click, or the manifest's prior_x/prior_y).")
        return Prior(**{**prior.__dict__, "x": float(lonlat[0]), "y": float(lonlat[1]), "crs": "EPSG:4326"})

    def _canonical_view(self, prior: Prior, kind: str) -> CanonicalView:
        """How a known-orientation matcher's (``matcher.orientation == "known"``) inputs are turned by the
        heading prior to look as in its training (`orientation.canonical_view`: panoramas rolled, method.md
        §1.1; pinhole photos' aerial windows turned, §1.2); unturned for other matchers and for a camera kind
        the matcher does not take (which it refuses later with a CameraError).

        Raises PriorError without a heading prior: such a checkpoint never saw another orientation.
        """
        if (getattr(self.matcher, "orientation", "unknown") != "known"
                or kind not in self.matcher.ground_input_sizes):
            return CanonicalView()
        if prior.heading_deg is None:
            facing, other = _KNOWN_ORIENTATION_HELP[kind]
            raise PriorError(
                f"The model {self.model_name} is a known-orientation checkpoint and needs a heading prior (the "
                f"direction {facing}: --heading DEG, the dock's heading, or the manifest's heading_prior_deg); "
                f"without one, use {other}, which needs none.")
        return canonical_view(prior.heading_deg, kind, self.matcher.ground_input_size_for(kind)[1])

    @staticmethod
    def _aerial_crs(aerial):
        if isinstance(aerial, AerialWindow):
            return aerial.frame.crs
        if isinstance(aerial, (str, os.PathLike)):
            from .aerial import raster_info

            return raster_info(aerial)[0]
        crs = getattr(aerial, "crs", None)
        if crs is None:
            raise PriorError("A prior position without a CRS needs an aerial source with a CRS; give the "
                             "prior's CRS.")
        return crs

    def _depth(self, photo, depth_map) -> np.ndarray:
        """Depth (h, w) float32 of ``photo`` (`ModelInput.content`; the map may have any resolution of the same
        aspect), NaN invalid."""
        h, w = photo.image.shape[:2]
        return as_depth_map(self.depth(photo, truth_path=depth_map), (h, w), photo.camera)

