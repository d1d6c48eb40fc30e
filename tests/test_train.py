"""Training: the cache and batches carry a consistent truth, the loss decreases, runs are resumable, seeded
and export weights that load without executing code."""

import argparse
import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from loc2_engine.cameras import PanoramaCamera
from loc2_engine.commands import train as train_cmd
from loc2_engine.errors import Loc2Error
from loc2_engine.lifting import lift_coefficients
from loc2_engine.models import load_model
from loc2_engine.models.base import grid_centres_uv
from loc2_engine.models.mono_depth import MonoDepthNet, load_mono_depth, save_mono
from loc2_engine.synth.lens import Lens
from loc2_engine.synth.render import pinhole_rays
from loc2_engine.train.data import build_cache, draw_batch, mirror_world, token_lift_coefficients
from loc2_engine.train.losses import LossConf, matcher_losses
from loc2_engine.train.pack import crop_mosaic, decode_depth, encode_depth, pack_conf, read_pack
from loc2_engine.train.trainer import Trainer, TrainConf
from script_modules import load_script


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """One small synthetic town with 3 panoramas and 3 pinholes (a few seconds)."""
    from loc2_engine.synth.dataset import generate
    from loc2_engine.synth.presets import get_preset

    out = tmp_path_factory.mktemp("tiny")
    generate(str(out), dataclasses.replace(get_preset("train"), n_pano=3, n_pinhole=3), seed=0, towns=1)
    return str(out)


