"""Processing algorithm ``loc2:georeferencephotos``: batch-localize photos against an aerial raster."""

from __future__ import annotations

from qgis.core import QgsProcessingAlgorithm


class GeoreferencePhotos(QgsProcessingAlgorithm):
    """Georeference photos (the engine loop of `loc2_engine.batch`, writing into feature sinks)."""

    def name(self):
        return "georeferencephotos"

    def displayName(self):
        return "Georeference photos"

    def shortHelpString(self):
        return "Estimates the position and heading of ground photos by matching them to an aerial raster."

    def createInstance(self):
        return GeoreferencePhotos()

    def initAlgorithm(self, config=None):
        pass

    def processAlgorithm(self, parameters, context, feedback):
        return {}
