"""A `Result` as QGIS layers: one layer group per photo with the five layers of docs/geopackage.md, styled from QML.

Layer names, geometry types and fields are those of the GeoPackage (`loc2_engine.gpkg.LAYERS`), so what the
dock shows and what it exports are the same tables; geometries are placed exactly as the writer places
them (frame.from_local of the local-frame arrays, the frustum from `loc2_engine.frustum`). Memory layers
in the CRS of the aerial layer; styles from ``resources/styles/<layer>.qml`` when present.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qgis.core import (QgsFeature, QgsField, QgsGeometry, QgsPointXY, QgsProject, QgsVectorLayer)

from loc2_engine.gpkg import LAYERS

from .compat import ogr_field_types
from .render import qgis_crs

#: top to bottom in the group: the GeoPackage's drawing order (the pose above its evidence, the wide frustum
#: polygon underneath), so the dock, Processing and a reopened GeoPackage stack the layers alike
LAYER_ORDER = tuple(LAYERS)
GROUP_PREFIX = "Loc² "


def _schema():
    from osgeo import ogr

    qt_types = ogr_field_types()
    geometry = {ogr.wkbPoint: "Point", ogr.wkbPolygon: "Polygon", ogr.wkbLineString: "LineString"}
    return {name: (geometry[geom], [(field, qt_types[kind]) for field, kind in fields])
            for name, (geom, fields) in LAYERS.items()}


def memory_layer(name: str, crs, schema) -> QgsVectorLayer:
    geometry, fields = schema[name]
    layer = QgsVectorLayer(geometry, name, "memory")
    layer.setCrs(crs)
    layer.dataProvider().addAttributes([QgsField(field, kind) for field, kind in fields])
    layer.updateFields()
    return layer


def _point(x, y) -> QgsGeometry:
    return QgsGeometry.fromPointXY(QgsPointXY(float(x), float(y)))


def _value(v):
    """Attribute value for QGIS: numpy scalars to Python, NaN to NULL."""
    if isinstance(v, (np.floating, float)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def result_features(result):
    """{layer name: [(QgsGeometry, {field: value}), ...]} of one localized result, in ``result.frame.crs``."""
    from loc2_engine.frustum import frustum_polygon
    from loc2_engine.georef import transform_points
    from loc2_engine.gpkg import FRUSTUM_RANGE_M, placed_ground

    frame = result.frame
    photo = result.photo
    xy = np.array([[result.x, result.y]], np.float64)
    if result.crs and qgis_crs(result.crs) != qgis_crs(frame.crs):
        xy = transform_points(xy, result.crs, frame.crs)
    out = {name: [] for name in LAYER_ORDER}
    out["camera_poses"].append((_point(*xy[0]), result.pose_row()))

    try:
        ring = frustum_polygon(result, FRUSTUM_RANGE_M, in_crs=True)
    except ValueError:  # pinhole without a usable HFOV: the pose is still worth showing
        ring = None
    if ring is not None:
        polygon = QgsGeometry.fromPolygonXY([[QgsPointXY(float(x), float(y)) for x, y in ring]])
        out["view_frustums"].append((polygon, {
            "photo": photo, "heading_deg": result.heading_deg, "hfov_deg": result.hfov_deg,
            "range_m": FRUSTUM_RANGE_M, "confidence": result.confidence, "status": result.status}))

    if len(result.weights):
        aerial = frame.from_local(np.asarray(result.xy_aerial, np.float64).reshape(-1, 2))
        ground = frame.from_local(placed_ground(result))
        residuals = np.asarray(result.residuals_m, np.float64).reshape(-1)
        for i, (u, v) in enumerate(np.asarray(result.uv_ground, np.float64).reshape(-1, 2)):
            common = {"photo": photo, "u": u, "v": v, "weight": result.weights[i],
                      "residual_m": residuals[i] if i < len(residuals) else None}
            inlier = bool(result.inlier_mask[i]) if i < len(result.inlier_mask) else False
            line = QgsGeometry.fromPolylineXY([QgsPointXY(*map(float, ground[i])),
                                               QgsPointXY(*map(float, aerial[i]))])
            out["matches"].append((line, dict(common, inlier=int(inlier))))
            if inlier:
                out["inliers"].append((_point(*aerial[i]), common))
    if len(result.layout_xy):
        layout = frame.from_local(np.asarray(result.layout_xy, np.float64).reshape(-1, 2))
        for (x, y), (u, v) in zip(layout, np.asarray(result.layout_uv, np.float64).reshape(-1, 2)):
            out["ground_layout"].append((_point(x, y), {"photo": photo, "u": u, "v": v}))
    return out


def apply_style(layer: QgsVectorLayer, name: str) -> bool:
    """Load ``resources/styles/<name>.qml`` into the layer; False when there is no such style."""
    from loc2_engine.resources import resource_path

    qml = resource_path("styles", f"{name}.qml")
    if not qml.is_file():
        return False
    _message, ok = layer.loadNamedStyle(str(qml))
    return bool(ok)


def add_result_layers(result, project: QgsProject = None):
    """Add a group ``Loc² <photo file>`` holding the five layers of ``result``; returns (group, {name: layer}).

    A failed result has no geometry to show: returns (None, {}).
    """
    if not result.ok or result.frame is None:
        return None, {}
    project = project or QgsProject.instance()
    schema = _schema()
    crs = qgis_crs(result.frame.crs)
    group = project.layerTreeRoot().insertGroup(0, GROUP_PREFIX + Path(result.photo).name)
    layers = {}
    for name, rows in result_features(result).items():
        layer = memory_layer(name, crs, schema)
        features = []
        for geometry, attrs in rows:
            feature = QgsFeature(layer.fields())
            feature.setGeometry(geometry)
            for field, value in attrs.items():
                feature.setAttribute(field, _value(value))
            features.append(feature)
        layer.dataProvider().addFeatures(features)
        layer.updateExtents()
        apply_style(layer, name)
        project.addMapLayer(layer, False)
        group.addLayer(layer)
        layers[name] = layer
    return group, layers
