"""Matcher base class, the feature containers it hands around, and safe weight loading.

A matcher turns an aerial window and a ground photo into L2-normalised descriptors on two grids:

* aerial **cells** (h × w, row-major), each with its centre in the window's local frame (``xy_local``,
  metres, x east, y north, origin at the window centre);
* ground **tokens** (hg × wg, row-major), each with the pixel it stands for (``uv``, pixel-index units of the
  model's ground input: pixel centres at integers, as in `cameras`).

`encode_aerial` and `encode_ground` are separate so that a window's features are computed once and reused
for every photo that shares the window. `match` gives the matching probabilities P (B, Na, Ng).
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import nn

from .. import matching
from ..errors import ModelError


@dataclass
class AerialFeatures:
    """desc (B, C, h, w) L2-normalised; xy_local (h*w, 2) metres, cell centres in the window's local frame."""

    desc: torch.Tensor
    xy_local: torch.Tensor

    @property
    def flat(self) -> torch.Tensor:
        """(B, C, h*w) descriptors, row-major cells."""
        return self.desc.flatten(2)


@dataclass
class GroundFeatures:
    """desc (B, C, hg, wg) L2-normalised; uv (hg*wg, 2) token centres in ground-input pixels (centres at
    integers); input_size (H, W) of the ground input the tokens refer to."""

    desc: torch.Tensor
    uv: torch.Tensor
    input_size: Tuple[int, int]

    @property
    def flat(self) -> torch.Tensor:
        """(B, C, hg*wg) descriptors, row-major tokens."""
        return self.desc.flatten(2)


def grid_centres_uv(h: int, w: int, stride: int) -> torch.Tensor:
    """(h*w, 2) centres (u, v) of stride × stride blocks, pixel-index units (pixel centres at integers).

    Block (r, c) covers pixels [stride·c, stride·c + stride) so its centre is stride·c + (stride - 1)/2.
    """
    off = (stride - 1) / 2.0
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float32) * stride + off,
                          torch.arange(w, dtype=torch.float32) * stride + off, indexing="ij")
    return torch.stack([u.flatten(), v.flatten()], -1)


def cell_centres_local(h: int, w: int, stride: int, gsd: float) -> torch.Tensor:
    """(h*w, 2) xy_local (metres) of the cells of a window of (h·stride) × (w·stride) px at gsd m/px.

    The aerial pixel convention of docs/conventions.md (pixel (row, col) centre at
    x = (col + 0.5 - W/2)·gsd, y = (H/2 - row - 0.5)·gsd, as `AerialWindow.pixel_to_local`) applied at the
    fractional pixel of each cell centre.
    """
    uv = grid_centres_uv(h, w, stride)
    H, W = h * stride, w * stride
    x = (uv[:, 0] + 0.5 - W / 2.0) * gsd
    y = (H / 2.0 - uv[:, 1] - 0.5) * gsd
    return torch.stack([x, y], -1)


