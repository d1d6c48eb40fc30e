"""The batch loop (loc2_engine.batch) and `loc2 batch`: good and broken photos, resume after SIGKILL,
cancel, manifests, EXIF heading priors, a search extent for photos without a position, exit codes. The localizer is `batch_fixtures.FakeLocalizer` (real
input handling, made-up pose) so these tests do not depend on a trained model."""

import gc
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import weakref
from collections import Counter
from pathlib import Path

import pytest
from osgeo import ogr

from batch_fixtures import (CRS, GOOD, OFFSET_M, ExtentFake, FakeLocalizer, make_folder, write_photo,
                            write_raster)
from loc2_engine import cli, defaults, pipeline
from loc2_engine.batch import find_photos, folder_jobs, manifest_jobs, run_batch
from loc2_engine.georef import transform_points
from loc2_engine.gpkg import GeoPackageWriter
from loc2_engine.manifest import read_manifest, write_manifest
from loc2_engine.pipeline import Prior

REPO = Path(__file__).resolve().parents[1]


def pose_rows(path):
    ds = ogr.Open(str(path))
    out = [(f.items(), f.GetGeometryRef() is not None) for f in ds.GetLayerByName("camera_poses")]
    return out


def test_find_photos_extensions_case_and_recursion(tmp_path):
    for name in ("a.jpg", "b.JPEG", "c.Png", "d.tif", "e.TIFF", "f.txt", "g.gif"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "h.jpg").write_bytes(b"x")
    names = [Path(p).name for p in find_photos(tmp_path)]
    assert names == ["a.jpg", "b.JPEG", "c.Png", "d.tif", "e.TIFF"]
    assert [Path(p).name for p in find_photos(tmp_path, recursive=True)][-1] == "h.jpg"
    assert all(os.path.isabs(p) for p in find_photos(tmp_path))
    with pytest.raises(Exception, match="not a folder"):
        find_photos(tmp_path / "a.jpg")


def test_good_photos_get_poses_and_broken_ones_specific_reasons(tmp_path):
    folder, raster, expected = make_folder(tmp_path)
    jobs = folder_jobs(folder, prior=Prior(radius_m=10.0))
    seen = []
    with GeoPackageWriter(tmp_path / "out.gpkg", CRS) as out:
        summary = run_batch(jobs, raster, out, FakeLocalizer(crash_on="p03.png"),
                            progress=lambda done, total, r: seen.append((done, total)))
    assert seen == [(i, 8) for i in range(1, 9)]
    assert (summary.ok, summary.low_confidence, summary.failed, summary.total) == (2, 0, 6, 8)

    rows = {Path(items["photo"]).name: (items, has_geom) for items, has_geom in pose_rows(tmp_path / "out.gpkg")}
    assert set(rows) == set(GOOD) | set(expected)  # notes.txt is not a photo
    for name in ("p01.jpg", "p02.JPG"):
        items, has_geom = rows[name]
        assert items["status"] == "ok" and has_geom and items["error"] == ""
        assert (items["x"], items["y"]) == pytest.approx(
            (GOOD[name][0] + OFFSET_M[0], GOOD[name][1] + OFFSET_M[1]), abs=0.05)  # EXIF GPS rounding
    for name, fragment in expected.items():
        items, has_geom = rows[name]
        assert items["status"] == "failed" and not has_geom
        assert fragment in items["error"], (name, items["error"])
    items, _ = rows["p03.png"]  # an unexpected exception becomes a failed row, and the batch went on
    assert items["status"] == "failed" and "ZeroDivisionError" in items["error"]


def test_results_are_not_kept(tmp_path):
    folder, raster, _ = make_folder(tmp_path)
    fake, refs = FakeLocalizer(), []

    class Tracking:
        def localize(self, *args, **kwargs):
            result = fake.localize(*args, **kwargs)
            refs.append(weakref.ref(result))
            return result

    with GeoPackageWriter(tmp_path / "out.gpkg", CRS) as out:
        run_batch(folder_jobs(folder, prior=Prior()), raster, out, Tracking())
    gc.collect()
    assert len(refs) == 8 and all(r() is None for r in refs)


