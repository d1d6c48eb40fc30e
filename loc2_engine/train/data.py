"""Training data: an in-memory cache of a `loc2 synth` dataset and random batches drawn from it.

Building the cache reads each manifest row once (docs/manifest.md: photo, aerial raster, camera, truth, depth):

* the photo, EXIF-oriented and resized to the model's ground input (`GroundImage.load(...).resized`, the
  same resize as at inference), as uint8 (3, H, W);
* its truth range (`depth` .npy) resampled (nearest) to the same size, float16 (H, W), NaN = sky/invalid;
* an aerial crop **centred on the true position**, north-up in that point's local frame, larger than the
  model's window by ``2 * max_offset_px`` so that random windows are plain crops (uint8 (3, Hc, Wc), and a
  validity mask);
* the true heading, the pinhole intrinsics at the input size with the lens distortion a synthetic photo was
  rendered through (manifest extras ``lens_k1`` ... ``lens_p2``, `synth.lens`; zeros for a perfect pinhole),
  and the town (for the validation split).

A batch (`draw_batch`) picks one camera kind, B photos, a window offset ≤ ``max_offset_m`` from the truth
(uniform over the disk, whole aerial pixels) and, for panoramas, a random roll of the columns (unknown
orientation). The ground-truth pose of each sample follows exactly from the crop and the roll:

    t_gt = camera position in the window's local frame = ((m - c0)·gsd, (r0 - m)·gsd) + truth_offset
           for a window whose top-left pixel is (r0, c0) in a crop with margin m (truth_offset: where the
           truth lies from the crop's centre; zero here, sub-pixel for the crops of a training pack);
    heading_gt = heading - 360·k / W after np.roll by k columns (the centre column then shows what
           column W/2 - k showed).
"""

from __future__ import annotations

import csv
import math
import os
from contextlib import nullcontext
from dataclasses import dataclass, field, fields, replace
from multiprocessing import Pool
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from ..cameras import PinholeCamera
from ..errors import Loc2Error
from ..lifting import lift_coefficients
from ..models.base import grid_centres_uv
from ..solver import rotation_from_heading


#: columns of `KindCache.intrinsics`: fx, fy, cx, cy, then the lens's k1, k2, p1, p2
INTRINSICS = 8
LENS_COLUMNS = ("lens_k1", "lens_k2", "lens_p1", "lens_p2")


@dataclass
class KindCache:
    """All photos of one camera kind. N photos; (H, W) ground input; Hc = Wc aerial crop side."""

    kind: str
    ground: torch.Tensor        # (N, 3, H, W) uint8
    depth: torch.Tensor         # (N, H, W) float16, truth range in metres, NaN invalid
    heading: torch.Tensor       # (N,) float64, true heading, degrees clockwise from true north
    intrinsics: torch.Tensor    # (N, 8) float32 fx, fy, cx, cy at the input size, lens k1, k2, p1, p2
                                # (`synth.lens`; zeros: a perfect pinhole); all zeros for panoramas
    aerial: torch.Tensor        # (N, 3, Hc, Wc) uint8, centred on the truth, north-up
    aerial_valid: torch.Tensor  # (N, Hc, Wc) bool
    town: List[str] = field(default_factory=list)
    photo: List[str] = field(default_factory=list)
    # (N, 2) float32 metres, east/north of the truth from the aerial crop's centre: zero for crops centred on
    # the truth (build_cache), up to half a pixel for crops cut on a mosaic's pixel grid (pack.read_pack)
    truth_offset: Optional[torch.Tensor] = None

    def __post_init__(self):
        if self.truth_offset is None:
            self.truth_offset = torch.zeros(len(self.ground), 2)
        if self.intrinsics.shape[-1] < INTRINSICS:  # caches and packs made before lenses: perfect pinholes
            self.intrinsics = torch.nn.functional.pad(self.intrinsics, (0, INTRINSICS - self.intrinsics.shape[-1]))

    def __len__(self) -> int:
        return self.ground.shape[0]

    def subset(self, idx) -> "KindCache":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return KindCache(self.kind, self.ground[idx], self.depth[idx], self.heading[idx], self.intrinsics[idx],
                         self.aerial[idx], self.aerial_valid[idx], [self.town[i] for i in idx.tolist()],
                         [self.photo[i] for i in idx.tolist()], self.truth_offset[idx])

    @staticmethod
    def concat(parts: Sequence["KindCache"]) -> "KindCache":
        """One cache holding the photos of ``parts`` (same kind and sizes) in order."""
        if len(parts) == 1:
            return parts[0]
        cat = {k: torch.cat([getattr(p, k) for p in parts]) for k in
               ("ground", "depth", "heading", "intrinsics", "aerial", "aerial_valid", "truth_offset")}
        return KindCache(parts[0].kind, **cat, town=[t for p in parts for t in p.town],
                         photo=[f for p in parts for f in p.photo])

    def state(self) -> Dict:
        """A dict of tensors and lists (for torch.save / torch.load(weights_only=True))."""
        return {k: getattr(self, k) for k in ("kind", "ground", "depth", "heading", "intrinsics", "aerial",
                                               "aerial_valid", "town", "photo", "truth_offset")}