class Matcher(nn.Module):
    """Base class of the matcher architectures behind `loc2_engine.models.MODEL_REGISTRY`.

    Subclasses set the attributes below in ``__init__`` and implement `encode_aerial` / `encode_ground`;
    official models may override `ground_tokens` with their own token grids.

    ground_input_sizes: {"pano": (H, W), "pinhole": (H, W)} pixels the ground photo is resized to;
    token_stride: ground pixels per token along each axis;
    aerial_gsd: m/px of the aerial window; aerial_size_px: its side in pixels;
    tau: similarity temperature; dustbin: learnable 0-d scalar.

    What the network asks of the pipeline (class attributes; `inference_defaults` hands the pipeline's
    settings among them to `config.LocalizerConfig.resolved`, where the user leaves them unset):
    mirror_tta: average the matching probabilities with those of the east–west mirrored world (a test-time
        ensemble; off for the official models, as in the reference).
    aerial_quarters: average them over 1, 2 or 4 quarter turns of the aerial window (a test-time ensemble
        over the sun's direction); `build_from_file` sets 4 for weights trained on turned worlds.
    ray_depth_rel: relative depth error of RANSAC's last refit (`refine`); 0: the plain Procrustes.
    letterbox: whether a pinhole photo wider than the input is letterboxed (`letterbox_rows`) rather than
        stretched to fill it.
    default_depth: the depth provider used when the user names none.
    orientation: "unknown", or "known" for checkpoints that need a heading prior (`orientation`).
    max_depth_m, max_depth_kind: the depth clip the network was trained with ("range" or "z"), None: none.
    confidence_calibration: the stored calibration of the pose confidence (`confidence`), None: the default.

    A matcher may hold an *expert* per camera kind (`add_expert`, saved in its weight file under
    ``experts.<kind>.``): a network of the same geometry that the pipeline matches that kind's photos with
    (`for_kind`). The test-time ensembles, the confidence calibration and every other setting stay this
    network's.
    """

    ground_input_sizes: Dict[str, Tuple[int, int]]
    token_stride: int
    aerial_gsd: float
    aerial_size_px: int
    tau: float
    name: str = ""                  # what results record as the model; "": the weight file's or class's name
    mirror_tta: bool = False
    aerial_quarters: int = 1
    ray_depth_rel: float = 0.2
    letterbox: bool = True
    default_depth: str = "mono"
    orientation: str = "unknown"
    max_depth_m: Optional[float] = None
    max_depth_kind: str = "range"
    confidence_calibration: Optional[Dict[str, float]] = None

    def inference_defaults(self) -> Dict[str, object]:
        """The pipeline settings this network chooses where the user leaves them unset."""
        return {"mirror_tta": self.mirror_tta, "aerial_quarters": self.aerial_quarters,
                "ray_depth_rel": self.ray_depth_rel}

    @property
    def aerial_size_m(self) -> float:
        """Side of the aerial window in metres."""
        return self.aerial_size_px * self.aerial_gsd

    @property
    def ground_input_size(self) -> Tuple[int, int]:
        """(H, W) of a panorama input (see `ground_input_size_for` for either camera)."""
        return self.ground_input_sizes["pano"]

    def ground_input_size_for(self, camera_kind: str) -> Tuple[int, int]:
        """(H, W) the ground photo of a ``"pano"`` or ``"pinhole"`` camera is resized to."""
        if camera_kind not in self.ground_input_sizes:
            raise ValueError(f"camera kind must be one of {sorted(self.ground_input_sizes)}, got {camera_kind!r}")
        return self.ground_input_sizes[camera_kind]

    def encode_aerial(self, aerial: torch.Tensor) -> AerialFeatures:
        """aerial (B, 3, aerial_size_px, aerial_size_px) RGB in [0, 1] -> AerialFeatures."""
        raise NotImplementedError

    @property
    def expert_kinds(self) -> Tuple[str, ...]:
        """The camera kinds this matcher has an expert for (sorted)."""
        return tuple(sorted(self._modules["experts"])) if "experts" in self._modules else ()

    def for_kind(self, kind: str) -> "Matcher":
        """The network that matches photos of camera ``kind``: its expert (`add_expert`), else this one."""
        return self._modules["experts"][kind] if kind in self.expert_kinds else self

    def add_expert(self, kind: str, expert: "Matcher") -> None:
        """Match photos of camera ``kind`` with ``expert`` from now on (replacing any expert of that kind).

        The expert must see the same inputs and give cells and tokens on the same grids: the pipeline lifts,
        samples and solves with this network's geometry. Raises ModelError otherwise, or when ``expert``
        has experts of its own.
        """
        if kind not in self.ground_input_sizes:
            raise ModelError(f"no camera kind {kind!r} to add an expert for; kinds: {sorted(self.ground_input_sizes)}")
        geometry = ("ground_input_sizes", "token_stride", "aerial_gsd", "aerial_size_px")
        differ = [g for g in geometry if getattr(expert, g, None) != getattr(self, g)]
        if differ or expert.expert_kinds:
            why = f"its {', '.join(differ)} differ" if differ else "it has experts of its own"
            raise ModelError(f"The {kind} expert cannot join this matcher: {why}.")
        if "experts" not in self._modules:
            self.experts = nn.ModuleDict()
        self._modules["experts"][kind] = expert

    def encode_ground(self, ground: torch.Tensor, kind: Optional[str] = None) -> GroundFeatures:
        """ground (B, 3, H, W) RGB in [0, 1] at ``ground_input_size_for(kind)`` -> GroundFeatures.

        kind: "pano" or "pinhole"; None infers it from the input size.
        """
        raise NotImplementedError

    def _kind_of(self, ground: torch.Tensor, kind: Optional[str]) -> str:
        size = tuple(ground.shape[-2:])
        if kind is None:
            matches = [k for k, s in self.ground_input_sizes.items() if tuple(s) == size]
            if not matches:
                raise ValueError(f"ground input {size} matches none of the model's sizes {self.ground_input_sizes}")
            kind = matches[0]
        if tuple(self.ground_input_size_for(kind)) != size:
            raise ValueError(f"a {kind} ground input must be {self.ground_input_sizes[kind]} px, got {size}")
        return kind

    def scores(self, a: AerialFeatures, g: GroundFeatures) -> torch.Tensor:
        """Raw similarity / τ, S (B, Na, Ng) (used by the InfoNCE loss)."""
        return matching.similarity(a.flat, g.flat, self.tau)

    def match(self, a: AerialFeatures, g: GroundFeatures, ground_valid: Optional[torch.Tensor] = None,
              aerial_valid: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Matching probabilities P (B, Na, Ng); ground_valid (B, Ng) bool masks tokens without depth,
        aerial_valid (B, Na) bool cells without imagery (None: all valid)."""
        return matching.dual_softmax(self.scores(a, g), self.dustbin, ground_valid, aerial_valid)

    def token_grid(self, kind: str) -> Tuple[int, int]:
        """(hg, wg) ground tokens of a ``kind`` input."""
        H, W = self.ground_input_size_for(kind)
        return H // self.token_stride, W // self.token_stride

    def ground_tokens(self, camera, depth_kind: str = "range",
                      rows: Optional[Tuple[int, int]] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Where each ground token samples depth, and how it lifts to the BEV.

        camera: the photo's `cameras` model at any size (typically the photo's own); rows: (top, n), the
        input rows the photo fills (`letterbox_rows`; None: all of them). Returns uv_px (Ng, 2), the token
        centres in *that camera's* pixels (centres at integers; tokens in the padding fall outside the
        image), and lift_coef (Ng, 2) with xy_bev = depth(uv_px)[..., None] * lift_coef (see
        `lifting.lift_coefficients`).
        """
        from ..lifting import lift_coefficients

        H, W = self.ground_input_size_for(camera.kind)
        top, n = rows if rows is not None else (0, H)
        hg, wg = self.token_grid(camera.kind)
        uv_in = grid_centres_uv(hg, wg, self.token_stride) - torch.tensor([0.0, float(top)])
        # input pixel centre u_in maps to camera pixel (u_in + 0.5) * W_cam / W - 0.5 (edges scale together)
        scale = torch.tensor([camera.width / W, camera.height / n])
        uv_px = (uv_in + 0.5) * scale - 0.5
        return uv_px, lift_coefficients(camera, uv_px, depth_kind)


def load_state_file(path) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Read weights without executing code: a ``.safetensors`` file, or a PyTorch file through
    ``torch.load(weights_only=True)``. Returns (state dict, metadata strings; empty for PyTorch files).

    Raises ModelError when the file is missing, unreadable, or carries pickled code.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"The model weight file {path} does not exist.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(f"The weight file {path} is not a readable safetensors file: {exc}") from exc
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelError(
            f"The weight file {path} contains pickled Python objects that are not plain tensors; it is refused "
            "because loading it could execute code. Convert it to safetensors or a plain state dict.") from exc
    except (RuntimeError, OSError, EOFError) as exc:
        raise ModelError(f"The weight file {path} is not a readable PyTorch weight file: {exc}") from exc
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"The weight file {path} does not hold a state dict of tensors.")
    return obj, {}