def test_cancel_is_honoured_between_photos(tmp_path):
    folder, raster, _ = make_folder(tmp_path)
    done = []
    with GeoPackageWriter(tmp_path / "out.gpkg", CRS) as out:
        summary = run_batch(folder_jobs(folder, prior=Prior()), raster, out, FakeLocalizer(),
                            progress=lambda d, t, r: done.append(d), cancelled=lambda: len(done) >= 3)
    assert summary.cancelled and summary.done == 3
    assert len(pose_rows(tmp_path / "out.gpkg")) == 3


def test_killed_batch_resumes_to_exactly_one_row_per_photo(tmp_path):
    folder, raster, _ = make_folder(tmp_path)
    out = tmp_path / "out.gpkg"
    driver = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'tests')!r}]
        from batch_fixtures import CRS, FakeLocalizer
        from loc2_engine.batch import folder_jobs, run_batch
        from loc2_engine.gpkg import GeoPackageWriter
        from loc2_engine.pipeline import Prior
        with GeoPackageWriter({str(out)!r}, CRS) as w:
            run_batch(folder_jobs({str(folder)!r}, prior=Prior()), {raster!r}, w, FakeLocalizer(delay_s=0.5),
                      progress=lambda d, t, r: print(d, flush=True))
    """)
    proc = subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PROJ_DATA": os.environ.get("PROJ_DATA", "/usr/share/proj")})
    try:
        for _ in range(3):
            assert proc.stdout.readline().strip(), "the batch process ended before 3 photos"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    n_before = len(pose_rows(out))  # the killed file is valid and holds every finished photo
    assert 3 <= n_before < 8

    with GeoPackageWriter(out, CRS) as w:
        summary = run_batch(folder_jobs(folder, prior=Prior()), raster, w, FakeLocalizer(), resume=True)
    assert summary.skipped == n_before and summary.done == 8 - n_before
    counts = Counter(items["photo"] for items, _ in pose_rows(out))
    assert len(counts) == 8 and set(counts.values()) == {1}


def test_manifest_rows_give_priors_cameras_and_depth(tmp_path):
    raster = write_raster(tmp_path / "aerial.tif")
    write_photo(tmp_path / "a.jpg", None)
    write_photo(tmp_path / "b.jpg", (500_100.0, 5_000_100.0))
    write_manifest(tmp_path / "manifest.csv", [
        {"photo": "a.jpg", "aerial": "aerial.tif", "camera": "pinhole", "hfov_deg": 70.0, "crs": CRS,
         "prior_x": 500_050.0, "prior_y": 5_000_050.0, "radius_m": 12.0, "heading_prior_deg": 90.0,
         "heading_tolerance_deg": 20.0, "depth": "a.npy"},
        {"photo": "b.jpg", "aerial": "aerial.tif"},
    ])
    a, b = manifest_jobs(read_manifest(tmp_path / "manifest.csv"))
    assert a.photo == str(tmp_path / "a.jpg") and a.aerial == raster and a.depth_map == str(tmp_path / "a.npy")
    assert (a.camera, a.hfov_deg) == ("pinhole", 70.0)
    assert (a.prior.x, a.prior.y, a.prior.crs, a.prior.radius_m) == (500_050.0, 5_000_050.0, CRS, 12.0)
    assert (a.prior.heading_deg, a.prior.heading_tolerance_deg) == (90.0, 20.0)
    assert b.prior.x is None and b.prior.radius_m == defaults.RADIUS_M and b.camera is None
    assert manifest_jobs(read_manifest(tmp_path / "manifest.csv"), radius_m=5.0)[1].prior.radius_m == 5.0

    with GeoPackageWriter(tmp_path / "out.gpkg", CRS) as out:  # no batch aerial: each row's raster
        summary = run_batch([a, b], None, out, FakeLocalizer())
    assert summary.ok == 2
    rows = {Path(i["photo"]).name: i for i, _ in pose_rows(tmp_path / "out.gpkg")}
    assert rows["a.jpg"]["heading_deg"] == pytest.approx(90.0)  # the manifest's heading prior reached it
    assert rows["a.jpg"]["x"] == pytest.approx(500_050.0 + OFFSET_M[0])


def test_exif_heading_prior_only_when_asked_and_true_north(tmp_path):
    raster = write_raster(tmp_path / "aerial.tif")
    folder = tmp_path / "photos"
    folder.mkdir()
    write_photo(folder / "t.jpg", (500_100.0, 5_000_100.0), heading=123.0, heading_ref=b"T")
    write_photo(folder / "m.jpg", (500_100.0, 5_000_100.0), heading=77.0, heading_ref=b"M")
    for asked, expect in ((True, {"t.jpg": 123.0, "m.jpg": 42.0}), (False, {"t.jpg": 42.0, "m.jpg": 42.0})):
        path = tmp_path / f"out{asked}.gpkg"
        with GeoPackageWriter(path, CRS) as out:
            run_batch(folder_jobs(folder, prior=Prior(), exif_heading=asked), raster, out, FakeLocalizer())
        got = {Path(i["photo"]).name: i["heading_deg"] for i, _ in pose_rows(path)}
        assert got == pytest.approx(expect)


def run_cli(*argv) -> int:
    """`loc2 batch ARGV...` through the console script's dispatcher, in this process."""
    return cli.main(["batch"] + [str(a) for a in argv])


