"""Training: the cache and batches carry a consistent truth, the loss decreases, runs are resumable, seeded
and export weights that load without executing code."""

import argparse
import dataclasses

import numpy as np
import pytest
import torch

from loc2_engine.cameras import PanoramaCamera
from loc2_engine.commands import train as train_cmd
from loc2_engine.lifting import lift_coefficients
from loc2_engine.models import load_model
from loc2_engine.models.base import grid_centres_uv
from loc2_engine.models.mono_depth import load_mono_depth
from loc2_engine.train.data import draw_batch
from loc2_engine.train.losses import LossConf, matcher_losses
from loc2_engine.train.trainer import Trainer, TrainConf


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
