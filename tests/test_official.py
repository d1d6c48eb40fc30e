"""Official Loc² models: checkpoint format, DINOv2 loading, frames, and the depth-anything provider.

Real weights cannot be downloaded here, so every test builds random weights of the right format in tmp_path:
a tiny DINOv2 (hidden 1024 so that the full-size official heads fit, 1 layer) and the 163 official tensors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from loc2_engine.cameras import PanoramaCamera, PinholeCamera
from loc2_engine.errors import CameraError, ModelError
from loc2_engine.lifting import lift_coefficients, sample_depth_at
from loc2_engine.models import load_model
from loc2_engine.models.dinov2 import (Dinov2Backbone, hf_to_meta, load_dinov2, meta_to_hf,
                                       old_interpolate_pos_encoding)
from loc2_engine.models.official import (KITTI, OfficialHeads, OfficialMatcher, build_vigor,
                                         official_cells_local, vigor_variant)
from loc2_engine.solver import procrustes_2d

transformers = pytest.importorskip("transformers")

from official_fixtures import KITTI_CAM, files, tiny_dinov2, vigor  # noqa: E402,F401  (fixtures shared with test_official_*.py)


# --- checkpoint format -------------------------------------------------------------------------------------

def official_key_shapes():
    """The 163 official tensors, written out from docs/method.md §8 (independently of heads.py)."""
    shapes = {"dustbin_score": ()}
    blocks = [("resblocks.0", 1024, 512), ("resblocks.1", 512, 256), ("resblocks.2", 256, 128),
              ("final_block", 128, 128)]
    for head in ("grd_projector", "sat_projector"):
        for name, cin, cout in blocks:
            p = f"{head}.{name}."
            shapes[p + "conv1.weight"] = (cout, cin, 3, 3)
            shapes[p + "conv2.weight"] = (cout, cout, 3, 3)
            if cin != cout:
                shapes[p + "shortcut.weight"] = (cout, cin, 1, 1)
            for bn in ("bn1", "bn2"):
                for t in ("weight", "bias", "running_mean", "running_var"):
                    shapes[f"{p}{bn}.{t}"] = (cout,)
                shapes[f"{p}{bn}.num_batches_tracked"] = ()
        for i in range(3):
            p = f"{head}.att_layer.layers.{i}."
            for lin in ("q_proj", "k_proj", "v_proj", "merge"):
                shapes[p + lin + ".weight"] = (128, 128)
            shapes[p + "mlp.0.weight"] = (256, 256)
            shapes[p + "mlp.2.weight"] = (128, 256)
            for n in ("norm1", "norm2"):
                shapes[f"{p}{n}.weight"] = shapes[f"{p}{n}.bias"] = (128,)
    return shapes


def test_heads_have_exactly_the_official_state_dict():
    heads = OfficialHeads()
    got = {k: tuple(v.shape) for k, v in heads.state_dict().items()}
    assert got == official_key_shapes()
    assert len(got) == 163
    assert sum(p.numel() for p in heads.parameters()) == 21_539_841


def test_checkpoint_loads_strictly_and_runs_end_to_end(files, vigor):
    loaded = vigor.heads.state_dict()
    for k, v in files["state"].items():
        assert torch.equal(loaded[k], v), k
    assert vigor.aerial_size_px == 630 and vigor.ground_input_size == (714, 1428)
    assert vigor.aerial_gsd == pytest.approx(0.113248 * 640 / 630)
    g = torch.rand(1, 3, 714, 1428, generator=torch.Generator().manual_seed(0))
    a = torch.rand(1, 3, 630, 630, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        af = vigor.encode_aerial(a)
        gf = vigor.encode_ground(g)
        valid = torch.ones(1, 51 * 102, dtype=torch.bool)
        valid[:, :1000] = False
        P = vigor.match(af, gf, valid)
    assert af.desc.shape == (1, 128, 41, 41) and af.xy_local.shape == (1681, 2)
    assert gf.desc.shape == (1, 128, 51, 102) and gf.uv.shape == (5202, 2)
    assert torch.allclose(gf.desc.norm(dim=1), torch.ones(1, 51, 102), atol=1e-5)
    assert P.shape == (1, 1681, 5202) and torch.isfinite(P).all()
    assert (P[:, :, :1000] == 0).all() and (P[:, :, 1000:] > 0).all()


def official_matcher_forward(sd, grd_feat, sat_feat, mask):
    """The official CrossViewMatcher forward restated from docs/method.md §2.2 on a state dict: P (B, Na, Ng)."""
    def bn(x, k):
        return F.batch_norm(x, sd[k + ".running_mean"], sd[k + ".running_var"], sd[k + ".weight"], sd[k + ".bias"],
                            training=False, eps=1e-5)

    def block(x, k, relu=True):
        y = F.relu(bn(F.conv2d(x, sd[k + ".conv1.weight"], padding=1), k + ".bn1"))
        y = bn(F.conv2d(y, sd[k + ".conv2.weight"], padding=1), k + ".bn2")
        y = y + (F.conv2d(x, sd[k + ".shortcut.weight"]) if k + ".shortcut.weight" in sd else x)
        return F.relu(y) if relu else y

    def head(x, k, pe):
        for i in range(3):
            x = block(x, f"{k}.resblocks.{i}")
        B, C, H, W = x.shape
        if pe:  # LoFTR corrected sine encoding, positions from 1
            div = torch.exp(torch.arange(0, 64, 2).float() * (-math.log(10000.0) / 64))[:, None, None]
            ys = torch.arange(1, H + 1).float()[None, :, None].expand(1, H, W)
            xs = torch.arange(1, W + 1).float()[None, None, :].expand(1, H, W)
            enc = torch.zeros(C, H, W)
            enc[0::4], enc[1::4] = torch.sin(xs * div), torch.cos(xs * div)
            enc[2::4], enc[3::4] = torch.sin(ys * div), torch.cos(ys * div)
            x = x + enc[None]
        t = x.flatten(2).transpose(1, 2)
        for i in range(3):
            a = f"{k}.att_layer.layers.{i}."
            L = t.shape[1]
            q, kk, v = (F.linear(t, sd[a + n + ".weight"]).view(B, L, 8, 16) for n in ("q_proj", "k_proj", "v_proj"))
            q, kk = F.elu(q) + 1, F.elu(kk) + 1
            kv = torch.einsum("nshd,nshv->nhdv", kk, v / L)
            z = 1 / (torch.einsum("nlhd,nhd->nlh", q, kk.sum(1)) + 1e-6)
            msg = torch.einsum("nlhd,nhdv,nlh->nlhv", q, kv, z) * L
            msg = F.layer_norm(F.linear(msg.reshape(B, L, C), sd[a + "merge.weight"]), (C,),
                               sd[a + "norm1.weight"], sd[a + "norm1.bias"])
            m = F.linear(F.relu(F.linear(torch.cat([t, msg], 2), sd[a + "mlp.0.weight"])), sd[a + "mlp.2.weight"])
            t = t + F.layer_norm(m, (C,), sd[a + "norm2.weight"], sd[a + "norm2.bias"])
        x = block(t.transpose(1, 2).reshape(B, C, H, W), f"{k}.final_block", relu=False)
        return F.normalize(x, dim=1, eps=1e-10).flatten(2)

    g = head(grd_feat, "grd_projector", True)
    a = head(F.interpolate(sat_feat, (41, 41), mode="bilinear", align_corners=False), "sat_projector", False)
    S = (a.transpose(1, 2) @ g / 0.1).masked_fill(~mask[:, None], float("-inf"))
    B, Na, Ng = S.shape
    d = sd["dustbin_score"]
    S = torch.cat([torch.cat([S, d.expand(B, Na, 1)], 2), d.expand(B, 1, Ng + 1)], 1)
    return (torch.softmax(S, 1) * torch.softmax(S, 2))[:, :-1, :-1]


class FixedFeatures(torch.nn.Module):
    """Backbone stand-in returning given DINOv2 features for the aerial (square) or ground input."""

    channels = 1024

    def __init__(self, aerial, ground):
        super().__init__()
        self.aerial, self.ground = aerial, ground

    def forward(self, image):
        return self.aerial if image.shape[-1] == image.shape[-2] else self.ground


def test_matching_probabilities_equal_the_official_forward(files):
    gen = torch.Generator().manual_seed(5)
    sat = torch.randn(1, 1024, 45, 45, generator=gen)
    grd = torch.randn(1, 1024, 6, 12, generator=gen)  # the heads do not depend on the grid size
    mask = torch.rand(1, 72, generator=gen) > 0.3
    heads = OfficialHeads()
    heads.load_state_dict(files["state"])
    model = OfficialMatcher(vigor_variant(), FixedFeatures(sat, grd), heads).eval()
    with torch.no_grad():
        P = model.match(model.encode_aerial(torch.zeros(1, 3, 630, 630)),
                        model.encode_ground(torch.zeros(1, 3, 714, 1428)), mask)
        want = official_matcher_forward(files["state"], grd, sat, mask)
    assert P.shape == want.shape == (1, 1681, 72)
    assert torch.allclose(P, want, rtol=1e-4, atol=1e-9)
    live = want[want > 0]
    assert live.max() > 2 * live.min()  # not a vacuous comparison of a flat matrix


def test_transformers_folders_give_the_same_features_as_the_meta_file(files, tmp_path):
    """Both the current folder format and the hub's facebook/dinov2-large key names (transformers 4.x)."""
    from safetensors.torch import load_file, save_file

    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "config.json").write_text((files["dir"] / "dinov2-large" / "config.json").read_text())
    old_names = {"attention.q_proj": "attention.attention.query", "attention.k_proj": "attention.attention.key",
                 "attention.v_proj": "attention.attention.value", "attention.o_proj": "attention.output.dense"}
    state = {}
    for k, v in load_file(str(files["dir"] / "dinov2-large" / "model.safetensors")).items():
        for new, old in old_names.items():
            k = k.replace(new, old)
        state[k] = v
    save_file(state, str(legacy / "model.safetensors"), metadata={"format": "pt"})
    x = torch.rand(1, 3, 70, 98)
    a = load_dinov2(files["meta"])(x)
    assert a.shape == (1, 1024, 5, 7)
    for folder in (files["folder"], str(legacy)):
        assert torch.allclose(a, load_dinov2(folder)(x), atol=1e-5)


