"""Captures: grouping by time gaps, distance gaps, a manifest's sequence column and photos without time; EXIF
times; the sequence pass into the GeoPackage (seq_* columns, trajectory layer, rival poses) and `loc2 batch
--sequences` end to end."""

import datetime as dt
import math

import numpy as np
import piexif
import pytest
from osgeo import ogr
from PIL import Image
from shapely.geometry import Point

from loc2_engine import cli, pipeline
from loc2_engine.errors import ManifestError
from loc2_engine.exif import read_exif
from loc2_engine.georef import LocalFrame, transform_points
from loc2_engine.gpkg import SEQUENCE_FIELDS, GeoPackageWriter
from loc2_engine.manifest import ManifestRow, write_manifest
from loc2_engine.result import Result, RivalPose
from loc2_engine.sequences import (PhotoTiming, group_sequences, parse_time, photo_timing, run_sequence_pass)

from batch_fixtures import CRS, FakeLocalizer, write_photo, write_raster

T0 = 1_717_236_000.0  # 2024-06-01 10:00 UTC
LONLAT = (15.0, 45.0)


def east(metres):
    """(lon, lat) about ``metres`` east of LONLAT."""
    return (LONLAT[0] + metres / (111_320.0 * math.cos(math.radians(LONLAT[1]))), LONLAT[1])


def members(sequences, timings):
    return [[timings[i].photo for i in s.members] for s in sequences]


def test_time_gaps_split_and_order_by_time():
    timings = [PhotoTiming(f"p{k}.jpg", T0 + t, east(2 * k)) for k, t in enumerate([3, 0, 1, 2, 60, 61])]
    got = group_sequences(timings)
    assert members(got, timings) == [["p1.jpg", "p2.jpg", "p3.jpg", "p0.jpg"], ["p4.jpg", "p5.jpg"]]
    assert [s.id for s in got] == ["p1", "p4"]
    np.testing.assert_allclose(got[0].times_s - T0, [0, 1, 2, 3])
    assert members(group_sequences(timings, max_gap_s=100), timings)[0][-2:] == ["p4.jpg", "p5.jpg"]


def test_distance_gaps_split_but_missing_positions_do_not():
    timings = [PhotoTiming("a.jpg", T0, east(0)), PhotoTiming("b.jpg", T0 + 1, east(10)),
               PhotoTiming("c.jpg", T0 + 2, east(80)), PhotoTiming("d.jpg", T0 + 3, None),
               PhotoTiming("e.jpg", T0 + 4, east(90))]
    assert members(group_sequences(timings), timings) == [["a.jpg", "b.jpg"], ["c.jpg", "d.jpg", "e.jpg"]]
    assert len(group_sequences(timings, max_gap_m=100)) == 1


def test_manifest_sequence_column_and_photos_without_time():
    timings = [PhotoTiming("a.jpg", T0 + 5, sequence="walk"), PhotoTiming("b.jpg", T0, sequence="walk"),
               PhotoTiming("c.jpg", None, sequence="car"), PhotoTiming("d.jpg", None, sequence="car"),
               PhotoTiming("e.jpg"), PhotoTiming("f.jpg"), PhotoTiming("g.jpg", T0 + 1000)]
    got = group_sequences(timings)
    by_id = {s.id: [timings[i].photo for i in s.members] for s in got}
    assert by_id["walk"] == ["b.jpg", "a.jpg"]  # by time, 5 s apart is no gap inside a given sequence
    assert by_id["car"] == ["c.jpg", "d.jpg"]   # no times: the manifest's order, a second apart
    np.testing.assert_allclose(next(s for s in got if s.id == "car").times_s, [0, 1])
    assert by_id["e"] == ["e.jpg"] and by_id["f"] == ["f.jpg"] and by_id["g"] == ["g.jpg"]
    assert sorted(p for m in by_id.values() for p in m) == sorted(t.photo for t in timings)


def test_same_first_name_gets_unique_ids():
    timings = [PhotoTiming("x/a.jpg", T0), PhotoTiming("y/a.jpg", T0 + 100)]
    assert [s.id for s in group_sequences(timings)] == ["a", "a-2"]


