"""Matcher architectures behind a registry of lazy "module:factory" strings (docs/ENGINEERING.md).

A registry name maps to an architecture factory, its default weight file and configuration; optional
architectures (the official loc2-* models on DINOv2) cost nothing until used.

Factory protocol: ``factory(weights=PATH|None, backbone=PATH|None, **conf) -> Matcher`` — it builds the
model and loads its weights (without executing code, see `base.load_state_file`), raising ModelError when a
file is missing or does not fit. `load_model` resolves the files, moves the model to the device and puts it
in eval mode.

Weight files are looked up, in order: the path given by the caller, ``$LOC2_MODELS/<file name>``, then the
path of the registry entry relative to the repository root (``resources/models/``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch

from ..errors import ModelError
from ..registry import MODEL_REGISTRY, ModelSpec, load_target
from .base import AerialFeatures, GroundFeatures, Matcher

#: repository root, against which registry weight paths are resolved
ROOT = Path(__file__).resolve().parents[2]
#: folder of the shipped weights and model cards
RESOURCES = ROOT / "resources" / "models"


def resolve_file(path: Optional[str]) -> Optional[str]:
    """An existing file for ``path``: as given, in $LOC2_MODELS, or relative to the repository root."""
    if path is None:
        return None
    candidates = [Path(path)]
    if os.environ.get("LOC2_MODELS"):
        candidates.append(Path(os.environ["LOC2_MODELS"]) / Path(path).name)
    candidates.append(ROOT / path)
    for c in candidates:
        if c.is_file():
            return str(c)
    return str(path)  # let the factory raise ModelError naming the file


def load_model(name_or_path: str = "default", device="cpu", weights: Optional[str] = None,
               backbone: Optional[str] = None, **conf) -> Matcher:
    """A ready (eval-mode) Matcher by registry name, or the default architecture with a weight file.

    weights / backbone: files overriding the registry's (official models need them); conf: factory options.
    Raises ModelError for unknown names, missing or unsafe files.
    """
    if name_or_path in MODEL_REGISTRY:
        spec = MODEL_REGISTRY[name_or_path]
    elif Path(name_or_path).suffix in (".safetensors", ".pt", ".pth", ".bin") or Path(name_or_path).is_file():
        spec, weights = MODEL_REGISTRY["default"], weights or name_or_path
    else:
        raise ModelError(f"Unknown model {name_or_path!r}: use one of {sorted(MODEL_REGISTRY)} or a weight file "
                         "of the default architecture.")
    factory = load_target(spec.arch, ModelError, f"The model architecture {spec.arch!r}")
    weights_path = resolve_file(weights or spec.weights)
    files = {"weights": weights_path}
    if backbone is not None:
        files["backbone"] = resolve_file(backbone)
    model = factory(**files, **{**spec.conf, **conf})
    return model.to(torch.device(device)).eval()


__all__ = ["MODEL_REGISTRY", "ModelSpec", "load_model", "Matcher", "AerialFeatures", "GroundFeatures",
           "resolve_file", "RESOURCES"]
