"""Where the shipped resources (styles, icons, model weights) are, in the repository and in the plugin zip.

One lookup for everyone, so the engine works unchanged from a git checkout (``<repo>/resources``), from the
QGIS plugin zip (the engine is vendored as ``loc2_qgis/loc2_engine`` with ``loc2_qgis/resources`` beside it,
i.e. again ``<engine package parent>/resources``), or with resources kept elsewhere ($LOC2_RESOURCES).
"""

from __future__ import annotations

import os
from pathlib import Path

ENGINE_DIR = Path(__file__).resolve().parent


def resource_roots():
    """Candidate resource folders, searched in order: $LOC2_RESOURCES, <engine parent>/resources,
    <engine package>/resources."""
    roots = []
    if os.environ.get("LOC2_RESOURCES"):
        roots.append(Path(os.environ["LOC2_RESOURCES"]))
    roots += [ENGINE_DIR.parent / "resources", ENGINE_DIR / "resources"]
    return roots


def resource_path(*parts: str) -> Path:
    """``resources/<parts...>`` from the first root where it exists, e.g. ``resource_path("styles", "x.qml")``.

    When it exists nowhere, the path under ``<engine parent>/resources`` is returned, so that the caller's
    error message names the place a repository checkout would have it.
    """
    for root in resource_roots():
        candidate = root.joinpath(*parts)
        if candidate.exists():
            return candidate
    return (ENGINE_DIR.parent / "resources").joinpath(*parts)
