"""Localization of one photo as a QgsTask: the engine works in ``run()`` (worker thread), the dock adds layers in
``finished()`` (main thread).

The engine call is injectable (``engine(request, task) -> Result``) so the dock/task/layer path can be driven
with any callable; the default is `localize_with_engine`, which reuses one `loc2_engine.pipeline.Localizer`
per (model, depth, device, weight files) for the whole QGIS session (models load once).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

from qgis.core import QgsTask

from loc2_engine import defaults

#: Localizers already built, by (model, depth, device, weights, backbone, camera height); only the single running task touches it
_LOCALIZERS: Dict[tuple, object] = {}


@dataclass
class Request:
    """Everything one localization needs, captured on the main thread.

    aerial: a `render.LayerRenderer` (or anything `Localizer.aerial_window` accepts); prior: keyword
    arguments of `loc2_engine.pipeline.Prior` (x, y, crs, radius_m, heading_deg, heading_tolerance_deg),
    or None to use the photo's EXIF GPS. weights, backbone: model files (the official loc2-* models need
    them); None: the registry's, or found in $LOC2_MODELS. camera_height_m: metres above the ground (None:
    the engine's default). extent: (xmin, ymin, xmax, ymax) in ``extent_crs``: that area is searched
    (`Localizer.localize_in_extent`) instead of around a prior, and ``prior`` holds only the heading prior.
    """

    photo: str
    aerial: object
    prior: Optional[dict] = None
    camera: str = defaults.CAMERA
    hfov_deg: Optional[float] = None
    camera_height_m: Optional[float] = None
    model: str = defaults.MODEL
    depth: str = "mono"
    device: str = "cpu"
    weights: Optional[str] = None
    backbone: Optional[str] = None
    extent: Optional[Tuple[float, float, float, float]] = None
    extent_crs: Optional[str] = None


def localizer_for(model: str, depth: str, device: str, weights: Optional[str] = None,
                  backbone: Optional[str] = None, camera_height_m: Optional[float] = None):
    """The session's `Localizer` for these settings, built on first use (raises ModelError / DepthError)."""
    key = (model, depth, device, weights, backbone, camera_height_m)
    if key not in _LOCALIZERS:
        from loc2_engine.pipeline import Localizer

        _LOCALIZERS[key] = Localizer(model=model, depth=depth, device=device, weights=weights, backbone=backbone,
                                     camera_height_m=camera_height_m)
    return _LOCALIZERS[key]


def localize_with_engine(request: Request, task: "LocalizeTask", localizer=None):
    """The real engine: load the photo with the chosen camera, then `Localizer.localize` (or, with an extent,
    `Localizer.localize_in_extent`), which stops inside its stages once the task is cancelled (raising
    `loc2_engine.cancel.Cancelled`).

    localizer: a ready `Localizer` (tests pass one built from an in-memory model); default: the session's
    one for the request's model, depth and device.
    """
    from loc2_engine.ground import GroundImage
    from loc2_engine.pipeline import Prior

    # a model that has started loading loads to its end; the engine's stages stop at their next checkpoint
    if task.isCanceled():
        return None
    localizer = localizer or localizer_for(request.model, request.depth, request.device, request.weights,
                                           request.backbone, request.camera_height_m)
    task.setProgress(30)
    if task.isCanceled():
        return None
    ground = GroundImage.load(request.photo, camera=request.camera, hfov_deg=request.hfov_deg)
    task.setProgress(40)
    if task.isCanceled():
        return None
    if request.extent is not None:
        heading = request.prior or {}
        return localizer.localize_in_extent(ground, request.aerial, request.extent, request.extent_crs,
                                            heading.get("heading_deg"), heading.get("heading_tolerance_deg"),
                                            should_stop=task.isCanceled)
    prior = Prior(**request.prior) if request.prior else None
    return localizer.localize(ground, request.aerial, prior, should_stop=task.isCanceled)


class LocalizeTask(QgsTask):
    """One photo. After it ends, ``result`` holds the `Result` (a failed one for expected errors),
    ``error`` the traceback of an unexpected exception, and ``on_done(task, ok)`` has been called on the
    main thread. Cancel stops the engine at its next checkpoint (between aerial passes or batches of RANSAC
    hypotheses); a cancelled task ends complete, without a result."""

    def __init__(self, request: Request, on_done: Callable, engine: Callable = localize_with_engine):
        super().__init__(f"Loc²: localizing {request.photo}", QgsTask.Flag.CanCancel)
        self.request = request
        self.engine = engine
        self.on_done = on_done
        self.result = None
        self.error = ""

    def run(self) -> bool:  # worker thread: no project, no widgets
        from loc2_engine.cancel import Cancelled
        from loc2_engine.errors import Loc2Error
        from loc2_engine.result import Result

        self.setProgress(5)
        try:
            self.result = self.engine(self.request, self)
        except Cancelled:
            pass  # said by isCanceled() below
        except Loc2Error as exc:  # e.g. ModelError while building the Localizer, PhotoError loading the photo
            self.result = Result.failure(self.request.photo, exc)
        except Exception:  # noqa: BLE001 -- a bug: report it in QGIS instead of losing it in the thread
            self.error = traceback.format_exc()
            return False
        if self.isCanceled():
            # a cancelled run is not a failure: returning False would make QGIS announce "Task failed"
            self.result = None
            return True
        self.setProgress(100)
        return self.result is not None

    def finished(self, ok: bool) -> None:  # main thread
        self.on_done(self, ok)
