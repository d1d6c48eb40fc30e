"""CPU timings and numeric agreement of the official Loc² models' backbone precisions, side by side in one run.

    python scripts/bench_official.py modes [--modes float32,bfloat16,int8] [--dataset vigor|kitti]
                                     [--hidden 1024 --layers 24 | --real] [--reps N] [--threads N]
        per-stage seconds (ground ViT, aerial ViT, heads, matching) of each mode on the same inputs, the
        speed-up against float32 in the same run, and the agreement of the matching probabilities P with
        float32's: top-100 entries identical, max relative deviation on entries above 1e-3 of the max.
        Default: a random-weight DINOv2 ViT-L/14 at the real sizes; --real loads the files from $LOC2_MODELS
        (real weights; --ground / --aerial image files then make the agreement meaningful).
    python scripts/bench_official.py precision [--reps N] [--tokens 5203] [--modes ...]
        one random ViT-L/14 block (1024-d, 16 heads) on the panorama's 5202 + 1 tokens in each mode, on the
        code path the backbone uses for it (float32: `cpu_layer_forward`, oneDNN linears on AVX-512 CPUs
        and MKL's elsewhere; bfloat16, int8: transformers' forward), interleaved, min over reps; prints the
        CPU's ISA and native bfloat16.
    python scripts/bench_official.py block [REPS]
        one ViT-L block in float32: transformers' forward (MKL linears) vs `fast_layer_forward` (oneDNN
        linears), interleaved REPS times: which of the two GEMM libraries is faster on this CPU.

Modes: float32 (the reference), bfloat16 (the ViT in bfloat16; heads and matching stay float32), int8
(opt-in: the ViT's nn.Linear layers dynamically quantized to int8 with
``torch.ao.quantization.quantize_dynamic``, activations quantized per call). Times are wall seconds, with
CPU-seconds / threads in parentheses: what the wall time would be on idle cores when the machine is shared.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from loc2_engine.models.base import AerialFeatures, GroundFeatures
from loc2_engine.models.cpu import cpu_isa, native_bf16
from loc2_engine.models.dinov2 import Dinov2Backbone, cpu_layer_forward, fast_layer_forward
from loc2_engine.models.official import AERIAL_CELLS, OfficialHeads, OfficialMatcher, kitti_variant, vigor_variant

MODES = ("float32", "bfloat16", "int8")
TOP_K = 100
#: P entries compared relatively: those above this fraction of float32's max (the rest are ~0 noise)
REL_FLOOR = 1e-3


def random_vit(hidden: int = 1024, layers: int = 24, seed: int = 0):
    """A random transformers Dinov2Model of DINOv2's shape (64-d heads, 4× MLP, 37×37 positions), SDPA."""
    import transformers

    cfg = transformers.Dinov2Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
                                    intermediate_size=4 * hidden, patch_size=14, image_size=518,
                                    layerscale_value=1.0, layer_norm_eps=1e-6)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    return transformers.Dinov2Model(cfg).eval()


def mode_backbone(vit, mode: str) -> Dinov2Backbone:
    """A backbone of its own (a copy of ``vit``: the casts are in place) computing in ``mode``."""
    vit = copy.deepcopy(vit)
    if mode == "float32":
        return Dinov2Backbone(vit, torch.float32)
    if mode == "bfloat16":
        return Dinov2Backbone(vit, torch.bfloat16)
    if mode == "int8":
        from torch.ao.quantization import quantize_dynamic

        return Dinov2Backbone(quantize_dynamic(vit.float(), {nn.Linear}, dtype=torch.qint8), torch.float32)
    raise ValueError(f"unknown mode {mode!r}: use one of {MODES}")


def timed(fn: Callable, reps: int, threads: int):
    """(output of the last call, min wall s, min CPU-s / threads) over ``reps`` calls of fn."""
    walls, cpus = [], []
    for _ in range(reps):
        c, s = time.process_time(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - s)
        cpus.append((time.process_time() - c) / threads)
    return out, min(walls), min(cpus)


def agreement(P: torch.Tensor, ref: torch.Tensor, k: int = TOP_K):
    """(shared, identical, rel) of P against ref (B, Na, Ng): how many of ref's top-k entries are among P's,
    whether the two top-k lists are identical (same entries, same order), and the max |P - ref| / ref over
    the entries of ref above REL_FLOOR × its max."""
    k = min(k, ref.numel())
    mine, theirs = P.flatten().topk(k).indices, ref.flatten().topk(k).indices
    shared = len(set(mine.tolist()) & set(theirs.tolist()))
    big = ref > REL_FLOOR * ref.max()
    rel = float(((P - ref).abs()[big] / ref[big]).max())
    return shared, bool(torch.equal(mine, theirs)), rel


