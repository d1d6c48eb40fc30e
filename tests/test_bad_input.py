"""Bad and unusual inputs: each is refused early with a specific sentence and the documented exit status, or
handled without losing or doubling a photo.

Options (NaN, zero or negative radius, heading, tolerance, camera height, HFOV) are refused before the model
loads; photos whose header claims more than the file holds, that are too large or too small, or whose EXIF
GPS is impossible are specific failures; aerial rasters whose blocks GDAL cannot read, weight files with
damaged metadata or a huge declared network are refused with the file named; a GeoPackage has one writer
and one row per photo, and a full disk stops a batch with a valid file. The localizer is
`batch_fixtures.FakeLocalizer` wherever a pose is needed, so no trained model runs here.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import signal
import sqlite3
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import piexif
import pytest
import torch
from osgeo import gdal, ogr
from PIL import Image
from safetensors.torch import save_file

from batch_fixtures import CRS, GOOD, FakeLocalizer, make_folder, write_photo, write_raster
from loc2_engine import cli, pipeline
from loc2_engine.aerial import AerialWindow
from loc2_engine.batch import PhotoJob, find_photos, folder_jobs, localize_job, photo_extensions, run_batch, \
    scan_folder
from loc2_engine.errors import AerialError, ManifestError, ModelError, OutputError, PhotoError, PriorError
from loc2_engine.exif import read_exif
from loc2_engine.gpkg import GeoPackageWriter
from loc2_engine.ground import MAX_PHOTO_PIXELS, MIN_PHOTO_SIDE_PX, GroundImage
from loc2_engine.manifest import read_manifest, write_manifest
from loc2_engine.models import load_model
from loc2_engine.models.base import MAX_NETWORK_NUMBERS
from loc2_engine.models.small import SmallMatcher
from loc2_engine.pipeline import Prior

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PROJ_DATA": os.environ.get("PROJ_DATA", "/usr/share/proj")}


def pose_rows(path):
    ds = ogr.Open(str(path))
    return [f.items() for f in ds.GetLayerByName("camera_poses")]


def run_cli(*argv) -> int:
    return cli.main([str(a) for a in argv])


@pytest.fixture
def fake_localizer(monkeypatch):
    """`pipeline.Localizer` replaced by the fake (as the commands import it at run time)."""
    monkeypatch.setattr(pipeline, "Localizer", lambda **kw: FakeLocalizer())


@pytest.fixture
def no_model(monkeypatch):
    """A Localizer that fails the test if it is built: what is checked must be checked before the model."""
    def refuse(**kw):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(pipeline, "Localizer", refuse)


# -- options: refused before the model loads, exit status 2 -------------------------------------------------

BAD_OPTIONS = [
    (["--radius", "0"], "--radius 0 is not a usable search radius"),
    (["--radius", "nan"], "--radius nan is not a usable search radius"),
    (["--radius", "-5"], "--radius -5 is not a usable search radius"),
    (["--radius", "inf"], "--radius inf is not a usable search radius"),
    (["--heading", "nan"], "--heading nan is not a direction"),
    (["--heading", "10", "--heading-tolerance", "0"], "--heading-tolerance 0 is not usable"),
    (["--heading", "10", "--heading-tolerance", "181"], "--heading-tolerance 181 is not usable"),
    (["--heading", "10", "--heading-tolerance", "nan"], "--heading-tolerance nan is not usable"),
    (["--heading-tolerance", "10"], "--heading-tolerance needs --heading"),
    (["--camera-height", "0"], "--camera-height 0 is not usable"),
    (["--camera-height", "nan"], "--camera-height nan is not usable"),
    (["--hfov", "0"], "--hfov 0 is not a pinhole field of view"),
    (["--hfov", "180"], "--hfov 180 is not a pinhole field of view"),
    (["--hfov", "nan"], "--hfov nan is not a pinhole field of view"),
]


@pytest.mark.parametrize("options, message", BAD_OPTIONS)
def test_localize_refuses_bad_options_before_the_model_loads(tmp_path, capsys, no_model, options, message):
    photo = write_photo(tmp_path / "p.jpg", GOOD["p01.jpg"])
    start = time.perf_counter()
    code = run_cli("localize", photo, "--aerial", tmp_path / "missing.tif",
                   "--model", tmp_path / "missing.safetensors", *options)
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "missing.safetensors" not in err  # about the option, not the model
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert time.perf_counter() - start < 5.0


@pytest.mark.parametrize("options, message", BAD_OPTIONS)
def test_batch_refuses_bad_options_before_anything_else(tmp_path, capsys, no_model, options, message):
    code = run_cli("batch", tmp_path / "no-such-folder", "--aerial", tmp_path / "missing.tif",
                   "--out", tmp_path / "out.gpkg", "--model", tmp_path / "missing.safetensors", *options)
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "not a folder" not in err
    assert not (tmp_path / "out.gpkg").exists()


def test_good_options_pass_the_check():
    from loc2_engine.commands.options import camera_prior_error

    parse = cli.build_parser().parse_args
    assert camera_prior_error(parse(["batch", "d", "--out", "o.gpkg", "--exif-heading", "--heading-tolerance",
                                     "10", "--radius", "0.5", "--hfov", "179.9", "--camera-height", "2.5"])) is None
    assert camera_prior_error(parse(["localize", "p.jpg", "--aerial", "a.tif", "--heading", "-90",
                                     "--heading-tolerance", "180", "--prior", "1", "2"])) is None
    assert "needs --heading or --exif-heading" in camera_prior_error(
        parse(["batch", "d", "--out", "o.gpkg", "--heading-tolerance", "10"]))


def test_localize_prior_must_be_finite(tmp_path, capsys, no_model):
    photo = write_photo(tmp_path / "p.jpg", None)
    assert run_cli("localize", photo, "--aerial", tmp_path / "a.tif", "--prior", "nan", "5000000") == 2
    assert "--prior nan 5e+06 is not a position" in capsys.readouterr().err


def test_radius_zero_is_refused_not_replaced_by_the_default(tmp_path, monkeypatch, capsys):
    """A manifest run with --radius 0 must not quietly search 25 m around each prior."""
    seen = []

    class Recording(FakeLocalizer):
        def localize(self, photo, aerial, prior=None, depth_map=None):
            seen.append(prior.radius_m)
            return super().localize(photo, aerial, prior, depth_map)

    monkeypatch.setattr(pipeline, "Localizer", lambda **kw: Recording())
    folder, raster, _ = make_folder(tmp_path)
    assert run_cli("batch", folder, "--aerial", raster, "--out", tmp_path / "o.gpkg", "--radius", "0") == 2
    assert seen == []
    assert run_cli("batch", folder, "--aerial", raster, "--out", tmp_path / "o.gpkg", "--radius", "7") == 0
    assert set(seen) == {7.0}


# -- Prior: validated where it is used --------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    ({"radius_m": 0.0}, "search radius 0 m is not usable"),
    ({"radius_m": math.nan}, "search radius nan m is not usable"),
    ({"radius_m": -5.0}, "search radius -5 m is not usable"),
    ({"radius_m": "25"}, "search radius '25' m is not usable"),
    ({"heading_deg": math.nan}, "heading prior nan° is not a direction"),
    ({"heading_deg": 10.0, "heading_tolerance_deg": 0.0}, "heading tolerance 0° is not usable"),
    ({"heading_deg": 10.0, "heading_tolerance_deg": 190.0}, "heading tolerance 190° is not usable"),
    ({"x": 500_000.0}, "only one coordinate"),
    ({"x": math.inf, "y": 5_000_000.0}, "(inf, 5e+06) is not a pair of finite numbers"),
])
def test_prior_validate_names_the_bad_value_even_after_mutation(change, message):
    prior = Prior(radius_m=10.0)
    assert prior.validate() is prior
    for key, value in change.items():  # tests and the plugin adjust priors after building them
        setattr(prior, key, value)
    with pytest.raises(PriorError, match=re.escape(message)) as err:
        prior.validate()
    assert err.value.code == "prior"


def test_a_tolerance_without_a_heading_is_not_used_so_not_refused():
    """The Processing algorithm passes its tolerance whether or not there is a heading."""
    assert Prior(heading_tolerance_deg=0.0).validate().heading_tolerance_deg == 0.0


def test_a_batch_job_with_a_nan_radius_fails_before_the_localizer_runs(tmp_path):
    calls = []

    class Counting(FakeLocalizer):
        def localize(self, *args, **kwargs):
            calls.append(args)
            return super().localize(*args, **kwargs)

    raster = write_raster(tmp_path / "aerial.tif")
    photo = write_photo(tmp_path / "p.jpg", GOOD["p01.jpg"])
    result = localize_job(PhotoJob(photo, prior=Prior(radius_m=math.nan)), raster, Counting())
    assert result.status == "failed" and "search radius nan m" in result.error and calls == []
    ok = localize_job(PhotoJob(photo, prior=Prior(radius_m=10.0)), raster, Counting())
    assert ok.status == "ok" and len(calls) == 1


# -- photos -------------------------------------------------------------------------------------------------

def _jpeg_header_claiming(width, height) -> bytes:
    """A real JPEG's header with its frame size patched, cut after the scan header, and an end marker: what a
    download interrupted right after the header and 'repaired' by some tool looks like (631 bytes or so)."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    sos = data.index(b"\xff\xda")
    (length,) = struct.unpack(">H", data[sos + 2:sos + 4])
    return bytes(data[:sos + 2 + length]) + b"\xff\xd9"


