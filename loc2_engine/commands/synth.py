"""`loc2 synth OUT_DIR --preset demo|train|bench`: generate a synthetic georeferenced dataset (DESIGN.md §3)."""

from __future__ import annotations

import dataclasses
import os
import sys
import time

HELP = "generate a synthetic dataset: procedural towns, orthophotos, ground photos with EXIF and exact depth"


def add_arguments(parser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", help="output folder (created; manifest.csv goes here)")
    parser.add_argument("--preset", default="demo", choices=("demo", "train", "bench"),
                        help="dataset size and resolution (default: demo)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed -> identical files")
    parser.add_argument("--towns", type=int, default=None, help="use only the first N towns of the preset")
    parser.add_argument("--views", type=int, default=None,
                        help="views per town (about half panoramas, half pinholes); default: the preset's")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes, one town each (default 1)")
    parser.add_argument("--photo-sun", choices=("same", "independent"), default="same",
                        help="'independent': light the photos with a sun drawn apart from the orthophoto's, as if "
                             "taken at another time (default: the same sun)")
    parser.add_argument("--sun-azimuth", metavar="MIN,MAX", default=None,
                        help="grid azimuth range the sun is drawn from, degrees clockwise from north (default "
                             "100,260: the southern sky; 0,360: anywhere); the same seed gives the same towns and "
                             "photos under another sun")


def run(args) -> int:
    from ..synth.dataset import generate
    from ..synth.presets import get_preset

    preset = get_preset(args.preset)
    if args.views is not None:
        n_pano = (args.views + 1) // 2
        preset = dataclasses.replace(preset, n_pano=n_pano, n_pinhole=args.views - n_pano)
    if args.sun_azimuth is not None:
        try:
            lo, hi = (float(v) for v in args.sun_azimuth.split(","))
        except ValueError:
            lo = hi = float("nan")
        if not (0.0 <= hi - lo <= 360.0):
            print(f"loc2 synth: --sun-azimuth needs MIN,MAX degrees with MIN <= MAX <= MIN + 360, got "
                  f"{args.sun_azimuth!r}", file=sys.stderr)
            return 2
        preset = dataclasses.replace(preset, sun_azimuth_deg=(lo, hi))
    preset = dataclasses.replace(preset, photo_sun=args.photo_sun)
    t0 = time.perf_counter()
    rows = generate(args.out_dir, preset, seed=args.seed, towns=args.towns, workers=max(1, args.workers))
    print(f"wrote {len(rows)} photos to {os.path.join(args.out_dir, 'manifest.csv')} "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":  # usable before every other sub-command of the `loc2` dispatcher exists
    import argparse

    _parser = argparse.ArgumentParser(prog="loc2 synth", description=HELP)
    add_arguments(_parser)
    raise SystemExit(run(_parser.parse_args()))