def to_input(image: np.ndarray) -> torch.Tensor:
    """uint8 image (H, W, 3) -> float tensor (1, 3, H, W) in [0, 1]."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    return torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255.0  # copy: inputs may be read-only


def resize_image(image: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Resize a uint8 (H, W, 3) image to size (h, w) with PIL's bilinear filter (antialiased when shrinking).

    The one resize used for model inputs, in training and at inference, so that both see the same pixels.
    """
    from PIL import Image

    h, w = size
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))


#: a photo wider than a model input by more than this fraction of the input's aspect is letterboxed
LETTERBOX_MIN_EXCESS = 0.01


def letterbox_rows(photo_hw: Tuple[int, int], input_hw: Tuple[int, int]) -> Tuple[int, int]:
    """(top, rows): the input rows that a photo of photo_hw (h, w) px fills when fitted to a model input of
    input_hw (H, W) px, full width, aspect kept.

    Only a photo wider than the input (relative to its height) is letterboxed: it is resized to W x rows
    (rows < H), centred, and the rows above and below are padding. A photo of the input's aspect or taller
    fills the input, stretched (0, H): for portrait photos stretching beat letterboxing (fewer tokens see the
    photo) and cropping (the near ground and the roof lines are lost); for wide ones letterboxing beat
    stretching (docs/evaluation.md, "Photo framing").
    """
    h, w = photo_hw
    H, W = input_hw
    if w * H <= (1.0 + LETTERBOX_MIN_EXCESS) * W * h:
        return 0, H
    rows = min(H, max(1, int(round(W * h / w))))
    return (H - rows) // 2, rows


