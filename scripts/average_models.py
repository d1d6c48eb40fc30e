#!/usr/bin/env python3
"""Average matcher weight files fine-tuned from one starting point (a "model soup") into one file.

    python scripts/average_models.py out/ft/a.safetensors out/ft/b.safetensors out/ft/c.safetensors \\
        --out resources/models/default.safetensors

Short fine-tunes of the same weights with different learning rates land in one basin of the loss, where
their uniform average is often better than each of them (Wortsman et al., 2022). The shipped default model
is such an average: see its model card. Float tensors are averaged (BatchNorm running statistics too);
integer ones (batch counters) are taken from the first file. The files must hold the same architecture;
the output keeps the first file's configuration and records each input's training info. Its confidence
calibration is dropped: recalibrate the average (scripts/calibrate_confidence.py).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Sequence

from safetensors.torch import save_file

from loc2_engine.models.base import load_state_file


def average_models(paths: Sequence[str], out: str) -> None:
    """Write the uniform average of the weight files ``paths`` (same architecture) to ``out``."""
    if len(paths) < 2:
        raise SystemExit("give at least two weight files to average")
    loaded = [load_state_file(p) for p in paths]
    (first, meta), rest = loaded[0], loaded[1:]
    for p, (state, m) in zip(paths[1:], rest):
        if m.get("conf") != meta.get("conf") or state.keys() != first.keys() or any(
                state[k].shape != first[k].shape for k in first):
            raise SystemExit(f"{p} holds another architecture than {paths[0]}: they cannot be averaged")
    avg = {}
    for k, v in first.items():
        if v.is_floating_point():
            avg[k] = (sum(s[k].double() for s, _ in loaded) / len(loaded)).to(v.dtype).contiguous()
        else:
            avg[k] = v.contiguous()
    training = {"average_of": [{"file": os.path.basename(p), **json.loads(m.get("training", "{}"))}
                               for p, (_, m) in zip(paths, loaded)]}
    meta = {k: v for k, v in meta.items() if k != "confidence"}
    save_file(avg, out, metadata={**meta, "training": json.dumps(training)})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="weight files (.safetensors) of one architecture")
    parser.add_argument("--out", required=True, help="weight file to write")
    args = parser.parse_args(argv)
    average_models(args.models, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
