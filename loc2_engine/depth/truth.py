"""`truth` depth: the dataset's ground-truth range map (the manifest's `depth` column), for evaluation only."""

from __future__ import annotations

import os

import numpy as np

from ..errors import DepthError
from . import DepthProvider, as_depth_map


class TruthDepth(DepthProvider):
    """Reads a float32 ``.npy`` of Euclidean range in metres, same size (or aspect) as the photo, or as the
    photo before a model's non-uniform resize (see `as_depth_map`).

    NaN, inf and non-positive values mean sky / no depth. The map is in the grid of the *upright* photo
    (EXIF orientation applied), as `loc2 synth` writes it, i.e. the grid of ``GroundImage.image``.
    """

    name = "truth"
    kind = "range"
    metric = True
    # true metric depth: the solver's scale can only be ~1 (a loose bound still rejects degenerate fits)
    scale_range = (0.8, 1.25)

    def __call__(self, ground, *, truth_path=None) -> np.ndarray:
        """Depth (H, W) float32 for ``ground.image``; ``truth_path`` is a .npy path or an (H, W) array."""
        if truth_path is None or (isinstance(truth_path, str) and not truth_path):
            raise DepthError("Depth 'truth' needs the dataset's ground-truth depth map (the manifest's 'depth' "
                             "column), and this photo has none; choose another depth provider (mono, plane).")
        h, w = ground.image.shape[:2]
        if isinstance(truth_path, np.ndarray):
            return as_depth_map(truth_path, (h, w), ground.camera)
        path = os.fspath(truth_path)
        if not os.path.isfile(path):
            raise DepthError(f"The ground-truth depth map {path} does not exist.")
        try:
            depth = np.load(path, allow_pickle=False)  # never unpickle: a .npy is data, not code
        except (ValueError, OSError, EOFError) as exc:
            raise DepthError(f"The ground-truth depth map {path} cannot be read as a .npy array: {exc}") from exc
        return as_depth_map(depth, (h, w), ground.camera)