def letterbox_image(image: np.ndarray, size: Tuple[int, int]) -> Tuple[np.ndarray, int, int]:
    """A uint8 (h, w, 3) image fitted to size (H, W) by `letterbox_rows`: returns (the (H, W, 3) input, top,
    rows), the image resized (`resize_image`) into rows top .. top + rows and padded by `pad_rows`."""
    top, rows = letterbox_rows(image.shape[:2], size)
    return pad_rows(resize_image(image, (rows, size[1])), top, size[0]), top, rows


def pad_rows(image: np.ndarray, top: int, height: int) -> np.ndarray:
    """(n, W, C) -> (height, W, C): the first row repeated ``top`` times above, the last one below (padding
    that continues the sky and the ground, not a black bar that no training image had)."""
    bottom = height - image.shape[0] - top
    if (top, bottom) == (0, 0):
        return image
    return np.pad(image, ((top, bottom), (0, 0), (0, 0)), mode="edge")


#: the most numbers (parameters and buffers) a weight file may declare for a network built by
#: `build_from_file`, checked before anything is allocated: the default matcher has 6 M with its positional
#: encodings, the mono depth network 0.5 M; 100 M (400 MB of float32) leaves room for larger variants while
#: a file declaring a huge network is refused at once instead of after gigabytes and tens of seconds
MAX_NETWORK_NUMBERS = 100_000_000

#: metadata keys of a weight file that hold JSON objects, and what each describes (for messages)
_JSON_METADATA = {"conf": "architecture configuration", "confidence": "confidence calibration",
                  "training": "training summary"}


def build_from_file(cls, weights, conf: Optional[dict], what: str) -> nn.Module:
    """``cls(conf)`` with ``weights`` loaded strictly, in eval mode; without weights, a fresh ``cls(conf)``.

    The architecture configuration stored in a safetensors file's metadata (key ``conf``, JSON) wins over
    ``conf``, so a weight file always rebuilds the network it was trained as. Before anything is allocated
    the file's metadata is parsed, the declared network is built on the meta device (no memory) and checked
    against `MAX_NETWORK_NUMBERS` and against the shapes of the file's tensors, so that a file declaring an
    unusable or huge network is refused at once. ``what`` names the network in the ModelError raised for
    unreadable, unusable or mismatching weights.
    """
    if weights is None:
        return cls(conf)
    shapes, meta = read_state_header(weights)
    if meta.get("conf") is not None:
        conf = json_metadata(meta, "conf", weights)
    experts = sorted({k.split(".")[1] for k in shapes if k.startswith("experts.") and k.count(".") > 1})
    _check_declared_network(cls, conf, experts, shapes, weights, what)
    confidence = json_metadata(meta, "confidence", weights)
    training = json_metadata(meta, "training", weights) or {}
    state, _ = load_state_file(weights)
    net = cls(conf)
    for kind in experts:
        net.add_expert(kind, cls(conf))  # an expert is of its file's architecture (Matcher.add_expert)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"The weight file {weights} does not fit {what}: {exc}") from exc
    if confidence is not None:  # the model's own calibration of its pose confidence (confidence.py)
        net.confidence_calibration = confidence
    if isinstance(net, Matcher) and training.get("turn"):  # trained with the sun from every side
        net.aerial_quarters = 4
    return net.eval()


