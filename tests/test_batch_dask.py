"""`loc2 batch` on a Dask cluster (loc2_engine.cluster): a local cluster of two worker processes gives the rows
of the in-process batch (the fake localizer of batch_fixtures, and the shipped model), resumes, and survives
workers that die in the middle of a photo. One cluster serves the whole module (workers start in seconds)."""

import os
import signal
from collections import Counter
from pathlib import Path

import pytest
import torch
from osgeo import ogr

from batch_fixtures import CRS, GOOD, FakeLocalizer, make_folder, write_photo, write_raster
from loc2_engine import cli, cluster
from loc2_engine.batch import folder_jobs, run_batch
from loc2_engine.cluster import ClusterLocalizer
from loc2_engine.errors import ModelError
from loc2_engine.gpkg import LAYERS, GeoPackageWriter
from loc2_engine.pipeline import Localizer, Prior

pytest.importorskip("distributed")

FAKE = "batch_fixtures:FakeLocalizer"


@pytest.fixture(scope="module")
def scheduler():
    """Address of the scheduler of a local cluster of two worker processes, started by `ClusterLocalizer`
    (as `loc2 batch --workers 2` does); the tests connect to it as `--scheduler` does."""
    with ClusterLocalizer({}, workers=2, factory=FAKE) as local:
        yield local.client.scheduler.address


def layer_rows(path):
    """{layer: sorted rows} of every layer of a batch's GeoPackage; a row is its fields but the run time,
    and its geometry as WKT."""
    ds = ogr.Open(str(path))
    rows = {}
    for name in LAYERS:
        layer = ds.GetLayerByName(name)
        rows[name] = sorted(
            (sorted((k, v) for k, v in f.items().items() if k != "runtime_s"),
             f.GetGeometryRef().ExportToWkt() if f.GetGeometryRef() is not None else None)
            for f in layer)
    return rows


def poses(path):
    """[(photo file name, camera_poses fields)] of a batch's GeoPackage."""
    return [(Path(dict(items)["photo"]).name, dict(items)) for items, _ in layer_rows(path)["camera_poses"]]


def batch(jobs, raster, path, localizer, **options):
    with GeoPackageWriter(path, CRS) as out:
        return run_batch(jobs, raster, out, localizer, **options)


def test_cluster_writes_the_rows_of_the_in_process_batch(tmp_path, scheduler):
    folder, raster, _ = make_folder(tmp_path)  # good photos and broken ones, one that hits a bug
    jobs = folder_jobs(folder, prior=Prior(radius_m=10.0))
    alone = batch(jobs, raster, tmp_path / "alone.gpkg", FakeLocalizer(crash_on="p03.png"))
    seen = []
    with ClusterLocalizer({"crash_on": "p03.png"}, scheduler=scheduler, factory=FAKE) as workers:
        spread = batch(jobs, raster, tmp_path / "spread.gpkg", workers,
                       progress=lambda done, total, result: seen.append((done, total)))
    assert seen == [(i, 8) for i in range(1, 9)]
    assert (spread.ok, spread.failed, spread.total) == (alone.ok, alone.failed, alone.total) == (2, 6, 8)
    rows = layer_rows(tmp_path / "spread.gpkg")
    assert rows == layer_rows(tmp_path / "alone.gpkg")
    assert "ZeroDivisionError" in dict(poses(tmp_path / "spread.gpkg"))["p03.png"]["error"]  # a bug on a worker


def test_shipped_model_gives_the_same_poses_on_workers(tmp_path, scheduler):
    folder, raster, _ = make_folder(tmp_path)
    jobs = folder_jobs(folder, prior=Prior(radius_m=10.0))
    settings = {"model": "default", "depth": "plane", "device": "cpu", "hypotheses": 100, "mirror_tta": False}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as on the workers: float sums depend on the thread count, not on the order
    try:
        alone = batch(jobs[::-1], raster, tmp_path / "alone.gpkg", Localizer(**settings))
    finally:
        torch.set_num_threads(threads)
    with ClusterLocalizer(settings, scheduler=scheduler) as workers:
        spread = batch(jobs, raster, tmp_path / "spread.gpkg", workers)
    assert (spread.low_confidence + spread.ok, spread.failed) == (alone.low_confidence + alone.ok, alone.failed) \
        == (3, 5)
    rows = layer_rows(tmp_path / "spread.gpkg")
    assert rows == layer_rows(tmp_path / "alone.gpkg") and len(rows["inliers"]) > 3


