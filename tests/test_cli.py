"""The `loc2` console script: every command's --help, and `loc2 localize --json` on a tiny scene."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from loc2_engine.cli import COMMANDS, main
from loc2_engine.result import POSE_FIELDS
from images import scene_like

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_loc2_help_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "loc2_engine", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0
    for name in COMMANDS:
        assert name in out.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: loc2 " + command in capsys.readouterr().out


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    """A random-weight default model file, a 2:1 panorama and a 100 m UTM raster."""
    import torch
    from safetensors.torch import save_file

    from loc2_engine.models.small import SmallMatcher

    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    model = SmallMatcher()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(root / "random.safetensors"), metadata={"conf": json.dumps(model.conf)})
    rng = np.random.default_rng(0)
    Image.fromarray(scene_like(128, 256)).save(root / "pano.png")
    with rasterio.open(root / "aerial.tif", "w", driver="GTiff", width=500, height=500, count=3, dtype="uint8",
                       crs="EPSG:32632", transform=from_origin(400000.0, 5200000.0, 0.4, 0.4)) as dst:
        dst.write(rng.integers(0, 255, (3, 500, 500), dtype=np.uint8))
    return root


def _localize(scene, *extra):
    cmd = [sys.executable, "-m", "loc2_engine", "localize", str(scene / "pano.png"), "--aerial",
           str(scene / "aerial.tif"), "--model", str(scene / "random.safetensors"), "--depth", "plane",
           "--device", "cpu", "--json", *extra]
    env = {**os.environ, "PROJ_DATA": os.environ.get("PROJ_DATA", "/usr/share/proj")}
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def test_localize_json_has_the_camera_poses_fields(tiny_scene):
    out = _localize(tiny_scene, "--prior", "400100", "5199900", "--radius", "20")
    row = json.loads(out.stdout)
    assert list(row) == list(POSE_FIELDS)
    assert row["model"] == "random.safetensors" and row["depth"] == "plane" and row["camera"] == "pano"
    # random weights: a pose or a specific failure; the exit status says which
    assert out.returncode == (1 if row["status"] == "failed" else 0), out.stderr
    if row["status"] == "failed":
        assert row["error"] and row["error"] in out.stderr


def test_localize_failure_exits_nonzero_with_the_sentence(tiny_scene):
    out = _localize(tiny_scene, "--prior", "300000", "5199900", "--radius", "20")
    assert out.returncode == 1
    row = json.loads(out.stdout)
    assert row["status"] == "failed" and "outside the aerial raster" in row["error"]
    assert "outside the aerial raster" in out.stderr and "Traceback" not in out.stderr


def test_openmp_threads_wait_asleep_unless_the_user_chose(tmp_path):
    """Spinning OpenMP threads beside another job on a 2-core machine made a photo take 10 s instead of 0.3 s:
    importing the engine (before torch) asks for passive waiting, and keeps a policy the user set."""
    code = "import os, loc2_engine, torch; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "PASSIVE", out.stderr
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**env, "OMP_WAIT_POLICY": "ACTIVE"})
    assert out.stdout.strip() == "ACTIVE", out.stderr
