"""`loc2 localize PHOTO --aerial RASTER ...` (docs/cli.md): one photo, one pose.

Prints a short summary (or, with --json, one JSON object with the `camera_poses` fields, failed or not),
optionally writes the GeoPackage layers and a figure; a failure's sentence goes to stderr. Exit status 0
when a pose was found (ok or low_confidence), 1 when the photo failed (the reason on stderr), 2 when the
command could not run (options, model, depth, output file). Options and the photo's EXIF GPS (when it is
the prior) are checked before the model loads. ``--extent`` searches a rectangle instead of around a prior
(`Localizer.localize_in_extent`).
"""

from __future__ import annotations

import json
import sys

from .. import defaults
from .options import add_camera_prior_options, add_model_options, camera_prior_error

HELP = "localize one photo against an aerial raster (pose, confidence, optional GeoPackage and figure)"


def add_arguments(parser) -> None:
    parser.add_argument("photo", metavar="PHOTO", help="ground photo (JPEG/PNG/TIFF; pinhole or 360° panorama)")
    parser.add_argument("--aerial", required=True, metavar="RASTER", help="georeferenced aerial raster")
    add_camera_prior_options(parser, single_photo=True)
    add_model_options(parser)
    parser.add_argument("--out", metavar="FILE.gpkg", help="also write the GeoPackage layers (docs/geopackage.md)")
    parser.add_argument("--figure", metavar="FILE.png", help="also draw the explanatory figure")
    parser.add_argument("--json", action="store_true", help="print the camera_poses fields as one JSON object")


def prior_from_args(args):
    """`Prior` from --prior/--prior-crs/--radius/--heading/--heading-tolerance (no --prior: EXIF GPS)."""
    from ..pipeline import Prior

    x, y = args.prior if args.prior else (None, None)
    radius = defaults.RADIUS_M if args.radius is None else args.radius  # 0 is refused, not replaced
    return Prior(x=x, y=y, crs=args.prior_crs, radius_m=radius, heading_deg=args.heading,
                 heading_tolerance_deg=args.heading_tolerance)


def _invalid_exif_gps(args):
    """The failed Result of a photo whose EXIF GPS would be the prior but is invalid, found without loading
    the model; None otherwise (also when the photo cannot be read: the localizer says why)."""
    import os

    from ..errors import Loc2Error
    from ..exif import invalid_gps_error, read_exif
    from ..result import Result

    try:
        error = invalid_gps_error(args.photo, read_exif(args.photo))
    except Loc2Error:
        return None
    if error is None:
        return None
    return Result.failure(args.photo, error, model=os.path.basename(args.model), depth=args.depth or "")


def summary(result) -> str:
    """Human-readable lines for one localized result."""
    return "\n".join([
        f"{result.photo}: {result.status}",
        f"  position   x={result.x:.3f} y={result.y:.3f} ({result.crs})  lon={result.lon:.7f} lat={result.lat:.7f}",
        f"  heading    {result.heading_deg:.2f}° true, {result.heading_grid_deg:.2f}° grid   scale {result.scale:.3f}",
        f"  confidence {result.confidence:.2f}  inliers {result.inliers}/{result.matches}  "
        f"residual {result.residual_m:.2f} m  sigma {result.sigma_m:.2f} m",
        f"  model {result.model}, depth {result.depth}, camera {result.camera}, {result.runtime_s:.2f} s",
    ])


def run(args) -> int:
    from ..errors import Loc2Error
    from ..pipeline import Localizer

    problem = camera_prior_error(args)
    if problem is not None:
        print(f"loc2 localize: {problem}", file=sys.stderr)
        return 2
    result = None if args.prior or args.extent else _invalid_exif_gps(args)
    if result is None:
        try:
            localizer = Localizer(model=args.model, depth=args.depth, device=args.device, weights=args.weights,
                                  backbone=args.backbone, camera=args.camera, hfov_deg=args.hfov,
                                  camera_height_m=args.camera_height)
        except Loc2Error as exc:
            print(f"loc2 localize: {exc}", file=sys.stderr)
            return 2
        if args.extent:
            result = localizer.localize_in_extent(args.photo, args.aerial, args.extent, args.extent_crs,
                                                  heading_deg=args.heading,
                                                  heading_tolerance_deg=args.heading_tolerance)
        else:
            result = localizer.localize(args.photo, args.aerial, prior_from_args(args))
    if args.json:
        print(json.dumps(result.pose_row(), ensure_ascii=False))
    elif result.ok:
        print(summary(result))
    try:
        if args.out:
            from ..aerial import raster_info
            from ..gpkg import GeoPackageWriter

            with GeoPackageWriter(args.out, raster_info(args.aerial)[0]) as writer:
                writer.write(result)
        if args.figure:
            from ..figures import save_figure

            save_figure(result, args.figure)
    except Loc2Error as exc:
        print(f"loc2 localize: {exc}", file=sys.stderr)
        return 2
    if not result.ok:
        print(f"loc2 localize: {result.photo}: {result.error}", file=sys.stderr)
        return 1
    return 0
