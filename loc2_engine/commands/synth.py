"""`loc2 synth OUT_DIR --preset demo|train|bench|heldout|heldout-hills|unseen|train-places`: generate a synthetic
georeferenced dataset (docs/manifest.md)."""

from __future__ import annotations

import dataclasses
import os
import sys
import time

HELP = "generate a synthetic dataset: procedural towns, orthophotos, ground photos with EXIF and exact depth"


def add_arguments(parser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", help="output folder (created; manifest.csv goes here)")
    parser.add_argument("--preset", default="demo",
                        choices=("demo", "train", "bench", "heldout", "heldout-hills", "unseen", "train-places"),
                        help="dataset size and resolution (default: demo); heldout: kinds of place, places, light "
                             "and camera that train never sees; heldout-hills: heldout on hills, with leaning "
                             "orthophotos, lenses and other road markings; unseen: heldout-hills' world in a kind of "
                             "place neither has (dense East-Asian alleys); train-places: parks and campuses for "
                             "training, with heldout's variety of light and camera (docs/synth.md)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed -> identical files")
    parser.add_argument("--towns", type=int, default=None, help="use only the first N towns of the preset")
    parser.add_argument("--views", type=int, default=None,
                        help="views per town (about half panoramas, half pinholes); default: the preset's")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes, one town each (default 1)")
    parser.add_argument("--sequences", action="store_true",
                        help="street captures instead of scattered views: per town a panorama capture and a pinhole "
                             "capture, a frame every 2-10 m, times in EXIF and `sequence`/`time` manifest columns")
    parser.add_argument("--photo-sun", choices=("same", "independent"), default=None,
                        help="'independent': light the photos with a sun drawn apart from the orthophoto's, as if "
                             "taken at another time (default: the preset's; the same sun but in heldout)")
    parser.add_argument("--sun-azimuth", metavar="MIN,MAX", default=None,
                        help="grid azimuth range the sun is drawn from, degrees clockwise from north (default: "
                             "the preset's, 100,260: the southern sky, or 0,360: anywhere in heldout); the same seed "
                             "gives the same towns and photos under another sun")
    parser.add_argument("--sun-elevation", metavar="MIN,MAX", default=None,
                        help="elevation range of the sun above the horizon, degrees (default: the preset's, 28,62 or "
                             "10,70 in heldout; 8,75 adds long winter shadows and short summer ones)")
    parser.add_argument("--overcast", type=float, metavar="FRACTION", default=None,
                        help="fraction of skies that are overcast: little direct sun, soft or no shadows, a grey "
                             "sky; drawn for the orthophoto and (with --photo-sun independent) the photos apart "
                             "(default: the preset's; 0 but 0.3 in heldout)")


def _parse_range(text: str, lowest: float, highest: float, widest: float):
    """(min, max) from 'MIN,MAX' within [lowest, highest] and at most ``widest`` apart, else None."""
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        return None
    return (lo, hi) if lowest <= lo and hi <= highest and 0.0 <= hi - lo <= widest else None


def run(args) -> int:
    from ..synth.dataset import generate
    from ..synth.presets import get_preset

    preset = get_preset(args.preset)
    if args.views is not None:
        n_pano = (args.views + 1) // 2
        preset = dataclasses.replace(preset, n_pano=n_pano, n_pinhole=args.views - n_pano)
    # options given override the preset's light; the others keep it (heldout has a light of its own)
    light = {k: v for k, v in (("photo_sun", args.photo_sun), ("overcast", args.overcast)) if v is not None}
    for option, text, field, limits, rule in (
            ("--sun-azimuth", args.sun_azimuth, "sun_azimuth_deg", (-360.0, 720.0, 360.0), "MIN <= MAX <= MIN + 360, within -360..720"),
            ("--sun-elevation", args.sun_elevation, "sun_elevation_deg", (1.0, 89.0, 88.0), "1 <= MIN <= MAX <= 89")):
        if text is None:
            continue
        light[field] = _parse_range(text, *limits)
        if light[field] is None:
            print(f"loc2 synth: {option} needs MIN,MAX degrees with {rule}, got {text!r}", file=sys.stderr)
            return 2
    if args.overcast is not None and not 0.0 <= args.overcast <= 1.0:
        print(f"loc2 synth: --overcast is a fraction of skies, 0 to 1, got {args.overcast}", file=sys.stderr)
        return 2
    preset = dataclasses.replace(preset, **light)
    t0 = time.perf_counter()
    rows = generate(args.out_dir, preset, seed=args.seed, towns=args.towns, workers=max(1, args.workers),
                    sequences=args.sequences)
    print(f"wrote {len(rows)} photos to {os.path.join(args.out_dir, 'manifest.csv')} "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":  # usable before every other sub-command of the `loc2` dispatcher exists
    import argparse

    _parser = argparse.ArgumentParser(prog="loc2 synth", description=HELP)
    add_arguments(_parser)
    raise SystemExit(run(_parser.parse_args()))
