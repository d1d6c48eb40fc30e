#!/usr/bin/env python3
"""A copy of a dataset's pinhole photos (docs/manifest.md) cropped to another aspect: phone framings.

    python scripts/reframe_dataset.py data/bench data/bench-16x9 16:9
    python scripts/reframe_dataset.py data/bench data/bench-3x4 3:4

Each pinhole photo is turned upright (its EXIF orientation applied), cropped to the aspect around its
centre (a wider one loses rows at the top and bottom and keeps its HFOV; a narrower one loses columns and
its HFOV shrinks to match), and written upright with EXIF Orientation 1 and the rest of its EXIF (GPS).
Its depth map is cropped with it. Panoramas are left out; the rasters are linked. ``make bench`` uses the
copies to check how the model does on photos whose shape its 4:3 input does not have (`letterbox_rows`).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
from typing import Tuple

import numpy as np
import piexif
from PIL import Image, ImageOps


def crop_box(width: int, height: int, aspect: float) -> Tuple[int, int, int, int]:
    """(left, top, right, bottom) px of the centred crop of a width x height image to ``aspect`` (w / h)."""
    if width / height > aspect:
        w = int(round(height * aspect))
        return (width - w) // 2, 0, (width - w) // 2 + w, height
    h = int(round(width / aspect))
    return 0, (height - h) // 2, width, (height - h) // 2 + h


def narrower_hfov(hfov_deg: float, width: int, cropped_width: int) -> float:
    """HFOV (degrees) of the middle ``cropped_width`` columns of a ``width``-px-wide pinhole photo."""
    half = math.tan(math.radians(hfov_deg) / 2.0) * cropped_width / width
    return math.degrees(2.0 * math.atan(half))


def _cropped_exif(image: Image.Image, diagonal_ratio: float) -> bytes:
    """The photo's EXIF (b"" when it has none) for its upright crop: Orientation 1, and the 35 mm-equivalent
    focal length times ``diagonal_ratio`` (full diagonal / cropped diagonal), which keeps the HFOV read from
    it (`ground.hfov_from_exif`) that of the cropped columns."""
    raw = image.info.get("exif", b"")
    if not raw:
        return b""
    exif = piexif.load(raw)
    exif["0th"][piexif.ImageIFD.Orientation] = 1
    f35 = exif["Exif"].get(piexif.ExifIFD.FocalLengthIn35mmFilm)
    if f35:
        exif["Exif"][piexif.ExifIFD.FocalLengthIn35mmFilm] = int(round(f35 * diagonal_ratio))
    exif.pop("thumbnail", None)
    exif["1st"] = {}
    return piexif.dump(exif)


def reframe_dataset(src: str, dst: str, aspect: float) -> None:
    """Write ``dst`` (created): ``src``'s pinhole photos and depth maps cropped to ``aspect`` (width / height)."""
    with open(os.path.join(src, "manifest.csv"), newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, [row for row in reader if row.get("camera") == "pinhole"]
    if not rows:
        raise SystemExit(f"{src}/manifest.csv has no pinhole photos (column camera = pinhole)")
    os.makedirs(dst, exist_ok=True)
    link = os.path.join(dst, "aerial")
    if not os.path.lexists(link):
        os.symlink(os.path.abspath(os.path.join(src, "aerial")), link)
    for row in rows:
        with Image.open(os.path.join(src, row["photo"])) as image:
            upright = ImageOps.exif_transpose(image).convert("RGB")
            box = crop_box(upright.width, upright.height, aspect)
            exif = _cropped_exif(image, math.hypot(*upright.size) / math.hypot(box[2] - box[0], box[3] - box[1]))
        out = os.path.join(dst, row["photo"])
        os.makedirs(os.path.dirname(out), exist_ok=True)
        upright.crop(box).save(out, quality=95, exif=exif)
        if row.get("hfov_deg"):
            row["hfov_deg"] = f"{narrower_hfov(float(row['hfov_deg']), upright.width, box[2] - box[0]):.3f}"
        if row.get("exif_orientation"):
            row["exif_orientation"] = "1"
        if row.get("depth"):
            depth = np.load(os.path.join(src, row["depth"]))
            sy, sx = depth.shape[0] / upright.height, depth.shape[1] / upright.width
            left, top, right, bottom = box
            out = os.path.join(dst, row["depth"])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            band, cols = slice(round(top * sy), round(bottom * sy)), slice(round(left * sx), round(right * sx))
            np.save(out, depth[band, cols])
    with open(os.path.join(dst, "manifest.csv.part"), "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(os.path.join(dst, "manifest.csv.part"), os.path.join(dst, "manifest.csv"))  # last: marks done


def parse_aspect(text: str) -> float:
    """"16:9" -> 1.777..."""
    try:
        w, h = (float(x) for x in text.split(":"))
        if w > 0 and h > 0:
            return w / h
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"an aspect is W:H with positive numbers, e.g. 16:9; got {text!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="dataset folder with manifest.csv")
    parser.add_argument("dst", help="folder to write (created)")
    parser.add_argument("aspect", type=parse_aspect, help="width:height of the copies, e.g. 16:9 or 3:4")
    args = parser.parse_args()
    reframe_dataset(args.src, args.dst, args.aspect)


if __name__ == "__main__":
    main()
