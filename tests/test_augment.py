"""Photometric augmentation of training batches: colours change, geometry and truth do not, draws are seeded,
panoramas blur across their seam, and validation batches are never jittered."""

import dataclasses

import pytest
import torch

from loc2_engine.train.augment import JitterConf, jitter
from loc2_engine.train.trainer import Trainer, TrainConf


def _images(B=6, H=32, W=64):
    g = torch.Generator().manual_seed(0)
    return torch.rand(B, 3, H, W, generator=g)


def test_jitter_changes_colours_within_range_and_is_seeded():
    x = _images()
    a = jitter(x, torch.Generator().manual_seed(1), JitterConf(p=1.0))
    b = jitter(x, torch.Generator().manual_seed(1), JitterConf(p=1.0))
    c = jitter(x, torch.Generator().manual_seed(2), JitterConf(p=1.0))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0.0 and a.max() <= 1.0
    per_image = (a - x).abs().mean(dim=(1, 2, 3))
    assert (per_image > 0.01).all()  # every image jittered at p = 1
    assert torch.equal(jitter(x, torch.Generator().manual_seed(1), JitterConf(p=0.0)), x)


def test_jitter_keeps_the_image_geometry():
    """A bright square stays where it is: the pose supervision must remain exact."""
    x = torch.full((4, 3, 40, 40), 0.2)
    x[:, :, 10:16, 25:31] = 0.9
    y = jitter(x, torch.Generator().manual_seed(3), JitterConf(p=1.0, noise_sigma=(0.0, 0.0)))
    inside, outside = y[:, :, 11:15, 26:30].mean(dim=(1, 2, 3)), y[:, :, 25:35, 2:12].mean(dim=(1, 2, 3))
    assert (inside > outside + 0.2).all()


def test_panorama_blur_wraps_around_the_seam():
    x = torch.zeros(1, 3, 8, 32)
    x[..., 0] = 1.0
    conf = JitterConf(p=1.0, blur_p=1.0, blur_sigma_px=(1.0, 1.0), brightness=(1, 1), contrast=(1, 1),
                      saturation=(1, 1), channel_gain=(1, 1), gamma=(1, 1), noise_sigma=(0, 0))
    wrapped = jitter(x, torch.Generator().manual_seed(0), conf, circular=True)
    flat = jitter(x, torch.Generator().manual_seed(0), conf, circular=False)
    assert wrapped[..., -1].mean() > 0.1 and flat[..., -1].mean() < 1e-6
    assert float(wrapped[..., 1].mean()) == pytest.approx(float(wrapped[..., -1].mean()), abs=1e-5)


@pytest.fixture(scope="module")
def tiny_trainers(tmp_path_factory):
    from loc2_engine.synth.dataset import generate
    from loc2_engine.synth.presets import get_preset

    data = tmp_path_factory.mktemp("tiny_aug")
    generate(str(data), dataclasses.replace(get_preset("train"), n_pano=2, n_pinhole=2), seed=0, towns=1)
    out = {}
    for augment in (False, True):
        ckpt = tmp_path_factory.mktemp(f"ckpt{augment}")
        t = Trainer([str(data)], str(ckpt / "m.safetensors"), str(ckpt),
                    TrainConf(batch_size=2, cache_workers=1, augment=augment, val_fraction=0.0))
        t.load_data()
        out[augment] = t
    return out


def test_training_batches_are_jittered_and_their_truth_is_not(tiny_trainers):
    plain, augmented = tiny_trainers[False].next_batch(), tiny_trainers[True].next_batch()
    assert plain.kind == augmented.kind
    assert not torch.equal(plain.ground, augmented.ground) or not torch.equal(plain.aerial, augmented.aerial)
    for name in ("depth", "token_depth", "lift_coef", "R_gt", "t_gt", "heading_gt", "aerial_valid"):
        a, b = getattr(plain, name), getattr(augmented, name)
        assert torch.equal(torch.nan_to_num(a), torch.nan_to_num(b)), name
