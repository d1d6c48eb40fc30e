"""`mono` depth: the project's small monocular network (models/mono_depth.py), no ground truth needed.

The network predicts *relative* range (one unknown global scale per photo, trained scale-invariantly on
synthetic depth) with sky as NaN. The provider puts it in metres from the flat ground in front of the
camera (`plane.ground_scale`: the ground below the horizon seen from an assumed camera height), so the
solver's scale can be bounded. Unbounded, the scale-aware fit of a pinhole's narrow view trades scale for
translation along the viewing direction (docs/evaluation.md, "Pipeline settings").

The scale range (`plane.GROUND_SCALED_RANGE`) covers camera heights of about 1.35-2.55 m against the
assumed 1.6 m and the spread of the ground estimate.
"""

from __future__ import annotations

import numpy as np

from . import DEFAULT_CAMERA_HEIGHT_M, DepthProvider
from .plane import GROUND_SCALED_RANGE, metres_from_ground


class MonoDepth(DepthProvider):
    """Relative range from `models.mono_depth` (weights: its shipped file unless ``weights`` is given)."""

    name = "mono"
    metric = True  # metres via the ground plane (module docstring), good to a factor within scale_range
    scale_range = GROUND_SCALED_RANGE

    def __init__(self, weights=None, device=None, camera_height_m: float = DEFAULT_CAMERA_HEIGHT_M):
        super().__init__(device, camera_height_m)
        from ..models import mono_depth  # torch model: loaded only when this provider is chosen

        self.kind = mono_depth.MONO_DEPTH_KIND
        self._predict = mono_depth.predict_depth
        self._net = mono_depth.load_mono_depth(device=device or "cpu", weights=weights)

    def __call__(self, ground, *, truth_path=None) -> np.ndarray:
        """Range (H, W) float32 metres (approximately) of ``ground.image``, NaN = sky."""
        return metres_from_ground(self._predict(self._net, ground.image, ground.camera), ground.camera,
                                  self.camera_height_m)
