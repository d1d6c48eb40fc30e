"""GeoPackageWriter: the five layers of docs/geopackage.md, append-only reopening, one transaction per photo, and
styles stored in ``layer_styles`` that QGIS applies when it opens the file."""

import math

import numpy as np
import pytest
from osgeo import ogr

from loc2_engine.errors import PhotoError
from loc2_engine.georef import LocalFrame
from loc2_engine.gpkg import LAYERS, GeoPackageWriter
from loc2_engine.result import POSE_FIELDS, Result
from loc2_engine.solver import rotation_from_heading

CRS = "EPSG:32633"
ORIGIN = (500_000.0, 5_000_000.0)


def ok_result(photo="a.jpg", heading=30.0, offset=(5.0, -3.0), n=12, m=20, seed=0):
    """A localized result in the local frame of ORIGIN: n matches (2/3 inliers), m layout points."""
    rng = np.random.default_rng(seed)
    frame = LocalFrame(CRS, ORIGIN)
    t = np.array(offset)
    xy_bev = np.c_[rng.uniform(-8, 8, n), rng.uniform(2, 20, n)]
    R = rotation_from_heading(heading)
    x, y = frame.from_local(t[None])[0]
    return Result(
        photo=photo, status="ok", crs=CRS, x=x, y=y, lon=15.0, lat=45.0, heading_deg=heading,
        heading_grid_deg=frame.true_to_grid_heading(heading, (x, y)), scale=1.0, matches=n,
        inliers=2 * n // 3, inlier_ratio=2 / 3, confidence=0.8, residual_m=0.5, sigma_m=1.0,
        camera="pinhole", model="fake", depth="truth", runtime_s=0.1, hfov_deg=60.0,
        uv_ground=rng.uniform(0, 100, (n, 2)), xy_bev=xy_bev, xy_aerial=xy_bev @ R.T + t,
        weights=rng.uniform(0.1, 1, n), inlier_mask=np.arange(n) < 2 * n // 3,
        residuals_m=np.zeros(n), layout_uv=rng.uniform(0, 100, (m, 2)),
        layout_xy=rng.uniform(-10, 10, (m, 2)) + t, frame=frame)


def rows(path, layer, sql_where=""):
    ds = ogr.Open(str(path))
    lyr = ds.GetLayerByName(layer)
    if sql_where:
        lyr.SetAttributeFilter(sql_where)
    out = [(f.items(), f.GetGeometryRef().Clone() if f.GetGeometryRef() else None) for f in lyr]
    return out


def test_layers_fields_and_geometry(tmp_path):
    path = tmp_path / "out.gpkg"
    res = ok_result()
    with GeoPackageWriter(path, CRS) as w:
        w.write(res)
        w.write(Result.failure("broken.jpg", PhotoError("broken.jpg is empty (0 bytes).")))
        assert w.photos() == {"a.jpg", "broken.jpg"}
    ds = ogr.Open(str(path))
    for name, (geom_type, fields) in LAYERS.items():
        lyr = ds.GetLayerByName(name)
        assert lyr.GetGeomType() == geom_type
        defn = lyr.GetLayerDefn()
        assert [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())] == [f for f, _ in fields]
        assert lyr.GetSpatialRef().GetAuthorityCode(None) == "32633"
    assert [d.GetFieldDefn(i).GetName() for d in [ds.GetLayerByName("camera_poses").GetLayerDefn()]
            for i in range(d.GetFieldCount())] == list(POSE_FIELDS)
    del ds

    poses = {items["photo"]: (items, geom) for items, geom in rows(path, "camera_poses")}
    items, geom = poses["a.jpg"]
    assert items["status"] == "ok" and items["matches"] == 12 and items["error"] == ""
    assert (geom.GetX(), geom.GetY()) == pytest.approx((res.x, res.y), abs=1e-6)
    items, geom = poses["broken.jpg"]
    assert geom is None and items["status"] == "failed" and "0 bytes" in items["error"]
    assert items["x"] is None and items["heading_deg"] is None

    assert len(rows(path, "view_frustums")) == 1
    assert len(rows(path, "matches")) == 12
    assert len(rows(path, "ground_layout")) == 20
    inliers = rows(path, "inliers")
    assert len(inliers) == 8
    # the aerial side of each inlier, and the match line from the placed ground point to it: these fake
    # matches are exact, so both ends coincide
    aerial = res.frame.from_local(res.xy_aerial[res.inlier_mask])
    got = np.array([[g.GetX(), g.GetY()] for _, g in inliers])
    np.testing.assert_allclose(got, aerial, atol=1e-6)
    for _, line in rows(path, "matches"):
        assert line.Length() == pytest.approx(0.0, abs=1e-6)


