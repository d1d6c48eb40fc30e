"""Options shared by every command that localizes (docs/cli.md), so they are spelled the same everywhere."""

from __future__ import annotations

import argparse
import math
from typing import Optional

from .. import defaults


def add_model_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model and weights")
    g.add_argument("--model", default=defaults.MODEL,
                   help=f"registry name (default {defaults.MODEL}; loc2-vigor, loc2-vigor-known, loc2-kitti, "
                        "loc2-kitti-known, ...) or a weight file of the default architecture; the -known models "
                        "(VIGOR known_ori, KITTI ori_noise10 checkpoints) need --heading")
    g.add_argument("--weights", help="matcher checkpoint, for models that need one (the official loc2-* models)")
    g.add_argument("--backbone", help="backbone weights (DINOv2 ViT-L/14: Meta .pth or a transformers folder)")
    g.add_argument("--depth", default=None,
                   help="depth provider (truth, plane, mono, depth-anything, ...); a folder selects "
                        "depth-anything weights, a file mono weights (loc2 train --depth-only); default: the "
                        "model's own choice")
    g.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="default: cuda when available, else cpu")


def add_camera_prior_options(parser: argparse.ArgumentParser, single_photo: bool) -> None:
    g = parser.add_argument_group("camera and prior")
    if single_photo:
        g.add_argument("--prior", nargs=2, type=float, metavar=("X", "Y"),
                       help="prior position; default: the photo's EXIF GPS")
        g.add_argument("--prior-crs", default=None,
                       help="CRS of --prior (default: the aerial raster's CRS)")
        g.add_argument("--extent", nargs=4, type=float, metavar=("XMIN", "YMIN", "XMAX", "YMAX"),
                       help="search the whole rectangle instead of around a prior (not with --prior): windows "
                            "cover it and the best pose inside it is kept; ambiguous when two places fit")
        g.add_argument("--extent-crs", default=None,
                       help="CRS of --extent (default: the aerial raster's CRS)")
    g.add_argument("--radius", type=float, default=None,
                   help=f"search radius around the prior, metres (default {defaults.RADIUS_M:g})")
    g.add_argument("--camera", choices=("auto", "pano", "pinhole"), default=defaults.CAMERA,
                   help=f"camera model (default {defaults.CAMERA}); auto = panorama when the photo is 2:1, "
                        "else pinhole")
    g.add_argument("--camera-height", type=float, default=None, metavar="M",
                   help=f"camera height above the ground, metres (default {defaults.CAMERA_HEIGHT_M:g}; a car "
                        "roof is ~2.5): the plane depth and the metric scale of relative depth (mono) are "
                        "measured on the ground with it")
    g.add_argument("--hfov", type=float, default=None,
                   help="horizontal field of view of pinhole photos, degrees (default: from EXIF)")
    g.add_argument("--heading", type=float, default=None,
                   help="heading prior, degrees clockwise from true north (default: unknown orientation)")
    g.add_argument("--heading-tolerance", type=float, default=None,
                   help=f"tolerance of --heading, degrees (default {defaults.HEADING_TOLERANCE_DEG:g})")


def camera_prior_error(args) -> Optional[str]:
    """The first unusable camera or prior option of `add_camera_prior_options` as a sentence, None when all
    are usable: checked before the model loads, so that a typo costs nothing (argparse's ``float`` takes
    nan, inf and negative numbers)."""
    prior = getattr(args, "prior", None)
    if prior is not None and not all(math.isfinite(v) for v in prior):
        return f"--prior {prior[0]:g} {prior[1]:g} is not a position: give two finite coordinates."
    problem = extent_error(args)
    if problem is not None:
        return problem
    if args.radius is not None and not (math.isfinite(args.radius) and args.radius > 0):
        return (f"--radius {args.radius:g} is not a usable search radius: give a distance in metres greater "
                f"than 0 (the default is {defaults.RADIUS_M:g}).")
    if args.heading is not None and not math.isfinite(args.heading):
        return f"--heading {args.heading:g} is not a direction: give degrees clockwise from true north."
    if args.heading_tolerance is not None:
        if args.heading is None and not getattr(args, "exif_heading", False):  # batch: EXIF headings use it
            alternative = " or --exif-heading" if hasattr(args, "exif_heading") else ""
            return f"--heading-tolerance needs --heading{alternative}."
        if not (math.isfinite(args.heading_tolerance) and 0 < args.heading_tolerance <= 180):
            return (f"--heading-tolerance {args.heading_tolerance:g} is not usable: give degrees more than 0 "
                    f"and at most 180 (the default is {defaults.HEADING_TOLERANCE_DEG:g}).")
    if args.camera_height is not None and not (math.isfinite(args.camera_height) and args.camera_height > 0):
        return (f"--camera-height {args.camera_height:g} is not usable: give the camera's height above the "
                f"ground in metres, greater than 0 (the default is {defaults.CAMERA_HEIGHT_M:g}).")
    if args.hfov is not None and not (math.isfinite(args.hfov) and 0 < args.hfov < 180):
        return (f"--hfov {args.hfov:g} is not a pinhole field of view: give degrees between 0 and 180 "
                "(exclusive); a 360° panorama needs --camera pano, not --hfov.")
    return None


def extent_error(args) -> Optional[str]:
    """The first unusable use of --extent / --extent-crs as a sentence, None when usable or absent: four
    finite numbers with XMIN < XMAX and YMIN < YMAX, and, for one photo, no prior options beside them (the
    windows set the positions and radii; a batch searches the extent only for photos without a position)."""
    extent = getattr(args, "extent", None)
    if extent is None:
        return "--extent-crs needs --extent." if getattr(args, "extent_crs", None) is not None else None
    shown = " ".join(f"{v:g}" for v in extent)
    single_photo = ("--prior", "prior"), ("--prior-crs", "prior_crs"), ("--radius", "radius")
    for name, attribute in single_photo if hasattr(args, "prior") else ():  # loc2 batch has no --prior
        given = getattr(args, attribute)
        if given is not None:
            return f"--extent and {name} exclude each other: search an extent, or around a prior."
    if not all(math.isfinite(v) for v in extent):
        return f"--extent {shown} is not a rectangle: give four finite coordinates XMIN YMIN XMAX YMAX."
    xmin, ymin, xmax, ymax = extent
    if not (xmin < xmax and ymin < ymax):
        return f"--extent {shown} is empty: give XMIN YMIN XMAX YMAX with XMIN < XMAX and YMIN < YMAX."
    return None
