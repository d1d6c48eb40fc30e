#!/usr/bin/env python3
"""Pack training datasets into one small file for a GPU machine without the geo stack (train/pack.py).

    python scripts/pack_training_data.py data/train data/train-s1 --out out/pack/train.pack
    loc2 train out/pack/train.pack --matcher-only --device cuda --init resources/models/default.safetensors ...

The pack is made for the default matcher's input sizes, window and gsd (or those of ``--model``'s weight
file) and the trainer's largest window offset; `loc2 train` refuses a pack made for other settings.
data/train + data/train-s1 (4080 photos, 1.6 GB of files) pack into 37 MB.
"""

from __future__ import annotations

import argparse
import json

from loc2_engine.models.base import build_from_file
from loc2_engine.models.small import SmallMatcher
from loc2_engine.train.pack import pack_conf, write_pack
from loc2_engine.train.trainer import TrainConf


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="+", help="folders with manifest.csv (truth and depth)")
    parser.add_argument("--out", required=True, help="pack file to write")
    parser.add_argument("--model", help="matcher weight file whose architecture to pack for (default: a fresh one)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality of photos and mosaics")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    model = build_from_file(SmallMatcher, args.model, None, "the matcher")
    conf = pack_conf(model.ground_input_sizes, model.aerial_size_px, model.aerial_gsd, model.token_stride,
                     TrainConf().max_offset_m)
    counts = write_pack(args.dataset, args.out, conf, quality=args.quality, workers=args.workers)
    print(json.dumps({"pack": args.out, "photos": counts, "conf": conf}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