@dataclass
class Batch:
    """One training batch (all photos of one camera kind). B samples, Ng tokens, window Hw × Ww."""

    kind: str
    ground: torch.Tensor        # (B, 3, H, W) float [0, 1]
    depth: torch.Tensor         # (B, H, W) float32 truth range (m), NaN invalid
    token_depth: torch.Tensor   # (B, Ng) float32 truth range at the token centres, NaN invalid
    lift_coef: torch.Tensor     # (B, Ng, 2): xy_bev = token_depth * lift_coef
    aerial: torch.Tensor        # (B, 3, Hw, Ww) float [0, 1]
    aerial_valid: torch.Tensor  # (B, Hw, Ww) bool
    R_gt: torch.Tensor          # (B, 2, 2) xy_local = R_gt xy_bev + t_gt
    t_gt: torch.Tensor          # (B, 2) metres, camera position in the window's local frame
    heading_gt: torch.Tensor    # (B,) degrees

    def to(self, device) -> "Batch":
        """The same batch with every tensor on ``device``."""
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)
                                if isinstance(getattr(self, f.name), torch.Tensor)})


def _rows(dataset_dir: str) -> List[Dict[str, str]]:
    path = os.path.join(dataset_dir, "manifest.csv")
    if not os.path.isfile(path):
        raise Loc2Error(f"No manifest.csv in {dataset_dir}; generate a dataset with `loc2 synth DIR --preset train`.")
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def resample_depth(depth: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Nearest resample of a range map (Hf, Wf) to size (H, W): input pixel i takes full-res pixel
    floor((i + 0.5)·Hf/H). Non-finite and <= 0 become NaN. Returns float32."""
    H, W = size
    Hf, Wf = depth.shape
    rows = np.minimum(((np.arange(H) + 0.5) * Hf / H).astype(np.int64), Hf - 1)
    cols = np.minimum(((np.arange(W) + 0.5) * Wf / W).astype(np.int64), Wf - 1)
    out = depth[rows][:, cols].astype(np.float32)
    out[~(np.isfinite(out) & (out > 0))] = np.nan
    return out


def load_ground_row(dataset_dir: str, row: Dict[str, str], ground_sizes: Dict[str, Tuple[int, int]]):
    """The ground half of a cache row: (kind, dict with ground uint8 (3, H, W), depth float16 (H, W),
    heading, intrinsics [fx, fy, cx, cy, k1, k2, p1, p2] at the input size (zeros for panoramas)). Raises
    Loc2Error."""
    from ..ground import GroundImage

    hfov = float(row["hfov_deg"]) if row.get("hfov_deg") else None
    ground = GroundImage.load(os.path.join(dataset_dir, row["photo"]), camera=row["camera"], hfov_deg=hfov)
    kind = ground.camera.kind
    H, W = ground_sizes[kind]
    depth = resample_depth(np.load(os.path.join(dataset_dir, row["depth"])), (H, W))
    small = ground.resized(W, H)
    cam = small.camera
    return kind, {
        "ground": np.ascontiguousarray(small.image.transpose(2, 0, 1)),
        "depth": depth.astype(np.float16),
        "heading": float(row["true_heading_deg"]),
        "intrinsics": ([cam.fx, cam.fy, cam.cx, cam.cy] + [float(row.get(k) or 0.0) for k in LENS_COLUMNS]
                       if kind == "pinhole" else [0.0] * INTRINSICS),
    }


def town_name(dataset_dir: str, row: Dict[str, str]) -> str:
    """The town a row belongs to, unique across pooled datasets (the unit of the validation split)."""
    return f"{dataset_dir}:{row.get('town') or row['aerial']}"


def _load_row(job):
    """Worker: one manifest row -> (kind, dict of arrays) or (None, message) when it cannot be loaded."""
    from ..aerial import AerialWindow

    dataset_dir, row, ground_sizes, crop_px, gsd = job
    try:
        kind, item = load_ground_row(dataset_dir, row, ground_sizes)
        window = AerialWindow.from_raster(os.path.join(dataset_dir, row["aerial"]),
                                          (float(row["true_x"]), float(row["true_y"])), row["crs"],
                                          crop_px * gsd, gsd)
    except Loc2Error as exc:
        return None, f"skipping {row['photo']}: {exc}"
    return kind, {
        **item,
        "aerial": np.ascontiguousarray(window.image.transpose(2, 0, 1)),
        "aerial_valid": np.ascontiguousarray(window.valid),
        "town": town_name(dataset_dir, row),
        "photo": os.path.join(dataset_dir, row["photo"]),
    }


def usable_rows(dataset_dir: str) -> List[Dict[str, str]]:
    """The manifest rows that can supervise training: with truth position, heading and depth."""
    return [row for row in _rows(dataset_dir)
            if row.get("true_x") and row.get("true_heading_deg") and row.get("depth")]


def crop_side_px(window_px: int, gsd: float, max_offset_m: float) -> int:
    """Side (px) of the aerial crop kept around each photo: the window plus the largest offset on each side."""
    return window_px + 2 * int(math.ceil(max_offset_m / gsd))


def build_cache(dataset_dirs: Sequence[str], ground_sizes: Dict[str, Tuple[int, int]], window_px: int, gsd: float,
                max_offset_m: float, workers: int = 1, progress: bool = True) -> Dict[str, KindCache]:
    """Read every row (with truth position, heading and depth) of each ``DIR/manifest.csv`` into per-kind caches.

    ground_sizes: {"pano": (H, W), "pinhole": (H, W)}; window_px, gsd: the model's aerial window;
    max_offset_m: largest distance of the truth from the window centre (crop margin); workers: processes.
    Rows that fail to load (Loc2Error) are skipped with a message. Towns are named "DIR:town".
    """
    crop_px = crop_side_px(window_px, gsd, max_offset_m)
    jobs = [(d, row, ground_sizes, crop_px, gsd) for d in dataset_dirs for row in usable_rows(d)]
    per_kind: Dict[str, Dict[str, list]] = {}
    with Pool(workers) if workers > 1 else nullcontext() as pool:
        results = pool.imap(_load_row, jobs, chunksize=8) if pool else map(_load_row, jobs)
        for kind, item in tqdm(results, total=len(jobs), desc="caching", disable=not progress, unit="photo"):
            if kind is None:
                tqdm.write(item)
                continue
            d = per_kind.setdefault(kind, {k: [] for k in item})
            for k, v in item.items():
                d[k].append(v)
    caches = {}
    for kind, d in per_kind.items():
        caches[kind] = KindCache(kind, torch.from_numpy(np.stack(d["ground"])),
                                 torch.from_numpy(np.stack(d["depth"])),
                                 torch.tensor(d["heading"], dtype=torch.float64),
                                 torch.tensor(d["intrinsics"], dtype=torch.float32),
                                 torch.from_numpy(np.stack(d["aerial"])), torch.from_numpy(np.stack(d["aerial_valid"])),
                                 d["town"], d["photo"])
    if not caches:
        raise Loc2Error(f"No usable rows (with truth position, heading and depth) in {', '.join(dataset_dirs)}.")
    return caches


def split_by_town(caches: Dict[str, KindCache], val_fraction: float, seed: int
                  ) -> Tuple[Dict[str, KindCache], Dict[str, KindCache]]:
    """Hold out whole towns (about ``val_fraction`` of them, at least one when there are several) so that
    validation measures generalisation to unseen places; with a single town, hold out photos instead."""
    towns = sorted({t for c in caches.values() for t in c.town})
    g = torch.Generator().manual_seed(seed)
    train, val = {}, {}
    if len(towns) > 1:
        n_val = max(1, int(round(val_fraction * len(towns))))
        held = {towns[i] for i in torch.randperm(len(towns), generator=g)[:n_val].tolist()}
        for kind, c in caches.items():
            is_val = [t in held for t in c.town]
            train[kind] = c.subset([i for i, v in enumerate(is_val) if not v])
            val[kind] = c.subset([i for i, v in enumerate(is_val) if v])
    else:
        for kind, c in caches.items():
            perm = torch.randperm(len(c), generator=g).tolist()
            n_val = max(1, int(round(val_fraction * len(c)))) if len(c) > 1 else 0
            val[kind], train[kind] = c.subset(perm[:n_val]), c.subset(perm[n_val:])
    return ({k: c for k, c in train.items() if len(c)}, {k: c for k, c in val.items() if len(c)})


def draw_batch(cache: KindCache, idx: torch.Tensor, window_px: int, gsd: float, token_stride: int,
               max_offset_m: float, roll: bool, generator: torch.Generator, mirror: bool = False,
               turn: bool = False) -> Batch:
    """Assemble a Batch from photos ``idx`` (B,) of ``cache``: random window offsets (uniform over the disk
    of radius max_offset_m, whole pixels), when ``roll`` and the kind is pano, random column rolls, when
    ``mirror``, half of the samples mirrored east–west (`mirror_world`), and when ``turn``, each sample's
    world turned by a random number of quarter turns (`turn_world`)."""
    B = idx.numel()
    Hc = cache.aerial.shape[-1]
    margin = (Hc - window_px) // 2
    r_max = min(max_offset_m / gsd, margin)
    radius = r_max * torch.sqrt(torch.rand(B, generator=generator, dtype=torch.float64))
    angle = 2 * math.pi * torch.rand(B, generator=generator, dtype=torch.float64)
    dcol = torch.round(radius * torch.cos(angle)).long().clamp(-margin, margin)
    drow = torch.round(radius * torch.sin(angle)).long().clamp(-margin, margin)
    r0, c0 = margin + drow, margin + dcol

    ground = cache.ground[idx].float() / 255.0
    depth = cache.depth[idx].float()
    H, W = ground.shape[-2:]
    heading = cache.heading[idx].clone()
    if roll and cache.kind == "pano":
        shifts = torch.randint(0, W, (B,), generator=generator)
        ground = torch.stack([torch.roll(ground[b], int(shifts[b]), -1) for b in range(B)])
        depth = torch.stack([torch.roll(depth[b], int(shifts[b]), -1) for b in range(B)])
        heading = heading - 360.0 * shifts.double() / W
    heading = torch.remainder(heading, 360.0)

    aerial = torch.stack([cache.aerial[i, :, r:r + window_px, c:c + window_px]
                          for i, r, c in zip(idx.tolist(), r0.tolist(), c0.tolist())]).float() / 255.0
    aerial_valid = torch.stack([cache.aerial_valid[i, r:r + window_px, c:c + window_px]
                                for i, r, c in zip(idx.tolist(), r0.tolist(), c0.tolist())])
    t_gt = (torch.stack([(margin - c0).double() * gsd, (r0 - margin).double() * gsd], -1)
            + cache.truth_offset[idx].double()).float()

    hg, wg = H // token_stride, W // token_stride
    uv = grid_centres_uv(hg, wg, token_stride)
    # nearest input pixel of each token centre (centres at integers: floor(x + 0.5))
    cols = torch.floor(uv[:, 0] + 0.5).long()
    rows = torch.floor(uv[:, 1] + 0.5).long()
    token_depth = depth[:, rows, cols]
    intrinsics = cache.intrinsics[idx]
    if mirror:
        flip = torch.rand(B, generator=generator) < 0.5
        ground, depth, token_depth, aerial, aerial_valid, t_gt, heading, intrinsics = mirror_world(
            flip, ground, depth, token_depth.view(B, hg, wg), aerial, aerial_valid, t_gt, heading, intrinsics,
            cache.kind)
        token_depth = token_depth.reshape(B, hg * wg)
    if turn:
        quarters = torch.randint(0, 4, (B,), generator=generator)
        aerial, aerial_valid, t_gt, heading = turn_world(quarters, aerial, aerial_valid, t_gt, heading)
    lift_coef = token_lift_coefficients(cache.kind, intrinsics, (H, W), uv)
    return Batch(cache.kind, ground, depth, token_depth, lift_coef, aerial, aerial_valid,
                 rotation_from_heading(heading).float(), t_gt, heading.float())


def mirror_world(flip: torch.Tensor, ground: torch.Tensor, depth: torch.Tensor, token_depth: torch.Tensor,
                 aerial: torch.Tensor, aerial_valid: torch.Tensor, t_gt: torch.Tensor, heading: torch.Tensor,
                 intrinsics: torch.Tensor, kind: str):
    """The samples where ``flip`` (B,) bool is set, seen in the world mirrored about the window's north–south
    axis: photo (B, 3, H, W), range (B, H, W) and token range (B, hg, wg) left–right, aerial window
    (B, 3, Hw, Ww) and validity east–west, camera x (t_gt (B, 2) metres) and heading (B,) degrees negated,
    pinhole cx (intrinsics (B, 8), pixel-index units) moved to W - 1 - cx and the lens's p2 negated (its
    decentring along x). Exact for both cameras (panorama
    azimuth (u + 0.5)/W·360 - 180, the token centres and aerial x = (col + 0.5 - W/2)·gsd are odd under
    u -> W - 1 - u), and a mirrored town is as plausible as the town: it doubles the layouts the matcher
    sees. The token range is flipped as tokens, not re-read from the flipped range, because a pack holds
    pinhole range only at the token columns. Returns the eight inputs, mirrored where ``flip``."""
    f = flip.view(-1, 1, 1, 1)
    ground = torch.where(f, ground.flip(-1), ground)
    aerial = torch.where(f, aerial.flip(-1), aerial)
    depth = torch.where(f[:, 0], depth.flip(-1), depth)
    token_depth = torch.where(f[:, 0], token_depth.flip(-1), token_depth)
    aerial_valid = torch.where(f[:, 0], aerial_valid.flip(-1), aerial_valid)
    t_gt = torch.where(flip[:, None], t_gt * t_gt.new_tensor([-1.0, 1.0]), t_gt)
    heading = torch.where(flip, torch.remainder(-heading, 360.0), heading)
    if kind != "pano":
        W = ground.shape[-1]
        intrinsics = intrinsics.clone()
        intrinsics[flip, 2] = W - 1 - intrinsics[flip, 2]
        intrinsics[flip, 7] = -intrinsics[flip, 7]
    return ground, depth, token_depth, aerial, aerial_valid, t_gt, heading, intrinsics


def turn_world(quarters: torch.Tensor, aerial: torch.Tensor, aerial_valid: torch.Tensor, t_gt: torch.Tensor,
               heading: torch.Tensor):
    """Each sample's world turned counter-clockwise by ``quarters`` (B,) long quarter turns about the window's
    centre: aerial window (B, 3, Hw, Hw, square) and validity (B, Hw, Hw) turned, camera position t_gt (B, 2)
    metres turned, (x, y) -> (-y, x) per quarter, heading (B,) degrees less 90 per quarter. The photo is
    unchanged: it does not know where north is. The sun turns with the world, so the shadows in the window
    fall in any direction, as they do on real sites at other latitudes and times (the synthetic sun is
    always in the southern half of the sky). Exact: a square window's cell centres map onto each other.
    Returns the four inputs, turned."""
    k = quarters.view(-1)
    aerial = torch.stack([torch.rot90(a, int(q), dims=(-2, -1)) for a, q in zip(aerial, k)])
    aerial_valid = torch.stack([torch.rot90(v, int(q), dims=(-2, -1)) for v, q in zip(aerial_valid, k)])
    turn_deg = -90.0 * k.to(torch.float64)  # counter-clockwise: a negative heading turn
    t_gt = (rotation_from_heading(turn_deg) @ t_gt.double()[..., None])[..., 0].to(t_gt.dtype)
    heading = torch.remainder(heading + turn_deg.to(heading.dtype), 360.0)
    return aerial, aerial_valid, t_gt, heading


def token_lift_coefficients(kind: str, intrinsics: torch.Tensor, size: Tuple[int, int], uv: torch.Tensor
                            ) -> torch.Tensor:
    """(B, Ng, 2) range-lifting coefficients of tokens uv (Ng, 2) for B cameras of ``kind`` at size (H, W);
    intrinsics (B, 8) fx, fy, cx, cy, lens k1, k2, p1, p2 ((B, 4): no lens; ignored for panoramas). Through a
    lens, a token lifts along the ray the lens draws at it: the nominal pinhole's at its
    `synth.lens.Lens.nominal_pixels`."""
    from ..cameras import PanoramaCamera
    from ..synth.lens import Lens

    H, W = size
    if kind == "pano":
        coef = lift_coefficients(PanoramaCamera(W, H), uv, "range")
        return coef[None].expand(intrinsics.shape[0], -1, -1)
    coefs = []
    for k in intrinsics.tolist():
        camera = PinholeCamera(W, H, *k[:4])
        lens = Lens(*k[4:8]) if any(k[4:8]) else None
        at = uv if lens is None else torch.as_tensor(
            lens.nominal_pixels(uv.numpy(), camera.cx, camera.cy, math.hypot(W, H) / 2.0), dtype=uv.dtype)
        coefs.append(lift_coefficients(camera, at, "range"))
    return torch.stack(coefs)
