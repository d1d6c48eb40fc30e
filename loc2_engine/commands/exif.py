"""`loc2 exif write GPKG [--out DIR | --in-place] [--all] [--photos-root DIR]`: the poses of a Loc² GeoPackage
written into the photos' EXIF (position, true heading, positioning error) and an XMP-loc2 provenance record,
with exiftool (`loc2_engine.exif_write`, docs/cli.md).

Copies go to ``--out`` (default ``<GeoPackage folder>/corrected/``); the originals are changed only with
``--in-place``. One line per photo on stdout (written) or stderr (failed), then a count. Exit 0 when it ran,
even if some photos failed; 2 when it could not run at all (no GeoPackage, no exiftool, bad options).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

HELP = "write the GeoPackage's poses into the photos' EXIF/XMP (copies by default), with exiftool"


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="exif_action", metavar="ACTION")
    write = sub.add_parser("write", help="write positions, headings and provenance into the photos",
                           description="Write the camera_poses of a Loc² GeoPackage into the photos: "
                                       "GPSLatitude/Longitude, GPSImgDirection (true north), "
                                       "GPSHPositioningError (1.51 σ) and an XMP-loc2 provenance record.")
    write.add_argument("gpkg", metavar="GPKG", help="GeoPackage written by `loc2 batch` or `loc2 localize --out`")
    where = write.add_mutually_exclusive_group()
    where.add_argument("--out", metavar="DIR",
                       help="folder for the corrected copies (default: <GPKG folder>/corrected)")
    where.add_argument("--in-place", action="store_true",
                       help="rewrite the original photos instead of copies (exiftool -overwrite_original)")
    write.add_argument("--all", action="store_true",
                       help="also write low_confidence poses (failed poses are never written)")
    write.add_argument("--photos-root", metavar="DIR", default=".",
                       help="folder that relative photo paths are taken from (default: the current folder)")


def out_folder(args) -> Optional[Path]:
    """The copies' folder: --out, else <GPKG folder>/corrected; None for --in-place."""
    if args.in_place:
        return None
    return Path(args.out) if args.out else Path(os.path.abspath(args.gpkg)).parent / "corrected"


def run(args) -> int:
    if getattr(args, "exif_action", None) != "write":
        print("loc2 exif: give an action: `loc2 exif write GPKG` (see `loc2 exif write --help`).", file=sys.stderr)
        return 2
    from ..errors import OutputError
    from ..exif_write import exiftool_path, read_poses, selected, write_all

    try:
        exiftool_path()
        poses = selected(read_poses(args.gpkg), include_low_confidence=args.all)
    except OutputError as exc:
        print(f"loc2 exif write: {exc}", file=sys.stderr)
        return 2
    out_dir = out_folder(args)
    written = failed = 0
    for outcome in write_all(poses, args.photos_root, out_dir):
        if outcome.error:
            failed += 1
            print(f"failed   {outcome.photo}: {outcome.error}", file=sys.stderr)
        else:
            written += 1
            print(f"written  {outcome.written}")
    where = "in place" if out_dir is None else f"into {out_dir}"
    print(f"{written} photo(s) written {where}, {failed} failed"
          f"{'' if args.all else ' (ok poses only; --all adds low_confidence)'}.")
    return 0