@pytest.fixture(scope="module")
def trainer(dataset, tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("ckpt")
    t = Trainer([dataset], str(ckpt / "m.safetensors"), str(ckpt), TrainConf(batch_size=2, cache_workers=1))
    t.load_data()
    return t


def _pixel_world_xy(batch, i):
    """Every pixel of panorama i lifted with its truth range and placed by the batch's true pose (H*W, 2)."""
    H, W = batch.ground.shape[-2:]
    cam = PanoramaCamera(W, H)
    coef = lift_coefficients(cam, grid_centres_uv(H, W, 1))
    xy_bev = batch.depth[i].flatten()[:, None] * coef
    return xy_bev @ batch.R_gt[i].T + batch.t_gt[i]


def test_rolled_panorama_keeps_the_world_in_place(trainer):
    cache = trainer.train_data["pano"]
    idx = torch.tensor([0])
    plain = draw_batch(cache, idx, 224, 0.5, 8, 25.0, False, torch.Generator().manual_seed(5))
    rolled = draw_batch(cache, idx, 224, 0.5, 8, 25.0, True, torch.Generator().manual_seed(5))
    assert torch.equal(plain.t_gt, rolled.t_gt) and torch.equal(plain.aerial, rolled.aerial)
    W = plain.ground.shape[-1]
    k = next(k for k in range(W) if torch.equal(torch.roll(plain.ground, k, -1), rolled.ground))
    assert k != 0
    a, b = _pixel_world_xy(plain, 0), _pixel_world_xy(rolled, 0)
    H = plain.ground.shape[-2]
    perm = (torch.arange(H * W).view(H, W).roll(k, -1)).flatten()  # rolled pixel p shows plain pixel perm[p]
    ok = torch.isfinite(a[perm]).all(-1)
    assert ok.sum() > 1000
    assert torch.allclose(a[perm][ok], b[ok], atol=1e-2)


def _plain_and_changed(trainer, kind, **change):
    """Eight samples of ``kind`` drawn plainly and with ``change`` (draw_batch's mirror / turn), same seed."""
    cache = trainer.train_data[kind]
    idx = torch.arange(8) % len(cache)
    return [draw_batch(cache, idx, 224, 0.5, 8, 25.0, True, torch.Generator().manual_seed(3), **kw)
            for kw in ({}, change)]


@pytest.mark.parametrize("kind", ["pano", "pinhole"])
def test_mirrored_samples_show_the_mirrored_world(trainer, kind):
    plain, mirr = _plain_and_changed(trainer, kind, mirror=True)
    flip = ~(mirr.ground == plain.ground).flatten(1).all(1)
    assert 0 < flip.sum() < 8
    assert torch.equal(mirr.ground[flip], plain.ground[flip].flip(-1))
    assert torch.equal(mirr.aerial[flip], plain.aerial[flip].flip(-1))
    assert torch.equal(mirr.aerial_valid[flip], plain.aerial_valid[flip].flip(-1))
    assert torch.equal(mirr.aerial[~flip], plain.aerial[~flip]) and torch.equal(mirr.t_gt[~flip], plain.t_gt[~flip])
    assert torch.allclose(mirr.t_gt[flip], plain.t_gt[flip] * torch.tensor([-1.0, 1.0]))

    def token_world(b):  # (B, hg, wg, 2) xy_local of the tokens lifted with their truth range
        xy_bev = b.token_depth[..., None] * b.lift_coef
        xy = torch.einsum("bij,bnj->bni", b.R_gt, xy_bev) + b.t_gt[:, None]
        H, W = b.ground.shape[-2:]
        return xy.view(len(xy), H // 8, W // 8, 2)

    a, m = token_world(plain)[flip], token_world(mirr)[flip]
    expected = a.flip(2) * torch.tensor([-1.0, 1.0])  # token column c shows plain column wg - 1 - c, x negated
    ok = torch.isfinite(expected).all(-1)
    assert ok.sum() > 50
    assert torch.allclose(m[ok], expected[ok], atol=5e-3)  # float32 headings; a half-pixel slip is ~0.1 m


def test_a_token_seen_through_a_lens_lifts_along_the_ray_the_lens_drew_there_mirrored_too():
    H, W, hfov = 192, 256, 70.0
    f = (W / 2) / np.tan(np.radians(hfov) / 2)
    lens = Lens(-0.08, 0.015, 0.0008, -0.0006)
    intrinsics = torch.tensor([[f, f, W / 2 - 0.5, H / 2 - 0.5, lens.k1, lens.k2, lens.p1, lens.p2]])
    rays = pinhole_rays(0.0, hfov, H, W, lens=lens)  # heading 0: x east = right, y north = forward
    u, v = np.meshgrid(np.arange(0, W, 17), np.arange(H // 2, H, 13))
    uv = torch.tensor(np.stack([u.ravel(), v.ravel()], -1), dtype=torch.float32)
    coef = token_lift_coefficients("pinhole", intrinsics, (H, W), uv)[0]
    expected = torch.tensor(rays[v.ravel(), u.ravel(), :2], dtype=torch.float32)
    assert torch.allclose(coef, expected, atol=2e-5)
    perfect = token_lift_coefficients("pinhole", intrinsics[:, :4], (H, W), uv)[0]
    assert (perfect - expected).norm(dim=-1).max() > 0.02  # the lens matters in the corners

    zeros = torch.zeros
    *_, mirrored = mirror_world(torch.tensor([True]), zeros(1, 3, H, W), zeros(1, H, W), zeros(1, 1, 1),
                                zeros(1, 3, 4, 4), zeros(1, 4, 4, dtype=torch.bool), zeros(1, 2), zeros(1),
                                intrinsics, "pinhole")
    uv_m = torch.stack([W - 1 - uv[:, 0], uv[:, 1]], -1)  # the mirrored photo shows pixel u at W - 1 - u
    coef_m = token_lift_coefficients("pinhole", mirrored, (H, W), uv_m)[0]
    assert torch.allclose(coef_m, coef * torch.tensor([-1.0, 1.0]), atol=2e-5)


@pytest.mark.parametrize("kind", ["pano", "pinhole"])
def test_turned_samples_show_the_turned_world(trainer, kind):
    plain, turned = _plain_and_changed(trainer, kind, turn=True)
    assert torch.equal(turned.ground, plain.ground)
    assert torch.allclose(turned.token_depth, plain.token_depth, atol=0, rtol=0, equal_nan=True)
    quarters = [next(q for q in range(4) if torch.equal(torch.rot90(p, q, (-2, -1)), t))
                for p, t in zip(plain.aerial, turned.aerial)]
    assert len(set(quarters)) > 1

    def colour_under_tokens(b):  # (B, Ng, 3) aerial colour under each token lifted with its truth range
        xy = torch.einsum("bij,bnj->bni", b.R_gt, b.token_depth[..., None] * b.lift_coef) + b.t_gt[:, None]
        n = b.aerial.shape[-1]
        col = torch.round(xy[..., 0] / 0.5 + n / 2 - 0.5).long()
        row = torch.round(n / 2 - 0.5 - xy[..., 1] / 0.5).long()
        inside = torch.isfinite(xy).all(-1) & (col >= 0) & (col < n) & (row >= 0) & (row < n)
        rgb = torch.stack([b.aerial[i][:, row[i].clamp(0, n - 1), col[i].clamp(0, n - 1)].T for i in range(len(xy))])
        return rgb, inside

    a, ok_a = colour_under_tokens(plain)
    t, ok_t = colour_under_tokens(turned)
    assert torch.equal(ok_a, ok_t) and ok_a.sum() > 100
    # a sign slip in the position or the heading puts the tokens on other pixels; float32 headings can move
    # a token across a pixel edge, so allow a few
    same = (a == t).all(-1)[ok_a].float().mean()
    assert same > 0.95


def test_batch_truth_offsets_stay_within_the_radius(trainer):
    kind, cache = next(iter(trainer.train_data.items()))
    batch = draw_batch(cache, torch.zeros(16, dtype=torch.long), 224, 0.5, 8, 25.0, True,
                       torch.Generator().manual_seed(0))
    r = batch.t_gt.norm(dim=-1)
    assert (r <= 25.0 + 0.5).all() and r.std() > 1.0
    assert batch.aerial.shape == (16, 3, 224, 224) and batch.token_depth.shape[0] == 16
    assert torch.allclose(batch.R_gt @ batch.R_gt.transpose(1, 2), torch.eye(2).expand(16, 2, 2), atol=1e-6)


def test_a_few_steps_decrease_the_loss(trainer):
    torch.manual_seed(0)
    kind, cache = next(iter(trainer.train_data.items()))
    batch = draw_batch(cache, torch.arange(min(2, len(cache))), 224, 0.5, 8, 25.0, True,
                       torch.Generator().manual_seed(1))
    model = trainer.model.__class__()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for step in range(12):
        out = matcher_losses(model, batch, LossConf(n_matches=256), torch.Generator().manual_seed(step))
        opt.zero_grad()
        out["total"].backward()
        opt.step()
        losses.append(float(out["total"].detach()))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.05, losses


def _args(dataset, out, **kw):
    parser = argparse.ArgumentParser()
    train_cmd.add_arguments(parser)
    argv = [dataset, "--out", str(out), "--batch-size", "2", "--workers", "1"]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return parser.parse_args(argv)


def test_train_command_exports_resumes_and_is_seeded(dataset, tmp_path):
    out = tmp_path / "a" / "model.safetensors"
    assert train_cmd.run(_args(dataset, out, steps=2, seed=3)) == 0
    assert out.is_file() and (out.parent / "mono.safetensors").is_file()
    model = load_model(str(out))
    mono = load_mono_depth(weights=str(out.parent / "mono.safetensors"))
    assert model.conf["desc_dim"] == 64 and not mono.training

    last = torch.load(out.parent / "ckpt" / "last.pt", weights_only=True)
    assert last["step"] == 2
    assert train_cmd.run(_args(dataset, out, steps=3, seed=3, resume=True)) == 0
    assert torch.load(out.parent / "ckpt" / "last.pt", weights_only=True)["step"] == 3

    again = tmp_path / "b" / "model.safetensors"
    assert train_cmd.run(_args(dataset, again, steps=2, seed=3)) == 0
    a, b = last["model"], torch.load(again.parent / "ckpt" / "last.pt", weights_only=True)["model"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


# --- training packs (train/pack.py): the same supervision without the geo stack --------------------------

def _pack_conf(model):
    return pack_conf(model.ground_input_sizes, model.aerial_size_px, model.aerial_gsd, model.token_stride, 25.0)


@pytest.fixture(scope="module")
def pack(dataset, tmp_path_factory):
    """The tiny dataset packed by scripts/pack_training_data.py for the default matcher."""
    path = tmp_path_factory.mktemp("pack") / "tiny.pack"
    assert load_script("pack_training_data").main([dataset, "--out", str(path), "--workers", "1"]) == 0
    return str(path)


def test_pack_gives_the_supervision_of_the_cache(trainer, pack):
    """Crops cut on the mosaic's pixel grid show the same ground as windows centred on the truth, once the
    sub-pixel truth offset is added; ground images and token depths match the cache's."""
    packed = read_pack(pack, _pack_conf(trainer.model))
    cached = build_cache([trainer.dataset_dirs[0]], trainer.model.ground_input_sizes, 224, 0.5, 25.0, progress=False)
    for kind, c in cached.items():
        p = packed[kind]
        assert p.photo == c.photo and p.town == c.town and torch.equal(p.heading, c.heading)
        assert (p.ground.float() - c.ground.float()).abs().mean() < 3.0            # JPEG only
        assert (p.truth_offset.abs() <= 0.25 + 1e-4).all() and p.truth_offset.abs().max() > 0.01
        for i in range(len(c)):
            a, b = c.aerial[i].float()[:, 8:-8, 8:-8], p.aerial[i].float()
            shifts = {(dr, dc): (a - b[:, 8 + dr:b.shape[1] - 8 + dr, 8 + dc:b.shape[2] - 8 + dc]).abs().mean()
                      for dr in (-2, -1, 0, 1, 2) for dc in (-2, -1, 0, 1, 2)}
            assert min(shifts, key=shifts.get) == (0, 0) and shifts[(0, 0)] < 8.0
        idx = torch.arange(len(c))
        bc = draw_batch(c, idx, 224, 0.5, 8, 25.0, True, torch.Generator().manual_seed(2))
        bp = draw_batch(p, idx, 224, 0.5, 8, 25.0, True, torch.Generator().manual_seed(2))
        ok = torch.isfinite(bc.token_depth)
        assert torch.equal(ok, torch.isfinite(bp.token_depth))
        assert torch.allclose(bp.token_depth[ok], bc.token_depth[ok], rtol=2e-3)
        assert torch.allclose(bp.t_gt - bc.t_gt, p.truth_offset, atol=1e-5)
        # mirrored samples read the pack's token depths too (it holds pinhole range only at token columns)
        mc = draw_batch(c, idx, 224, 0.5, 8, 25.0, True, torch.Generator().manual_seed(2), mirror=True)
        mp = draw_batch(p, idx, 224, 0.5, 8, 25.0, True, torch.Generator().manual_seed(2), mirror=True)
        assert not torch.equal(mc.heading_gt, bc.heading_gt)
        assert torch.equal(torch.isfinite(mp.token_depth), torch.isfinite(mc.token_depth))
        assert torch.equal(ok.sum(1), torch.isfinite(mp.token_depth).sum(1))


def test_crop_mosaic_reports_the_sub_pixel_offset_and_pads_outside():
    M, gsd = 10, 0.5
    rows, cols = np.mgrid[0:M, 0:M]
    image = np.stack([rows, cols, np.zeros_like(rows)], -1).astype(np.uint8)
    valid = np.ones((M, M), bool)
    xy = (1.35, 1.05)                               # continuous pixel position: column 7.7, row 2.9
    crop, ok, (dx, dy) = crop_mosaic(image, valid, gsd, xy, 2)
    r0, c0 = crop[0, 0, :2].tolist()
    assert (r0, c0) == (2, 7) and crop[1, 1, :2].tolist() == [3, 8] and ok.all()
    centre = ((c0 + 1 - M / 2) * gsd, (M / 2 - r0 - 1) * gsd)  # the crop's centre: a pixel corner
    assert (centre[0] + dx, centre[1] + dy) == pytest.approx(xy)
    assert abs(dx) <= gsd / 2 and abs(dy) <= gsd / 2
    edge, ok, _ = crop_mosaic(image, valid, gsd, (-2.2, 2.2), 4)   # column and row 0.6: one of each outside
    assert not ok[0].any() and not ok[:, 0].any() and ok[1:, 1:].all()


def test_depth_codes_round_trip_within_their_precision():
    d = np.array([0.05, 0.3, 1.0, 17.2, 240.0, 4999.0, np.nan, -1.0, 0.0], np.float32)
    back = decode_depth(encode_depth(d))
    assert np.allclose(back[:6], d[:6], rtol=1e-4)
    assert np.isnan(back[6:]).all()


def test_pack_is_checked_against_the_model(trainer, pack, tmp_path):
    other = dict(_pack_conf(trainer.model), gsd=0.25)
    with pytest.raises(Loc2Error, match="pack it again"):
        read_pack(pack, other)
    junk = tmp_path / "junk.pack"
    junk.write_bytes(b"not a pack")
    with pytest.raises(Loc2Error, match="not a readable training pack"):
        read_pack(str(junk), _pack_conf(trainer.model))


def test_matcher_only_training_from_a_pack_starts_from_init_and_keeps_the_mono_net(pack, tmp_path):
    init = tmp_path / "init" / "model.safetensors"
    assert train_cmd.run(_args(pack, init, steps=1, matcher_only=True)) == 0
    assert not (init.parent / "mono.safetensors").exists()

    out = tmp_path / "ft" / "model.safetensors"
    args = _args(pack, out, steps=0, matcher_only=True, init=init)
    assert train_cmd.run(args) == 0                           # zero steps: the exported state is the initial one
    a, b = load_model(str(init)).state_dict(), load_model(str(out)).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if "running" not in k and "num_batches" not in k)

    assert train_cmd.run(_args(pack, out, steps=2, matcher_only=True, init=init)) == 0
    shipped = load_mono_depth().state_dict()
    t = Trainer([pack], str(tmp_path / "x.safetensors"), str(tmp_path / "ck"), TrainConf(train_mono=False))
    assert all(torch.equal(v, t.mono.state_dict()[k]) for k, v in shipped.items())
    assert not any(p.requires_grad for p in t.mono.parameters())


def test_a_pack_cannot_train_the_mono_net(pack, tmp_path):
    t = Trainer([pack], str(tmp_path / "m.safetensors"), str(tmp_path / "ck"), TrainConf())
    with pytest.raises(Loc2Error, match="train the matcher alone"):
        t.load_data()


# --- the mono depth network alone (--depth-only) ---------------------------------------------------------

def test_depth_only_training_learns_depth_and_leaves_the_matcher_alone(dataset, tmp_path):
    conf = TrainConf(batch_size=2, cache_workers=1, train_matcher=False, mono={"channels": [8, 16, 24, 32]},
                     warmup_steps=1, lr=3e-3)
    t = Trainer([dataset], str(tmp_path / "mono.safetensors"), str(tmp_path / "ck"), conf)
    t.load_data()
    shipped = load_model("default").state_dict()
    assert not any(p.requires_grad for p in t.model.parameters()) and not t.model.training
    assert {id(p) for g in t.opt.param_groups for p in g["params"]} == {id(p) for p in t.mono.parameters()}
    t.total_steps = 40
    losses = [t.train_step()["loss"] for _ in range(40)]
    assert np.isfinite(losses).all()
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8]), losses
    assert all(torch.equal(v, t.model.state_dict()[k]) for k, v in shipped.items())


def test_depth_only_command_writes_the_depth_network_with_its_channels(dataset, tmp_path):
    out = tmp_path / "d" / "mono.safetensors"
    assert train_cmd.run(_args(dataset, out, steps=2, depth_only=True, mono_channels="8,16,24,32")) == 0
    mono = load_mono_depth(weights=str(out))
    assert mono.conf["channels"] == [8, 16, 24, 32] and not mono.training
    with safe_open(str(out), "pt") as f:
        info = json.loads(f.metadata()["training"])
    assert info["steps_run"] == 2 and info["matcher"] == "frozen" and info["mono"] == "trained" and info["mirror"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["ckpt", "mono.safetensors"]  # no matcher file
    assert train_cmd.run(_args(dataset, out, steps=1, depth_only=True, matcher_only=True)) == 2
    assert train_cmd.run(_args(dataset, out, steps=1, depth_only=True, mono_out=tmp_path / "m.safetensors")) == 2
    assert train_cmd.run(_args(dataset, out, steps=1, depth_only=True, mono_channels="8,16")) == 2


def test_mono_init_fine_tunes_the_given_depth_network(dataset, tmp_path):
    first = tmp_path / "a" / "mono.safetensors"
    assert train_cmd.run(_args(dataset, first, steps=1, depth_only=True, mono_channels="8,16,24,32")) == 0
    start = load_mono_depth(weights=str(first)).state_dict()
    # the file's architecture wins over the default channels; the weights are the file's before any step
    t = Trainer([dataset], str(tmp_path / "b" / "mono.safetensors"), str(tmp_path / "ck"),
                TrainConf(batch_size=2, cache_workers=1, train_matcher=False), mono_init=str(first))
    assert t.mono.conf["channels"] == [8, 16, 24, 32] and t.mono.training
    assert all(torch.equal(v, t.mono.state_dict()[k]) for k, v in start.items())
    out = tmp_path / "c" / "mono.safetensors"
    assert train_cmd.run(_args(dataset, out, steps=2, depth_only=True, mono_init=first)) == 0
    tuned = load_mono_depth(weights=str(out))
    assert tuned.conf["channels"] == [8, 16, 24, 32]
    assert any(not torch.equal(v, tuned.state_dict()[k]) for k, v in start.items() if v.is_floating_point())
    with safe_open(str(out), "pt") as f:
        assert json.loads(f.metadata()["training"])["mono_init"] == "mono.safetensors"
    assert train_cmd.run(_args(dataset, out, steps=1, matcher_only=True, mono_init=first)) == 2
    # a depth network made for other input sizes is refused before anything trains or is written
    other = tmp_path / "other.safetensors"
    save_mono(MonoDepthNet({"channels": [8, 16, 24, 32], "pinhole_size": [96, 128]}), other)
    assert train_cmd.run(_args(dataset, tmp_path / "d" / "mono.safetensors", steps=1, depth_only=True,
                               mono_init=other)) == 1
    assert not (tmp_path / "d" / "mono.safetensors").exists()
