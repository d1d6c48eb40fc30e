#!/usr/bin/env python3
"""Write one camera kind's expert of a matcher weight file as a single network (to fine-tune it further).

    python scripts/extract_expert.py resources/models/default.safetensors --kind pano --out out/pano.safetensors

The inverse of `scripts/add_expert.py`: the tensors under ``experts.<kind>.`` lose their prefix, the metadata
keeps the architecture and takes the expert's own training record; the confidence calibration is dropped (it
belongs to the pair). `loc2 train --init` of the whole file starts from the general network instead.
"""

from __future__ import annotations

import argparse
import json

from safetensors.torch import save_file

from loc2_engine.models.base import load_state_file


def extract_expert(source: str, kind: str, out: str) -> None:
    """Write the ``kind`` expert of ``source`` to ``out`` as a network of its own."""
    state, meta = load_state_file(source)
    prefix = f"experts.{kind}."
    expert = {k[len(prefix):]: v.contiguous() for k, v in state.items() if k.startswith(prefix)}
    if not expert:
        raise SystemExit(f"{source} has no {kind} expert")
    training = json.loads(meta.get("training", "{}")).get("experts", {}).get(kind, {})
    kept = {k: v for k, v in meta.items() if k not in ("training", "confidence")}
    save_file(expert, out, metadata={**kept, "training": json.dumps(training)})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a weight file with experts (.safetensors)")
    parser.add_argument("--kind", required=True, choices=("pano", "pinhole"), help="camera kind of the expert")
    parser.add_argument("--out", required=True, help="weight file to write")
    args = parser.parse_args(argv)
    extract_expert(args.source, args.kind, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
