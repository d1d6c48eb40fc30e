"""`loc2 demo [--out DIR]` (what `make demo` runs): the whole method on a small synthetic scene.

1. Scene: reuse ``data/demo`` or ``DIR/scene`` when they hold a manifest, else generate ``DIR/scene`` with
   `loc2 synth --preset demo`.
2. Localize every photo with the default model (the same per-photo path as `loc2 batch`).
3. Print a table of errors against the truth, then the benchmark summary tables.
4. Write ``DIR/demo.gpkg`` (the layers of docs/geopackage.md, rewritten on each run) and one figure per photo in
   ``DIR/figures/``.
"""

from __future__ import annotations

import math
import os
import sys

from .options import add_model_options

HELP = "run the method end to end on the synthetic demo scene: error table, GeoPackage, figures"

#: where a prepared demo scene may already be
SHARED_SCENE = os.path.join("data", "demo")


def add_arguments(parser) -> None:
    parser.add_argument("--out", default=os.path.join("out", "demo"), metavar="DIR",
                        help="output folder (default out/demo): demo.gpkg, figures/, and scene/ if generated")
    add_model_options(parser)


def scene_dir(out_dir: str) -> str:
    """A demo dataset folder, generated into ``out_dir/scene`` when none exists yet."""
    for candidate in (SHARED_SCENE, os.path.join(out_dir, "scene")):
        if os.path.isfile(os.path.join(candidate, "manifest.csv")):
            return candidate
    from ..cli import main as loc2

    target = os.path.join(out_dir, "scene")
    print(f"generating the demo scene in {target} (loc2 synth --preset demo) ...", file=sys.stderr)
    if loc2(["synth", target, "--preset", "demo"]) != 0:
        raise RuntimeError("loc2 synth --preset demo failed")
    return target


def _fmt(value: float, spec: str) -> str:
    return format(value, spec) if math.isfinite(value) else "–"


def run(args) -> int:
    from ..batch import localize_job, manifest_jobs
    from ..bench import record_for, report
    from ..errors import Loc2Error
    from ..figures import save_figure
    from ..gpkg import GeoPackageWriter
    from ..manifest import read_manifest
    from ..aerial import raster_info
    from ..pipeline import Localizer

    os.makedirs(os.path.join(args.out, "figures"), exist_ok=True)
    try:
        scene = scene_dir(args.out)
        rows = read_manifest(os.path.join(scene, "manifest.csv"))
        localizer = Localizer(model=args.model, depth=args.depth, device=args.device, weights=args.weights,
                              backbone=args.backbone)
        gpkg_path = os.path.join(args.out, "demo.gpkg")
        if os.path.exists(gpkg_path):
            os.remove(gpkg_path)  # the demo shows this run, not an accumulation of runs
        writer = GeoPackageWriter(gpkg_path, raster_info(rows[0].aerial)[0])
    except Loc2Error as exc:
        print(f"loc2 demo: {exc}", file=sys.stderr)
        return 2

    print(f"scene {scene}: {len(rows)} photos; model {localizer.model_name}, depth {localizer.depth.name}")
    header = f"{'photo':<28} {'camera':<7} {'heading':<8} {'status':<14} {'err m':>7} {'err °':>7} {'conf':>5} {'s':>5}"
    print(header)
    print("-" * len(header))
    records = []
    with writer:
        for row, job in zip(rows, manifest_jobs(rows)):
            result = localize_job(job, None, localizer)
            try:
                writer.write(result)
            except Loc2Error as exc:  # the output cannot be written (disk full): stop, the file stays valid
                print(f"loc2 demo: {exc}", file=sys.stderr)
                return 2
            camera = row.camera if row.camera in ("pano", "pinhole") else (result.camera or "unknown")
            rec = record_for(result, camera, row.heading_prior_deg is not None, row.true_xy,
                             row.true_heading_deg, row.crs)
            records.append(rec)
            truth = None if row.true_xy is None else (*row.true_xy, row.true_heading_deg, row.crs)
            stem = os.path.splitext(os.path.basename(row.photo))[0]
            try:
                save_figure(result, os.path.join(args.out, "figures", f"{stem}.png"), truth=truth)
            except Loc2Error as exc:  # e.g. an unreadable photo: its row already says why
                print(f"  no figure for {stem}: {exc}", file=sys.stderr)
            print(f"{stem:<28} {camera:<7} {rec.orientation:<8} {result.status:<14} "
                  f"{_fmt(rec.pos_err_m, '7.2f')} {_fmt(rec.heading_err_deg, '7.2f')} "
                  f"{result.confidence:5.2f} {result.runtime_s:5.2f}")
            if not result.ok:
                print(f"  {result.error}")
    print()
    print(report(records, f"demo: {localizer.model_name} / depth {localizer.depth.name}"))
    print(f"wrote {gpkg_path} and {len(records)} figures in {os.path.join(args.out, 'figures')}")
    return 0