def test_cli_runs_resumes_and_refuses_to_duplicate(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pipeline, "Localizer", lambda **kw: FakeLocalizer())
    folder, raster, _ = make_folder(tmp_path)
    out = tmp_path / "out.gpkg"
    assert run_cli(folder, "--aerial", raster, "--out", out) == 0  # some photos failed: still exit 0
    table = capsys.readouterr().out
    assert "ok" in table and "failed" in table and "median time per photo" in table
    assert len(pose_rows(out)) == 8
    assert run_cli(folder, "--aerial", raster, "--out", out) == 2
    assert "--resume" in capsys.readouterr().err
    assert run_cli(folder, "--aerial", raster, "--out", out, "--resume") == 0
    assert len(pose_rows(out)) == 8


def test_cli_cannot_run_exits_non_zero(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pipeline, "Localizer", lambda **kw: FakeLocalizer())
    folder, raster, _ = make_folder(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "bad.tif").write_bytes(b"not a raster")
    cases = [
        ((empty, "--aerial", raster), "no photos"),
        ((folder, "--aerial", tmp_path / "bad.tif"), "cannot be read"),
        ((folder, "--aerial", tmp_path / "missing.tif"), "does not exist"),
        ((folder,), "No aerial raster"),
        (("--aerial", raster), "either PHOTO_DIR or --manifest"),
        ((tmp_path / "nowhere", "--aerial", raster), "not a folder"),
    ]
    for args, message in cases:
        assert run_cli(*args, "--out", tmp_path / "x.gpkg") == 2, args
        assert message in capsys.readouterr().err, args
    assert not (tmp_path / "x.gpkg").exists()


def test_ctrl_c_keeps_finished_photos_and_exits_130(tmp_path, monkeypatch, capsys):
    class InterruptedAtThird(FakeLocalizer):
        calls = 0

        def localize(self, *args, **kwargs):
            InterruptedAtThird.calls += 1
            if InterruptedAtThird.calls == 3:
                raise KeyboardInterrupt
            return super().localize(*args, **kwargs)

    monkeypatch.setattr(pipeline, "Localizer", lambda **kw: InterruptedAtThird())
    folder, raster, _ = make_folder(tmp_path)
    assert run_cli(folder, "--aerial", raster, "--out", tmp_path / "out.gpkg") == 130
    assert "--resume" in capsys.readouterr().err
    assert len(pose_rows(tmp_path / "out.gpkg")) == 2


