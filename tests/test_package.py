"""`make package` builds a zip that installs into a fresh QGIS profile and loads there, engine vendored inside.

The zip is unzipped into ``<profile>/python/plugins`` of a throw-away HOME, then loaded the two ways QGIS
does: ``qgis_process.bin plugins enable`` + ``list`` (classFactory(None) + initProcessing), and a separate
system-Python process using QGIS's own plugin loader (`qgis.utils.loadPlugin` / `startProcessingPlugin`).
Both run with Debian's Python, which has no torch: the plugin must load anyway and name what is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
QGIS_PROCESS = "/usr/bin/qgis_process.bin"


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    done = subprocess.run(["bash", str(REPO / "scripts" / "package.sh")], cwd=REPO, capture_output=True,
                          text=True, env=dict(os.environ, DIST=str(dist)), timeout=300)
    assert done.returncode == 0, done.stderr
    (zip_path,) = dist.glob("loc2_qgis-*.zip")
    return zip_path


def clean_env(home: Path) -> dict:
    """A QGIS user's environment: own HOME (fresh profile), no repository or venv on the Python path."""
    env = {k: v for k, v in os.environ.items()  # QGIS_* incl. pytest-qgis's QGIS_CUSTOM_CONFIG_PATH
           if not k.startswith("QGIS_") and k not in ("PYTHONPATH", "LD_PRELOAD", "VIRTUAL_ENV", "LOC2_RESOURCES")}
    env.update(HOME=str(home), QT_QPA_PLATFORM="offscreen", PATH="/usr/bin:/bin")
    return env


def install(zip_path: Path, home: Path) -> Path:
    plugins = home / ".local/share/QGIS/QGIS3/profiles/default/python/plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(plugins)
    return plugins


def test_zip_has_one_plugin_folder_with_engine_and_resources(package):
    names = zipfile.ZipFile(package).namelist()
    assert {n.split("/")[0] for n in names} == {"loc2_qgis"}
    for required in ("loc2_qgis/metadata.txt", "loc2_qgis/__init__.py", "loc2_qgis/provider.py",
                     "loc2_qgis/dock.py", "loc2_qgis/loc2_engine/__init__.py", "loc2_qgis/loc2_engine/defaults.py",
                     "loc2_qgis/loc2_engine/pipeline.py",
                     "loc2_qgis/loc2_engine/resources.py", "loc2_qgis/resources/icons/loc2.svg",
                     "loc2_qgis/resources/styles/camera_poses.qml", "loc2_qgis/LICENSE"):
        assert required in names, required
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    metadata = zipfile.ZipFile(package).read("loc2_qgis/metadata.txt")
    assert metadata == (REPO / "loc2_qgis" / "metadata.txt").read_bytes()
    # plugins.qgis.org wants the licence text in the zip: the full GPL-3.0, as in the repository
    assert zipfile.ZipFile(package).read("loc2_qgis/LICENSE") == (REPO / "LICENSE").read_bytes()
    assert b"GNU GENERAL PUBLIC LICENSE" in (REPO / "LICENSE").read_bytes()[:200]


@pytest.mark.skipif(not Path(QGIS_PROCESS).exists(), reason="qgis_process.bin not installed")
def test_zip_installs_into_a_fresh_profile_and_qgis_process_loads_it(package, tmp_path):
    install(package, tmp_path)
    env = clean_env(tmp_path)
    enabled = subprocess.run([QGIS_PROCESS, "plugins", "enable", "loc2_qgis"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    listed = subprocess.run([QGIS_PROCESS, "--json", "list"], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "loc2:georeferencephotos" in json.loads(listed.stdout)["providers"]["loc2"]["algorithms"]


LOADER = r"""
import sys
from qgis.core import QgsApplication
QgsApplication.setPrefixPath("/usr", True)
app = QgsApplication([], False)
app.initQgis()
import qgis.utils
plugins_dir = sys.argv[1]
qgis.utils.plugin_paths = [plugins_dir]
sys.path.insert(0, plugins_dir)
qgis.utils.updateAvailablePlugins()
assert "loc2_qgis" in qgis.utils.available_plugins, qgis.utils.available_plugins
assert qgis.utils.loadPlugin("loc2_qgis")
assert qgis.utils.startProcessingPlugin("loc2_qgis")
assert QgsApplication.processingRegistry().providerById("loc2") is not None
import loc2_engine
from loc2_engine.resources import resource_path
from loc2_qgis import deps
import loc2_qgis.dock, loc2_qgis.match_viewer  # the GUI modules import without torch too
print("ENGINE", loc2_engine.__file__)
print("STYLE", resource_path("styles", "camera_poses.qml"))
print("MISSING", deps.describe(deps.missing()))
qgis.utils.unloadPlugin("loc2_qgis")
assert QgsApplication.processingRegistry().providerById("loc2") is None
app.exitQgis()
"""


def test_zip_loads_with_qgis_plugin_loader_without_torch(package, tmp_path):
    plugins = install(package, tmp_path)
    done = subprocess.run(["/usr/bin/python3", "-c", LOADER, str(plugins)], env=clean_env(tmp_path),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = dict(line.split(" ", 1) for line in done.stdout.splitlines() if line[:1].isupper() and " " in line)
    plugin_dir = str(plugins / "loc2_qgis")
    assert out["ENGINE"].startswith(plugin_dir)  # the vendored engine, not the repository's
    assert out["STYLE"].startswith(plugin_dir) and Path(out["STYLE"]).is_file()
    import importlib.util

    if importlib.util.find_spec("torch") is not None and "torch" in out["MISSING"]:
        # Debian's Python lacks torch here: the plugin loaded anyway and names it exactly
        assert "torch==2.13.0" in out["MISSING"]
