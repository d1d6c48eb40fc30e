"""Training packs: a `loc2 synth` dataset squeezed into one small file that trains without the geo stack.

A GPU machine for training may have torch but no rasterio or pyproj, and takes a few tens of MB of input,
while the training cache of data/train is about 1 GB (an aerial crop per photo). A pack holds instead:

* one **mosaic per town**: the town's orthophoto read once as a north-up `AerialWindow` at the model's gsd,
  centred on the raster and wide enough that every photo's crop fits (JPEG, validity mask bit-packed);
* each photo's **truth position in its mosaic's local frame** (metres), heading and pinhole intrinsics;
* each photo resized to the model's ground input (JPEG);
* the truth range **only where the matcher reads it**: the rows of the ground token centres (all columns for
  panoramas, which are rolled; the token columns for pinholes), log-quantised to uint16, deflated. The mono depth
  network needs whole depth maps, so a pack trains the matcher alone (`TrainConf.train_mono = False`).

`read_pack` rebuilds `KindCache`s: each aerial crop is cut from its mosaic on whole pixels around the truth,
and the remaining sub-pixel offset of the truth goes into ``truth_offset``, so the pose supervision stays
exact without a second resampling. Local frames of points a town apart differ by ~0.002° of rotation,
so a crop of the town's mosaic stands for a window centred on the photo.
"""

from __future__ import annotations

import io
import math
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from multiprocessing import Pool
from typing import Dict, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..errors import Loc2Error
from ..models.base import grid_centres_uv
from .data import KindCache, crop_side_px, load_ground_row, town_name, usable_rows

FORMAT = "loc2-train-pack/1"
LOG_DEPTH_RANGE = (math.log(0.05), math.log(5000.0))  # metres; uint16 code 0 = no depth


def pack_conf(ground_sizes: Dict[str, Tuple[int, int]], window_px: int, gsd: float, token_stride: int,
              max_offset_m: float) -> Dict:
    """The model and data settings a pack is made for (checked when it is read)."""
    return {"sizes": {k: list(v) for k, v in sorted(ground_sizes.items())}, "window_px": int(window_px),
            "gsd": float(gsd), "token_stride": int(token_stride), "max_offset_m": float(max_offset_m)}


def token_lines(kind: str, size: Tuple[int, int], stride: int) -> Tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the input pixels the matcher reads depth at: token-centre rows, and token-centre
    columns for pinholes or every column for panoramas (rolled by any number of columns in training)."""
    H, W = size
    uv = grid_centres_uv(H // stride, W // stride, stride)
    nearest = lambda x: np.unique(np.floor(x.numpy() + 0.5).astype(np.int64))  # as draw_batch reads them
    return nearest(uv[:, 1]), (np.arange(W) if kind == "pano" else nearest(uv[:, 0]))


def encode_depth(depth: np.ndarray) -> np.ndarray:
    """Range (..., ) metres, NaN invalid -> uint16 codes: log-uniform over LOG_DEPTH_RANGE, 0 = invalid."""
    lo, hi = LOG_DEPTH_RANGE
    ok = np.isfinite(depth) & (depth > 0)
    q = (np.log(np.where(ok, depth, 1.0)) - lo) / (hi - lo) * 65534.0 + 1.0
    return np.where(ok, np.clip(np.round(q), 1, 65535), 0).astype(np.uint16)


def decode_depth(codes: np.ndarray) -> np.ndarray:
    """uint16 codes -> float32 range (m), NaN where 0. Relative error ≤ 0.7e-4."""
    lo, hi = LOG_DEPTH_RANGE
    d = np.exp(lo + (codes.astype(np.float64) - 1.0) / 65534.0 * (hi - lo)).astype(np.float32)
    return np.where(codes > 0, d, np.nan).astype(np.float32)


def _crop_px(conf: Dict) -> int:
    return crop_side_px(conf["window_px"], conf["gsd"], conf["max_offset_m"])


def _deflate(array: np.ndarray) -> torch.Tensor:
    return torch.frombuffer(bytearray(zlib.compress(np.ascontiguousarray(array).tobytes(), 6)), dtype=torch.uint8)


def _inflate(data: torch.Tensor, dtype, shape) -> np.ndarray:
    return np.frombuffer(zlib.decompress(data.numpy().tobytes()), dtype=dtype).reshape(shape)


def _jpeg(image_hwc: np.ndarray, quality: int) -> torch.Tensor:
    buf = io.BytesIO()
    Image.fromarray(image_hwc).save(buf, "JPEG", quality=quality)
    return torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)


def _unjpeg(data: torch.Tensor) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data.numpy().tobytes())).convert("RGB"))


def _load_photo(job):
    """Worker: (kind, record) for one manifest row, or (None, message)."""
    dataset_dir, row, conf, quality = job
    try:
        kind, item = load_ground_row(dataset_dir, row, {k: tuple(v) for k, v in conf["sizes"].items()})
    except Loc2Error as exc:
        return None, f"skipping {row['photo']}: {exc}"
    rows, cols = token_lines(kind, item["ground"].shape[1:], conf["token_stride"])
    return kind, {"ground": _jpeg(item["ground"].transpose(1, 2, 0), quality),
                  "depth": encode_depth(item["depth"].astype(np.float32)[rows][:, cols]),
                  "heading": item["heading"], "intrinsics": item["intrinsics"]}


def _mosaic(job):
    """Worker: a town's mosaic (AerialWindow) covering its raster plus half a crop on every side."""
    from ..aerial import AerialWindow, raster_info
    from ..georef import LocalFrame

    path, conf = job
    crs, (x0, y0, x1, y1) = raster_info(path)
    centre = ((x0 + x1) / 2, (y0 + y1) / 2)
    corners = LocalFrame(crs, centre).to_local([[x0, y0], [x0, y1], [x1, y0], [x1, y1]])
    side_px = int(math.ceil(2 * np.abs(corners).max() / conf["gsd"])) + _crop_px(conf) + 2
    return AerialWindow.from_raster(path, centre, crs, side_px * conf["gsd"], conf["gsd"])