def meta_vit_forward(sd, x, heads):
    """Meta DINOv2's forward_features()["x_norm_patchtokens"], restated from its state dict: fused qkv split
    as reshape(B, N, 3, heads, d), LayerScale, exact GELU, LayerNorm eps 1e-6, old position interpolation."""
    B, _, H, W = x.shape
    p = sd["patch_embed.proj.weight"].shape[-1]
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=p).flatten(2).transpose(1, 2)
    D, side = t.shape[-1], int(math.sqrt(sd["pos_embed"].shape[1] - 1))
    grid = sd["pos_embed"][:, 1:].reshape(1, side, side, D).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((H // p + 0.1) / side, (W // p + 0.1) / side), mode="bicubic")
    pos = torch.cat([sd["pos_embed"][:, :1], grid.flatten(2).transpose(1, 2)], 1)
    t = torch.cat([sd["cls_token"].expand(B, -1, -1), t], 1) + pos
    ln = lambda y, k: F.layer_norm(y, (D,), sd[k + ".weight"], sd[k + ".bias"], eps=1e-6)  # noqa: E731
    n = 0
    while f"blocks.{n}.norm1.weight" in sd:
        b = f"blocks.{n}."
        qkv = F.linear(ln(t, b + "norm1"), sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"])
        q, k, v = qkv.reshape(B, -1, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-1, -2) * (D // heads) ** -0.5, -1) @ v
        a = F.linear(a.transpose(1, 2).reshape(B, -1, D), sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])
        t = t + sd[b + "ls1.gamma"] * a
        m = F.gelu(F.linear(ln(t, b + "norm2"), sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"]))
        t = t + sd[b + "ls2.gamma"] * F.linear(m, sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"])
        n += 1
    return ln(t, "norm")[:, 1:].transpose(1, 2).reshape(B, D, H // p, W // p)


def test_backbone_matches_a_restatement_of_metas_vit(files):
    """Raw [0, 1] input, old position grid, last LayerNorm-ed patch tokens, the remapped weights."""
    sd = torch.load(files["meta"], weights_only=True)
    x = torch.rand(1, 3, 42, 70)
    with torch.no_grad():
        want = meta_vit_forward(sd, x, heads=16)
    assert torch.allclose(load_dinov2(files["meta"])(x), want, atol=1e-4)


def cubic_1d(values: np.ndarray, n_out: int, scale: float) -> np.ndarray:
    """Reference of torch's bicubic along one axis (a = -0.75, border clamped) when given scale_factor."""
    def w(t):
        t, a = abs(t), -0.75
        return ((a + 2) * t - (a + 3)) * t * t + 1 if t <= 1 else (((t - 5) * t + 8) * t - 4) * a if t < 2 else 0.0
    out = []
    for i in range(n_out):
        src = (i + 0.5) / scale - 0.5
        f = math.floor(src)
        out.append(sum(w(src - k) * values[min(max(k, 0), len(values) - 1)] for k in range(f - 1, f + 3)))
    return np.array(out)


def test_position_grid_uses_the_old_scale_factor_formula(files):
    """51 × 102 tokens sample the 37 × 37 grid at (i + 0.5)·37/51.1 - 0.5, not at transformers'
    (i + 0.5)·37/51 - 0.5."""
    emb = files["vit"].embeddings
    side = 37
    grid = torch.zeros(1, 1 + side * side, 1024)
    ramp = np.sin(np.arange(side) * 0.7)  # varies along rows only
    grid[0, 1:, 0] = torch.tensor(np.repeat(ramp, side), dtype=torch.float32)
    saved = emb.position_embeddings.data.clone()
    try:
        emb.position_embeddings.data = grid
        tokens = torch.zeros(1, 1 + 51 * 102, 1024)
        out = old_interpolate_pos_encoding(emb, tokens, 714, 1428)[0, 1:, 0].reshape(51, 102)
        new = type(emb).interpolate_pos_encoding(emb, tokens, 714, 1428)[0, 1:, 0].reshape(51, 102)
    finally:
        emb.position_embeddings.data = saved
    want = cubic_1d(ramp, 51, (51 + 0.1) / side)
    assert np.allclose(out[:, 0].detach().numpy(), want, atol=1e-5)
    assert not torch.allclose(out, new, atol=1e-3)  # transformers' own formula is not the official one


def test_cpu_float32_blocks_equal_transformers_forward():
    """The oneDNN-linear blocks (float32 CPU) give transformers' own features up to float rounding."""
    vit = tiny_dinov2(layers=2, hidden=128, seed=5)
    backbone = Dinov2Backbone(vit)
    x = torch.rand(2, 3, 70, 140, generator=torch.Generator().manual_seed(0))
    assert backbone._onednn_path(x) == torch.backends.mkldnn.is_available()
    with torch.no_grad():
        ref = vit(pixel_values=x).last_hidden_state[:, 1:].transpose(1, 2).reshape(2, 128, 5, 10)
    fast = backbone(x)
    assert float((fast - ref).abs().max()) <= 1e-5 * float(ref.abs().max())


def test_meta_transformers_key_remap_round_trips(files):
    hf = files["vit"].state_dict()
    meta = hf_to_meta(hf)
    assert meta["blocks.0.attn.qkv.weight"].shape == (3072, 1024) and "pos_embed" in meta
    back = meta_to_hf(meta)
    assert back.keys() == hf.keys()
    assert all(torch.equal(back[k], hf[k]) for k in hf)
    assert all(torch.equal(hf_to_meta(back)[k], meta[k]) for k in meta)


def test_wrong_checkpoint_is_a_model_error_naming_the_file(files, tmp_path):
    state = dict(files["state"])
    del state["dustbin_score"]
    state["grd_projector.extra"] = torch.zeros(1)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(ModelError, match="not an official"):
        build_vigor(weights=str(bad), backbone=files["meta"])


class Payload:
    """A class pickled into a checkpoint: loading it would have to import and run code."""


def test_pickled_code_is_refused(files, tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"dustbin_score": torch.tensor(1.0), "payload": Payload()}, evil)
    with pytest.raises(ModelError, match="refused"):
        build_vigor(weights=str(evil), backbone=files["meta"])
    with pytest.raises(ModelError, match="refused"):
        load_dinov2(str(evil))


def test_missing_files_are_all_named_with_their_source(monkeypatch, tmp_path):
    monkeypatch.setenv("LOC2_MODELS", str(tmp_path))
    with pytest.raises(ModelError) as err:
        load_model("loc2-kitti")
    msg = str(err.value)
    assert "checkpoint" in msg and "vita-epfl/Loc2" in msg and "loc2-kitti.pt" in msg
    assert "dinov2_vitl14_pretrain.pth" in msg and "--backbone" in msg and "--weights" in msg


def test_loc2_models_folder_is_searched_by_default_names(files, monkeypatch):
    monkeypatch.setenv("LOC2_MODELS", str(files["dir"]))
    (files["dir"] / "loc2-kitti.pt").write_bytes((files["dir"] / "model.pt").read_bytes())
    model = load_model("loc2-kitti")
    assert model.ground_input_sizes == {"pinhole": (364, 1232)} and model.aerial_size_px == 504
    assert model.aerial_gsd == pytest.approx(0.198937, abs=1e-6)
    assert model.token_grid("pinhole") == (26, 88)


def test_backbone_dtype_from_the_environment(files, monkeypatch):
    monkeypatch.setenv("LOC2_BACKBONE_DTYPE", "bfloat16")
    model = build_vigor(weights=files["weights"], backbone=files["meta"])
    assert model.backbone.compute_dtype() == torch.bfloat16
    assert model.default_depth == "depth-anything"
    monkeypatch.setenv("LOC2_BACKBONE_DTYPE", "float8")
    with pytest.raises(ModelError, match="LOC2_BACKBONE_DTYPE"):
        build_vigor(weights=files["weights"], backbone=files["meta"])


# --- token depth sampling and frames -----------------------------------------------------------------------

def test_token_depth_is_read_where_the_official_loader_reads_it(vigor):
    """Official: depth (H, W) -> nearest to 714 × 1428 -> nearest to 51 × 102 (pixel (14r, 14c))."""
    H, W = 1000, 2000
    depth = torch.arange(H * W, dtype=torch.float64).reshape(1, 1, H, W) + 1
    official = F.interpolate(F.interpolate(depth, size=(714, 1428), mode="nearest"), size=(51, 102),
                             mode="nearest").flatten()
    uv, _ = vigor.ground_tokens(PanoramaCamera(W, H), "range")
    ours = sample_depth_at(depth[:, 0], uv[None], mode="nearest")[0]
    assert torch.equal(ours, official)


def heading_error(got: float, want: float) -> float:
    return abs((got - want + 180.0) % 360.0 - 180.0)


def interp_cells(cells: torch.Tensor, i_f: torch.Tensor, j_f: torch.Tensor) -> torch.Tensor:
    """Bilinear interpolation of the (41, 41, 2) cell table at fractional official indices (exact: affine)."""
    i0, j0 = i_f.floor().long().clamp(0, 39), j_f.floor().long().clamp(0, 39)
    fi, fj = (i_f - i0)[:, None], (j_f - j0)[:, None]
    return ((1 - fi) * (1 - fj) * cells[i0, j0] + (1 - fi) * fj * cells[i0, j0 + 1]
            + fi * (1 - fj) * cells[i0 + 1, j0] + fi * fj * cells[i0 + 1, j0 + 1])


def solve_from_official_pose(model, camera, depth_kind, ground_off, psi, s, t_off):
    """ground_off (N, 2) official (down, right) points of the model's tokens; returns the project-frame fit.

    The aerial points a = s R(psi) g + t are looked up through the model's own aerial cell table (at the
    fractional official indices), the ground side through the model's lift coefficients."""
    R = torch.tensor([[math.cos(psi), -math.sin(psi)], [math.sin(psi), math.cos(psi)]], dtype=torch.float64)
    a_off = s * ground_off @ R.T + torch.tensor(t_off, dtype=torch.float64)
    L = model.aerial_size_m
    inside = (a_off.abs() < L / 2 - 1e-6).all(1)
    cells = official_cells_local(41, L).to(torch.float64).reshape(41, 41, 2)
    xy_local = interp_cells(cells, (a_off[inside, 0] + L / 2) / (L / 40), (a_off[inside, 1] + L / 2) / (L / 40))
    return inside, xy_local


@pytest.mark.parametrize("psi_deg", [0.0, 37.0, -120.0])
def test_vigor_pose_in_official_frames_is_recovered_in_project_frames(vigor, psi_deg):
    cam = PanoramaCamera(2048, 1024)
    uv, coef = vigor.ground_tokens(cam, "range")
    r = torch.arange(51).repeat_interleave(102).double()
    c = torch.arange(102).repeat(51).double()
    d = torch.rand(5202, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 14 + 1
    theta, phi = r * math.pi / 50, c * 2 * math.pi / 101  # docs/method.md §1.1, written out independently
    g_off = torch.stack([d * torch.sin(theta) * torch.cos(phi), -d * torch.sin(theta) * torch.sin(phi)], -1)
    psi, s, t_off = math.radians(psi_deg), 1.3, (3.0, -5.0)  # t_off = (down, right) metres
    inside, xy_local = solve_from_official_pose(vigor, cam, "range", g_off, psi, s, t_off)
    bev = d[inside, None] * coef[inside].double()
    fit = procrustes_2d(bev[None], xy_local[None])
    assert bool(fit.ok[0])
    assert heading_error(float(fit.heading_deg[0]), -psi_deg) < 1e-4
    assert fit.t[0].tolist() == pytest.approx([-5.0, -3.0], abs=1e-5)  # (x east = right, y north = -down)
    assert float(fit.s[0]) == pytest.approx(s, abs=1e-6)


def test_vigor_token_directions_agree_with_the_panorama_camera(vigor):
    """The official θ/φ grid is the project's equirectangular model up to its ≤ 2° grid offsets."""
    cam = PanoramaCamera(1428, 714)
    uv, coef = vigor.ground_tokens(cam, "range")
    ref = lift_coefficients(cam, uv, "range")
    horizontal = ref.norm(dim=1) > 0.3
    ang = torch.atan2(coef[:, 0], coef[:, 1]) - torch.atan2(ref[:, 0], ref[:, 1])
    ang = torch.remainder(ang + math.pi, 2 * math.pi) - math.pi
    assert ang[horizontal].abs().max() < math.radians(5.0)
    centre = (uv[:, 0] == 714) & (uv[:, 1] == 350)  # centre column = forward (north at heading 0)
    assert coef[centre, 1] > 0.99


@pytest.mark.parametrize("psi_deg", [0.0, 95.0])
def test_kitti_pose_in_official_frames_is_recovered_in_project_frames(vigor, files, psi_deg):
    kitti = OfficialMatcher(KITTI, vigor.backbone, vigor.heads)
    uv, coef = kitti.ground_tokens(KITTI_CAM, "z")
    r = torch.arange(26).repeat_interleave(88).double()
    c = torch.arange(88).repeat(26).double()
    fx = 721.5377 * 1232 / 1242 / 14
    cx = 609.5593 * 1232 / 1242 / 14
    u = c * 88 / 87  # linspace(0, 88, 88)
    d = torch.rand(2288, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 20 + 2
    g_off = torch.stack([-d, (u - cx) * d / fx], -1)  # docs/method.md §1.2: forward = -down
    psi, s, t_off = math.radians(psi_deg), 0.8, (-4.0, 2.5)
    inside, xy_local = solve_from_official_pose(kitti, KITTI_CAM, "z", g_off, psi, s, t_off)
    bev = d[inside, None] * coef[inside].double()
    fit = procrustes_2d(bev[None], xy_local[None])
    assert heading_error(float(fit.heading_deg[0]), -psi_deg) < 1e-4
    assert fit.t[0].tolist() == pytest.approx([2.5, 4.0], abs=1e-4)
    assert float(fit.s[0]) == pytest.approx(s, abs=1e-5)
    # z-depth coefficients are the project's pinhole ones up to the official 1-token grid stretch
    assert torch.allclose(coef, lift_coefficients(KITTI_CAM, uv, "z"), atol=0.03)
    with pytest.raises(CameraError):
        kitti.ground_tokens(PanoramaCamera(2048, 1024), "range")
    # the reference's loaders stretch every photo to the input: no letterbox rows
    assert not kitti.letterbox and torch.equal(kitti.ground_tokens(KITTI_CAM, "z", rows=(0, 364))[0], uv)
    with pytest.raises(ValueError, match="letterboxed"):
        kitti.ground_tokens(KITTI_CAM, "z", rows=(20, 300))


def test_aerial_cells_are_the_official_edge_to_edge_grid_in_east_north():
    L = 72.48
    xy = official_cells_local(41, L)
    assert xy[0].tolist() == pytest.approx([-L / 2, L / 2])        # cell (0, 0): top-left = north-west corner
    assert xy[40].tolist() == pytest.approx([L / 2, L / 2])        # cell (0, 40): north-east
    assert xy[41 * 40].tolist() == pytest.approx([-L / 2, -L / 2])  # cell (40, 0): south-west
    assert vigor_variant("Seattle").aerial_gsd == pytest.approx(0.102417, abs=1e-6)


# --- depth-anything provider --------------------------------------------------------------------------------

class Photo:
    """What a depth provider reads from a GroundImage: the pixels and the camera."""

    def __init__(self, image, camera):
        self.image, self.camera = image, camera


@pytest.fixture(scope="module")
def da_folder(tmp_path_factory):
    """A tiny random Depth Anything (relative) saved as a transformers folder; its head biased positive so
    that the random prediction is not all sky."""
    backbone = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                                         intermediate_size=64, patch_size=14, image_size=518,
                                         out_indices=[1, 2, 3, 4], reshape_hidden_states=False)
    cfg = transformers.DepthAnythingConfig(backbone_config=backbone, fusion_hidden_size=16,
                                           neck_hidden_sizes=[8, 16, 32, 32], reassemble_hidden_size=32,
                                           head_hidden_size=8)
    torch.manual_seed(0)
    net = transformers.DepthAnythingForDepthEstimation(cfg)
    with torch.no_grad():
        net.head.conv3.bias.fill_(1.0)
    folder = tmp_path_factory.mktemp("da") / "depth-anything"
    net.save_pretrained(folder)
    return str(folder)


def rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_depth_anything_is_registered_for_folders(da_folder):
    from loc2_engine.depth import get_depth_provider
    from loc2_engine.depth.depth_anything import DepthAnythingDepth
    from loc2_engine.depth.plane import GROUND_SCALED_RANGE

    provider = get_depth_provider(da_folder, input_px=56)
    assert isinstance(provider, DepthAnythingDepth)
    # relative depth is put in metres from the ground, so the solver's scale is bounded
    assert provider.kind == "range" and provider.network_metric is False and provider.metric is True
    assert provider.scale_range == GROUND_SCALED_RANGE


@pytest.mark.parametrize("camera", [PinholeCamera.from_hfov(120, 90, 60.0), PanoramaCamera(128, 64)])
def test_depth_anything_gives_a_range_map_of_the_photo_size(da_folder, camera):
    from loc2_engine.depth.depth_anything import DepthAnythingDepth

    depth = DepthAnythingDepth(weights=da_folder, input_px=56)(Photo(rgb(camera.height, camera.width), camera))
    assert depth.shape == (camera.height, camera.width) and depth.dtype == np.float32
    assert np.isfinite(depth).all() and (depth > 0).all()  # every direction of the panorama is covered


def sphere_z(size: int, fov_deg: float, radius: float) -> torch.Tensor:
    """z-depth (size, size) seen by a square pinhole crop at the centre of a sphere."""
    f = (size / 2) / math.tan(math.radians(fov_deg) / 2)
    c = (size - 1) / 2
    i, j = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                          indexing="ij")
    return radius / torch.sqrt(((j - c) / f) ** 2 + ((i - c) / f) ** 2 + 1)


def test_panorama_crops_merge_into_one_range_map_with_one_scale(da_folder, monkeypatch):
    """Camera inside a sphere of radius 10: each crop sees z = 10 cos(angle); crop k comes back k + 1 times too
    large (relative depth has one scale per crop); the merged range is the sphere's 10 everywhere."""
    from loc2_engine.depth.depth_anything import DepthAnythingDepth

    provider = DepthAnythingDepth(weights=da_folder, input_px=56)
    calls = []

    def fake_infer(image, size):
        calls.append(size)
        return sphere_z(size[0], provider.crop_fov_deg, 10.0).float() * len(calls), 1000.0 * len(calls)

    monkeypatch.setattr(provider, "_infer", fake_infer)
    depth = provider._range(Photo(rgb(64, 128), PanoramaCamera(128, 64)))  # merged, before metres
    assert len(calls) == 6
    assert np.allclose(depth, 10.0, rtol=0.01)


def test_panorama_sky_stays_sky_in_every_crop(da_folder, monkeypatch):
    """Relative depth, sphere of radius 10 below 30° elevation and sky above (the network's near-zero inverse
    depth): the all-sky up view has nothing to be scaled against and must not paint the sky."""
    from loc2_engine.depth.depth_anything import DepthAnythingDepth

    H, W = 64, 128
    image = np.zeros((H, W, 3), np.uint8)
    image[..., 1] = (np.arange(H) * 255 / (H - 1)).astype(np.uint8)[:, None]  # green = row
    sky_green = (H / 3) * 255 / (H - 1)  # elevation 30°
    provider = DepthAnythingDepth(weights=da_folder, input_px=56)
    calls = []

    def fake_infer(crop, size):
        calls.append(size)
        z = sphere_z(size[0], provider.crop_fov_deg, 10.0).float() * len(calls)
        z[torch.from_numpy(crop[..., 1].astype(np.float32)) < sky_green] = 1e6
        return z, 1000.0 * len(calls)

    monkeypatch.setattr(provider, "_infer", fake_infer)
    depth = provider._range(Photo(image, PanoramaCamera(W, H)))
    el = 90 - (np.arange(H) + 0.5) / H * 180
    assert np.isnan(depth[el > 35]).all()
    assert np.allclose(depth[el < 25], 10.0, rtol=0.01)


def test_pinhole_z_depth_becomes_range(da_folder, monkeypatch):
    from loc2_engine.depth.depth_anything import DepthAnythingDepth

    camera = PinholeCamera.from_hfov(80, 80, 90.0)
    provider = DepthAnythingDepth(weights=da_folder, input_px=56)
    monkeypatch.setattr(provider, "_infer", lambda image, size: (sphere_z(80, 90.0, 7.0).float(), math.inf))
    assert np.allclose(provider._range(Photo(rgb(80, 80), camera)), 7.0, rtol=1e-4)
    # relative depth leaves in metres from the ground: the sphere's lower half seen from 1.6 m
    metres = provider(Photo(rgb(80, 80), camera))
    assert np.allclose(metres / metres[40, 40], 1.0, rtol=1e-4) and not np.allclose(metres, 7.0, rtol=0.01)


def test_depth_anything_sees_a_stretched_photo_with_square_pixels(da_folder, monkeypatch):
    """KITTI's 1242×375 photo stretched to loc2-kitti's 1232×364: the network input keeps the scene's aspect
    (short side 56 -> 56 × 182, not the stretched 56 × 196), and the depth comes back at the image's size."""
    from loc2_engine.depth.depth_anything import DepthAnythingDepth

    provider = DepthAnythingDepth(weights=da_folder, input_px=56)
    sizes, infer = [], provider._infer
    monkeypatch.setattr(provider, "_infer", lambda image, size: sizes.append(size) or infer(image, size))
    depth = provider(Photo(rgb(364, 1232), KITTI_CAM.resized(1232, 364)))
    assert sizes == [(56, 182)] and depth.shape == (364, 1232)


def test_crops_look_where_their_yaw_and_pitch_say():
    """A panorama whose red channel encodes the column and green the row: the crop centre's colour tells
    which panorama direction it sampled (yaw 90 = right of the centre column = east at heading 0)."""
    from loc2_engine.depth.depth_anything import crop_basis, render_crop

    H, W = 90, 180
    pano = torch.zeros(1, 3, H, W, dtype=torch.float64)
    pano[0, 0] = torch.arange(W, dtype=torch.float64)[None, :] * 255 / (W - 1)
    pano[0, 1] = torch.arange(H, dtype=torch.float64)[:, None] * 255 / (H - 1)
    cam = PanoramaCamera(W, H)
    for yaw, pitch, col, row in [(0, 0, W / 2, H / 2), (90, 0, 3 * W / 4, H / 2), (-90, 0, W / 4, H / 2),
                                 (0, -90, None, H - 0.5)]:
        crop = render_crop(pano, cam, crop_basis(yaw, pitch), 15, 10.0)
        r, g = float(crop[7, 7, 0]), float(crop[7, 7, 1])
        if col is not None:
            assert r == pytest.approx((col - 0.5) * 255 / (W - 1), abs=2.0)
        assert g == pytest.approx(min(row - 0.5, H - 1) * 255 / (H - 1), abs=2.0)


def test_missing_depth_anything_folder_names_the_source(tmp_path, monkeypatch):
    from loc2_engine.depth.depth_anything import DepthAnythingDepth
    from loc2_engine.errors import DepthError

    monkeypatch.setenv("LOC2_MODELS", str(tmp_path))
    with pytest.raises(DepthError, match="huggingface.co/depth-anything.*LOC2_MODELS"):
        DepthAnythingDepth()
