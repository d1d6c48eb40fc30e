"""`depth-anything` depth: Depth Anything V2 (transformers ``DepthAnythingForDepthEstimation``) from a local folder.

Pinhole photos go through the network directly. A 360° panorama cannot (the network expects a perspective
image), so it is cut into perspective crops — ``n_yaw`` around the horizon, one straight up and one straight
down, so that every direction is seen — whose depths are merged into one equirectangular map, weighting each
crop by how close a ray is to the crop's axis so that seams blend.

Output is always **range** (distance along the ray): each crop's or photo's z-depth is divided by the
ray's forward component. The folder's config says which kind of model it is:
    * ``metric`` (Depth-Anything-V2-Metric-*): metres; values at the model's ``max_depth`` are sky -> NaN;
    * ``relative`` (Depth-Anything-V2-Small/Base/Large): the network predicts relative *inverse* depth, taken
      as depth = 1 / prediction (its unknown shift is assumed 0, so this is exact only up to scale); tiny
      predictions are sky -> NaN. Each panorama crop then has its own unknown scale, so every crop is scaled
      to the crops already merged by the median ratio over their overlap. The one global scale left is
      then fixed from the ground in front of the camera (`plane.metres_from_ground`), so that the solver's
      scale can be bounded as for metric depth.
"""

from __future__ import annotations

import math
import os
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DepthError
from ..lifting import sample_depth_at
from . import DEFAULT_CAMERA_HEIGHT_M, DepthProvider, square_pixel_aspect
from .plane import GROUND_SCALED_RANGE, metres_from_ground

DA_SOURCE = ("a transformers folder of Depth Anything V2 from https://huggingface.co/depth-anything "
             "(e.g. Depth-Anything-V2-Small-hf, or Depth-Anything-V2-Metric-Outdoor-Large-hf for metres); "
             "see docs/official-models.md")
#: default folder name searched in $LOC2_MODELS
DEFAULT_FOLDER = "depth-anything"
#: ImageNet statistics, which every Depth Anything V2 preprocessor uses
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
#: relative predictions below this fraction of the photo's 99th percentile are sky (> 100× the near range)
SKY_FRACTION = 0.01
#: metric predictions at or beyond this fraction of the model's max_depth are its sky value
SKY_METRIC = 0.95
#: overlap (equirectangular pixels) needed to scale a relative crop to the crops merged before it
MIN_OVERLAP_PX = 50
#: crop weights ∝ cos(angle to the crop axis)^WEIGHT_POWER: seams blend, crop borders count little
WEIGHT_POWER = 4


