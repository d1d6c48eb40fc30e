"""Training loop for the default matcher and the mono depth network (`loc2 train`).

Both networks learn in the same process from the same batches (one data pipeline on 2 cores): the
matcher from the pose only (VCE + InfoNCE, `losses`), the mono depth net from the truth range.

* AdamW, linear warm-up then cosine decay over ``total_steps``. With a wall-clock budget only, the total
  is fixed once from the speed of the first steps and stored in the checkpoint, so a resumed run keeps the
  same schedule. Everything random draws from seeded generators: the same seed and total give the same
  run (up to the non-determinism of multi-threaded CPU kernels).
* Batches alternate camera kinds in proportion to their numbers of photos; panoramas are rolled by a
  random number of columns (unknown orientation) and every window is offset from the truth by up to
  ``max_offset_m``. With ``mirror``, half of the samples show the east–west mirrored world (photo, range and
  aerial window flipped, heading negated: `data.mirror_world`); with ``turn``, each sample's world is turned by
  random quarter turns (aerial window, position and heading: `data.turn_world`). Training batches (not validation) get a
  photometric jitter (`augment`), so the matcher does not learn one renderer's colours.
* Validation on held-out towns: RANSAC on matches sampled from P, ground lifted with the truth range and
  with the mono depth net; the median position error with mono depth marks ``best.pt``. The model file
  gets the last state by default (the end of the annealed schedule), or the best one on request.
* Checkpoints (``ckpt_dir/last.pt`` every few minutes, ``best.pt`` on improvement) hold only tensors and
  plain containers (``torch.load(weights_only=True)``); ``resume`` continues from ``last.pt`` (on the device
  it was written on: the matching generator's state is the device's).
* On a GPU (``device``): batches are drawn on the CPU, moved over and jittered there (`augment.jitter`); the
  matching draws use a generator on the device. ``init`` fine-tunes from a weight file (fresh optimiser and schedule).
  ``train_mono = False`` trains the matcher alone and validates with the shipped mono depth net, frozen;
  training packs (`pack`, for machines without the geo stack) need it, as they hold depth only at tokens.
  ``train_matcher = False`` trains the mono depth net alone (architecture ``conf.mono``), always with
  ``mirror``; the matcher (``init`` or the shipped one, frozen) only validates it by localization.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from safetensors.torch import save_file
from tqdm import tqdm

from .. import matching
from ..errors import Loc2Error
from ..models import load_model
from ..models.base import build_from_file
from ..models.mono_depth import MonoDepthNet, build_mono, load_mono_depth, save_mono
from ..models.small import SmallMatcher
from ..ransac import ransac_similarity
from .augment import jitter
from .data import Batch, KindCache, build_cache, draw_batch, split_by_town
from .pack import pack_conf, read_pack
from .losses import LossConf, matcher_losses, mono_depth_loss


@dataclass
class TrainConf:
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    min_lr_fraction: float = 0.05
    grad_clip: float = 5.0
    max_offset_m: float = 25.0
    val_fraction: float = 0.1
    val_photos: int = 32            # per camera kind
    val_every_s: float = 480.0
    ckpt_every_s: float = 300.0
    cache_workers: int = 2
    export: str = "last"            # "last" or "best" (by validation) state written to the model file
    augment: bool = True            # photometric jitter of training batches (augment.py), never of validation
    mirror: bool = False            # half of the training samples in the east–west mirrored world (data.mirror_world)
    turn: bool = False              # each training sample's world turned by random quarter turns (data.turn_world)
    train_mono: bool = True         # False: train the matcher alone; the shipped mono depth net validates, frozen
    train_matcher: bool = True      # False: train the mono depth net alone; the matcher validates, frozen
    device: str = "cpu"             # where the networks run ("cuda" on a GPU machine); batches are drawn on the CPU
    auto_threads: bool = False      # adapt torch threads to the machine's load (see _adapt_threads)
    timing_steps: int = 40          # steps timed (the first half left out: warm-up) before fixing total_steps
                                    # under a wall-clock budget
    seed: int = 0
    loss: LossConf = field(default_factory=LossConf)
    model: Dict = field(default_factory=dict)
    mono: Dict = field(default_factory=dict)    # mono depth architecture (`mono_depth.DEFAULT_CONF` keys)


def _lr_factor(step: int, total: int, conf: TrainConf) -> float:
    if step < conf.warmup_steps:
        return (step + 1) / conf.warmup_steps
    p = min(1.0, (step - conf.warmup_steps) / max(1, total - conf.warmup_steps))
    return conf.min_lr_fraction + (1 - conf.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * p))


def _adapt_threads() -> None:
    """Use every core while this run is alone on the machine and one thread when others load it: on a
    shared 2-core machine, two threads that wait for each other behind another process's job are slower
    than one. Decided from the 1-minute load average with hysteresis."""
    cores = os.cpu_count() or 1
    current = torch.get_num_threads()
    load = os.getloadavg()[0]
    wanted = current
    if current == 1 and load < 1.5 and cores > 1:
        wanted = cores
    elif current > 1 and load > current + 0.8:
        wanted = 1
    if wanted != current:
        torch.set_num_threads(wanted)
        tqdm.write(f"load average {load:.2f}: {wanted} thread(s)")


def load_or_build_cache(dataset_dirs: Sequence[str], cache_dir: Path, model: SmallMatcher, max_offset_m: float,
                        workers: int) -> Dict[str, KindCache]:
    """The pooled dataset cache. Each dataset is cached on its own (``cache_dir/cache-<hash>.pt``) and read
    back when it was built for the same manifest, input sizes and window, so adding a dataset to a run
    only reads the new one. A file instead of a folder is a training pack (`pack.read_pack`)."""
    pooled: Dict[str, list] = {}
    for d in dataset_dirs:
        if os.path.isfile(d):
            conf = pack_conf(model.ground_input_sizes, model.aerial_size_px, model.aerial_gsd, model.token_stride,
                             max_offset_m)
            for kind, c in read_pack(d, conf).items():
                pooled.setdefault(kind, []).append(c)
            continue
        key = json.dumps({"dataset": os.path.abspath(d),
                          "manifest_mtime": os.path.getmtime(os.path.join(d, "manifest.csv")),
                          "sizes": {k: list(v) for k, v in sorted(model.ground_input_sizes.items())},
                          "window_px": model.aerial_size_px, "gsd": model.aerial_gsd, "max_offset_m": max_offset_m},
                         sort_keys=True)
        path = cache_dir / f"cache-{hashlib.sha1(key.encode()).hexdigest()[:12]}.pt"
        caches = None
        if path.is_file():
            saved = torch.load(path, weights_only=True)
            if saved.get("key") == key:
                caches = {k: KindCache(**v) for k, v in saved["caches"].items()}
        if caches is None:
            caches = build_cache([d], model.ground_input_sizes, model.aerial_size_px, model.aerial_gsd,
                                 max_offset_m, workers)
            cache_dir.mkdir(parents=True, exist_ok=True)
            torch.save({"key": key, "caches": {k: c.state() for k, c in caches.items()}}, path)
        for kind, c in caches.items():
            pooled.setdefault(kind, []).append(c)
    return {kind: KindCache.concat(parts) for kind, parts in pooled.items()}


@torch.no_grad()
def validate(model: SmallMatcher, mono: MonoDepthNet, batches, n_matches: int = 2048) -> Dict[str, float]:
    """Median position (m) / heading (°) errors of RANSAC poses on fixed validation batches, with the truth
    range and with the mono depth net lifting the ground tokens; mono depth AbsRel after median scaling.
    The networks run on their device; sampling and RANSAC run on the CPU (the same draws on any device)."""
    was_training = model.training, mono.training
    model.eval(), mono.eval()
    device = next(model.parameters()).device
    errs = {"truth": [], "mono": []}
    herrs = {"truth": [], "mono": []}
    absrel = []
    g = torch.Generator().manual_seed(1234)
    for truth in batches:
        batch = truth.to(device)
        A = model.encode_aerial(batch.aerial)
        G = model.encode_ground(batch.ground, batch.kind)
        stride = batch.aerial.shape[-1] // A.desc.shape[-1]
        c = stride // 2
        aerial_valid = batch.aerial_valid[:, c::stride, c::stride].reshape(batch.aerial.shape[0], -1)
        log_pred, sky_logit = mono(batch.ground, circular=batch.kind == "pano")
        pred = torch.where(torch.sigmoid(sky_logit) > 0.5, torch.full_like(log_pred, float("nan")), log_pred.exp())
        valid_px = torch.isfinite(batch.depth) & (batch.depth > 0) & torch.isfinite(pred)
        for b in range(pred.shape[0]):
            p, t = pred[b][valid_px[b]], batch.depth[b][valid_px[b]]
            if p.numel():
                p = p * (t.median() / p.median())
                absrel.append(float(((p - t).abs() / t).mean()))
        stride_g = model.token_stride
        token_pred = pred[:, stride_g // 2::stride_g, stride_g // 2::stride_g].flatten(1)
        for name, token_depth in (("truth", batch.token_depth), ("mono", token_pred)):
            valid = torch.isfinite(token_depth) & (token_depth > 0)
            xy_bev = torch.nan_to_num(token_depth)[..., None] * batch.lift_coef
            P = model.match(A, G, valid, aerial_valid).cpu()
            xy_bev, cells = xy_bev.cpu(), A.xy_local.cpu()
            idx_a, idx_g, w = matching.sample_correspondences(P, n_matches, g)
            for b in range(P.shape[0]):
                res = ransac_similarity(xy_bev[b, idx_g[b]], cells[idx_a[b]], w[b], hypotheses=500, generator=g)
                if not res.ok:
                    errs[name].append(float("inf")), herrs[name].append(180.0)
                    continue
                errs[name].append(float((res.fit.t - truth.t_gt[b]).norm()))
                d = (res.heading_deg - float(truth.heading_gt[b])) % 360.0
                herrs[name].append(min(d, 360.0 - d))
    model.train(was_training[0]), mono.train(was_training[1])
    out = {}
    for name in ("truth", "mono"):
        e = np.array(errs[name])
        out[f"val_med_m_{name}"] = float(np.median(e)) if e.size else float("nan")
        out[f"val_r5_{name}"] = float(np.mean(e <= 5.0)) if e.size else float("nan")
        out[f"val_med_deg_{name}"] = float(np.median(herrs[name])) if e.size else float("nan")
    out["val_depth_absrel"] = float(np.mean(absrel)) if absrel else float("nan")
    return out


def export_matcher(model: SmallMatcher, path, info: Dict) -> None:
    """Write the matcher's weights + configuration (+ training info) to a safetensors file."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"conf": json.dumps(model.conf), "arch": "small",
                                          "training": json.dumps(info)})


