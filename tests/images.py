"""Test photos with the look of a scene: smooth random shapes and shading, never pure noise (which the
pipeline refuses as a photo with nothing to match, `loc2_engine.content`)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def scene_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(h, w, 3) uint8: a random colour field 1/8 of the size, enlarged smoothly, with a little grain."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), np.float32)
    return np.clip(smooth + rng.normal(0.0, 4.0, smooth.shape), 0, 255).astype(np.uint8)