def write_pack(dataset_dirs: Sequence[str], path: str, conf: Dict, quality: int = 90, workers: int = 1,
               progress: bool = True) -> Dict[str, int]:
    """Pack the usable rows of each ``DIR/manifest.csv`` (see the module docstring) into ``path``
    (written atomically). conf: `pack_conf`. Returns the number of photos per camera kind."""
    from ..georef import transform_points

    jobs, towns = [], {}
    for d in dataset_dirs:
        for row in usable_rows(d):
            towns.setdefault(os.path.join(d, row["aerial"]), len(towns))
            jobs.append((d, row, conf, quality))
    with Pool(workers) if workers > 1 else nullcontext() as pool:
        imap = pool.imap if pool else map
        mosaics = list(tqdm(imap(_mosaic, [(p, conf) for p in towns]), total=len(towns), desc="mosaics",
                            disable=not progress))
        photos = list(tqdm(imap(_load_photo, jobs), total=len(jobs), desc="photos", disable=not progress,
                           unit="photo"))
    kinds: Dict[str, Dict[str, list]] = {}
    for (d, row, _, _), (kind, item) in zip(jobs, photos):
        if kind is None:
            tqdm.write(item)
            continue
        t = towns[os.path.join(d, row["aerial"])]
        frame = mosaics[t].frame
        xy = transform_points([[float(row["true_x"]), float(row["true_y"])]], row["crs"], frame.crs)
        k = kinds.setdefault(kind, {n: [] for n in ("ground", "depth", "heading", "intrinsics", "mosaic",
                                                    "truth_xy", "town", "photo")})
        for n in ("ground", "depth", "heading", "intrinsics"):
            k[n].append(item[n])
        k["mosaic"].append(t)
        k["truth_xy"].append(frame.to_local(xy)[0].tolist())
        k["town"].append(town_name(d, row))
        k["photo"].append(os.path.join(d, row["photo"]))
    if not kinds:
        raise Loc2Error(f"No usable rows (with truth position, heading and depth) in {', '.join(dataset_dirs)}.")
    pack = {"format": FORMAT, "conf": conf,
            "mosaic_jpeg": [_jpeg(m.image, quality) for m in mosaics],
            "mosaic_valid": [_deflate(np.packbits(m.valid)) for m in mosaics],
            "mosaic_px": [m.image.shape[0] for m in mosaics],
            "kinds": {kind: {"ground": k["ground"], "depth": _deflate(np.stack(k["depth"])),
                             "depth_shape": [len(k["depth"]), *k["depth"][0].shape],
                             "heading": torch.tensor(k["heading"], dtype=torch.float64),
                             "intrinsics": torch.tensor(k["intrinsics"], dtype=torch.float32),
                             "mosaic": torch.tensor(k["mosaic"], dtype=torch.long),
                             "truth_xy": torch.tensor(k["truth_xy"], dtype=torch.float64),
                             "town": k["town"], "photo": k["photo"]}
                      for kind, k in kinds.items()}}
    tmp = f"{path}.tmp"
    torch.save(pack, tmp)
    os.replace(tmp, path)
    return {kind: len(k["photo"]) for kind, k in kinds.items()}