def test_prior_position_is_the_prior_else_the_exif_gps(tmp_path):
    from loc2_engine.batch import PhotoJob, prior_position

    with_gps = write_photo(tmp_path / "gps.jpg", GOOD["p01.jpg"])
    without = write_photo(tmp_path / "none.jpg", None)
    given = Prior(500_001.0, 5_000_002.0, CRS)
    assert prior_position(PhotoJob(without, prior=given)) == ((500_001.0, 5_000_002.0), CRS)
    (lon, lat), crs = prior_position(PhotoJob(with_gps, prior=Prior(radius_m=10.0)))
    assert crs == "EPSG:4326" and abs(lon - 15.0) < 0.01 and 45.0 < lat < 45.2
    assert prior_position(PhotoJob(without)) is None
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert prior_position(PhotoJob(str(tmp_path / "empty.jpg"))) is None


#: a 60 m square in the raster's south-west, in its CRS
EXTENT = (500_010.0, 5_000_010.0, 500_070.0, 5_000_070.0)


def test_a_photo_without_a_position_is_searched_in_the_extent_the_others_around_their_prior(tmp_path):
    from loc2_engine.batch import with_extent

    folder, raster, expected = make_folder(tmp_path)
    fake = ExtentFake()
    with GeoPackageWriter(tmp_path / "out.gpkg", CRS) as out:
        summary = run_batch(with_extent(folder_jobs(folder, prior=Prior(heading_deg=80.0)), EXTENT), raster, out,
                            fake)
    assert fake.extent_calls == [("noexif.jpg", EXTENT, None, 80.0)]  # with the heading prior it has
    rows = {Path(items["photo"]).name: items for items, _ in pose_rows(tmp_path / "out.gpkg")}
    centre = ((EXTENT[0] + EXTENT[2]) / 2 + OFFSET_M[0], (EXTENT[1] + EXTENT[3]) / 2 + OFFSET_M[1])
    assert rows["noexif.jpg"]["status"] == "ok"
    assert (rows["noexif.jpg"]["x"], rows["noexif.jpg"]["y"]) == pytest.approx(centre, abs=0.05)
    assert rows["p01.jpg"]["x"] == pytest.approx(GOOD["p01.jpg"][0] + OFFSET_M[0], abs=0.05)  # its EXIF GPS
    for name in ("zero.jpg", "truncated.jpg", "random.jpg", "outside.jpg"):  # unreadable, or GPS elsewhere
        assert expected[name] in rows[name]["error"], name
    assert (summary.ok, summary.failed) == (4, 4)