class DepthAnythingDepth(DepthProvider):
    """Range (H, W) float32 from Depth Anything V2; kind "range"; metric per the folder's config.

    weights: the model folder (config.json + model.safetensors); None: ``$LOC2_MODELS/depth-anything``.
    input_px: the network's input side (short side for pinholes, crop side for panoramas), a multiple of 14;
    n_yaw: horizontal crops of a panorama; crop_fov_deg: the crops' field of view (square crops: the ring
    covers elevations up to ±crop_fov_deg/2, the up and down crops beyond ±(90 - crop_fov_deg/2), so they
    overlap for fields of view above 90°).
    """

    name = "depth-anything"
    kind = "range"

    def __init__(self, weights: Optional[str] = None, device=None, input_px: int = 518, n_yaw: int = 4,
                 crop_fov_deg: float = 100.0, camera_height_m: float = DEFAULT_CAMERA_HEIGHT_M):
        super().__init__(device, camera_height_m)
        folder = weights or (os.path.join(os.environ["LOC2_MODELS"], DEFAULT_FOLDER)
                             if os.environ.get("LOC2_MODELS") else None)
        if folder is None or not os.path.isfile(os.path.join(folder, "config.json")):
            where = f"{folder!r} has no config.json" if folder else "no folder was given"
            raise DepthError(f"Depth Anything V2 weights are missing ({where}): get {DA_SOURCE}, then pass it "
                             f"with --depth FOLDER or save it as $LOC2_MODELS/{DEFAULT_FOLDER}.")
        if input_px % 14 or input_px < 14:
            raise ValueError(f"input_px must be a positive multiple of 14, got {input_px}")
        if not (n_yaw >= 3 and max(90.0, 360.0 / n_yaw) < crop_fov_deg < 170.0):
            raise ValueError(f"{n_yaw} crops of {crop_fov_deg}° do not cover the sphere with overlap")
        from transformers import DepthAnythingForDepthEstimation

        try:
            self.net = DepthAnythingForDepthEstimation.from_pretrained(folder, local_files_only=True).eval()
        except (OSError, ValueError) as exc:
            raise DepthError(f"Cannot load Depth Anything V2 from {folder!r} ({exc}); get {DA_SOURCE}.") from exc
        self.net.to(torch.device(device or "cpu"))
        config = self.net.config
        self.network_metric = getattr(config, "depth_estimation_type", "relative") == "metric"
        self.max_depth = float(getattr(config, "max_depth", 0) or 0)
        # metric depth from a monocular network is good to tens of percent, not to the centimetre; relative
        # depth is put in metres from the ground (plane.metres_from_ground) so the scale can be bounded too
        self.metric = True
        self.scale_range = (0.5, 2.0) if self.network_metric else GROUND_SCALED_RANGE
        self.input_px, self.n_yaw, self.crop_fov_deg = input_px, n_yaw, crop_fov_deg

    def __call__(self, ground, *, truth_path=None) -> np.ndarray:
        """Range (H, W) float32 metres in ``ground.image``'s pixels, NaN = sky / unknown."""
        rng = self._range(ground)
        return rng if self.network_metric else metres_from_ground(rng, ground.camera, self.camera_height_m)

    def _range(self, ground) -> np.ndarray:
        """The network's range (H, W) float32 (metres, or relative units), NaN = sky / unknown."""
        if ground.camera.kind == "pano":
            return self._panorama(ground.image, ground.camera).numpy().astype(np.float32)
        h, w = ground.image.shape[:2]
        # the network sees the scene with square pixels, as it was trained (a photo stretched to a model's
        # input, KITTI's 1242×375 -> 1232×364, is un-stretched), and its output is resized to the image
        z, far = self._infer(ground.image, self._pinhole_size(h, h * square_pixel_aspect((h, w), ground.camera)))
        z = torch.where(z > far, torch.nan, z)
        v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                              indexing="ij")
        forward = ground.camera.pixel_to_ray(torch.stack([u, v], -1))[..., 1]  # unit rays: range = z / forward
        return (z.double() / forward).numpy().astype(np.float32)

    # -- network ------------------------------------------------------------------------------------------
    def _pinhole_size(self, h: float, w: float) -> Tuple[int, int]:
        """Network input (h, w) for a scene of h × w square pixels: short side input_px, aspect kept, both
        multiples of 14."""
        s = self.input_px / min(h, w)
        return max(14, int(round(h * s / 14)) * 14), max(14, int(round(w * s / 14)) * 14)

    @torch.no_grad()
    def _infer(self, image: np.ndarray, size: Tuple[int, int]) -> Tuple[torch.Tensor, float]:
        """uint8 (H, W, 3) -> (z-depth (H, W) float32 in the image's pixels, far limit in the same units).

        Metric: metres, its sky value already NaN, far = inf. Relative: 1 / prediction, and depths beyond
        ``far`` (predictions below SKY_FRACTION of the 99th percentile) are sky; the caller applies it, because
        a crop that sees only sky has no near range of its own to judge by.
        The image is resized to ``size`` (h, w) with PIL bicubic as Depth Anything's preprocessor does, and the
        prediction resized back bilinearly.
        """
        from PIL import Image

        H, W = image.shape[:2]
        x = np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BICUBIC), dtype=np.float32) / 255.0
        x = (torch.from_numpy(x) - torch.tensor(MEAN)) / torch.tensor(STD)
        device = next(self.net.parameters()).device
        pred = self.net(pixel_values=x.permute(2, 0, 1)[None].to(device)).predicted_depth  # (1, h, w)
        pred = F.interpolate(pred[:, None].float().cpu(), size=(H, W), mode="bilinear", align_corners=False)[0, 0]
        if self.network_metric:
            sky = (pred <= 0) | ((pred >= SKY_METRIC * self.max_depth) if self.max_depth > 0 else False)
            return torch.where(sky, torch.nan, pred), math.inf
        far = 1.0 / (SKY_FRACTION * float(torch.quantile(pred.flatten(), 0.99).clamp_min(1e-12)))
        return torch.where(pred > 0, 1.0 / pred, torch.nan), far

    # -- panoramas ----------------------------------------------------------------------------------------
    def crops(self) -> List[Tuple[float, float]]:
        """(yaw, pitch) degrees of the crops: n_yaw around the horizon starting forward, then down and up."""
        return [(360.0 * k / self.n_yaw, 0.0) for k in range(self.n_yaw)] + [(0.0, -90.0), (0.0, 90.0)]

    def _panorama(self, image: np.ndarray, camera) -> torch.Tensor:
        """Merged range (H, W) float64 of an equirectangular image, NaN where no crop saw depth."""
        H, W = image.shape[:2]
        v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64),
                              indexing="ij")
        rays = camera.pixel_to_ray(torch.stack([u, v], -1)).double()  # (H, W, 3) unit, x right y fwd z up
        pano = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].double()
        S = self.input_px
        f = (S / 2.0) / math.tan(math.radians(self.crop_fov_deg) / 2.0)
        acc = torch.zeros(H, W, dtype=torch.float64)
        wsum = torch.zeros(H, W, dtype=torch.float64)
        far = None  # sky limit of the first (horizon) crop, in the merged scale
        for yaw, pitch in self.crops():
            basis = crop_basis(yaw, pitch)                                  # (3, 3) columns right, fwd, up
            crop = render_crop(pano, camera, basis, S, f)
            z, crop_far = self._infer(crop, (S, S))                        # (S, S) z-depth along the crop axis
            z = z.double()
            local = rays @ basis                                            # (H, W, 3) in crop axes
            fwd = local[..., 1]
            ahead = fwd > 1e-6
            safe = torch.where(ahead, fwd, torch.ones_like(fwd))
            c = (S - 1) / 2.0
            uv = torch.stack([c + f * local[..., 0] / safe, c - f * local[..., 2] / safe], -1)
            uv = torch.where(ahead[..., None], uv, torch.full_like(uv, -10.0))  # behind: outside, hence NaN
            rng = sample_depth_at(z[None], uv.reshape(1, -1, 2), mode="bilinear")[0].reshape(H, W) / safe
            if not self.network_metric:
                both = torch.isfinite(rng) & (wsum > 0)
                if far is not None and int(both.sum()) < MIN_OVERLAP_PX:
                    continue  # nothing to tie this crop's unknown scale to (e.g. an all-sky up view)
                if far is not None:  # scale this crop to what is merged (one unknown scale per crop)
                    rng = rng * torch.median(acc[both] / wsum[both] / rng[both])
                far = crop_far if far is None else far
                rng = torch.where(rng > far, torch.nan, rng)
            seen = torch.isfinite(rng)
            weight = torch.where(seen, fwd.clamp_min(0) ** WEIGHT_POWER, torch.zeros_like(fwd))
            acc += torch.where(seen, weight * rng, torch.zeros_like(rng))
            wsum += weight
        return torch.where(wsum > 0, acc / wsum.clamp_min(1e-300), torch.full_like(acc, float("nan")))


