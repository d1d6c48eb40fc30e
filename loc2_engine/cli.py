"""`loc2` console script: one sub-command per module in `loc2_engine.commands` (docs/cli.md)."""

from __future__ import annotations

import argparse
import importlib
import sys

#: sub-command name -> module in loc2_engine.commands exposing `HELP`, `add_arguments(parser)`, `run(args)`
COMMANDS = ("localize", "batch", "bench", "synth", "train", "demo", "exif")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loc2", description="Loc² cross-view localization: ground photos against aerial imagery.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"loc2_engine.commands.{name}")
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