def test_reopen_appends_and_keeps_the_file_crs(tmp_path):
    path = tmp_path / "out.gpkg"
    with GeoPackageWriter(path, CRS) as w:
        w.write(ok_result("a.jpg"))
    with GeoPackageWriter(path, "EPSG:4326") as w:  # an existing file keeps its CRS
        assert w.crs.to_epsg() == 32633
        assert w.photos() == {"a.jpg"}
        w.write(ok_result("b.jpg", heading=200.0, seed=1))
    assert sorted(i["photo"] for i, _ in rows(path, "camera_poses")) == ["a.jpg", "b.jpg"]
    assert len(rows(path, "ground_layout")) == 40
    assert len(rows(path, "layer_styles")) == len(LAYERS)  # styles embedded once


def test_output_crs_differs_from_raster_crs(tmp_path):
    path = tmp_path / "out.gpkg"
    res = ok_result()
    with GeoPackageWriter(path, "EPSG:4326") as w:
        w.write(res)
    (items, geom), = rows(path, "camera_poses")
    lon, lat = res.frame.local_to_lonlat(np.array([[5.0, -3.0]]))[0]
    assert (geom.GetX(), geom.GetY()) == pytest.approx((lon, lat), abs=1e-9)
    assert (items["x"], items["y"]) == pytest.approx((lon, lat), abs=1e-9)
    assert items["heading_grid_deg"] == pytest.approx(30.0, abs=1e-6)  # geographic: grid north = true north


def test_a_failing_write_leaves_no_partial_photo(tmp_path, monkeypatch):
    path = tmp_path / "out.gpkg"
    with GeoPackageWriter(path, CRS) as w:
        w.write(ok_result("a.jpg"))

        create = GeoPackageWriter._create

        def boom(self, layer, feature):  # fails after the pose row went in, inside the transaction
            if layer.GetName() == "matches":
                raise RuntimeError("disk pulled out")
            create(self, layer, feature)

        monkeypatch.setattr(GeoPackageWriter, "_create", boom)
        with pytest.raises(RuntimeError):
            w.write(ok_result("b.jpg"))
        assert w.photos() == {"a.jpg"}
    for layer in ("camera_poses", "view_frustums", "inliers", "matches", "ground_layout"):
        assert {i["photo"] for i, _ in rows(path, layer)} == {"a.jpg"}


def test_pinhole_without_hfov_still_writes_the_pose(tmp_path):
    res = ok_result()
    res.hfov_deg = math.nan
    with GeoPackageWriter(tmp_path / "out.gpkg", CRS) as w:
        w.write(res)
    assert len(rows(tmp_path / "out.gpkg", "camera_poses")) == 1
    assert len(rows(tmp_path / "out.gpkg", "view_frustums")) == 0


@pytest.mark.inqgis
def test_qgis_opens_the_file_styled(tmp_path, qgis_app):
    from qgis.core import QgsProperty, QgsSymbolLayer, QgsVectorLayer

    path = tmp_path / "out.gpkg"
    with GeoPackageWriter(path, CRS) as w:
        w.write(ok_result())
    layer = QgsVectorLayer(f"{path}|layername=camera_poses", "camera_poses", "ogr")
    try:
        assert layer.isValid() and layer.featureCount() == 1
        assert layer.crs().authid() == "EPSG:32633"
        renderer = layer.renderer()  # a fresh layer would get a random single symbol
        assert renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "status"
        assert {c.value() for c in renderer.categories()} == {"ok", "low_confidence", "failed"}
        category = renderer.categories()[0]
        arrow = category.symbol().symbolLayer(1)
        angle = arrow.dataDefinedProperties().property(QgsSymbolLayer.PropertyAngle)
        assert angle.propertyType() == QgsProperty.ExpressionBasedProperty
        assert "heading_grid_deg" in angle.expressionString()
        assert layer.labelsEnabled() and "confidence" in layer.labeling().settings().fieldName
        inliers = QgsVectorLayer(f"{path}|layername=inliers", "inliers", "ogr")
        fill = inliers.renderer().symbol().symbolLayer(0).dataDefinedProperties().property(
            QgsSymbolLayer.PropertyFillColor)
        assert "weight" in fill.expressionString()
        matches = QgsVectorLayer(f"{path}|layername=matches", "matches", "ogr")
        assert matches.renderer().type() == "categorizedSymbol"
    finally:
        del layer


