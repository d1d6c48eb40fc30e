"""Dock choices that persist between QGIS sessions (QgsSettings, under ``loc2/``)."""

from __future__ import annotations

from qgis.core import QgsSettings

_PREFIX = "loc2/"

#: key -> (default, type); types are explicit because QSettings returns strings from the ini file
DEFAULTS = {
    "last_raster": ("", str),        # layer id of the aerial layer last used
    "radius_m": (25.0, float),
    "model": ("default", str),
    "depth": ("mono", str),
    "export_folder": ("", str),
}


def get(key: str):
    default, kind = DEFAULTS[key]
    return QgsSettings().value(_PREFIX + key, default, type=kind)


def set(key: str, value) -> None:  # noqa: A001 (reads as settings.set)
    if key not in DEFAULTS:
        raise KeyError(f"unknown Loc² setting {key!r}")
    QgsSettings().setValue(_PREFIX + key, value)