def read_state_header(path) -> Tuple[Dict[str, Tuple[int, ...]], Dict[str, str]]:
    """(tensor name -> shape, metadata strings) of a weight file, without reading its tensors for a
    ``.safetensors`` file (its header lists them); a PyTorch file is loaded (`load_state_file`), which its
    size bounds. Raises ModelError like `load_state_file`."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        state, meta = load_state_file(path)
        return {k: tuple(v.shape) for k, v in state.items()}, meta
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"The weight file {path} is not a readable safetensors file: {exc}") from exc


def json_metadata(meta: Dict[str, str], key: str, path) -> Optional[dict]:
    """The JSON object stored under ``key`` in a weight file's metadata (None when absent or ``null``);
    ModelError naming the file and the key when it is not a JSON object."""
    text = meta.get(key)
    if text is None:
        return None
    what = _JSON_METADATA.get(key, key)
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise ModelError(f"The weight file {path} has a '{key}' metadata entry (its {what}) that is not valid "
                         f"JSON ({exc}); the file is damaged or was not written by Loc², re-export it.") from exc
    if value is not None and not isinstance(value, dict):
        raise ModelError(f"The weight file {path} has a '{key}' metadata entry (its {what}) that is a JSON "
                         f"{type(value).__name__}, not an object of named values; re-export the file.")
    if key == "confidence" and value is not None:
        _check_calibration(value, path)
    return value


def _check_calibration(calibration: dict, path) -> None:
    """A confidence calibration is logistic weights: an ``intercept`` and finite numbers only, and optionally
    ``sigma``, weights of log sigma_m of the same form (`confidence.sigma_from`)."""
    sigma = calibration.get("sigma")
    if sigma is not None:
        if not isinstance(sigma, dict):
            raise ModelError(f"The weight file {path} has a confidence calibration whose 'sigma' is not an object "
                             "of named weights; recalibrate it (scripts/calibrate_confidence.py).")
        _check_calibration(sigma, path)
    bad = [k for k, v in calibration.items() if k != "sigma" and (
        isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v))]
    if "intercept" not in calibration or bad:
        why = f"its values {', '.join(map(repr, bad))} are not finite numbers" if bad else "it has no 'intercept'"
        raise ModelError(f"The weight file {path} has a confidence calibration that cannot be used: {why}; "
                         "recalibrate it (scripts/calibrate_confidence.py) or remove the 'confidence' entry.")


def _check_declared_network(cls, conf, experts, shapes: Dict[str, Tuple[int, ...]], path, what: str) -> None:
    """Build the declared network on the meta device (no memory is allocated) and refuse it, with a
    ModelError, when its configuration is unusable, it is larger than `MAX_NETWORK_NUMBERS`, or the
    file's tensors do not have its names and shapes."""
    try:
        with torch.device("meta"):
            probe = cls(conf)
            for kind in experts:
                probe.add_expert(kind, cls(conf))
    except ModelError as exc:
        raise ModelError(f"The weight file {path} declares a configuration of {what} that cannot be "
                         f"built: {exc}") from exc
    except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError, RuntimeError) as exc:
        raise ModelError(f"The weight file {path} declares a configuration of {what} that cannot be built "
                         f"({type(exc).__name__}: {exc}); its 'conf' metadata is damaged.") from exc
    numbers = sum(t.numel() for t in probe.parameters()) + sum(t.numel() for t in probe.buffers())
    if numbers > MAX_NETWORK_NUMBERS:
        raise ModelError(f"The weight file {path} declares a network of {numbers:,} parameters and buffers, "
                         f"more than the {MAX_NETWORK_NUMBERS:,} allowed for {what}; it is refused before "
                         "loading (its 'conf' metadata is damaged, or it is not a Loc² weight file).")
    expected = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    resized = sorted(k for k in set(expected) & set(shapes) if expected[k] != shapes[k])
    if missing or unexpected or resized:
        parts = [f"{len(names)} {label} (e.g. {names[0]}"
                 + (f": {shapes[names[0]]} in the file, {expected[names[0]]} in the network)" if label ==
                    "tensors of another shape" else ")")
                 for label, names in (("missing tensors", missing), ("unexpected tensors", unexpected),
                                      ("tensors of another shape", resized)) if names]
        raise ModelError(f"The weight file {path} does not fit {what}: {'; '.join(parts)}.")


def merge_conf(defaults: dict, conf: Optional[dict], what: str) -> dict:
    """``defaults`` overridden by ``conf``; a key the network does not know is a ModelError naming ``what``."""
    unknown = set(conf or {}) - set(defaults)
    if unknown:
        raise ModelError(f"unknown configuration keys for {what}: {sorted(unknown)}")
    return {**defaults, **(conf or {})}