def crop_basis(yaw_deg: float, pitch_deg: float) -> torch.Tensor:
    """(3, 3) float64 whose columns are a crop's right, forward and up axes in the panorama camera frame.

    yaw: clockwise from the panorama's forward (centre column); pitch: up positive. Roll is zero, so the crop's
    right axis stays horizontal.
    """
    a, p = math.radians(yaw_deg), math.radians(pitch_deg)
    right = [math.cos(a), -math.sin(a), 0.0]
    forward = [math.sin(a) * math.cos(p), math.cos(a) * math.cos(p), math.sin(p)]
    up = [-math.sin(a) * math.sin(p), -math.cos(a) * math.sin(p), math.cos(p)]
    return torch.tensor([right, forward, up], dtype=torch.float64).T


def render_crop(pano: torch.Tensor, camera, basis: torch.Tensor, size: int, focal: float) -> np.ndarray:
    """Perspective view (size, size, 3) uint8 of pano (1, 3, H, W) float64 [0, 255] along ``basis``.

    Crop pixel (row i, col j), centres at integers, looks along right·(j - c)/f + forward - up·(i - c)/f with
    c = (size - 1)/2. Bilinear sampling, wrapping around the panorama's left/right seam.
    """
    c = (size - 1) / 2.0
    i, j = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64),
                          indexing="ij")
    local = torch.stack([(j - c) / focal, torch.ones_like(i), -(i - c) / focal], -1)
    uv, _ = camera.ray_to_pixel(local @ basis.T)
    H, W = pano.shape[-2:]
    wrapped = torch.cat([pano[..., -1:], pano, pano[..., :1]], -1)  # one column each side for the seam
    grid = torch.stack([(uv[..., 0] + 1.5) / (W + 2) * 2 - 1, (uv[..., 1] + 0.5) / H * 2 - 1], -1)
    out = F.grid_sample(wrapped, grid[None], mode="bilinear", padding_mode="border", align_corners=False)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
