#!/usr/bin/env python3
"""A copy of a dataset (docs/manifest.md) whose aerial rasters are warped to another CRS.

    python scripts/reproject_dataset.py data/bench data/bench-3857 EPSG:3857

The photos and depth maps are linked, not copied; the rasters are warped with GDAL (cubic, an alpha band
for the new no-data corners, tiled); the manifest's prior and truth positions are transformed to the new
CRS and its ``crs`` column rewritten. Headings stay as they are: they are from true north in every CRS.
``make bench`` uses it to check that the same photos localize as well against the same orthophoto stored in
EPSG:3857 (scale 1/cos(latitude), 2.9 at Tromsø) or EPSG:4326 (degrees, non-square pixels in metres).
"""

from __future__ import annotations

import argparse
import csv
import os

from osgeo import gdal
from pyproj import Transformer

POSITION_COLUMNS = (("prior_x", "prior_y"), ("true_x", "true_y"))


def reproject_dataset(src: str, dst: str, crs: str) -> None:
    """Write ``dst`` (created): ``src``'s manifest with positions in ``crs`` and its rasters warped to it."""
    gdal.UseExceptions()
    with open(os.path.join(src, "manifest.csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise SystemExit(f"{src}/manifest.csv has no photos")
    os.makedirs(os.path.join(dst, "aerial"), exist_ok=True)
    for folder in ("photos", "depth"):
        link = os.path.join(dst, folder)
        if os.path.isdir(os.path.join(src, folder)) and not os.path.lexists(link):
            os.symlink(os.path.abspath(os.path.join(src, folder)), link)
    for aerial in sorted({row["aerial"] for row in rows}):
        out = os.path.join(dst, aerial)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        if not os.path.exists(out):
            tmp = out + ".part.tif"
            gdal.Warp(tmp, os.path.join(src, aerial), dstSRS=crs, resampleAlg="cubic", dstAlpha=True,
                      creationOptions=["TILED=YES"])
            os.replace(tmp, out)  # an interrupted warp never leaves a raster that looks finished
    transformers = {}
    for row in rows:
        tr = transformers.setdefault(row["crs"], Transformer.from_crs(row["crs"], crs, always_xy=True))
        for cx, cy in POSITION_COLUMNS:
            if row.get(cx):
                x, y = tr.transform(float(row[cx]), float(row[cy]))
                row[cx], row[cy] = repr(x), repr(y)
        row["crs"] = crs
        if "grid_heading_deg" in row:
            row["grid_heading_deg"] = ""  # a heading on the old grid means nothing on the new one
    tmp = os.path.join(dst, "manifest.csv.part")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, os.path.join(dst, "manifest.csv"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="dataset folder with manifest.csv")
    parser.add_argument("dst", help="folder to write (created)")
    parser.add_argument("crs", help="target CRS, e.g. EPSG:3857 or EPSG:4326")
    args = parser.parse_args()
    reproject_dataset(args.src, args.dst, args.crs)


if __name__ == "__main__":
    main()
