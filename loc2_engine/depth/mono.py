"""`mono` depth: the project's small monocular network (models/mono_depth.py), no ground truth needed.

Its output is *relative* range (one unknown global scale per photo, trained scale-invariantly on synthetic
depth) with sky as NaN. The scale-aware solver absorbs the scale (method.md §3), so no scale range is
imposed and no metric range cut applies.
"""

from __future__ import annotations

import numpy as np

from . import DepthProvider


class MonoDepth(DepthProvider):
    """Relative range from `models.mono_depth` (weights: its shipped file unless ``weights`` is given)."""

    name = "mono"
    metric = False
    scale_range = None

    def __init__(self, weights=None, device=None):
        super().__init__(device)
        from ..models import mono_depth  # torch model: loaded only when this provider is chosen

        self.kind = mono_depth.MONO_DEPTH_KIND
        self._predict = mono_depth.predict_depth
        self._net = mono_depth.load_mono_depth(device=device or "cpu", weights=weights)

    def __call__(self, ground, *, truth_path=None) -> np.ndarray:
        """Relative range (H, W) float32 of ``ground.image``, NaN = sky."""
        return self._predict(self._net, ground.image, ground.camera)
