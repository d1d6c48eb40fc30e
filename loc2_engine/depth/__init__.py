"""Depth providers: per-pixel depth of a ground photo, behind a registry of lazy "module:Class" targets.

A provider turns a `GroundImage` into a float32 depth map of the image it is given (after EXIF orientation
and any resize), NaN where there is no usable depth (sky, above the horizon, unknown). The map normally has
the image's size; it may have another resolution with the same aspect (the `truth` map stays at the
dataset's resolution), and the pipeline samples it at each token's position in that grid. Each provider
states:

    name         registry name, recorded in results (`depth` field)
    kind         "range" (Euclidean distance along the ray) or "z" (along the optical axis)
    metric       True when the values are metres (up to a modest error), False for relative depth
    scale_range  (lo, hi) plausible solver scale (aerial metres per depth unit), or None when unknown;
                 the pipeline hands it to RANSAC to reject absurd hypotheses

Registry entries are strings so that optional providers (depth-anything, which needs large weights) cost
nothing until used; `register_depth_provider` lets another module add one. A folder path selects
depth-anything with that folder as its weights, a file path the `mono` network with that file's weights
(`loc2 train --depth-only` writes one).
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Tuple

import numpy as np

from .. import defaults
from ..errors import DepthError
from ..registry import load_target

#: name -> "module:Class"; classes take keyword options and are called as provider(ground, truth_path=...)
DEPTH_PROVIDERS: Dict[str, str] = {
    "truth": "loc2_engine.depth.truth:TruthDepth",
    "plane": "loc2_engine.depth.plane:PlaneDepth",
    "mono": "loc2_engine.depth.mono:MonoDepth",
    "depth-anything": "loc2_engine.depth.depth_anything:DepthAnythingDepth",
}

#: provider used for a folder path (its weights)
FOLDER_PROVIDER = "depth-anything"
#: provider used for a file path (its weights)
FILE_PROVIDER = "mono"

#: camera height above the ground, metres, when none is given (hand-held or tripod; a car roof is ~2.5 m)
DEFAULT_CAMERA_HEIGHT_M = defaults.CAMERA_HEIGHT_M


class DepthProvider:
    """Base class; subclasses override the class attributes and `__call__`."""

    name: str = "base"
    kind: str = "range"
    metric: bool = True
    scale_range: Optional[Tuple[float, float]] = None

    def __init__(self, device=None, camera_height_m: float = DEFAULT_CAMERA_HEIGHT_M):
        """device: torch device for providers that run a network (ignored by the others); camera_height_m:
        the camera's height above the ground, metres, for providers that measure on the ground plane
        (`plane`, and relative depth put in metres from it)."""
        if not camera_height_m > 0:
            raise DepthError(f"The camera height must be a positive number of metres, got {camera_height_m}.")
        self.device = device
        self.camera_height_m = float(camera_height_m)

    def __call__(self, ground, *, truth_path=None) -> np.ndarray:
        """Depth of ``ground.image``: float32 (h, w) with the image's aspect, NaN = invalid.

        ``truth_path`` (a .npy path or an array) is only read by `truth`.
        """
        raise NotImplementedError


def register_depth_provider(name: str, target: str) -> None:
    """Add or replace a registry entry; ``target`` is "package.module:Class"."""
    if ":" not in target:
        raise ValueError(f"depth provider target must be 'module:Class', got {target!r}")
    DEPTH_PROVIDERS[name] = target


def _load_class(name: str):
    return load_target(DEPTH_PROVIDERS[name], DepthError, f"The depth provider {name!r}")


def get_depth_provider(name_or_path: str, **options) -> DepthProvider:
    """Instantiate a provider by registry name, depth-anything for a folder path, mono for a weight file.

    options: passed to the provider's constructor (e.g. ``camera_height_m`` for plane, ``device`` for mono).
    Raises DepthError for an unknown name, naming the known ones.
    """
    if name_or_path in DEPTH_PROVIDERS:
        return _load_class(name_or_path)(**options)
    if os.path.isdir(name_or_path):
        return _load_class(FOLDER_PROVIDER)(weights=name_or_path, **options)
    if os.path.isfile(name_or_path):
        return _load_class(FILE_PROVIDER)(weights=name_or_path, **options)
    known = ", ".join(sorted(DEPTH_PROVIDERS))
    raise DepthError(f"Unknown depth provider {name_or_path!r}: use one of {known}, a folder of "
                     f"{FOLDER_PROVIDER} weights or a {FILE_PROVIDER} weight file.")


def as_depth_map(depth, shape: Tuple[int, int], camera=None) -> np.ndarray:
    """Coerce a depth array to float32 (h, w) with every non-positive or non-finite value as NaN.

    shape: (H, W) of the image it belongs to; camera: that image's camera model (optional). The map may have
    another resolution with the same aspect (e.g. a full-size truth map for a resized photo): it is kept at
    its own resolution, because resampling depth shifts it by fractions of a pixel, which near the horizon is
    a large range error; the pipeline samples it at the tokens' exact positions instead, through the camera
    resized to the map's grid. A pinhole image stretched to a model's input (KITTI 1242×375 -> 1232×364,
    hence fx != fy) also accepts a map of the photo before the stretch (`square_pixel_aspect`), read the same
    way. Any other aspect is a DepthError.
    """
    arr = np.asarray(depth, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise DepthError(f"A depth map must be a 2-D array, got shape {arr.shape}.")
    h, w = shape
    aspect = arr.shape[1] / arr.shape[0]
    if all(abs(aspect - a) > 0.02 * a for a in (w / h, square_pixel_aspect(shape, camera))):
        raise DepthError(f"The depth map is {arr.shape[1]}x{arr.shape[0]} px but the photo is {w}x{h} px; "
                         "they must have the same size (or at least the same aspect).")
    arr = arr.copy()
    arr[~np.isfinite(arr) | (arr <= 0)] = np.nan
    return arr


def square_pixel_aspect(shape: Tuple[int, int], camera=None) -> float:
    """Width / height the image of ``shape`` (H, W) had before any non-uniform resize: W·fy / (H·fx) for a
    pinhole camera (its pixels are fy/fx times wider than tall), W / H for any other camera or none."""
    h, w = shape
    fx, fy = getattr(camera, "fx", None), getattr(camera, "fy", None)
    return w * fy / (h * fx) if fx and fy else w / h