@pytest.mark.inqgis
def test_qgis_stacks_a_reopened_file_pose_on_top(tmp_path, qgis_app):
    """A GeoPackage dragged into QGIS 3.22: its provider lists the layers in creation order and QGIS, adding them
    all, stacks them in that order (QgisApp::addSublayers adds them last to first, each on top), so the file must
    list them in drawing order, whatever its first photo wrote."""
    from qgis.core import (QgsCoordinateTransformContext, QgsProject, QgsProviderRegistry,
                           QgsProviderSublayerDetails)

    path = tmp_path / "out.gpkg"
    with GeoPackageWriter(path, CRS) as w:
        w.write(Result.failure("broken.jpg", PhotoError("broken.jpg is empty (0 bytes).")))  # camera_poses only
        w.write(ok_result())
    listed = QgsProviderRegistry.instance().querySublayers(str(path))
    sublayers = [s for s in listed if s.name() in LAYERS]
    assert [s.name() for s in sublayers] == list(LAYERS)
    project = QgsProject()
    options = QgsProviderSublayerDetails.LayerOptions(QgsCoordinateTransformContext())
    for sublayer in reversed(sublayers):
        assert project.addMapLayer(sublayer.toLayer(options)) is not None
    drawn = [layer.name() for layer in project.layerTreeRoot().layerOrder()]  # top first
    assert drawn.index("camera_poses") < drawn.index("inliers") < drawn.index("view_frustums"), drawn
    # QGIS's sublayer dialog lists them by name instead: the pose layer is first there too
    assert sorted((s.name() for s in listed), key=str.casefold)[0] == "camera_poses"
    project.clear()


def test_unusable_output_files_are_specific_errors(tmp_path):
    from loc2_engine.errors import OutputError

    (tmp_path / "notes.gpkg").write_text("not a database")
    with pytest.raises(OutputError, match="not a GeoPackage"):
        GeoPackageWriter(tmp_path / "notes.gpkg", CRS)
    (tmp_path / "dir").write_text("a file where a folder should be")
    with pytest.raises(OutputError, match="Cannot create"):
        GeoPackageWriter(tmp_path / "dir" / "out.gpkg", CRS)


def test_failed_rows_at_a_given_point_and_photo_ids_of_any_pose_file(tmp_path):
    """layer_rows puts a failed row at ``failed_at`` (pose fields stay empty); photos_in reads the photo ids
    of a GeoPackageWriter file or of a file with one pose layer under another name (a Processing sink's)."""
    from loc2_engine.errors import OutputError
    from loc2_engine.gpkg import layer_rows, photos_in

    failed = Result.failure("broken.jpg", PhotoError("truncated"))
    assert layer_rows(failed, CRS)["camera_poses"][0][0] is None
    geometry, attrs = layer_rows(failed, CRS, failed_at=(500_010.0, 5_000_020.0))["camera_poses"][0]
    assert (geometry.GetX(), geometry.GetY()) == (500_010.0, 5_000_020.0) and attrs["x"] is None
    ok = ok_result()
    assert layer_rows(ok, CRS, failed_at=(0.0, 0.0))["camera_poses"][0][0].GetX() == pytest.approx(ok.x)

    path = tmp_path / "out.gpkg"
    with GeoPackageWriter(path, CRS) as w:
        w.write(ok)
        w.write(failed)
    assert photos_in(path) == {"a.jpg", "broken.jpg"}
    other = tmp_path / "poses.gpkg"  # what a Processing sink writes: one layer named after the file
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(other))
    layer = ds.CreateLayer("poses", None, ogr.wkbPoint)
    layer.CreateField(ogr.FieldDefn("photo", ogr.OFTString))
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetField("photo", "c.jpg")
    layer.CreateFeature(feature)
    ds = None
    assert photos_in(other) == {"c.jpg"} and photos_in(other, "poses") == {"c.jpg"}
    with pytest.raises(OutputError, match="no layer 'inliers'"):
        photos_in(other, "inliers")
    (tmp_path / "notes.txt").write_text("not a vector file")
    with pytest.raises(OutputError, match="not a vector file"):
        photos_in(tmp_path / "notes.txt")
