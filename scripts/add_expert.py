#!/usr/bin/env python3
"""Give a matcher weight file an expert for one camera kind: a network that matches that kind's photos.

    python scripts/add_expert.py resources/models/default.safetensors --kind pano \\
        --expert out/pano.safetensors --out out/default+pano.safetensors

The expert must have the general network's architecture (typically a fine-tune of it on that kind's photos,
`loc2 train --init`). The output holds the general network's tensors as they are, the expert's under
``experts.<kind>.``, the general network's configuration, and the expert's training info in its own
training record. Its confidence calibration is dropped: recalibrate the result
(scripts/calibrate_confidence.py), since the expert's matches are not the ones it was fitted on.
"""

from __future__ import annotations

import argparse
import json
import os

from safetensors.torch import save_file

from loc2_engine.models.base import load_state_file


def add_expert(general: str, kind: str, expert: str, out: str) -> None:
    """Write ``general`` with ``expert`` (same architecture) as its expert for camera ``kind`` to ``out``."""
    state, meta = load_state_file(general)
    expert_state, expert_meta = load_state_file(expert)
    if expert_meta.get("conf") != meta.get("conf"):
        raise SystemExit(f"{expert} holds another architecture than {general}: it cannot be its expert")
    if any(k.startswith("experts.") for k in expert_state):
        raise SystemExit(f"{expert} has experts of its own; give a single network")
    state = {k: v for k, v in state.items() if not k.startswith(f"experts.{kind}.")}
    state.update({f"experts.{kind}.{k}": v.contiguous() for k, v in expert_state.items()})
    training = json.loads(meta.get("training", "{}"))
    training.setdefault("experts", {})[kind] = {"file": os.path.basename(expert),
                                               **json.loads(expert_meta.get("training", "{}"))}
    meta = {k: v for k, v in meta.items() if k != "confidence"}
    save_file(state, out, metadata={**meta, "training": json.dumps(training)})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("general", help="the general network's weight file (.safetensors)")
    parser.add_argument("--kind", required=True, choices=("pano", "pinhole"), help="camera kind of the expert")
    parser.add_argument("--expert", required=True, help="the expert's weight file, same architecture")
    parser.add_argument("--out", required=True, help="weight file to write")
    args = parser.parse_args(argv)
    add_expert(args.general, args.kind, args.expert, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