def _png_claiming(width, height, rows=1) -> bytes:
    """A valid PNG stream whose header claims width × height but whose data holds only ``rows`` rows."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"".join(b"\x00" + bytes(3 * width) for _ in range(rows)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def test_a_tiny_jpeg_claiming_9000_px_is_truncated_not_grey(tmp_path):
    path = tmp_path / "claim.jpg"
    path.write_bytes(_jpeg_header_claiming(9000, 9000))
    assert path.stat().st_size < 1000
    with Image.open(path) as img:  # what made it dangerous: PIL decodes it without an error, into grey
        img.load()
    start = time.perf_counter()
    with pytest.raises(PhotoError, match="is truncated: its header says 9000 × 9000 px") as err:
        GroundImage.load(path)
    assert str(path) in str(err.value) and time.perf_counter() - start < 1.0  # refused before decoding


def test_a_png_with_one_row_of_data_claiming_9000_px_is_truncated(tmp_path):
    path = tmp_path / "claim.png"
    path.write_bytes(_png_claiming(9000, 9000))
    with pytest.raises(PhotoError, match="is truncated: its header says 9000 × 9000 px"):
        GroundImage.load(path)


def test_complete_photos_of_one_colour_are_not_taken_for_truncated(tmp_path):
    """The bounds are what no complete file can beat: a black photo compresses as well as any."""
    for name, mode, kwargs in (("black.jpg", "RGB", {"quality": 50, "progressive": True, "optimize": True}),
                               ("black.png", "1", {"optimize": True})):
        Image.new(mode, (4000, 3000)).save(tmp_path / name, **kwargs)
        assert GroundImage.load(tmp_path / name, hfov_deg=60.0).image.shape == (3000, 4000, 3)


def test_a_photo_over_the_pixel_budget_is_refused_from_its_header(tmp_path):
    path = tmp_path / "huge.png"
    side = 12_000  # 144 megapixels: decoding it, even all black, would take 2 GB
    assert side * side > MAX_PHOTO_PIXELS
    path.write_bytes(_png_claiming(side, side))
    start = time.perf_counter()
    with pytest.warns(Image.DecompressionBombWarning), \
            pytest.raises(PhotoError, match="12000 × 12000 px \\(144 megapixels\\), more than the 120-megapixel "
                                            "limit") as err:
        GroundImage.load(path)
    assert "downscale it" in str(err.value) and time.perf_counter() - start < 1.0


@pytest.mark.parametrize("size", [(1, 1), (MIN_PHOTO_SIDE_PX - 1, 400), (400, 8)])
def test_photos_too_small_to_localize_are_refused(tmp_path, size):
    path = tmp_path / "tiny.png"
    Image.new("RGB", size, (90, 120, 150)).save(path)
    with pytest.raises(PhotoError, match=f"is only {size[0]} × {size[1]} px; a photo must be at least "
                                         f"{MIN_PHOTO_SIDE_PX} px on each side"):
        GroundImage.load(path)
    Image.new("RGB", (MIN_PHOTO_SIDE_PX, MIN_PHOTO_SIDE_PX)).save(path)
    assert GroundImage.load(path).width == MIN_PHOTO_SIDE_PX


def test_truncated_photo_fails_its_batch_row_and_localize_exits_1(tmp_path, capsys, fake_localizer):
    raster = write_raster(tmp_path / "aerial.tif")
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "claim.jpg").write_bytes(_jpeg_header_claiming(9000, 9000))
    Image.new("RGB", (1, 1)).save(folder / "dot.png")
    write_photo(folder / "good.jpg", GOOD["p01.jpg"])
    out = tmp_path / "out.gpkg"
    assert run_cli("batch", folder, "--aerial", raster, "--out", out) == 0
    rows = {Path(r["photo"]).name: r for r in pose_rows(out)}
    assert rows["good.jpg"]["status"] == "ok"
    assert "is truncated" in rows["claim.jpg"]["error"] and "is only 1 × 1 px" in rows["dot.png"]["error"]
    capsys.readouterr()
    assert run_cli("localize", folder / "dot.png", "--aerial", raster, "--prior", "500050", "5000150") == 1
    assert "is only 1 × 1 px" in capsys.readouterr().err


# -- EXIF GPS -------------------------------------------------------------------------------------------------

def _gps_photo(path, lat, lon=((15, 1), (0, 1), (0, 1)), lat_ref=b"N"):
    gps = {piexif.GPSIFD.GPSLatitudeRef: lat_ref, piexif.GPSIFD.GPSLatitude: lat,
           piexif.GPSIFD.GPSLongitudeRef: b"E", piexif.GPSIFD.GPSLongitude: lon}
    Image.new("RGB", (96, 64), (100, 110, 120)).save(path, "JPEG", exif=piexif.dump({"GPS": gps}))
    return str(path)


@pytest.mark.parametrize("lat, problem", [
    (((45, 1), (75, 1), (0, 1)), "its latitude has 75 minutes; minutes and seconds must be below 60"),
    (((45, 1), (10, 1), (6000, 100)), "its latitude has 60 seconds; minutes and seconds must be below 60"),
    (((95, 1), (30, 1), (0, 1)), "its latitude 95.5° is beyond ±90°"),
])
def test_impossible_exif_gps_is_ignored_with_the_reason(tmp_path, lat, problem):
    info = read_exif(_gps_photo(tmp_path / "bad.jpg", lat))
    assert info.lonlat is None and info.gps_error == problem
    good = read_exif(_gps_photo(tmp_path / "good.jpg", ((45, 1), (59, 1), (5999, 100))))
    assert good.gps_error is None and good.lonlat[1] == pytest.approx(45 + 59 / 60 + 59.99 / 3600)


def test_invalid_exif_gps_fails_the_photo_with_that_reason(tmp_path):
    raster = write_raster(tmp_path / "aerial.tif")
    folder = tmp_path / "photos"
    folder.mkdir()
    _gps_photo(folder / "bad.jpg", ((45, 1), (75, 1), (0, 1)))
    out = tmp_path / "out.gpkg"
    with GeoPackageWriter(out, CRS) as writer:
        summary = run_batch(folder_jobs(folder, prior=Prior()), raster, writer, FakeLocalizer())
    assert summary.failed == 1
    (row,) = pose_rows(out)
    assert "The EXIF GPS position of the photo bad.jpg is invalid (its latitude has 75 minutes" in row["error"]
    assert "give a prior position" in row["error"]
    # a prior given by the caller makes the broken EXIF irrelevant
    job = PhotoJob(str(folder / "bad.jpg"), prior=Prior(500_050.0, 5_000_150.0, CRS))
    assert localize_job(job, raster, FakeLocalizer()).status == "ok"


def test_localize_with_invalid_exif_gps_exits_1_before_the_model_loads(tmp_path, capsys, no_model):
    photo = _gps_photo(tmp_path / "bad.jpg", ((45, 1), (75, 1), (0, 1)))
    assert run_cli("localize", photo, "--aerial", tmp_path / "a.tif", "--json",
                   "--model", tmp_path / "missing.safetensors") == 1
    out, err = capsys.readouterr()
    row = json.loads(out)
    assert row["status"] == "failed" and "EXIF GPS position of the photo bad.jpg is invalid" in row["error"]
    assert row["error"] in err and "missing.safetensors" not in err


# -- aerial rasters ----------------------------------------------------------------------------------------

def test_a_vrt_whose_source_is_missing_is_an_aerial_error(tmp_path):
    source = write_raster(tmp_path / "tile.tif")
    vrt = tmp_path / "mosaic.vrt"
    gdal.BuildVRT(str(vrt), [source]).FlushCache()
    os.remove(source)
    with pytest.raises(AerialError) as err:
        AerialWindow.from_raster(vrt, (500_100.0, 5_000_100.0), None, 64.0, 1.0)
    message = str(err.value)
    assert str(vrt) in message and "tile.tif" in message and "every file it refers to exists" in message
    # in a batch the photo is a failed row with that reason, not an "Internal error"
    photo = write_photo(tmp_path / "p.jpg", GOOD["p01.jpg"])
    result = localize_job(PhotoJob(photo, prior=Prior()), str(vrt), FakeLocalizer())
    assert result.status == "failed" and "cannot be read around the prior" in result.error
    assert "Internal error" not in result.error


def test_a_raster_with_an_unreadable_block_is_an_aerial_error(tmp_path):
    whole = write_raster(tmp_path / "whole.tif", n=400)
    data = Path(whole).read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(data[:len(data) // 3])  # the header is whole, most strips are gone
    with pytest.raises(AerialError, match="cannot be read around the prior: GDAL reports") as err:
        AerialWindow.from_raster(cut, (500_200.0, 5_000_000.0), None, 64.0, 1.0)
    assert str(cut) in str(err.value)


# -- weight files ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_state():
    torch.manual_seed(0)
    model = SmallMatcher()
    return {k: v.contiguous() for k, v in model.state_dict().items()}, model.conf


def _weights(path, state, **metadata):
    save_file(state, str(path), metadata=metadata)
    return str(path)


@pytest.mark.parametrize("metadata, message", [
    ({"conf": "{desc_dim: 64"}, "has a 'conf' metadata entry \\(its architecture configuration\\) that is not "
                                "valid JSON"),
    ({"conf": "[1, 2]"}, "is a JSON list, not an object"),
    ({"conf": json.dumps({"att_heads": 0})}, "att_heads = 0 is not usable: it must be a whole number of at "
                                             "least 1"),
    ({"conf": json.dumps({"ground_channels": [24, -48, 96, 128]})}, "ground_channels = \\[24, -48, 96, 128\\] "
                                                                    "is not usable"),
    ({"conf": json.dumps({"pano_size": [0, 256]})}, "pano_size = \\[0, 256\\] is not usable"),
    ({"conf": json.dumps({"desc_dim": 128})}, "does not fit the default architecture: .*tensors of another "
                                              "shape"),
    ({"confidence": "not json"}, "'confidence' metadata entry \\(its confidence calibration\\) that is not valid"),
    ({"confidence": json.dumps({"intercept": "high"})}, "confidence calibration that cannot be used"),
    ({"confidence": json.dumps({"intercept": 0.0, "sigma": 3.0})}, "whose 'sigma' is not an object"),
    ({"confidence": json.dumps({"intercept": 0.0, "sigma": {"intercept": None}})},
     "confidence calibration that cannot be used"),
    ({"training": "{"}, "'training' metadata entry"),
])
def test_damaged_weight_metadata_is_a_model_error_naming_the_file(tmp_path, small_state, metadata, message):
    state, conf = small_state
    meta = {"conf": json.dumps(conf), **metadata}
    path = _weights(tmp_path / "bad.safetensors", state, **meta)
    with pytest.raises(ModelError, match=message) as err:
        load_model(path)
    assert path in str(err.value)


def test_mono_weights_with_bad_sizes_are_refused(tmp_path):
    from loc2_engine.models.mono_depth import MonoDepthNet, build_mono

    state = {k: v.contiguous() for k, v in MonoDepthNet().state_dict().items()}
    path = _weights(tmp_path / "mono.safetensors", state, conf=json.dumps({"channels": [16, 0, 64, 96]}))
    with pytest.raises(ModelError, match="channels = \\[16, 0, 64, 96\\] is not usable"):
        build_mono(path)


def test_a_huge_declared_network_is_refused_before_any_allocation(tmp_path, small_state):
    """A 7 MB file whose metadata declares a network of 2 billion numbers: building it would take gigabytes
    before the tensors were found not to fit. The peak memory says whether it was built (a wall-clock bound
    would fail on a busy machine)."""
    state, conf = small_state
    path = _weights(tmp_path / "huge.safetensors", state,
                    conf=json.dumps({**conf, "desc_dim": 4096, "fpn_dim": 4096}))
    code = textwrap.dedent(f"""
        import resource, sys
        sys.path[:0] = [{str(REPO)!r}]
        from loc2_engine.errors import ModelError
        from loc2_engine.models import load_model
        try:
            load_model({path!r})
            print("loaded")
        except ModelError as exc:
            print(exc)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=ENV)
    message, peak_mb = out.stdout.strip().splitlines()[-2:]
    assert f"more than the {MAX_NETWORK_NUMBERS:,} allowed" in message and path in message, out.stderr
    assert float(peak_mb) < 1500, peak_mb


