"""The search area as the engine takes it: a rectangle in the aerial layer's CRS, inside the layer.

The dock (a drawn rectangle or polygon, the map view) and the Processing algorithm (EXTENT) hold an area in
a CRS of their own. `engine_extent` transforms its bounding box to the aerial layer's CRS with QGIS's
transform (edges densified, so a rectangle in degrees or in another projection is covered), clips it to
the layer's extent (windows beyond the layer show nothing to match) and gives the (xmin, ymin, xmax, ymax)
that `loc2_engine.pipeline.Localizer.localize_in_extent` searches, with the layer's CRS as ``extent_crs``.
"""

from __future__ import annotations

from typing import Tuple

from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsCsException, QgsRectangle

from .compat import tr

Extent = Tuple[float, float, float, float]


class AreaError(ValueError):
    """A search area the engine cannot take; the message is the sentence for the user."""


def engine_extent(rect: QgsRectangle, crs: QgsCoordinateReferenceSystem, layer_crs: QgsCoordinateReferenceSystem,
                  layer_extent: QgsRectangle, transform_context) -> Extent:
    """(xmin, ymin, xmax, ymax) in ``layer_crs`` units: ``rect`` (in ``crs``) as a bounding box in the layer's
    CRS, clipped to ``layer_extent``. AreaError when it cannot be transformed or misses the layer."""
    try:
        box = QgsCoordinateTransform(crs, layer_crs, transform_context).transformBoundingBox(rect)
    except QgsCsException as exc:
        raise AreaError(tr("The search area cannot be put into the aerial layer's CRS ({crs}): {reason}").format(
            crs=layer_crs.authid() or layer_crs.description(), reason=str(exc))) from exc
    if not box.isFinite() or box.isEmpty():
        raise AreaError(tr("The search area has no extent in the aerial layer's CRS ({crs}); draw it over the "
                           "aerial layer.").format(crs=layer_crs.authid() or layer_crs.description()))
    clipped = box.intersect(layer_extent)
    if clipped.isEmpty():
        raise AreaError(tr("The search area does not overlap the aerial layer; draw it over the layer."))
    return clipped.xMinimum(), clipped.yMinimum(), clipped.xMaximum(), clipped.yMaximum()