def run_mode(matcher: OfficialMatcher, ground, aerial, valid, reps: int, threads: int) -> Dict:
    """Stage times (s) and P (B, Na, Ng) of ``matcher`` on one ground / aerial input pair."""
    row = {}
    with torch.no_grad():
        matcher.backbone(torch.rand(1, 3, 28, 28))  # the cast happens once, outside the timings
        tok_a, row["aerial ViT"], row["aerial ViT cpu"] = timed(lambda: matcher.backbone(aerial), reps, threads)
        tok_g, row["ground ViT"], row["ground ViT cpu"] = timed(lambda: matcher.backbone(ground), reps, threads)
        cells = F.interpolate(tok_a, (AERIAL_CELLS, AERIAL_CELLS), mode="bilinear", align_corners=False)

        def heads():
            return matcher.heads.sat_projector(cells), matcher.heads.grd_projector(tok_g)
        heads()  # the convolutions' first call sets up their kernels: seconds, once per process, not per mode
        (desc_a, desc_g), row["heads"], row["heads cpu"] = timed(heads, reps, threads)
        af = AerialFeatures(desc_a, torch.zeros(desc_a.shape[-2] * desc_a.shape[-1], 2))
        gf = GroundFeatures(desc_g, torch.zeros(desc_g.shape[-2] * desc_g.shape[-1], 2), tuple(ground.shape[-2:]))
        row["P"], row["match"], row["match cpu"] = timed(lambda: matcher.match(af, gf, valid), reps, threads)
    return row


STAGES = ("ground ViT", "aerial ViT", "heads", "match")