def test_localize_with_damaged_weights_exits_2_not_1(tmp_path, small_state, capsys):
    state, conf = small_state
    path = _weights(tmp_path / "bad.safetensors", state, conf=json.dumps({**conf, "att_heads": 0}))
    photo = write_photo(tmp_path / "p.jpg", GOOD["p01.jpg"])
    code = run_cli("localize", photo, "--aerial", write_raster(tmp_path / "a.tif"), "--model", path,
                   "--depth", "plane", "--device", "cpu")
    err = capsys.readouterr().err
    assert code == 2 and "att_heads = 0 is not usable" in err and "Traceback" not in err


# -- manifests ---------------------------------------------------------------------------------------------

def test_a_photo_listed_twice_in_a_manifest_is_refused_naming_both_lines(tmp_path, capsys, fake_localizer):
    raster = write_raster(tmp_path / "aerial.tif")
    write_photo(tmp_path / "a.jpg", GOOD["p01.jpg"])
    write_photo(tmp_path / "b.jpg", GOOD["p02.JPG"])
    write_manifest(tmp_path / "manifest.csv", [{"photo": "a.jpg"}, {"photo": "b.jpg"}, {"photo": "./a.jpg"}])
    with pytest.raises(ManifestError, match="lists the photo .*a.jpg twice, on lines 2 and 4"):
        read_manifest(tmp_path / "manifest.csv")
    out = tmp_path / "out.gpkg"
    assert run_cli("batch", "--manifest", tmp_path / "manifest.csv", "--aerial", raster, "--out", out) == 2
    assert "twice, on lines 2 and 4" in capsys.readouterr().err and not out.exists()


