"""CPU timings of loc2-vigor with a random-weight DINOv2 ViT-L/14 (real sizes).

    python scripts/bench_official.py [float32] [bfloat16]   per-stage times, one run per stage
    python scripts/bench_official.py block [REPS]           one ViT-L block on the 5203 panorama tokens, float32:
                                                            transformers' forward vs `fast_layer_forward`,
                                                            interleaved REPS times (default 5), with the max
                                                            relative difference of the outputs
"""
import os, statistics, sys, time
import torch
import transformers
from loc2_engine.models.dinov2 import Dinov2Backbone, fast_layer_forward
from loc2_engine.models.official import OfficialMatcher, vigor_variant
from loc2_engine.matching import sample_correspondences

torch.set_num_threads(2)
block = sys.argv[1:2] == ["block"]
dtypes = [] if block else sys.argv[1:] or ["float32", "bfloat16"]
cfg = transformers.Dinov2Config(hidden_size=1024, num_hidden_layers=1 if block else 24, num_attention_heads=16, intermediate_size=4096,
                                patch_size=14, image_size=518, layerscale_value=1.0, layer_norm_eps=1e-6)
cfg._attn_implementation = "sdpa"
torch.manual_seed(0)
vit = transformers.Dinov2Model(cfg)
print("load", os.getloadavg(), flush=True)

def t(label, fn):
    # CPU seconds / 2 threads = what the wall time would be on 2 idle cores (the machine is shared)
    c = time.process_time(); s = time.perf_counter(); out = fn()
    d = time.perf_counter() - s; cpu = time.process_time() - c
    print(f"{label:50s} wall {d:7.2f} s  cpu/2 {cpu / 2:7.2f} s  load {os.getloadavg()[0]:.2f}", flush=True)
    return out


def block_ab(reps):
    """Interleaved A/B of one block (random layer scales, so that a wrong fold would show)."""
    layer = vit.encoder.layer[0].eval()
    with torch.no_grad():
        layer.layer_scale1.lambda1.uniform_(0.5, 1.5); layer.layer_scale2.lambda1.uniform_(0.5, 1.5)
        x = torch.randn(1, 5203, 1024)
        ref = layer(x)
        variants = {"transformers": lambda: layer(x), "fast_layer_forward": lambda: fast_layer_forward(layer, x)}
        diff = (variants["fast_layer_forward"]() - ref).abs().max() / ref.abs().max()
        print(f"max |fast - transformers| / max |transformers| = {float(diff):.1e}")
        times = {k: [] for k in variants}
        for _ in range(reps):
            for name, fn in variants.items():
                c, s = time.process_time(), time.perf_counter(); fn()
                times[name].append(((time.process_time() - c) / 2, time.perf_counter() - s))
        for name, v in times.items():
            print(f"{name:20s} cpu/2 median {statistics.median(t[0] for t in v):.3f} s (min "
                  f"{min(t[0] for t in v):.3f})  wall median {statistics.median(t[1] for t in v):.3f} s  "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)


if block:
    block_ab(int(sys.argv[2]) if len(sys.argv) > 2 else 5)
g = torch.rand(1, 3, 714, 1428); a = torch.rand(1, 3, 630, 630)
for name in dtypes:
    dt = getattr(torch, name)
    m = OfficialMatcher(vigor_variant(), Dinov2Backbone(vit, dt)).eval()
    with torch.no_grad():
        m.backbone(torch.rand(1, 3, 28, 28))  # cast once
        tok_a = t(f"[{name}] ViT aerial 630x630", lambda: m.backbone(a))
        tok_g = t(f"[{name}] ViT ground 714x1428", lambda: m.backbone(g))
        if name == dtypes[0]:
            import torch.nn.functional as F
            cells = F.interpolate(tok_a, (41, 41), mode="bilinear", align_corners=False)
            t("[fp32] sat head (41x41)", lambda: m.heads.sat_projector(cells))
            t("[fp32] grd head (51x102)", lambda: m.heads.grd_projector(tok_g))
            af = t("[all] encode_aerial first call (ViT+head)", lambda: m.encode_aerial(a))
            t("[all] encode_aerial same window (cache hit)", lambda: m.encode_aerial(a))
            from loc2_engine.models.base import GroundFeatures
            gdesc = m.heads.grd_projector(tok_g)
            gf = GroundFeatures(gdesc, torch.zeros(5202, 2), (714, 1428))
            valid = torch.rand(1, 5202) > 0.22
            P = t("[fp32] similarity + dustbin dual softmax", lambda: m.match(af, gf, valid))
            gen = torch.Generator().manual_seed(0)
            t("[fp32] sample 1024 (Gumbel top-k)", lambda: sample_correspondences(P, 1024, gen))
            t("[fp32] sample 8192 (Gumbel top-k)", lambda: sample_correspondences(P, 8192, gen))
            t("[fp32] torch.multinomial 8192 (official way)", lambda: torch.multinomial(P.flatten(1), 8192))
