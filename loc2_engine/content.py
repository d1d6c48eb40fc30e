"""Whether a photo shows anything to match, checked before matching.

A frame with no content (a lens cap, a blank or over-exposed frame, sensor noise) still gives the matcher
something to score, and RANSAC finds a pose in whatever it answers, sometimes with many inliers. Such a photo
is refused with a specific `PhotoError` instead: its contrast (the grey levels between its 1st and 99th
percentiles) is too low, or neighbouring pixels are no more alike than in noise (any photo of a real scene,
even a dark or blurred one, has neighbours that correlate strongly at the matcher's resolution).
"""

from __future__ import annotations

import numpy as np

from .errors import PhotoError

#: grey levels (of 255) between the 1st and 99th percentiles below which a photo has no usable contrast; a
#: street photo darkened to a twelfth of its brightness still has about 10
MIN_CONTRAST = 6.0
#: correlation of horizontally and vertically neighbouring pixels below which a photo looks like noise;
#: street photos at the matcher's resolution are above 0.9, uniform noise below 0.3
MIN_NEIGHBOUR_CORRELATION = 0.5


def check_content(image: np.ndarray, name: str) -> None:
    """Raise PhotoError when ``image`` (H, W, 3) uint8, the photo at the matcher's resolution, shows nothing
    to match; ``name``: the photo, for the message."""
    grey = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)  # (H, W)
    lo, hi = np.percentile(grey, [1.0, 99.0])
    if hi - lo < MIN_CONTRAST:
        raise PhotoError(
            f"The photo {name} shows almost nothing: its brightness varies by only {hi - lo:.0f} of 255 grey "
            "levels (a covered lens, or a blank or over-exposed frame); there is nothing to match against the "
            "aerial image.")
    correlation = min(_neighbour_correlation(grey[:, :-1], grey[:, 1:]),
                      _neighbour_correlation(grey[:-1], grey[1:]))
    if correlation < MIN_NEIGHBOUR_CORRELATION:
        raise PhotoError(
            f"The photo {name} looks like noise, not a scene: neighbouring pixels correlate by only "
            f"{correlation:.2f} (a photo of a real place is above 0.9); there is nothing to match against the "
            "aerial image.")


def _neighbour_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally shaped arrays (1.0 when either is constant: no noise there)."""
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    norm = float(np.sqrt((a @ a) * (b @ b)))
    return float(a @ b) / norm if norm > 0 else 1.0
