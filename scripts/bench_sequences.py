#!/usr/bin/env python
"""Per-photo versus joint localization of street captures: `loc2 batch --sequences` on a dataset with truth.

Runs the batch (resumable: an existing --out is completed, not redone), then scores each photo's own pose
(``x``, ``y``, ``heading_deg`` of camera_poses) and its sequence's (``seq_x``, ``seq_y``, ``seq_heading_deg``)
against the manifest's truth: median position error, share within 5 m, median heading error, the share of
single-photo failures (> 5 m or no pose) the sequence brings within 5 m, and the share of single-photo
successes it loses. A photo without a pose counts as an infinite error.

    .venv/bin/python -m loc2_engine synth data/seq --preset bench --sequences --towns 2    # once
    .venv/bin/python scripts/bench_sequences.py data/seq [--out data/seq/out.gpkg] [--model default] \
        [--accel-sigma 0.7 1.5 3.0]

``--accel-sigma`` reruns the sequence pass in memory from the poses already in the file with other values of
the constant-velocity prior (no photo is localized again) and scores each.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: a photo is localized when its position error is at most this, metres
HIT_M = 5.0


def read_poses(path):
    """(CRS of camera_poses, {photo: its camera_poses attributes}) of the GeoPackage ``path``."""
    from osgeo import ogr

    from loc2_engine.gpkg import _crs_of_layer

    ds = ogr.Open(str(path))
    layer = ds.GetLayerByName("camera_poses")
    crs = _crs_of_layer(layer)
    stored = {f.GetField("photo"): f.items() for f in layer}
    del ds
    return crs, stored


def errors(stored, crs, rows):
    """{"single": (pos (N,), heading (N,)), "joint": (...)}: errors in metres and degrees of the photos of
    ``rows`` (manifest rows with truth) against ``stored`` ({photo: camera_poses attributes} in ``crs``); inf
    where a photo has no pose. Distances are true metres, measured in a local frame at the true position: a
    dataset whose towns lie in several UTM zones is written in the first one's CRS, whose metres are
    stretched far from its zone."""
    from loc2_engine.georef import LocalFrame, transform_points

    out = {kind: (np.full(len(rows), np.inf), np.full(len(rows), np.inf)) for kind in ("single", "joint")}
    for i, row in enumerate(rows):
        item = stored.get(row.photo)
        if item is None:
            continue
        frame = LocalFrame(crs, transform_points([row.true_xy], row.crs, crs)[0])
        for kind, (x, y, h) in (("single", ("x", "y", "heading_deg")),
                                ("joint", ("seq_x", "seq_y", "seq_heading_deg"))):
            if item.get(x) is not None:
                out[kind][0][i] = math.hypot(*frame.to_local([[item[x], item[y]]])[0])
                out[kind][1][i] = abs((item[h] - row.true_heading_deg + 180.0) % 360.0 - 180.0)
    return out


def resmoothed(path, rows, accel_sigma: float):
    """`read_poses` of the GeoPackage ``path`` with the seq_* values of a sequence pass rerun in memory
    (`sequences.smooth_captures`, nothing written) under another ``accel_sigma``."""
    from loc2_engine.gpkg import GeoPackageWriter
    from loc2_engine.sequences import photo_timing, smooth_captures
    from loc2_engine.smoother import SmootherConfig

    crs, stored = read_poses(path)
    with GeoPackageWriter(path, crs) as writer:
        evidence = writer.pose_evidence()
    timings = [photo_timing(row.photo, row) for row in rows if row.photo in evidence]
    found = smooth_captures(evidence, crs, timings, config=SmootherConfig(accel_sigma=accel_sigma))
    return crs, {photo: {**items, **found.poses.get(photo, {})} for photo, items in stored.items()}


def summary(errs) -> dict:
    """The table's numbers from `errors`."""
    single, joint = errs["single"][0], errs["joint"][0]
    failed = single > HIT_M
    table = {}
    for kind, (pos, heading) in errs.items():
        table[kind] = {"median_m": float(np.median(pos)), "within_5m": float(np.mean(pos <= HIT_M)),
                       "median_heading_deg": float(np.median(heading))}
    table["photos"] = int(len(single))
    table["single_failures"] = int(failed.sum())
    table["recovered"] = float(np.mean(joint[failed] <= HIT_M)) if failed.any() else math.nan
    table["lost"] = float(np.mean(joint[~failed] > HIT_M)) if (~failed).any() else math.nan
    return table


def print_table(table: dict) -> None:
    print(f"{'':8s} {'median m':>9s} {'<= 5 m':>7s} {'heading':>8s}")
    for kind in ("single", "joint"):
        t = table[kind]
        print(f"{kind:8s} {t['median_m']:9.2f} {100 * t['within_5m']:6.1f}% {t['median_heading_deg']:7.1f}°")
    print(f"{table['photos']} photos; single-photo failures (> 5 m or none): {table['single_failures']}, "
          f"recovered by the sequence: {100 * table['recovered']:.0f} %; single-photo successes lost: "
          f"{100 * table['lost']:.0f} %")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dataset", help="dataset folder with manifest.csv (loc2 synth ... --sequences)")
    parser.add_argument("--out", help="GeoPackage (default: DATASET/sequences.gpkg; completed if it exists)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--depth", default=None, help="depth provider (default: the model's)")
    parser.add_argument("--json", help="also write the numbers to this file")
    parser.add_argument("--accel-sigma", type=float, nargs="*", default=(), metavar="A",
                        help="also score the pass rerun in memory with these accel_sigma values (m/s per √s; "
                             "smoother.SmootherConfig), from the poses already in --out")
    args = parser.parse_args(argv)

    from loc2_engine import cli
    from loc2_engine.manifest import read_manifest

    manifest = Path(args.dataset) / "manifest.csv"
    if not manifest.is_file():
        print(f"no {manifest}; generate it with `loc2 synth {args.dataset} --preset bench --sequences`",
              file=sys.stderr)
        return 2
    out = Path(args.out or Path(args.dataset) / "sequences.gpkg")
    batch = ["batch", "--manifest", str(manifest), "--out", str(out), "--sequences", "--resume",
             "--model", args.model] + (["--depth", args.depth] if args.depth else [])
    status = cli.main(batch)
    if status != 0:
        return status
    rows = [r for r in read_manifest(manifest) if r.true_xy is not None]
    crs, stored = read_poses(out)
    table = summary(errors(stored, crs, rows))
    print_table(table)
    for accel in args.accel_sigma:
        crs, stored = resmoothed(out, rows, accel)
        table[f"accel_sigma={accel:g}"] = summary(errors(stored, crs, rows))
        print(f"\naccel_sigma {accel:g}:")
        print_table(table[f"accel_sigma={accel:g}"])
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
