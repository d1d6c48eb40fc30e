"""The model registry's names, and one loader for the registries' lazy "module:attribute" targets (matcher
architectures, depth providers), so an optional architecture or provider costs nothing until it is used.

Pure Python: the QGIS plugin lists the model names when it loads, before (or without) torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Dict, Optional


@dataclass
class ModelSpec:
    """arch: "module:factory"; weights: default weight file (relative to the repository root) or None when
    the user must supply it; conf: keyword arguments for the factory."""

    arch: str
    weights: Optional[str] = None
    conf: Dict = field(default_factory=dict)


MODEL_REGISTRY: Dict[str, ModelSpec] = {
    "default": ModelSpec("loc2_engine.models.small:build", weights="resources/models/default.safetensors"),
    "loc2-vigor": ModelSpec("loc2_engine.models.official:build_vigor"),
    # VIGOR known_ori checkpoints: panoramas rolled to north by the heading prior, which they require
    "loc2-vigor-known": ModelSpec("loc2_engine.models.official:build_vigor", conf={"orientation": "known"}),
    "loc2-kitti": ModelSpec("loc2_engine.models.official:build_kitti"),
    # KITTI ori_noise10 checkpoints: aerial windows turned so that the heading prior points east
    "loc2-kitti-known": ModelSpec("loc2_engine.models.official:build_kitti", conf={"orientation": "known"}),
}


def load_target(target: str, error: type, what: str):
    """The attribute named by ``target`` ("package.module:attribute").

    error: the `Loc2Error` subclass raised, with ``what`` (e.g. "The depth provider 'mono'") in its sentence,
    when the module or attribute is not in this installation. A dependency missing inside an existing module
    is a bug to surface, and propagates.
    """
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise error(f"{what} is not available in this installation.") from exc
    try:
        return getattr(module, attribute)
    except AttributeError as exc:
        raise error(f"{what} is not available in this installation ({module_name} has no {attribute}).") from exc
