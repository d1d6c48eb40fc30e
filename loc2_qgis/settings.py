"""Dock choices that persist between QGIS sessions (QgsSettings, under ``loc2/``)."""

from __future__ import annotations

from qgis.core import QgsSettings

from loc2_engine import defaults

_PREFIX = "loc2/"

#: key -> (default, type); types are explicit because QSettings returns strings from the ini file.
#: "weights" is kept per model, as "weights/<model name>": each official model has its own checkpoint
DEFAULTS = {
    "last_raster": ("", str),        # layer id of the aerial layer last used
    "radius_m": (defaults.RADIUS_M, float),
    "camera_height_m": (defaults.CAMERA_HEIGHT_M, float),
    "model": (defaults.MODEL, str),
    "depth": ("mono", str),
    "export_folder": ("", str),
    "weights": ("", str),            # matcher checkpoint of a model ("" = the registry's / $LOC2_MODELS)
    "backbone": ("", str),           # backbone weights (DINOv2 ViT-L/14) of the official loc2-* models
}


def weights_key(model: str) -> str:
    """The key of ``model``'s checkpoint file."""
    return f"weights/{model}"


def get(key: str):
    default, kind = DEFAULTS[_base(key)]
    return QgsSettings().value(_PREFIX + key, default, type=kind)


def set(key: str, value) -> None:  # noqa: A001 (reads as settings.set)
    _base(key)  # an unknown key raises before anything is remembered under it
    QgsSettings().setValue(_PREFIX + key, value)


def _base(key: str) -> str:
    """The `DEFAULTS` entry of ``key`` ("weights/<model>" -> "weights"); KeyError for unknown keys."""
    base = key.split("/", 1)[0]
    if base not in DEFAULTS:
        raise KeyError(f"unknown Loc² setting {key!r}")
    return base
