"""The one entry point: `Localizer(...).localize(photo, aerial, prior)` -> `Result`.

The CLI, `batch`, the Processing algorithm and the QGIS plugin all call `Localizer.localize`; nothing else
runs the method. It hands each stage's frozen output to the next:

    photo ─ GroundImage (EXIF orientation applied, camera model) ─ fitted to the matcher's input ─
        content.check_content (a frame with nothing to match is refused)
    prior + aerial ─ search_area ─ SearchArea (the window around the prior, its frame, a canonical view)
    depth provider ─ lifting.lift_tokens ─ LiftedTokens (every ground token in the camera's BEV)
    feature_cache + probabilities.matches_for ─ Matches (P with its test-time ensembles, matches drawn)
    pose.estimate_pose ─ PoseEstimate (RANSAC, its refits and rivals)
    assemble.assemble_result ─ Result (confidence, status, the pose in the raster's CRS, explanations)
        fov_check.fov_gate (a pinhole whose matches point to another HFOV than assumed: low_confidence)

Expected failures (`Loc2Error`) become ``Result.failure`` with the error's sentence; anything else is a bug
and propagates.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Optional

import torch

from .assemble import area_fields, assemble_result, photo_fields
from .cancel import checkpoint, watching
from .config import LocalizerConfig
from .content import check_content
from .depth import DepthProvider, get_depth_provider
from .errors import Loc2Error
from .feature_cache import AerialFeatureCache
from .fov_check import fov_gate
from .lifting import lift_tokens
from .models import load_model
from .models.base import Matcher
from .pose import estimate_pose
from .probabilities import matches_for
from .result import Result
from .search_area import Prior, aerial_crs, aerial_window, search_area

__all__ = ["Localizer", "Prior"]

#: failures of the photo itself, the same in every window of an extent
_PHOTO_FAILURES = ("photo", "camera", "depth")


class Localizer:
    """Loads a matcher and a depth provider once; `localize` runs the method on one photo.

    model: registry name, weight file path, or a `Matcher` instance (used as is, e.g. by tests);
    depth: depth provider name or path, or a `DepthProvider` instance; None: the matcher's ``default_depth``;
    device: "cpu" / "cuda"; None = cuda when available; weights/backbone: files for the official models;
    config: a `LocalizerConfig` (None: the defaults); settings: overrides of its fields by name
    (`LocalizerConfig.with_overrides`, e.g. ``hypotheses=500``).
    Raises ModelError / DepthError here (not in `localize`) when the model or depth cannot be set up.
    """

    def __init__(self, model="default", depth=None, device=None, weights=None, backbone=None,
                 config: Optional[LocalizerConfig] = None, **settings):
        config = (config or LocalizerConfig()).with_overrides(**settings)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if isinstance(model, Matcher):
            self.matcher, self.model_name = model, model.name or type(model).__name__
        else:
            self.matcher = load_model(model, device=self.device, weights=weights, backbone=backbone)
            self.model_name = os.path.basename(os.fspath(model))
        self.matcher.to(self.device).eval()
        self.config = config.resolved(self.matcher.inference_defaults())
        if isinstance(depth, DepthProvider):
            self.depth = depth
        else:
            height = self.config.lifting.camera_height_m
            self.depth = get_depth_provider(depth or self.matcher.default_depth, device=self.device,
                                            **({} if height is None else {"camera_height_m": float(height)}))
        matching = self.config.matching
        ways = (2 if matching.mirror_tta else 1) * matching.aerial_quarters * (1 + len(self.matcher.expert_kinds))
        self.features = AerialFeatureCache(self.matcher, self.device, matching.cache_size, ways)

    def aerial_window(self, aerial, prior: Prior, turned: bool = False):
        """The matcher's aerial window around ``prior`` (`search_area.aerial_window`)."""
        return aerial_window(self.matcher, self.model_name, aerial, prior, turned)

    def localize(self, photo, aerial, prior: Optional[Prior] = None, depth_map=None,
                 should_stop: Optional[Callable[[], bool]] = None) -> Result:
        """Localize one photo; never raises `Loc2Error` (a failed `Result` carries the sentence).

        photo: a `GroundImage` or a path; aerial: see `search_area.aerial_window`; prior: `Prior` (None: EXIF
        GPS); depth_map: ground-truth range for this photo (.npy path or (H, W) array), read only by the
        ``truth`` provider; should_stop: asked between the stages and inside their long loops (`cancel`);
        raises `cancel.Cancelled` once it answers True.
        """
        from .ground import GroundImage  # io module; imported here so tests can stub a photo object

        start = time.perf_counter()
        photo_id = os.fspath(photo) if isinstance(photo, (str, os.PathLike)) else os.fspath(photo.path)
        provenance = {"model": self.model_name, "depth": self.depth.name}
        config = self.config
        ground = area = None
        try:
            with watching(should_stop):
                checkpoint()
                ground = photo if not isinstance(photo, (str, os.PathLike)) else GroundImage.load(
                    photo, camera=config.photo.camera, hfov_deg=config.photo.hfov_deg)
                area = search_area(self.matcher, self.model_name, ground, prior, aerial, config.photo.radius_m)
                H, W = self.matcher.ground_input_size_for(ground.camera.kind)
                ground_in = ground.fitted(W, H, letterbox=self.matcher.letterbox)
                check_content(ground_in.content.image, os.path.basename(photo_id))
                checkpoint()
                lifted = lift_tokens(self.matcher, self.depth, ground_in, depth_map, area.view.roll,
                                     config.lifting.max_range_m)
                checkpoint()
                matches = matches_for(self.features, area.window, ground_in, lifted.valid, config.matching,
                                      config.seed, area.view)
                checkpoint()
                pose = estimate_pose(lifted, matches, area, ground.camera, self.matcher, self._scale_range(),
                                     config.pose, config.seed)
                checkpoint()
            result = assemble_result(photo_id, ground, ground_in, area, lifted, matches, pose, self.matcher,
                                     self.depth.kind, time.perf_counter() - start, **provenance)
            return fov_gate(result, ground.camera)
        except Loc2Error as exc:
            return Result.failure(photo_id, exc, runtime_s=time.perf_counter() - start, **provenance,
                                  **photo_fields(ground), **area_fields(area))

    def localize_in_extent(self, photo, aerial, extent, extent_crs=None, heading_deg: Optional[float] = None,
                           heading_tolerance_deg: Optional[float] = None, depth_map=None,
                           should_stop: Optional[Callable[[], bool]] = None) -> Result:
        """Localize one photo somewhere in ``extent`` without a prior position; never raises `Loc2Error`.

        extent: (xmin, ymin, xmax, ymax) in ``extent_crs`` (None: the aerial source's CRS). The photo is
        localized (`localize`) against each window of `extent.cover` and `extent.best_of` keeps the best pose
        inside the extent, its confidence lowered when another place fits about as well; runtime_s is the sum
        over the windows. A failure that no other window can change (the photo, its camera, its depth) ends
        the search at the first window. should_stop: as in `localize`.
        """
        from .extent import best_of, cover, validate_extent

        start = time.perf_counter()
        photo_id = os.fspath(photo) if isinstance(photo, (str, os.PathLike)) else os.fspath(photo.path)
        try:
            extent = validate_extent(extent)
            crs = extent_crs if extent_crs is not None else aerial_crs(aerial)
            priors = cover(extent, crs, self.matcher, heading_deg=heading_deg,
                           heading_tolerance_deg=heading_tolerance_deg)
        except Loc2Error as exc:
            return Result.failure(photo_id, exc, runtime_s=time.perf_counter() - start, model=self.model_name,
                                  depth=self.depth.name)
        photo = self._loaded(photo)
        results = []
        for prior in priors:
            results.append(self.localize(photo, aerial, prior, depth_map, should_stop))
            if results[-1].error_code in _PHOTO_FAILURES:
                return results[-1]
        # best_of recomputes the status from the confidence: the field-of-view verdict is given again
        return fov_gate(best_of(results, extent, crs), photo.camera)

    def _loaded(self, photo):
        """``photo`` as a `GroundImage`, loaded once for all the windows of an extent; a path it cannot load
        stays a path, for `localize` to fail with the reason."""
        from .ground import GroundImage

        if not isinstance(photo, (str, os.PathLike)):
            return photo
        try:
            return GroundImage.load(photo, camera=self.config.photo.camera, hfov_deg=self.config.photo.hfov_deg)
        except Loc2Error:
            return photo

    def _scale_range(self):
        """The plausible scale of the depth provider's metric depth; None for relative depth."""
        return self.depth.scale_range if self.depth.metric else None
