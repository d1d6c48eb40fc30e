"""`loc2 batch (PHOTO_DIR | --manifest CSV) [--aerial RASTER] --out FILE.gpkg [--resume] [--sequences]
[--extent XMIN YMIN XMAX YMAX]` (docs/cli.md).

Exit status: 0 when the batch ran (failed photos are recorded as `failed` rows), 2 when it could not run at
all (unusable options, no photos, unreadable aerial raster or manifest, model that cannot be loaded, unusable
output file, another writer on it) or stopped because the output could not be written (disk full: every
photo finished before is in the file), 130 on Ctrl-C (every finished photo is in the file; rerun with
--resume). Options are checked before the model loads; an --extent too large for the model's windows is
refused once the model is loaded, before any photo. With --extent, a photo with neither a prior position nor
EXIF GPS is searched for in the extent (`batch.localize_job`). With --workers N (N > 1) or --scheduler
ADDRESS the photos are localized by Dask worker processes and written here, with the same rows and exit
codes (docs/cluster.md).
"""

from __future__ import annotations

import sys
from contextlib import ExitStack

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
    parser.add_argument("--extent", nargs=4, type=float, metavar=("XMIN", "YMIN", "XMAX", "YMAX"),
                        help="search each photo that has neither a prior position nor EXIF GPS anywhere in this "
                             "rectangle (windows cover it, the best pose inside it is kept) instead of failing it; "
                             "the other photos are localized around their priors")
    parser.add_argument("--extent-crs", metavar="CRS",
                        help="CRS of --extent (default: the aerial raster's CRS)")
    parser.add_argument("--sequences", action="store_true",
                        help="after the batch, localize each capture's photos jointly (docs/sequences.md): the "
                             "seq_* columns of camera_poses and the trajectory layer")
    parser.add_argument("--max-gap-s", type=float, default=None, metavar="S",
                        help="with --sequences: split a capture where photos are more than S seconds apart (30)")
    parser.add_argument("--max-gap-m", type=float, default=None, metavar="M",
                        help="with --sequences: split a capture where prior positions are more than M metres "
                             "apart (50)")
    add_model_options(parser)
    add_camera_prior_options(parser, single_photo=False)
    g = parser.add_argument_group("cluster (docs/cluster.md)")
    g.add_argument("--workers", type=int, default=1, metavar="N",
                   help="localize in N worker processes of a local Dask cluster, each with its own model (default "
                        "1: in this process)")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="localize on the workers of a running Dask scheduler (tcp://host:8786) instead")


def _fail(message: str) -> int:
    print(f"loc2 batch: {message}", file=sys.stderr)
    return 2


def run(args) -> int:
    with ExitStack() as stack:  # a Dask cluster the batch runs on closes after the writer
        return _run(args, stack)


def _run(args, stack) -> int:
    from tqdm import tqdm

    from ..batch import (check_extent, folder_jobs, manifest_jobs, output_crs, photo_extensions, run_batch,
                         scan_folder, with_extent)
    from ..errors import Loc2Error
    from ..gpkg import GeoPackageWriter
    from ..pipeline import Localizer, Prior

    if (args.photo_dir is None) == (args.manifest is None):
        return _fail("give either PHOTO_DIR or --manifest CSV (one of them).")
    problem = camera_prior_error(args)
    if problem is not None:
        return _fail(problem)
    if args.workers < 1 or (args.scheduler is not None and args.workers != 1):
        return _fail("--workers N needs N >= 1 and goes without --scheduler (whose workers are started with "
                     "`dask worker`).")
    problem = sequence_option_error(args) or extent_crs_error(args)
    if problem is not None:
        return _fail(problem)
    skipped, rows = [], None
    try:
        if args.manifest:
            from ..manifest import read_manifest

            rows = read_manifest(args.manifest)
            jobs = manifest_jobs(rows, radius_m=args.radius)
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
        if args.extent:
            jobs = with_extent(jobs, args.extent, args.extent_crs)
        crs = output_crs(jobs, args.aerial)
        conf = {"camera": args.camera, "hfov_deg": args.hfov, "camera_height_m": args.camera_height}
        if args.radius is not None:
            conf["radius_m"] = args.radius
        settings = dict(model=args.model, depth=args.depth, device=args.device, weights=args.weights,
                        backbone=args.backbone, **conf)
        if args.workers > 1 or args.scheduler is not None:
            from ..cluster import ClusterLocalizer

            localizer = stack.enter_context(ClusterLocalizer(
                settings, workers=None if args.scheduler else args.workers, scheduler=args.scheduler))
        else:
            localizer = Localizer(**settings)
        if args.extent:
            check_extent(localizer, args.extent, args.extent_crs or crs)
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
        if args.sequences:
            try:
                sequences = sequence_pass(writer, jobs, rows, args)
            except Loc2Error as exc:
                return _fail(str(exc))
    print(summary_table(summary, args.out, skipped))
    if args.sequences:
        print(f"sequences: {sequences.sequences} smoothed ({sequences.photos} photos), {sequences.overruled} "
              f"photos overruled, {sequences.filled} failed photos placed by their sequence")
    return 0


def sequence_option_error(args):
    """Why the sequence options cannot be used, or None."""
    gaps = (("--max-gap-s", args.max_gap_s), ("--max-gap-m", args.max_gap_m))
    if not args.sequences and any(v is not None for _, v in gaps):
        return "--max-gap-s and --max-gap-m go with --sequences."
    for option, value in gaps:
        if value is not None and not value > 0:
            return f"{option} must be a positive number, got {value:g}."
    return None


def extent_crs_error(args):
    """Why --extent-crs is not a CRS, or None (--extent itself is checked with the camera and prior options)."""
    if args.extent_crs is None:
        return None
    import pyproj

    try:
        pyproj.CRS.from_user_input(args.extent_crs)
    except pyproj.exceptions.CRSError:
        return f"--extent-crs {args.extent_crs!r} is not a CRS pyproj knows: give e.g. EPSG:4326 or EPSG:32633."
    return None


def sequence_pass(writer, jobs, rows, args):
    """The sequence pass over every photo of the batch, skipped ones included (docs/sequences.md)."""
    from ..sequences import MAX_GAP_M, MAX_GAP_S, run_sequence_pass

    return run_sequence_pass(writer, [job.photo for job in jobs], rows,
                             max_gap_s=args.max_gap_s or MAX_GAP_S, max_gap_m=args.max_gap_m or MAX_GAP_M)


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

