"""Loc² QGIS plugin: geolocate a street-level photo against an aerial layer.

QGIS imports this package and calls `classFactory(iface)`; ``qgis_process`` calls it with ``iface=None`` and
then only ``initProcessing()``. Nothing heavy (torch, the engine's models) is imported here, so the plugin
always loads, even when torch is missing (`deps.py` then offers to install it).
"""

import importlib.util
import sys
from pathlib import Path


def _use_vendored_engine():
    """Make ``import loc2_engine`` find the engine copied into the plugin folder by ``make package``.

    In the repository the engine sits beside ``loc2_qgis/`` and is importable as is. In the zip it is
    ``loc2_qgis/loc2_engine/``; registering it under its own top-level name (instead of putting the plugin
    folder on ``sys.path``) keeps generic module names of the plugin (``settings``, ``task``) from shadowing
    other plugins' imports.
    """
    vendored = Path(__file__).resolve().parent / "loc2_engine"
    if "loc2_engine" in sys.modules or not (vendored / "__init__.py").is_file():
        return
    spec = importlib.util.spec_from_file_location(
        "loc2_engine", vendored / "__init__.py", submodule_search_locations=[str(vendored)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["loc2_engine"] = module
    spec.loader.exec_module(module)


def classFactory(iface):  # noqa: N802 (QGIS's name)
    """QGIS entry point: the plugin object (``iface`` is None under qgis_process)."""
    from . import deps

    _use_vendored_engine()
    deps.add_local_site()
    from .plugin import Loc2Plugin

    return Loc2Plugin(iface)