def test_a_manifest_tolerance_of_zero_is_refused(tmp_path):
    (tmp_path / "manifest.csv").write_text("photo,heading_prior_deg,heading_tolerance_deg\na.jpg,90,0\n")
    with pytest.raises(ManifestError, match="line 2: heading_tolerance_deg 0 must be more than 0"):
        read_manifest(tmp_path / "manifest.csv")


# -- folders -----------------------------------------------------------------------------------------------

def test_folder_batches_take_webp_and_list_what_they_skip(tmp_path, capsys, fake_localizer):
    raster = write_raster(tmp_path / "aerial.tif")
    folder = tmp_path / "photos"
    folder.mkdir()
    write_photo(folder / "a.jpg", GOOD["p01.jpg"])
    jpeg = Image.open(folder / "a.jpg")
    jpeg.save(folder / "b.webp", "WEBP", exif=jpeg.getexif())  # the same photo and GPS, as WebP
    (folder / "c.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (folder / "notes.txt").write_text("not a photo")
    (folder / ".DS_Store").write_bytes(b"\x00")
    names = [Path(p).name for p in find_photos(folder)]
    heic_readable = ".heic" in photo_extensions()
    assert names == ["a.jpg", "b.webp"] + (["c.heic"] if heic_readable else [])
    skipped = {Path(p).name: why for p, why in scan_folder(folder)[1]}
    assert "not a photo format loc2 batch takes" in skipped.pop("notes.txt")
    if not heic_readable:
        assert "HEIC photos need a Pillow plugin (pillow-heif)" in skipped.pop("c.heic")
    assert skipped == {}  # hidden files are nobody's photos

    out = tmp_path / "out.gpkg"
    assert run_cli("batch", folder, "--aerial", raster, "--out", out) == 0
    table = capsys.readouterr().out
    assert "notes.txt: not a photo format" in table and "were not taken" in table
    rows = {Path(r["photo"]).name: r for r in pose_rows(out)}
    assert rows["b.webp"]["status"] == "ok"

    empty = tmp_path / "only-heic"
    empty.mkdir()
    (empty / "c.heic").write_bytes(b"\x00")
    if not heic_readable:
        assert run_cli("batch", empty, "--aerial", raster, "--out", tmp_path / "x.gpkg") == 2
        assert "c.heic: HEIC photos need a Pillow plugin" in capsys.readouterr().err


# -- GeoPackage: one writer, one row per photo, a full disk --------------------------------------------------

def test_a_photo_is_never_written_twice(tmp_path):
    from test_gpkg import ok_result

    path = tmp_path / "out.gpkg"
    with GeoPackageWriter(path, CRS) as writer:
        writer.write(ok_result("a.jpg"))
        with pytest.raises(OutputError, match="already holds a row for the photo a.jpg"):
            writer.write(ok_result("a.jpg", seed=1))
        writer.write(ok_result("b.jpg"))
    with GeoPackageWriter(path, CRS) as writer:  # reopened: the file, not the writer's memory, decides
        with pytest.raises(OutputError, match="already holds a row for the photo a.jpg"):
            writer.write(ok_result("a.jpg"))
        writer._photos.clear()  # even a writer that forgot: SQLite's unique index refuses the row
        with pytest.raises(OutputError, match="already holds a row for the photo b.jpg"):
            writer.write(ok_result("b.jpg"))
    assert Counter(r["photo"] for r in pose_rows(path)) == {"a.jpg": 1, "b.jpg": 1}
    assert len(pose_rows(path)) == 2
    db = sqlite3.connect(path)
    assert ("camera_poses_photo_unique", 1) in [(r[1], r[2]) for r in db.execute("PRAGMA index_list(camera_poses)")]
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()


def test_localize_out_refuses_a_photo_already_in_the_file(tmp_path, capsys, fake_localizer):
    raster = write_raster(tmp_path / "aerial.tif")
    photo = write_photo(tmp_path / "p.jpg", GOOD["p01.jpg"])
    out = tmp_path / "out.gpkg"
    assert run_cli("localize", photo, "--aerial", raster, "--out", out) == 0
    assert run_cli("localize", photo, "--aerial", raster, "--out", out) == 2
    assert "already holds a row for the photo" in capsys.readouterr().err
    assert len(pose_rows(out)) == 1


def test_one_writer_per_geopackage(tmp_path, capsys, fake_localizer):
    folder, raster, _ = make_folder(tmp_path)
    out = tmp_path / "out.gpkg"
    lock = tmp_path / "out.gpkg.lock"
    with GeoPackageWriter(out, CRS):
        assert lock.exists()
        with pytest.raises(OutputError, match=f"Another loc2 batch .* is writing {out}"):
            GeoPackageWriter(out, CRS)
        assert run_cli("batch", folder, "--aerial", raster, "--out", out) == 2
        assert f"is writing {out}" in capsys.readouterr().err
    assert not lock.exists()  # released and removed on close
    assert pose_rows(out) == []
    assert run_cli("batch", folder, "--aerial", raster, "--out", out) == 0
    assert len(pose_rows(out)) == 8


def test_a_killed_writer_does_not_leave_the_file_locked(tmp_path):
    out = tmp_path / "out.gpkg"
    holder = textwrap.dedent(f"""
        import sys, time
        sys.path[:0] = [{str(REPO)!r}]
        from loc2_engine.gpkg import GeoPackageWriter
        writer = GeoPackageWriter({str(out)!r}, "EPSG:32633")
        print("holding", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert proc.stdout.readline().strip() == "holding"
        with pytest.raises(OutputError, match="is writing"):
            GeoPackageWriter(out, CRS)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert (tmp_path / "out.gpkg.lock").exists()  # left behind, but nobody holds it
    with GeoPackageWriter(out, CRS) as writer:
        assert writer.photos() == set()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE stands in for a full disk")
def test_a_full_disk_stops_the_batch_with_exit_2_and_a_valid_file(tmp_path):
    folder, raster, _ = make_folder(tmp_path)
    out = tmp_path / "out.gpkg"
    driver = textwrap.dedent(f"""
        import os, resource, signal, sys
        import numpy as np
        sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'tests')!r}]
        from batch_fixtures import CRS, FakeLocalizer
        from loc2_engine import cli, pipeline
        from loc2_engine.gpkg import GeoPackageWriter

        class Bulky(FakeLocalizer):  # 1000 layout points a pose: each photo needs new pages in the file
            def localize(self, *args, **kwargs):
                result = super().localize(*args, **kwargs)
                if result.ok:
                    result.layout_uv = np.zeros((1000, 2))
                    result.layout_xy = result.layout_xy[:1] + np.zeros((1000, 2))
                return result

        pipeline.Localizer = lambda **kw: Bulky()
        GeoPackageWriter({str(out)!r}, CRS).close()  # the empty file, written while there was room
        probe = {str(out)!r} + ".probe.gpkg"  # how much one pose adds to such a file
        with GeoPackageWriter(probe, CRS) as writer:
            empty = os.path.getsize(probe)
            writer.write(Bulky().localize({str(folder / 'p01.jpg')!r}, {raster!r}))
        pose = os.path.getsize(probe) - empty
        os.remove(probe)
        room = os.path.getsize({str(out)!r}) + int(1.5 * pose)  # one pose fits, the next one does not
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write fails with EFBIG, as on ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (room, room))
        sys.exit(cli.main(["batch", {str(folder)!r}, "--aerial", {raster!r}, "--out", {str(out)!r}]))
    """)
    proc = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=300, env=ENV)
    assert proc.returncode == 2, proc.stderr
    assert "Cannot write the rows of the photo" in proc.stderr and str(out) in proc.stderr
    assert "--resume" in proc.stderr and "Traceback" not in proc.stderr and "ERROR 1" not in proc.stderr
    db = sqlite3.connect(out)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    before = Counter(r["photo"] for r in pose_rows(out))
    assert len(before) < 8 and set(before.values()) <= {1}
    assert any(r["status"] == "ok" for r in pose_rows(out))  # the pose written before the disk filled
    with GeoPackageWriter(out, CRS) as writer:  # with room again, --resume completes it, each photo once
        summary = run_batch(folder_jobs(folder, prior=Prior()), raster, writer, FakeLocalizer(), resume=True)
    assert summary.skipped == len(before)
    after = Counter(r["photo"] for r in pose_rows(out))
    assert len(after) == 8 and set(after.values()) == {1}


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes read-only files anyway")
def test_a_read_only_geopackage_is_an_output_error(tmp_path):
    path = tmp_path / "out.gpkg"
    GeoPackageWriter(path, CRS).close()
    path.chmod(0o444)
    with pytest.raises(OutputError, match="is read-only"):
        GeoPackageWriter(path, CRS)
