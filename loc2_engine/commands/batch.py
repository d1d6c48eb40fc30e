"""`loc2 batch (PHOTO_DIR | --manifest CSV) [--aerial RASTER] --out FILE.gpkg [--resume]` (docs/cli.md).

Exit status: 0 when the batch ran (failed photos are recorded as `failed` rows), 2 when it could not run at
all (unusable options, no photos, unreadable aerial raster or manifest, model that cannot be loaded, unusable
output file, another writer on it) or stopped because the output could not be written (disk full: every
photo finished before is in the file), 130 on Ctrl-C (every finished photo is in the file; rerun with
--resume). Options are checked before the model loads.
"""

from __future__ import annotations

import sys

from .. import defaults
from .options import add_camera_prior_options, add_model_options, camera_prior_error

HELP = "localize a folder of photos (or a manifest) into a styled GeoPackage, resumable"


def add_arguments(parser) -> None:
    parser.add_argument("photo_dir", nargs="?", metavar="PHOTO_DIR",
                        help="folder of photos (jpg, jpeg, png, tif, tiff, webp); priors from their EXIF GPS")
    parser.add_argument("--manifest", metavar="CSV", help="dataset manifest (docs/manifest.md) instead of a folder")
    parser.add_argument("--aerial", metavar="RASTER",
                        help="georeferenced aerial raster (default: each manifest row's `aerial`)")
    parser.add_argument("--out", required=True, metavar="FILE.gpkg",
                        help="GeoPackage to write (appended to if it exists; CRS = the aerial raster's)")
    parser.add_argument("--resume", action="store_true",
                        help="skip photos already in --out (ok or failed), e.g. after an interrupted run")
    parser.add_argument("--recursive", action="store_true", help="also take photos from sub-folders")
    parser.add_argument("--exif-heading", action="store_true",
                        help="use each photo's EXIF GPSImgDirection (true north) as heading prior")
    add_model_options(parser)
    add_camera_prior_options(parser, single_photo=False)


def _fail(message: str) -> int:
    print(f"loc2 batch: {message}", file=sys.stderr)
    return 2


def run(args) -> int:
    from tqdm import tqdm

    from ..batch import folder_jobs, manifest_jobs, output_crs, photo_extensions, run_batch, scan_folder
    from ..errors import Loc2Error
    from ..gpkg import GeoPackageWriter
    from ..pipeline import Localizer, Prior

    if (args.photo_dir is None) == (args.manifest is None):
        return _fail("give either PHOTO_DIR or --manifest CSV (one of them).")
    problem = camera_prior_error(args)
    if problem is not None:
        return _fail(problem)
    skipped = []
    try:
        if args.manifest:
            from ..manifest import read_manifest

            jobs = manifest_jobs(read_manifest(args.manifest), radius_m=args.radius)
        else:
            radius = defaults.RADIUS_M if args.radius is None else args.radius  # 0 is refused, not replaced
            prior = Prior(radius_m=radius, heading_deg=args.heading, heading_tolerance_deg=args.heading_tolerance)
            jobs = folder_jobs(args.photo_dir, recursive=args.recursive, prior=prior,
                               exif_heading=args.exif_heading)
            skipped = scan_folder(args.photo_dir, recursive=args.recursive)[1]
        if not jobs:
            kinds = ", ".join(e[1:] for e in photo_extensions())
            return _fail(f"no photos ({kinds}) in {args.manifest or args.photo_dir}"
                         + ("" if args.recursive or args.manifest else "; add --recursive for sub-folders")
                         + ("" if not skipped else "\n" + skipped_lines(skipped)))
        crs = output_crs(jobs, args.aerial)
        conf = {"camera": args.camera, "hfov_deg": args.hfov, "camera_height_m": args.camera_height}
        if args.radius is not None:
            conf["radius_m"] = args.radius
        localizer = Localizer(model=args.model, depth=args.depth, device=args.device, weights=args.weights,
                              backbone=args.backbone, **conf)
        writer = GeoPackageWriter(args.out, crs)
    except Loc2Error as exc:
        return _fail(str(exc))

    with writer:
        present = writer.photos()
        already = sum(job.photo in present for job in jobs)
        if already and not args.resume:
            return _fail(f"{args.out} already holds {already} of these {len(jobs)} photos; pass --resume to "
                         "skip them, or write to another --out.")
        bar = tqdm(total=len(jobs), initial=already, unit="photo", dynamic_ncols=True, file=sys.stderr)

        def progress(done, total, result):
            bar.update(1)
            if result.status == "failed":
                bar.write(f"failed: {result.photo}: {result.error}", file=sys.stderr)

        try:
            summary = run_batch(jobs, args.aerial, writer, localizer, resume=args.resume, progress=progress)
        except KeyboardInterrupt:
            bar.close()
            print(f"interrupted: finished photos are in {args.out}; rerun with --resume to continue",
                  file=sys.stderr)
            return 130
        except Loc2Error as exc:  # the output cannot be written (disk full): stop, the file stays valid
            bar.close()
            return _fail(str(exc))
        bar.close()
    print(summary_table(summary, args.out, skipped))
    return 0


def summary_table(summary, out, skipped=()) -> str:
    """The end-of-run table: photos per status, skipped, median time per photo, wall time; then the files of
    the folder that were not taken (``skipped``: (path, why) pairs, `batch.scan_folder`)."""
    rows = [("ok", summary.ok), ("low_confidence", summary.low_confidence), ("failed", summary.failed),
            ("skipped (already in file)", summary.skipped), ("total", summary.total)]
    if skipped:
        rows.insert(4, ("files not taken (see below)", len(skipped)))
    width = max(len(name) for name, _ in rows)
    lines = [f"{'status':<{width}}  photos", f"{'-' * width}  ------"]
    lines += [f"{name:<{width}}  {count:>6d}" for name, count in rows]
    lines.append(f"{'median time per photo':<{width}}  {summary.median_runtime_s:>6.2f} s")
    lines.append(f"{'wall time':<{width}}  {summary.wall_s:>6.1f} s")
    lines.append(f"written to {out}")
    if skipped:
        lines.append(skipped_lines(skipped))
    return "\n".join(lines)


def skipped_lines(skipped, limit: int = 20) -> str:
    """The files a folder batch did not take, one line each with the reason (at most ``limit``)."""
    lines = [f"{len(skipped)} file(s) in the folder were not taken:"]
    lines += [f"  {path}: {why}" for path, why in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more")
    return "\n".join(lines)