def test_resume_skips_the_photos_in_the_file(tmp_path, scheduler):
    folder, raster, _ = make_folder(tmp_path)
    jobs = folder_jobs(folder, prior=Prior())
    out = tmp_path / "out.gpkg"
    batch(jobs[:3], raster, out, FakeLocalizer())  # an earlier run that ended after three photos
    with ClusterLocalizer({}, scheduler=scheduler, factory=FAKE) as workers:
        summary = batch(jobs, raster, out, workers, resume=True)
    assert (summary.skipped, summary.done) == (3, 5)
    counts = Counter(name for name, _ in poses(out))
    assert len(counts) == 8 and set(counts.values()) == {1}


def test_a_model_the_workers_cannot_load_stops_before_any_photo(tmp_path, scheduler):
    with pytest.raises(ModelError):
        with ClusterLocalizer({"model": str(tmp_path / "missing.safetensors")}, scheduler=scheduler):
            pass


def test_cli_on_a_running_scheduler_runs_resumes_and_refuses_to_duplicate(tmp_path, scheduler, capsys):
    folder, raster, _ = make_folder(tmp_path)
    for name in GOOD:  # the broken photos fail before the model runs: quick
        (folder / name).unlink()
    out = tmp_path / "out.gpkg"
    args = ["batch", folder, "--aerial", raster, "--out", out, "--scheduler", scheduler, "--depth", "plane"]
    assert cli.main([str(a) for a in args]) == 0
    assert "failed" in capsys.readouterr().out
    assert len(poses(out)) == 5
    assert cli.main([str(a) for a in args]) == 2
    assert "--resume" in capsys.readouterr().err
    assert cli.main([str(a) for a in args + ["--resume"]]) == 0
    assert len(poses(out)) == 5


def test_cli_refuses_unusable_cluster_options(tmp_path, monkeypatch, capsys):
    folder, raster, _ = make_folder(tmp_path)
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1.0)
    cases = [(("--workers", "0"), "--workers N needs N >= 1"),
             (("--workers", "2", "--scheduler", "tcp://127.0.0.1:1"), "goes without --scheduler"),
             (("--scheduler", "tcp://127.0.0.1:1"), "Cannot reach the Dask scheduler at tcp://127.0.0.1:1")]
    for options, message in cases:
        argv = ["batch", str(folder), "--aerial", raster, "--out", str(tmp_path / "x.gpkg"), *options]
        assert cli.main(argv) == 2, options
        assert message in capsys.readouterr().err, options
    assert not (tmp_path / "x.gpkg").exists()


class KillingLocalizer(FakeLocalizer):
    """Kills its worker process on ``die_always.jpg``, and on ``die_once.jpg`` the first time (a marker file
    beside the photo remembers it)."""

    def localize(self, photo, *args, **kwargs):
        name = Path(photo).name
        marker = Path(f"{photo}.died")
        if name == "die_always.jpg" or (name == "die_once.jpg" and not marker.exists()):
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return super().localize(photo, *args, **kwargs)


def test_a_dead_worker_costs_one_retry_then_a_failed_row(tmp_path, scheduler):
    raster = write_raster(tmp_path / "aerial.tif")
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, name in enumerate(("die_always.jpg", "die_once.jpg", "p01.jpg", "p02.jpg")):
        write_photo(folder / name, GOOD["p01.jpg"], seed=i)
    with ClusterLocalizer({}, scheduler=scheduler, factory=f"{__name__}:KillingLocalizer") as workers:
        summary = batch(folder_jobs(folder, prior=Prior()), raster, tmp_path / "out.gpkg", workers)
    assert (summary.ok, summary.failed, summary.done) == (3, 1, 4)
    rows = dict(poses(tmp_path / "out.gpkg"))
    assert rows["die_once.jpg"]["status"] == "ok"  # retried on another worker
    assert rows["die_always.jpg"]["status"] == "failed"
    assert "died twice" in rows["die_always.jpg"]["error"]
