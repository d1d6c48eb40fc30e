#!/usr/bin/env python3
"""A copy of a dataset (docs/manifest.md) with another look: a stand-in for another renderer or camera.

    python scripts/restyle_dataset.py data/bench data/bench-graded graded
    python scripts/restyle_dataset.py data/bench data/bench-degraded degraded

Looks:
- ``graded``: a colour grade. Orthophotos desaturated (0.6), warmer (gains 1.08 / 1.0 / 0.88), darker tone
  curve (gamma 1.2), flatter (contrast 0.85), slightly soft (Gaussian blur 0.8 px); photos more saturated
  (1.3), cooler, brighter tone curve (gamma 0.85), contrast 1.1. Mostly inside the training augmentation's
  ranges (train/augment.py), so it measures what that augmentation buys.
- ``degraded``: kinds of change the augmentation never draws. Orthophotos with channel cross-talk (a hue
  shift), 15 % darker, at half resolution (down- and up-sampled); photos with cross-talk, vignetting and
  JPEG quality 45.

Geometry is untouched: photos keep their EXIF (orientation, GPS, focal length), rasters their georeferencing
and any alpha band; depth maps are linked and the manifest copied, so the truth is the source's.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil

import numpy as np
import rasterio
from PIL import Image
from scipy.ndimage import gaussian_filter

LOOKS = ("graded", "degraded")


def _grade(rgb: np.ndarray, saturation: float, gains, gamma: float, contrast: float, blur_px: float) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W, 3) uint8 with a colour grade (factors as in train/augment.py)."""
    x = rgb.astype(np.float32) / 255.0
    gray = (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2])[..., None]
    x = gray + (x - gray) * saturation
    x = gray.mean() + (x - gray.mean()) * contrast
    x = np.clip(x * np.asarray(gains, np.float32), 0.0, 1.0) ** gamma
    if blur_px:
        x = np.stack([gaussian_filter(x[..., c], blur_px) for c in range(3)], -1)
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _cross_talk(rgb: np.ndarray, mixing, gain: float = 1.0) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W, 3) float32 0-255: each output channel a mix of the input channels."""
    return np.clip(rgb.astype(np.float32) @ np.asarray(mixing, np.float32).T * gain, 0.0, 255.0)


def restyle_aerial(rgb: np.ndarray, look: str) -> np.ndarray:
    """An orthophoto's (H, W, 3) uint8 colours in ``look`` -> (H, W, 3) uint8."""
    if look == "graded":
        return _grade(rgb, 0.6, (1.08, 1.0, 0.88), 1.2, 0.85, 0.8)
    mixed = _cross_talk(rgb, [[0.8, 0.2, 0.0], [0.1, 0.8, 0.1], [0.0, 0.3, 0.7]], gain=0.85).astype(np.uint8)
    h, w = mixed.shape[:2]
    half = Image.fromarray(mixed).resize((max(1, w // 2), max(1, h // 2)), Image.BILINEAR)
    return np.asarray(half.resize((w, h), Image.BILINEAR))


def restyle_photo(rgb: np.ndarray, look: str) -> np.ndarray:
    """A ground photo's (H, W, 3) uint8 colours in ``look`` -> (H, W, 3) uint8."""
    if look == "graded":
        return _grade(rgb, 1.3, (0.95, 1.0, 1.07), 0.85, 1.1, 0.0)
    x = _cross_talk(rgb, [[0.9, 0.1, 0.0], [0.0, 0.9, 0.1], [0.1, 0.0, 0.9]])
    h, w = x.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((yy - h / 2) / (h / 2)) ** 2 + ((xx - w / 2) / (w / 2)) ** 2
    return np.clip(x * (1.0 - 0.15 * r2)[..., None], 0.0, 255.0).astype(np.uint8)


def restyle_dataset(src: str, dst: str, look: str) -> None:
    """Write ``dst`` (created): ``src`` with its orthophotos and photos in ``look`` (module docstring)."""
    if look not in LOOKS:
        raise SystemExit(f"unknown look {look!r}; choose one of {', '.join(LOOKS)}")
    with open(os.path.join(src, "manifest.csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    depth = os.path.join(dst, "depth")
    os.makedirs(dst, exist_ok=True)
    if os.path.isdir(os.path.join(src, "depth")) and not os.path.lexists(depth):
        os.symlink(os.path.abspath(os.path.join(src, "depth")), depth)
    for aerial in sorted({row["aerial"] for row in rows}):
        out = os.path.join(dst, aerial)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with rasterio.open(os.path.join(src, aerial)) as source:
            profile, data = source.profile, source.read()
        data[:3] = np.moveaxis(restyle_aerial(np.moveaxis(data[:3], 0, -1), look), -1, 0)
        with rasterio.open(out + ".part", "w", **profile) as target:
            target.write(data)
        os.replace(out + ".part", out)
    for row in rows:
        out = os.path.join(dst, row["photo"])
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with Image.open(os.path.join(src, row["photo"])) as image:
            exif = image.info.get("exif", b"")
            styled = Image.fromarray(restyle_photo(np.asarray(image.convert("RGB")), look))
        styled.save(out, quality=45 if look == "degraded" else 92, exif=exif)  # format from the name
    shutil.copyfile(os.path.join(src, "manifest.csv"), os.path.join(dst, "manifest.csv"))  # last: marks done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="dataset folder with manifest.csv")
    parser.add_argument("dst", help="folder to write (created)")
    parser.add_argument("look", choices=LOOKS)
    args = parser.parse_args()
    restyle_dataset(args.src, args.dst, args.look)


if __name__ == "__main__":
    main()
