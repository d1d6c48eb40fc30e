"""The defaults a user sees come from `loc2_engine.defaults`: the engine's own, the `loc2` options and their
help. The dock, the plugin's settings and the Processing algorithm are checked in test_plugin_dock.py and
test_processing.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from loc2_engine import defaults
from loc2_engine.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]

#: a minimal command line of each command that localizes
ARGV = {"localize": ["localize", "photo.jpg", "--aerial", "aerial.tif"],
        "batch": ["batch", "photos", "--out", "out.gpkg"]}


def test_defaults_import_without_torch_or_numpy():
    # the plugin reads them when QGIS loads it, before the engine's dependencies may be installed
    code = "import sys, loc2_engine.defaults; assert not {'torch', 'numpy'} & set(sys.modules), sys.modules"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_engine_uses_the_defaults():
    from loc2_engine.depth import DEFAULT_CAMERA_HEIGHT_M
    from loc2_engine.pipeline import Prior
    from loc2_engine.ransac import PoseLimits

    assert DEFAULT_CAMERA_HEIGHT_M == defaults.CAMERA_HEIGHT_M
    assert Prior().radius_m == defaults.RADIUS_M
    assert PoseLimits(None, 90.0, None).heading_tolerance_deg == defaults.HEADING_TOLERANCE_DEG


@pytest.mark.parametrize("command", sorted(ARGV))
def test_cli_options_default_to_the_defaults_and_say_so(command, capsys):
    args = build_parser().parse_args(ARGV[command])
    assert (args.model, args.camera) == (defaults.MODEL, defaults.CAMERA)
    with pytest.raises(SystemExit):
        main([command, "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps lines anywhere between words
    for text in (f"(default {defaults.MODEL};", f"(default {defaults.CAMERA})",
                 f"prior, metres (default {defaults.RADIUS_M:g})",
                 f"metres (default {defaults.CAMERA_HEIGHT_M:g};",
                 f"--heading, degrees (default {defaults.HEADING_TOLERANCE_DEG:g})"):
        assert text in shown, text


def test_priors_without_a_radius_take_the_default_radius(tmp_path):
    from loc2_engine.batch import manifest_jobs
    from loc2_engine.commands.localize import prior_from_args
    from loc2_engine.manifest import ManifestRow

    args = build_parser().parse_args(ARGV["localize"])
    assert prior_from_args(args).radius_m == defaults.RADIUS_M
    (job,) = manifest_jobs([ManifestRow(photo=str(tmp_path / "a.jpg"))])  # a manifest row with no radius_m
    assert job.prior.radius_m == defaults.RADIUS_M