def compare_modes(modes: Sequence[str], vit, heads: OfficialHeads, variant, reps: int = 1, threads: int = 2,
                  ground=None, aerial=None, seed: int = 0) -> List[Dict]:
    """One row per mode (float32 first, the reference): stage times, totals, speed-ups against float32 of
    the same run, and P's agreement with float32's. ground (1, 3, H, W) / aerial (1, 3, P, P) in [0, 1]:
    random when None. Each mode runs on its own copy of ``vit``."""
    modes = ["float32"] + [m for m in modes if m != "float32"]
    gen = torch.Generator().manual_seed(seed)
    H, W = variant.ground_size
    ground = torch.rand(1, 3, H, W, generator=gen) if ground is None else ground
    aerial = torch.rand(1, 3, variant.aerial_px, variant.aerial_px, generator=gen) if aerial is None else aerial
    valid = torch.rand(1, (H // 14) * (W // 14), generator=gen) > 0.22  # ~ the sky of a street photo
    rows = []
    for mode in modes:
        matcher = OfficialMatcher(variant, mode_backbone(vit, mode), heads).eval()
        row = run_mode(matcher, ground, aerial, valid, reps, threads)
        row["mode"] = mode
        row["ViT"] = row["ground ViT"] + row["aerial ViT"]
        row["total"] = row["ViT"] + row["heads"] + row["match"]
        rows.append(row)
        del matcher
    ref = rows[0]
    for row in rows:
        row["speed-up ViT"] = ref["ViT"] / row["ViT"]
        row["speed-up total"] = ref["total"] / row["total"]
        row["top-k shared"], row["top-k identical"], row["max rel dev"] = agreement(row["P"], ref["P"])
    return rows


def format_table(rows: List[Dict]) -> str:
    """A markdown table, one row per mode: wall s (CPU-s / threads) per stage, speed-ups, P agreement."""
    head = ["mode", *STAGES, "ViT speed-up", "total speed-up", f"top-{TOP_K} of P", "max rel dev of P"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        top = f"{r['top-k shared']}/{TOP_K}" + (", identical" if r["top-k identical"] else "")
        cells = [r["mode"], *(f"{r[s]:.2f} ({r[s + ' cpu']:.2f})" for s in STAGES),
                 f"{r['speed-up ViT']:.2f}×", f"{r['speed-up total']:.2f}×", top, f"{r['max rel dev']:.1e}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load_image(path: str, size) -> torch.Tensor:
    """(1, 3, h, w) RGB in [0, 1] of an image file stretched to size (h, w)."""
    import numpy as np
    from PIL import Image

    image = Image.open(path).convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 255


def real_model(dataset: str) -> OfficialMatcher:
    """The official model of ``dataset`` from $LOC2_MODELS, in float32 (the modes copy its ViT)."""
    from loc2_engine.models.official import build_kitti, build_vigor

    return (build_vigor if dataset == "vigor" else build_kitti)(dtype="float32")


def modes_main(args) -> None:
    variant = vigor_variant() if args.dataset == "vigor" else kitti_variant()
    if args.real:
        model = real_model(args.dataset)
        vit, heads, source = model.backbone.vit, model.heads, "real weights ($LOC2_MODELS)"
    else:
        vit = random_vit(args.hidden, args.layers)
        torch.manual_seed(1)
        heads, source = OfficialHeads(args.hidden).eval(), f"random weights, {args.layers} × {args.hidden}-d"
    ground = load_image(args.ground, variant.ground_size) if args.ground else None
    aerial = load_image(args.aerial, (variant.aerial_px,) * 2) if args.aerial else None
    print(f"{variant.name}, {source}; {args.threads} threads, CPU {cpu_isa()}, load {os.getloadavg()[0]:.1f}",
          flush=True)
    rows = compare_modes(args.modes.split(","), vit, heads, variant, args.reps, args.threads, ground, aerial)
    print(format_table(rows))


def random_block(dim: int = 1024, seed: int = 0):
    """One random DINOv2 block (eval) with layer scales in [0.5, 1.5], so that a wrong fold would show."""
    layer = random_vit(dim, 1, seed).encoder.layer[0]
    with torch.no_grad():
        layer.layer_scale1.lambda1.uniform_(0.5, 1.5)
        layer.layer_scale2.lambda1.uniform_(0.5, 1.5)
    return layer


def block_in_mode(layer, mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """x (B, N, D) float32 -> block output float32, on the path the backbone takes in ``mode``."""
    layer = copy.deepcopy(layer)
    if mode == "float32":
        return lambda x: cpu_layer_forward(layer, x)
    if mode == "bfloat16":
        layer = layer.to(torch.bfloat16)
        return lambda x: layer(x.to(torch.bfloat16)).float()
    if mode == "int8":
        from torch.ao.quantization import quantize_dynamic

        layer = quantize_dynamic(layer, {nn.Linear}, dtype=torch.qint8)
        return lambda x: layer(x)
    raise ValueError(f"unknown mode {mode!r}: use one of {MODES}")


def precision_main(args) -> None:
    """One ViT-L block per mode, interleaved; min over reps of wall and CPU-s / threads."""
    layer = random_block()
    x = torch.randn(1, args.tokens, 1024, generator=torch.Generator().manual_seed(0))
    modes = ["float32"] + [m for m in args.modes.split(",") if m != "float32"]
    fns = {m: block_in_mode(layer, m) for m in modes}
    print(f"CPU {cpu_isa()}, native bfloat16: {native_bf16()}, {args.threads} threads, {args.tokens} tokens, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    with torch.no_grad():
        ref = fns["float32"](x)
        outs = {m: fn(x) for m, fn in fns.items()}  # also the warm-up
        times = {m: [] for m in modes}
        for _ in range(args.reps):
            for m, fn in fns.items():
                times[m].append(timed(lambda: fn(x), 1, args.threads)[1:])
    print("| mode | wall s (min) | CPU-s / threads (min) | speed-up wall / CPU | max abs dev / max abs |\n"
          "|---|---|---|---|---|")
    base_wall, base_cpu = (min(t[i] for t in times["float32"]) for i in (0, 1))
    for m in modes:
        wall, cpu = min(t[0] for t in times[m]), min(t[1] for t in times[m])
        dev = float((outs[m] - ref).abs().max() / ref.abs().max())
        print(f"| {m} | {wall:.3f} | {cpu:.3f} | {base_wall / wall:.2f}× / {base_cpu / cpu:.2f}× | {dev:.1e} |")


def block_main(reps: int) -> None:
    """Interleaved A/B of one float32 block: transformers' forward vs `fast_layer_forward`."""
    layer = random_block()
    with torch.no_grad():
        x = torch.randn(1, 5203, 1024)
        ref = layer(x)
        variants = {"transformers": lambda: layer(x), "fast_layer_forward": lambda: fast_layer_forward(layer, x)}
        diff = (variants["fast_layer_forward"]() - ref).abs().max() / ref.abs().max()
        print(f"max |fast - transformers| / max |transformers| = {float(diff):.1e}")
        times = {k: [] for k in variants}
        for _ in range(reps):
            for name, fn in variants.items():
                c, s = time.process_time(), time.perf_counter()
                fn()
                times[name].append(((time.process_time() - c) / 2, time.perf_counter() - s))
        for name, v in times.items():
            print(f"{name:20s} cpu/2 median {statistics.median(t[0] for t in v):.3f} s (min "
                  f"{min(t[0] for t in v):.3f})  wall median {statistics.median(t[1] for t in v):.3f} s  "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("modes", help="per-stage times and P agreement of each mode, side by side")
    m.add_argument("--modes", default="float32,bfloat16", help=f"comma-separated, of {','.join(MODES)}")
    m.add_argument("--dataset", choices=("vigor", "kitti"), default="vigor")
    m.add_argument("--hidden", type=int, default=1024, help="random ViT width (64-d heads)")
    m.add_argument("--layers", type=int, default=24, help="random ViT depth")
    m.add_argument("--real", action="store_true", help="the official files from $LOC2_MODELS")
    m.add_argument("--ground", help="ground image file (else random)")
    m.add_argument("--aerial", help="aerial image file (else random)")
    m.add_argument("--reps", type=int, default=1)
    m.add_argument("--threads", type=int, default=2)
    b = sub.add_parser("precision", help="one ViT-L block per mode")
    b.add_argument("--modes", default="float32,bfloat16")
    b.add_argument("--tokens", type=int, default=51 * 102 + 1)
    b.add_argument("--reps", type=int, default=3)
    b.add_argument("--threads", type=int, default=2)
    a = sub.add_parser("block", help="float32 block: transformers' forward vs fast_layer_forward")
    a.add_argument("reps", nargs="?", type=int, default=5)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(getattr(args, "threads", 2))
    if args.command == "modes":
        modes_main(args)
    elif args.command == "precision":
        precision_main(args)
    else:
        block_main(args.reps)


if __name__ == "__main__":
    main()