class Trainer:
    """Holds the models, optimiser, data and counters of one training run (see module docstring)."""

    def __init__(self, dataset_dirs: Sequence[str], out_path: str, ckpt_dir: str, conf: TrainConf,
                 mono_out: Optional[str] = None, init: Optional[str] = None, mono_init: Optional[str] = None):
        """init: a matcher weight file to start from (its architecture wins over ``conf.model``; of a file with
        per-kind experts, the general network alone); mono_init: a mono depth weight file to start from (its
        architecture wins over ``conf.mono``)."""
        self.conf = conf
        self.dataset_dirs, self.out_path, self.ckpt_dir = list(dataset_dirs), Path(out_path), Path(ckpt_dir)
        self.mono_out = Path(mono_out) if mono_out else self.out_path.parent / "mono.safetensors"
        self.device = torch.device(conf.device)
        torch.manual_seed(conf.seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        if not (conf.train_mono or conf.train_matcher):
            raise ValueError("nothing to train: train_mono and train_matcher are both off")
        self.init = init
        if init:
            self.model = build_from_file(SmallMatcher, init, None, "the initial matcher").train()
            if self.model.expert_kinds:  # the run trains and writes one network; experts join afterwards
                del self.model.experts
        elif conf.train_matcher:
            self.model = SmallMatcher(conf.model)
        else:
            self.model = load_model("default")
        if not conf.train_matcher:
            self.model.eval().requires_grad_(False)
        self.model.to(self.device)
        if mono_init and not conf.train_mono:
            raise ValueError("mono_init needs train_mono: a frozen mono depth network is always the shipped one")
        self.mono_init = mono_init
        if mono_init:
            self.mono = build_mono(mono_init).train()
            if self.mono.input_sizes != {k: tuple(v) for k, v in self.model.ground_input_sizes.items()}:
                raise Loc2Error(f"{mono_init} is a mono depth network for inputs {self.mono.input_sizes}, but the "
                                f"matcher's ground inputs are {dict(self.model.ground_input_sizes)}; start from a "
                                "file made for this matcher, or train a new one without --mono-init")
        elif conf.train_mono:
            self.mono = MonoDepthNet({**conf.mono, "pano_size": list(self.model.ground_input_sizes["pano"]),
                                      "pinhole_size": list(self.model.ground_input_sizes["pinhole"])})
        else:
            self.mono = load_mono_depth().requires_grad_(False)
        self.mono.to(self.device)
        params = ((list(self.model.parameters()) if conf.train_matcher else [])
                  + (list(self.mono.parameters()) if conf.train_mono else []))
        self.opt = torch.optim.AdamW(params, lr=conf.lr, weight_decay=conf.weight_decay)
        self.data_gen = torch.Generator().manual_seed(conf.seed + 1)
        self.match_gen = torch.Generator(device=self.device).manual_seed(conf.seed + 2)
        self.step, self.total_steps, self.elapsed_s = 0, None, 0.0
        self.best = {"val_med_m_mono": float("inf")}
        self.history = []

    # -- data ---------------------------------------------------------------------------------------------
    def load_data(self) -> None:
        packs = [d for d in self.dataset_dirs if os.path.isfile(d)]
        if packs and self.conf.train_mono:
            raise Loc2Error(f"{packs[0]} is a training pack: it holds depth only where the matcher reads it, "
                            "so the mono depth network cannot learn from it; train the matcher alone.")
        caches = load_or_build_cache(self.dataset_dirs, self.ckpt_dir, self.model,
                                     self.conf.max_offset_m, self.conf.cache_workers)
        self.train_data, val = split_by_town(caches, self.conf.val_fraction, self.conf.seed)
        if not self.train_data:
            raise RuntimeError("the training split is empty")
        # fixed validation batches: the same offsets and rolls at every validation
        g = torch.Generator().manual_seed(self.conf.seed + 3)
        self.val_batches = []
        for kind, c in sorted(val.items()):
            idx = torch.randperm(len(c), generator=g)[: self.conf.val_photos]
            for chunk in idx.split(self.conf.batch_size):
                self.val_batches.append(self._draw(c, chunk, g))
        counts = {k: len(c) for k, c in sorted(self.train_data.items())}
        self.kinds = list(counts)
        self.kind_p = torch.tensor([counts[k] for k in self.kinds], dtype=torch.float64)
        tqdm.write(f"train photos {counts}, validation photos { {k: len(c) for k, c in val.items()} }")

    @property
    def mirrors(self) -> bool:
        """Whether training samples are mirrored (a mirrored photo is always a valid depth sample, so depth-only
        training always mirrors)."""
        return self.conf.mirror or not self.conf.train_matcher

    def _draw(self, cache: KindCache, idx: torch.Tensor, g: torch.Generator, mirror: bool = False,
              turn: bool = False) -> Batch:
        return draw_batch(cache, idx, self.model.aerial_size_px, self.model.aerial_gsd, self.model.token_stride,
                          self.conf.max_offset_m, True, g, mirror, turn)

    def next_batch(self) -> Batch:
        kind = self.kinds[int(torch.multinomial(self.kind_p, 1, generator=self.data_gen))]
        cache = self.train_data[kind]
        idx = torch.randint(0, len(cache), (self.conf.batch_size,), generator=self.data_gen)
        batch = self._draw(cache, idx, self.data_gen, self.mirrors, self.conf.turn).to(self.device)
        if self.conf.augment:  # on the device: the CPU only draws the crops
            batch = replace(batch, ground=jitter(batch.ground, self.data_gen, circular=kind == "pano"),
                            aerial=jitter(batch.aerial, self.data_gen))
        return batch

    # -- checkpoints --------------------------------------------------------------------------------------
    def state(self) -> Dict:
        return {"model": self.model.state_dict(), "mono": self.mono.state_dict(), "opt": self.opt.state_dict(),
                "step": self.step, "total_steps": self.total_steps, "elapsed_s": self.elapsed_s,
                "best": dict(self.best), "history": json.dumps(self.history),
                "data_gen": self.data_gen.get_state(), "match_gen": self.match_gen.get_state(),
                "torch_rng": torch.get_rng_state(), "conf": json.dumps(asdict(self.conf))}

    def save(self, name: str) -> None:
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.ckpt_dir / f"{name}.tmp"
        torch.save(self.state(), tmp)
        os.replace(tmp, self.ckpt_dir / f"{name}.pt")  # atomic: an interrupted save leaves the old file

    def resume(self) -> None:
        path = self.ckpt_dir / "last.pt"
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint to resume from at {path}")
        s = torch.load(path, weights_only=True, map_location=self.device)
        self.model.load_state_dict(s["model"]), self.mono.load_state_dict(s["mono"])
        self.opt.load_state_dict(s["opt"])
        self.step, self.total_steps, self.elapsed_s = s["step"], s["total_steps"], s["elapsed_s"]
        self.best, self.history = s["best"], json.loads(s["history"])
        self.data_gen.set_state(s["data_gen"].cpu()), self.match_gen.set_state(s["match_gen"].cpu())
        torch.set_rng_state(s["torch_rng"].cpu())

    # -- loop ---------------------------------------------------------------------------------------------
    def train_step(self) -> Dict[str, float]:
        batch = self.next_batch()
        for group in self.opt.param_groups:
            group["lr"] = self.conf.lr * _lr_factor(self.step, self.total_steps or 10 ** 9, self.conf)
        m = matcher_losses(self.model, batch, self.conf.loss, self.match_gen) if self.conf.train_matcher else None
        d = mono_depth_loss(self.mono, batch, self.conf.loss) if self.conf.train_mono else None
        self.opt.zero_grad(set_to_none=True)
        sum(x["total"] for x in (m, d) if x is not None).backward()
        params = [p for grp in self.opt.param_groups for p in grp["params"] if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, self.conf.grad_clip)
        if torch.isfinite(norm):  # a degenerate fit can poison a step; skip it rather than the run
            self.opt.step()
        self.step += 1
        nan = float("nan")
        logs = {"loss": float(sum(x["total"].detach() for x in (m, d) if x is not None)),
                "depth": float(d["silog"]) if d else nan, "vce": nan, "nce": nan, "fit_med_m": nan, "kind": batch.kind}
        if m is not None:
            err = m["err_m"][torch.isfinite(m["err_m"])]
            logs.update(vce=float(m["vce"]), nce=0.5 * float(m["nce_g2a"] + m["nce_a2g"]),
                        fit_med_m=float(err.median()) if err.numel() else nan)
        return logs

    def run(self, minutes: Optional[float] = None, steps: Optional[int] = None) -> Dict:
        """Train until ``steps`` (total) or ``minutes`` of wall clock (this run) run out; export."""
        if minutes is None and steps is None:
            raise ValueError("give a step count, a time budget in minutes, or both")
        if steps is not None:  # also on resume: --steps is the new total
            self.total_steps = steps
        start = time.perf_counter()
        deadline = start + minutes * 60 if minutes is not None else float("inf")
        last_ckpt = last_val = start
        timed_from = (self.step, start)
        val = dict(self.history[-1]) if self.history else {}
        bar = tqdm(total=self.total_steps, initial=self.step, unit="step", dynamic_ncols=True,
                   mininterval=1.0 if sys.stderr.isatty() else 30.0)  # a log file gets a line every 30 s
        ema = None
        while (self.total_steps is None or self.step < self.total_steps) and time.perf_counter() < deadline:
            t0 = time.perf_counter()
            logs = self.train_step()
            now = time.perf_counter()
            self.elapsed_s += now - t0
            if self.total_steps is None and self.step == self.conf.timing_steps // 2:
                timed_from = (self.step, now)
            if self.total_steps is None and self.step == self.conf.timing_steps:
                per_step = (now - timed_from[1]) / (self.step - timed_from[0])
                self.total_steps = self.step + int((deadline - now) / per_step)
                bar.reset(total=self.total_steps), bar.update(self.step)
            if self.conf.auto_threads and self.step % 25 == 0:
                _adapt_threads()
            ema = logs["loss"] if ema is None else 0.95 * ema + 0.05 * logs["loss"]
            bar.update(1)
            bar.set_postfix(loss=f"{ema:.3f}", vce=f"{logs['vce']:.2f}", nce=f"{logs['nce']:.2f}",
                            depth=f"{logs['depth']:.3f}", val_m=f"{val.get('val_med_m_mono', float('nan')):.2f}",
                            refresh=False)
            if now - last_val >= self.conf.val_every_s:
                val = self._validate_and_keep_best()
                last_val = time.perf_counter()
            if now - last_ckpt >= self.conf.ckpt_every_s:
                self.save("last")
                last_ckpt = time.perf_counter()
        bar.close()
        val = self._validate_and_keep_best()
        self.save("last")
        return self.export(val)

    def _validate_and_keep_best(self) -> Dict[str, float]:
        if not self.val_batches:
            return {}
        val = validate(self.model, self.mono, self.val_batches)
        val["step"] = self.step
        self.history.append(val)
        tqdm.write("step {step}: ".format(step=self.step) + ", ".join(
            f"{k} {v:.3f}" for k, v in val.items() if k != "step"))
        if val["val_med_m_mono"] <= self.best.get("val_med_m_mono", float("inf")):
            self.best = dict(val)
            self.save("best")
        return val

    def export(self, last_val: Dict) -> Dict:
        """Export the last state (the end of the annealed schedule; default) or, with
        ``conf.export == "best"``, the best checkpoint by validation median error (noisy on small sets)."""
        best_path = self.ckpt_dir / "best.pt"
        if self.conf.export == "best" and best_path.is_file():
            s = torch.load(best_path, weights_only=True, map_location=self.device)
            self.model.load_state_dict(s["model"]), self.mono.load_state_dict(s["mono"])
            chosen, step = self.best, s["step"]
        else:
            chosen, step = last_val, self.step
        info = {"step": step, "steps_run": self.step, "total_steps": self.total_steps,
                "train_seconds": round(self.elapsed_s, 1), "seed": self.conf.seed, "val": chosen,
                "datasets": [os.path.abspath(d) for d in self.dataset_dirs], "device": str(self.device),
                "batch_size": self.conf.batch_size, "lr": self.conf.lr, "augment": self.conf.augment,
                "mirror": self.mirrors, "turn": self.conf.turn,
                "init": os.path.basename(self.init) if self.init else None,
                "mono_init": os.path.basename(self.mono_init) if self.mono_init else None,
                "mono": "trained" if self.conf.train_mono else "shipped, frozen",
                "matcher": "trained" if self.conf.train_matcher else "frozen"}
        self.model.eval(), self.mono.eval()
        if self.conf.train_matcher:
            export_matcher(self.model, self.out_path, info)
        if self.conf.train_mono:
            save_mono(self.mono, self.mono_out if self.conf.train_matcher else self.out_path, info)
        return info