def test_cli_extent_for_folder_and_manifest_photos_without_a_position(tmp_path, monkeypatch):
    fake = ExtentFake()
    monkeypatch.setattr(pipeline, "Localizer", lambda **kw: fake)
    raster = write_raster(tmp_path / "aerial.tif")
    photos = tmp_path / "photos"
    photos.mkdir()
    write_photo(photos / "gps.jpg", GOOD["p02.JPG"])
    write_photo(photos / "bare.jpg", None, seed=1)
    write_photo(photos / "placed.jpg", None, seed=2)
    write_manifest(tmp_path / "manifest.csv", [
        {"photo": "photos/bare.jpg", "aerial": "aerial.tif"},
        {"photo": "photos/placed.jpg", "aerial": "aerial.tif", "crs": CRS, "prior_x": 500_150.0,
         "prior_y": 5_000_150.0},
        {"photo": "photos/gps.jpg", "aerial": "aerial.tif"}])
    lonlat = transform_points([EXTENT[:2], EXTENT[2:]], CRS, "EPSG:4326")
    extent_lonlat = (*lonlat[0], *lonlat[1])
    assert run_cli("--manifest", tmp_path / "manifest.csv", "--out", tmp_path / "m.gpkg", "--radius", 8,
                   "--extent", *extent_lonlat, "--extent-crs", "EPSG:4326") == 0
    assert fake.extent_calls == [("bare.jpg", pytest.approx(extent_lonlat), "EPSG:4326", None)]
    rows = {Path(items["photo"]).name: items for items, _ in pose_rows(tmp_path / "m.gpkg")}
    assert {name: row["status"] for name, row in rows.items()} == {"bare.jpg": "ok", "placed.jpg": "ok",
                                                                     "gps.jpg": "ok"}
    assert rows["placed.jpg"]["x"] == pytest.approx(500_150.0 + OFFSET_M[0], abs=0.05)

    fake.extent_calls.clear()
    assert run_cli(photos, "--aerial", raster, "--out", tmp_path / "f.gpkg", "--extent", *EXTENT) == 0
    assert fake.extent_calls == [("bare.jpg", EXTENT, None, None), ("placed.jpg", EXTENT, None, None)]


@pytest.mark.parametrize("options, words", [
    (("--extent", 500_070, 5_000_010, 500_010, 5_000_070), "is empty"),
    (("--extent", "nan", 5_000_010, 500_070, 5_000_070), "four finite coordinates"),
    (("--extent-crs", "EPSG:4326"), "--extent-crs needs --extent"),
    (("--extent", *EXTENT, "--extent-crs", "EPSG:nope"), "is not a CRS"),
])
def test_cli_unusable_extent_exits_2_before_the_model(tmp_path, monkeypatch, capsys, options, words):
    def no_model(**kw):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(pipeline, "Localizer", no_model)
    folder, raster, _ = make_folder(tmp_path)
    assert run_cli(folder, "--aerial", raster, "--out", tmp_path / "x.gpkg", *options) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "x.gpkg").exists()


def test_cli_extent_too_large_for_the_model_exits_2_before_any_photo(tmp_path, monkeypatch, capsys):
    fake = ExtentFake()
    monkeypatch.setattr(pipeline, "Localizer", lambda **kw: fake)
    folder, raster, _ = make_folder(tmp_path)
    # 10 km x 10 km of 64 m windows (22 m radius)
    assert run_cli(folder, "--aerial", raster, "--out", tmp_path / "x.gpkg",
                   "--extent", 500_000, 5_000_000, 510_000, 5_010_000) == 2
    assert "the largest it searches is 400 windows" in capsys.readouterr().err
    assert not fake.extent_calls and not (tmp_path / "x.gpkg").exists()


def test_a_cluster_worker_searches_the_extent_of_the_job_it_is_given(tmp_path, monkeypatch):
    """The task a Dask worker runs for a photo (`cluster._localize`) gets the extent with the job, and the
    worker-side check refuses an extent too large for its model."""
    from loc2_engine import cluster
    from loc2_engine.batch import PhotoJob
    from loc2_engine.errors import PriorError

    monkeypatch.setattr(cluster, "_CACHE", {})
    raster = write_raster(tmp_path / "aerial.tif")
    job = PhotoJob(write_photo(tmp_path / "bare.jpg", None), prior=Prior(), extent=EXTENT, extent_crs=CRS)
    spec = cluster.LocalizerSpec.of({}, "batch_fixtures:ExtentFake")
    result = cluster._localize(pickle.loads(pickle.dumps(job)), raster, spec)
    assert result.status == "ok" and spec.localizer().extent_calls == [("bare.jpg", EXTENT, CRS, None)]
    assert cluster._extent_problem(spec, EXTENT, CRS) is None
    problem = cluster._extent_problem(spec, (500_000.0, 5_000_000.0, 510_000.0, 5_010_000.0), CRS)
    assert isinstance(problem, PriorError) and "400 windows" in str(problem)
