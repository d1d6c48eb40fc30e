"""Photometric augmentation of training images, so that the matcher does not learn one renderer's colours.

Real orthophotos and street photos differ from the synthetic towns, and from each other, in exposure, white
balance, contrast, saturation, tone curve, sensor noise and sharpness. Each image of a batch gets, with
probability ``p``, an independent random draw of all of these; the ground photo and the aerial window of a
sample are jittered independently (they were never taken by the same camera). Geometry is untouched, so the
pose supervision stays exact. The ranges are wide because a model trained without any jitter lost most of
its accuracy on a colour-graded copy of the bench (docs/evaluation.md, "Photometric augmentation").

All draws come from the caller's CPU generator: the same generator state gives the same batch on a device.
The images may live on any device and are jittered there (a GPU run does not wait for the CPU): only the
per-image factors are drawn on the CPU; the noise field is drawn on the images' device, seeded from the
caller's generator, so a CPU and a GPU run of one seed differ in their noise only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class JitterConf:
    """Ranges of the random draws (uniform), factors unless said otherwise."""

    p: float = 0.9                      # share of images that are jittered
    brightness: tuple = (0.6, 1.4)
    contrast: tuple = (0.6, 1.4)
    saturation: tuple = (0.4, 1.6)
    channel_gain: tuple = (0.85, 1.15)  # white balance, per channel
    gamma: tuple = (0.7, 1.4)
    noise_sigma: tuple = (0.0, 0.03)    # additive Gaussian noise, in [0, 1] intensity units
    blur_p: float = 0.3                 # share of jittered images that are also blurred
    blur_sigma_px: tuple = (0.3, 1.5)


def _uniform(lo_hi, shape, generator, device) -> torch.Tensor:
    lo, hi = lo_hi
    return (lo + (hi - lo) * torch.rand(shape, generator=generator)).to(device)


def jitter(images: torch.Tensor, generator: torch.Generator, conf: JitterConf = JitterConf(),
           circular: bool = False) -> torch.Tensor:
    """Randomly jittered copy of images (B, 3, H, W) float in [0, 1], on any device -> (B, 3, H, W) in
    [0, 1] on the same device.

    generator: a CPU generator (all draws but the noise field's, which is seeded from it).
    circular: the images wrap around horizontally (360° panoramas), so a blur does not see a seam.
    """
    B, dev = images.shape[0], images.device
    x = images.float()
    on = (torch.rand(B, generator=generator) < conf.p).float().view(B, 1, 1, 1).to(dev)
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]          # (B, 1, H, W)
    y = gray + (x - gray) * _uniform(conf.saturation, (B, 1, 1, 1), generator, dev)
    mean = gray.mean(dim=(2, 3), keepdim=True)
    y = mean + (y - mean) * _uniform(conf.contrast, (B, 1, 1, 1), generator, dev)
    y = (y * _uniform(conf.brightness, (B, 1, 1, 1), generator, dev)
         * _uniform(conf.channel_gain, (B, 3, 1, 1), generator, dev))
    y = y.clamp(0.0, 1.0) ** _uniform(conf.gamma, (B, 1, 1, 1), generator, dev)
    blur = torch.rand(B, generator=generator) < conf.blur_p
    sigmas = _uniform(conf.blur_sigma_px, (B,), generator, "cpu")
    for b in torch.nonzero(blur).flatten().tolist():
        y[b] = _gaussian_blur(y[b], float(sigmas[b]), circular)
    noise_gen = torch.Generator(device=dev).manual_seed(int(torch.randint(0, 2 ** 62, (1,), generator=generator)))
    noise = torch.randn(y.shape, generator=noise_gen, device=dev)
    y = y + noise * _uniform(conf.noise_sigma, (B, 1, 1, 1), generator, dev)
    return (on * y + (1.0 - on) * x).clamp(0.0, 1.0)


def _gaussian_blur(image: torch.Tensor, sigma_px: float, circular: bool) -> torch.Tensor:
    """image (3, H, W) blurred by a separable Gaussian of sigma_px pixels -> (3, H, W)."""
    k = max(1, int(round(3 * sigma_px)))
    taps = torch.exp(-0.5 * (torch.arange(-k, k + 1, dtype=image.dtype, device=image.device) / sigma_px) ** 2)
    taps = (taps / taps.sum()).view(1, 1, 1, -1).expand(3, 1, 1, -1)
    x = image[None]
    x = F.pad(x, (k, k, 0, 0), mode="circular" if circular else "replicate")
    x = F.conv2d(x, taps, groups=3)
    x = F.pad(x, (0, 0, k, k), mode="replicate")
    return F.conv2d(x, taps.transpose(-1, -2), groups=3)[0]
