"""Processing provider ``loc2`` ("Loc²"): registers the batch georeferencing algorithm.

`plugin.py` adds it in ``initProcessing()``; nothing here touches ``iface``, so ``qgis_process`` (which calls
``classFactory(None)`` then ``initProcessing()``) can load it too.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms.georeference_photos import GeoreferencePhotos
from .compat import tr


def _icon_path() -> str:
    """The provider icon: ``resources/icons/loc2.svg`` inside the plugin (zip) or the repository; '' if absent."""
    here = Path(__file__).resolve().parent
    for folder in (here / "resources" / "icons", here.parent / "resources" / "icons"):
        for name in ("loc2.svg", "icon.svg", "loc2.png", "icon.png"):
            if (folder / name).is_file():
                return str(folder / name)
    return ""


class Loc2Provider(QgsProcessingProvider):
    """The ``loc2`` provider; its algorithms call the same engine loop as ``loc2 batch``."""

    def id(self):
        return "loc2"

    def name(self):
        return "Loc²"

    def longName(self):
        return tr("Loc² cross-view localization")

    def icon(self):
        path = _icon_path()
        return QIcon(path) if path else super().icon()

    def svgIconPath(self):
        return _icon_path() or super().svgIconPath()

    def loadAlgorithms(self):
        self.addAlgorithm(GeoreferencePhotos())