def exif_photo(path, when=None, subsec=None, offset=None, lonlat=None):
    sub = {}
    if when is not None:
        sub[piexif.ExifIFD.DateTimeOriginal] = when.encode()
    if subsec is not None:
        sub[piexif.ExifIFD.SubSecTimeOriginal] = subsec.encode()
    if offset is not None:
        sub[piexif.ExifIFD.OffsetTimeOriginal] = offset.encode()
    Image.new("RGB", (32, 16)).save(path, "JPEG", exif=piexif.dump({"0th": {}, "Exif": sub, "GPS": {}}))
    return str(path)


def test_exif_time_with_subseconds_and_offset(tmp_path):
    info = read_exif(exif_photo(tmp_path / "a.jpg", "2024:06:01 12:00:03", "25", "+02:00"))
    assert info.taken_at == dt.datetime(2024, 6, 1, 12, 0, 3, 250000, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert photo_timing(str(tmp_path / "a.jpg")).time_s == pytest.approx(T0 + 3.25)
    assert read_exif(exif_photo(tmp_path / "b.jpg", "    :  :     :  :  ")).taken_at is None
    assert photo_timing(exif_photo(tmp_path / "c.jpg")).time_s is None


def test_manifest_time_and_sequence_cells(tmp_path):
    row = ManifestRow(photo=str(tmp_path / "missing.jpg"), crs=CRS, prior_x=500_000.0, prior_y=5_000_000.0,
                      extra={"time": "2024-06-01T10:00:01.5Z", "sequence": "walk"}, line=2)
    timing = photo_timing(row.photo, row)
    assert timing.time_s == pytest.approx(T0 + 1.5) and timing.sequence == "walk"
    assert timing.lonlat == pytest.approx(tuple(transform_points([(500_000.0, 5_000_000.0)], CRS, "EPSG:4326")[0]))
    assert parse_time("12.5") == 12.5
    row.extra["time"] = "yesterday"
    with pytest.raises(ManifestError, match="line 2: time 'yesterday'"):
        photo_timing(row.photo, row)


# -- the pass into a GeoPackage ---------------------------------------------------------------------------

ORIGIN = (500_000.0, 5_000_000.0)


def pose(photo, xy_local, heading, rivals=(), confidence=0.9, sigma=0.5):
    """A localized Result at local metres ``xy_local`` around ORIGIN (no explanation arrays)."""
    frame = LocalFrame(CRS, ORIGIN)
    x, y = frame.from_local(np.array([xy_local], float))[0]
    rivals = tuple(RivalPose(*frame.from_local(np.array([r[:2]], float))[0], r[2], r[3]) for r in rivals)
    return Result(photo=photo, status="ok", crs=CRS, x=x, y=y, heading_deg=heading, confidence=confidence,
                  sigma_m=sigma, camera="pano", hfov_deg=360.0, rivals=rivals, frame=frame)


def manifest_rows(times):
    """Manifest rows putting (photo, seconds) in the sequence "s1"."""
    return [ManifestRow(photo=p, extra={"time": str(t), "sequence": "s1"}) for p, t in times]


def layer_rows(path, name):
    ds = ogr.Open(str(path))
    out = [(f.items(), f.GetGeometryRef().Clone() if f.GetGeometryRef() else None) for f in ds.GetLayerByName(name)]
    del ds
    return out


def test_pass_writes_seq_columns_trajectory_and_keeps_the_single_photo_pose(tmp_path):
    path = tmp_path / "out.gpkg"
    photos = [f"p{k}.jpg" for k in range(10)]
    with GeoPackageWriter(path, CRS) as w:
        for k, photo in enumerate(photos):
            if k == 4:  # wrong place; its rival is right
                w.write(pose(photo, (4 * 5.0 + 20, -12.0), 200.0, [(4 * 5.0, 0.2, 91.0, -0.4)], confidence=0.7))
            elif k == 7:
                w.write(Result.failure(photo, RuntimeError("no matches")))
            else:
                w.write(pose(photo, (k * 5.0, 0.0), 90.0, [(k * 5.0 - 15, 8.0, 270.0, -1.0)]))
        assert len(w.pose_evidence()["p4.jpg"]["rivals"]) == 1
        summary = run_sequence_pass(w, photos, manifest_rows([(p, 2.0 * k) for k, p in enumerate(photos)]))
    assert (summary.sequences, summary.photos, summary.overruled, summary.filled) == (1, 10, 1, 1)
    poses = {items["photo"]: (items, geom) for items, geom in layer_rows(path, "camera_poses")}
    frame = LocalFrame(CRS, ORIGIN)
    items, geom = poses["p4.jpg"]
    assert items["seq_overruled"] == 1 and items["sequence"] == "s1"
    seq_local = frame.to_local(np.array([[items["seq_x"], items["seq_y"]]]))[0]
    assert np.hypot(*(seq_local - (20.0, 0.0))) < 1.0 and abs(items["seq_heading_deg"] - 90.0) < 5.0
    assert (geom.GetX(), geom.GetY()) == pytest.approx((items["x"], items["y"]))  # its own pose kept
    assert items["heading_deg"] == 200.0
    items, geom = poses["p7.jpg"]
    assert geom is None and items["x"] is None and items["seq_overruled"] == 0
    assert np.hypot(*(frame.to_local(np.array([[items["seq_x"], items["seq_y"]]]))[0] - (35.0, 0.0))) < 1.0
    assert all(poses[p][0]["seq_overruled"] == 0 for p in photos if p != "p4.jpg")
    lines = layer_rows(path, "trajectory")
    assert len(lines) == 1
    attrs, line = lines[0]
    assert attrs == {"sequence": "s1", "photos": 10, "overruled": 1, "length_m": pytest.approx(45.0, abs=1.5)}
    assert line.GetPointCount() == 10
    assert len(layer_rows(path, "rival_poses")) == 9

    # a second pass replaces the trajectory rows instead of adding to them; the style is stored once
    with GeoPackageWriter(path, CRS) as w:
        run_sequence_pass(w, photos, manifest_rows([(p, 2.0 * k) for k, p in enumerate(photos)]))
    assert len(layer_rows(path, "trajectory")) == 1
    styles = [i["f_table_name"] for i, _ in layer_rows(path, "layer_styles")]
    assert styles.count("trajectory") == 1


def test_file_without_sequences_stays_as_it_was_and_old_files_gain_the_columns(tmp_path):
    path = tmp_path / "out.gpkg"
    with GeoPackageWriter(path, CRS) as w:
        w.write(pose("a.jpg", (0.0, 0.0), 10.0))
    ds = ogr.Open(str(path))
    defn = ds.GetLayerByName("camera_poses").GetLayerDefn()
    names = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    assert "seq_x" not in names and ds.GetLayerByName("trajectory") is None
    del ds
    with GeoPackageWriter(path, CRS) as w:
        summary = run_sequence_pass(w, ["a.jpg"])  # no time: a sequence of its own, its own pose
    assert summary.sequences == 0
    items, _ = layer_rows(path, "camera_poses")[0]
    assert set(name for name, _ in SEQUENCE_FIELDS) <= set(items)
    assert items["sequence"] == "a" and items["seq_x"] == pytest.approx(items["x"]) and items["seq_overruled"] == 0
    assert layer_rows(path, "trajectory") == []


class WrongFourth(FakeLocalizer):
    """The fake's pose, but the fourth photo 20 m off with the right pose as its rival."""

    def localize(self, photo, aerial, prior=None, depth_map=None):
        result = super().localize(photo, aerial, prior, depth_map)
        if str(photo).endswith("s03.jpg") and result.ok:
            result.rivals = (RivalPose(result.x, result.y, result.heading_deg, -0.3),)
            result.x, result.confidence = result.x + 20.0, 0.6
        return result


def test_cli_batch_sequences_end_to_end_and_resume(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pipeline, "Localizer", lambda **kw: WrongFourth())
    write_raster(tmp_path / "aerial.tif")
    (tmp_path / "photos").mkdir()
    rows = []
    for k in range(8):
        xy = (500_040.0 + 4.0 * k, 5_000_100.0)
        photo = write_photo(tmp_path / "photos" / f"s{k:02d}.jpg", xy, seed=k)
        rows.append({"photo": f"photos/s{k:02d}.jpg", "aerial": "aerial.tif", "crs": CRS, "prior_x": xy[0],
                     "prior_y": xy[1], "heading_prior_deg": 90.0, "time": f"2024-06-01T10:00:{2 * k:02d}",
                     "sequence": "street"})
        assert photo
    write_manifest(tmp_path / "manifest.csv", rows)
    out = tmp_path / "out.gpkg"
    args = ["batch", "--manifest", tmp_path / "manifest.csv", "--out", out, "--sequences"]
    assert cli.main([str(a) for a in args[:-1]] + ["--max-gap-s", "5"]) == 2
    assert "go with --sequences" in capsys.readouterr().err
    assert cli.main([str(a) for a in args]) == 0
    assert "1 smoothed (8 photos), 1 photos overruled" in capsys.readouterr().out
    poses = {items["photo"].split("/")[-1]: items for items, _ in layer_rows(out, "camera_poses")}
    assert [poses[f"s{k:02d}.jpg"]["seq_overruled"] for k in range(8)] == [0, 0, 0, 1, 0, 0, 0, 0]
    wrong = poses["s03.jpg"]
    assert abs(wrong["seq_x"] - (wrong["x"] - 20.0)) < 1.0
    assert [a["photos"] for a, _ in layer_rows(out, "trajectory")] == [8]
    # resumed: nothing left to localize, the pass runs again from the file alone
    assert cli.main([str(a) for a in args] + ["--resume"]) == 0
    assert "1 smoothed (8 photos)" in capsys.readouterr().out
    assert len(layer_rows(out, "trajectory")) == 1


# -- synthetic captures (loc2 synth --sequences) -------------------------------------------------------------

def test_synthetic_capture_walks_the_streets_with_time_in_exif(tmp_path):
    from types import SimpleNamespace

    from shapely.geometry import LineString
    from shapely.ops import unary_union

    from loc2_engine.synth.captures import capture
    from loc2_engine.synth.photos import exif_bytes, save_jpeg
    from loc2_engine.synth.town import Road

    roads = [Road(LineString([(-200, 0), (200, 0)]), 8.0, 2.0), Road(LineString([(0, -200), (0, 200)]), 8.0, 2.0)]
    town = SimpleNamespace(roads=roads, walkable=unary_union([r.line.buffer(6.0) for r in roads]))
    rng = np.random.default_rng(0)
    for _ in range(4):
        frames = capture(town, 60.0, 15, rng)
        assert len(frames) == 15
        xy = np.array([(f.x, f.y) for f in frames])
        steps = np.hypot(*np.diff(xy, axis=0).T)
        assert np.median(steps) >= 1.8 and np.median(steps) <= 11.0
        assert all(town.walkable.contains(Point(p)) for p in xy) and np.abs(xy).max() <= 63.0
        assert np.all(np.diff([f.t_s for f in frames]) > 0)
        travel = np.degrees(np.arctan2(*np.diff(xy, axis=0).T)) % 360  # atan2(dx, dy): clockwise from north
        straight = steps > 1.5
        assert np.median(np.abs(wrap(np.array([f.heading_grid for f in frames[1:]])[straight]
                                     - travel[straight]))) < 10.0
    when = dt.datetime(2024, 6, 1, 10, 0, 3, 250000)
    path = tmp_path / "a.jpg"
    save_jpeg(path, np.zeros((8, 16, 3), np.uint8), exif_bytes((8.5, 47.3), 400.0, None, (16, 8), (16, 8),
                                                                 taken_at=when), 90)
    assert read_exif(path).taken_at == when


def wrap(angle):
    return (np.asarray(angle) + 180.0) % 360.0 - 180.0