def crop_mosaic(image: np.ndarray, valid: np.ndarray, gsd: float, xy: Sequence[float], side: int
                ) -> Tuple[np.ndarray, np.ndarray, Tuple[float, float]]:
    """The side × side crop of a mosaic (image (M, M, 3), valid (M, M), local frame at its centre) on whole
    pixels around the local point xy (m). Returns (crop (side, side, 3), valid (side, side), the point's
    east/north offset in metres from the crop's centre, each within half a pixel). Pixels beyond the mosaic
    are invalid."""
    M = image.shape[0]
    col, row = xy[0] / gsd + M / 2, M / 2 - xy[1] / gsd        # continuous pixel coordinates of xy
    c0, r0 = int(round(col - side / 2)), int(round(row - side / 2))
    out, ok = np.zeros((side, side, 3), np.uint8), np.zeros((side, side), bool)
    rs, cs = slice(max(r0, 0), min(r0 + side, M)), slice(max(c0, 0), min(c0 + side, M))
    dst = (slice(rs.start - r0, rs.stop - r0), slice(cs.start - c0, cs.stop - c0))
    if rs.stop > rs.start and cs.stop > cs.start:
        out[dst], ok[dst] = image[rs, cs], valid[rs, cs]
    return out, ok, ((col - (c0 + side / 2)) * gsd, ((r0 + side / 2) - row) * gsd)


def read_pack(path: str, conf: Dict, threads: int = 8) -> Dict[str, KindCache]:
    """The per-kind training caches of a pack. ``conf`` (`pack_conf` of the model being trained) must equal
    the pack's. Raises Loc2Error for another file format or other settings."""
    try:
        pack = torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same message
        raise Loc2Error(f"{path} is not a readable training pack: {exc}") from exc
    if not isinstance(pack, dict) or pack.get("format") != FORMAT:
        raise Loc2Error(f"{path} is not a training pack ({FORMAT}).")
    if pack["conf"] != conf:
        raise Loc2Error(f"{path} was packed for {pack['conf']}, but the model needs {conf}; pack it again.")
    side, gsd = _crop_px(conf), conf["gsd"]
    with ThreadPoolExecutor(threads) as pool:
        images = list(pool.map(_unjpeg, pack["mosaic_jpeg"]))
        valids = [np.unpackbits(_inflate(v, np.uint8, (-1,)), count=m * m).reshape(m, m).astype(bool)
                  for v, m in zip(pack["mosaic_valid"], pack["mosaic_px"])]
        caches = {}
        for kind, k in pack["kinds"].items():
            H, W = conf["sizes"][kind]
            ground = np.stack(list(pool.map(_unjpeg, k["ground"]))).transpose(0, 3, 1, 2)
            crops = list(pool.map(lambda i: crop_mosaic(images[int(k["mosaic"][i])], valids[int(k["mosaic"][i])],
                                                        gsd, k["truth_xy"][i].tolist(), side),
                                  range(len(k["photo"]))))
            rows, cols = token_lines(kind, (H, W), conf["token_stride"])
            depth = np.full((len(k["photo"]), H, W), np.nan, np.float16)
            depth[:, rows[:, None], cols[None, :]] = decode_depth(_inflate(k["depth"], np.uint16, k["depth_shape"]))
            caches[kind] = KindCache(kind, torch.from_numpy(np.ascontiguousarray(ground)), torch.from_numpy(depth),
                                     k["heading"], k["intrinsics"],
                                     torch.from_numpy(np.stack([c[0] for c in crops]).transpose(0, 3, 1, 2).copy()),
                                     torch.from_numpy(np.stack([c[1] for c in crops])),
                                     list(k["town"]), list(k["photo"]),
                                     torch.tensor([c[2] for c in crops], dtype=torch.float32))
    return caches


__all__ = ["FORMAT", "pack_conf", "write_pack", "read_pack", "crop_mosaic", "token_lines", "encode_depth",
           "decode_depth"]
