"""`loc2 train DATASET_DIR --out MODEL_FILE`: train the default matcher and the mono depth network."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "train the default matcher and/or the mono depth network on a `loc2 synth --preset train` dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DATASET_DIR", nargs="+",
                        help="folder(s) with manifest.csv (truth and depth), or training packs "
                             "(scripts/pack_training_data.py, for machines without the geo stack); all are pooled")
    parser.add_argument("--out", required=True, metavar="MODEL_FILE",
                        help="matcher weights to write (.safetensors); with --depth-only, the mono depth network's")
    parser.add_argument("--mono-out", metavar="FILE",
                        help="mono depth weights to write (default: mono.safetensors beside MODEL_FILE)")
    parser.add_argument("--minutes", type=float, help="wall-clock budget of the training loop (not the caching)")
    parser.add_argument("--steps", type=int, help="number of optimisation steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ckpt-dir", metavar="DIR",
                        help="checkpoints and the data cache (default: MODEL_FILE's folder/ckpt)")
    parser.add_argument("--resume", action="store_true", help="continue from CKPT_DIR/last.pt")
    parser.add_argument("--threads", default=None,
                        help="torch CPU threads: a number, or 'auto' = all cores while the machine is otherwise "
                             "idle and 1 while other processes load it (default: torch's)")
    parser.add_argument("--export", choices=("last", "best"), default="last",
                        help="state written to MODEL_FILE: the last one (default) or the best by validation")
    parser.add_argument("--workers", type=int, default=2, help="processes that read the dataset into the cache")
    parser.add_argument("--init", metavar="MODEL_FILE",
                        help="start the matcher from these weights (fine-tuning; a fresh optimiser and schedule)")
    parser.add_argument("--mono-init", metavar="FILE",
                        help="start the mono depth network from these weights (fine-tuning; a fresh optimiser and "
                             "schedule; its architecture wins over --mono-channels)")
    parser.add_argument("--matcher-only", action="store_true",
                        help="train the matcher alone; the shipped mono depth network is used, frozen, for "
                             "validation and is not written (needed for training packs)")
    parser.add_argument("--depth-only", action="store_true",
                        help="train the mono depth network alone (written to MODEL_FILE); the matcher (--init or the "
                             "shipped one) stays frozen and only validates it by localization")
    parser.add_argument("--mono-channels", metavar="C1,C2,C3,C4",
                        help="channels of the mono depth network's four levels (default 16,32,64,96)")
    parser.add_argument("--device", default="cpu", help="torch device of the networks, e.g. cuda (default: cpu)")
    parser.add_argument("--mirror", action="store_true",
                        help="show half of the training samples in the east-west mirrored world: photo, depth and "
                             "aerial window flipped, heading negated (always on with --depth-only)")
    parser.add_argument("--turn", action="store_true",
                        help="turn each training sample's world by a random multiple of 90 degrees: aerial window, "
                             "camera position and heading turned (the sun turns with it, so shadows fall any way)")
    parser.add_argument("--no-augment", action="store_true",
                        help="train on the rendered colours as they are (default: random exposure, white balance, "
                             "contrast, saturation, gamma, noise and blur, see train/augment.py)")


def run(args) -> int:
    import torch

    from ..errors import Loc2Error
    from ..train.trainer import Trainer, TrainConf

    if args.minutes is None and args.steps is None:
        print("loc2 train: give --minutes and/or --steps", file=sys.stderr)
        return 2
    if args.mono_init and args.matcher_only:
        print("loc2 train: --mono-init starts a mono depth network that is trained; --matcher-only freezes the "
              "shipped one", file=sys.stderr)
        return 2
    if args.depth_only and (args.matcher_only or args.mono_out):
        print("loc2 train: --depth-only writes the mono depth network to --out; it excludes --matcher-only and "
              "--mono-out", file=sys.stderr)
        return 2
    mono = {}
    if args.mono_channels:
        try:
            mono["channels"] = [int(c) for c in args.mono_channels.split(",")]
        except ValueError:
            mono["channels"] = []
        if len(mono["channels"]) != 4 or min(mono["channels"]) < 1:
            print(f"loc2 train: --mono-channels needs four positive integers, got {args.mono_channels!r}",
                  file=sys.stderr)
            return 2
    if args.threads not in (None, "auto"):
        torch.set_num_threads(int(args.threads))
    ckpt_dir = args.ckpt_dir or str(Path(args.out).resolve().parent / "ckpt")
    conf = TrainConf(batch_size=args.batch_size, lr=args.lr, seed=args.seed, cache_workers=args.workers,
                     auto_threads=args.threads == "auto", export=args.export,
                     augment=not args.no_augment, mirror=args.mirror, turn=args.turn, train_mono=not args.matcher_only,
                     train_matcher=not args.depth_only, device=args.device, mono=mono)
    try:
        trainer = Trainer(args.dataset, args.out, ckpt_dir, conf, mono_out=args.mono_out, init=args.init,
                          mono_init=args.mono_init)
        trainer.load_data()
    except Loc2Error as exc:
        print(f"loc2 train: {exc}", file=sys.stderr)
        return 1
    if args.resume:
        trainer.resume()
    info = trainer.run(minutes=args.minutes, steps=args.steps)
    print(json.dumps(info, indent=1))
    return 0
