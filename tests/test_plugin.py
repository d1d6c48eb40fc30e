"""The plugin loads and unloads cleanly in real QGIS (pytest-qgis), registers its Processing provider, is seen
by qgis_process, has valid metadata, and its first-run installer really installs into a plugin-local folder."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from qgis.core import QgsApplication
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QCoreApplication, QEvent

import loc2_qgis
from loc2_qgis import deps

REPO = Path(__file__).resolve().parents[1]
QGIS_PROCESS = "/usr/bin/qgis_process.bin"
REQUIRED_METADATA = ("name", "qgisMinimumVersion", "description", "about", "version", "author")
#: keys plugins.qgis.org wants that only the publisher can fill in: present, and real or empty, never made up
CONTACT_METADATA = ("email", "repository", "tracker", "homepage")


def read_metadata(path: Path) -> dict:
    parser = configparser.ConfigParser()
    parser.optionxform = str  # keep the exact key spelling QGIS documents
    parser.read(path, encoding="utf-8")
    return dict(parser["general"])


def test_root_metadata_is_a_copy_of_the_plugin_metadata():
    assert (REPO / "metadata.txt").read_bytes() == (REPO / "loc2_qgis" / "metadata.txt").read_bytes(), \
        "metadata.txt at the repository root must be a copy of loc2_qgis/metadata.txt (cp loc2_qgis/metadata.txt .)"


def test_metadata_has_the_fields_qgis_and_the_plugin_site_require():
    meta = read_metadata(REPO / "loc2_qgis" / "metadata.txt")
    for key in REQUIRED_METADATA + ("tags", "icon", "category", "experimental"):
        assert meta.get(key, "").strip(), key
    for key in CONTACT_METADATA:
        assert key in meta, key
        assert not any(fake in meta[key] for fake in ("example.", "loc2-qgis/loc2-qgis")), (key, meta[key])
        if meta[key] and key != "email":
            assert meta[key].startswith("https://"), (key, meta[key])
    assert meta["supportsQt6"] == "True"
    assert (REPO / "LICENSE").read_text().startswith(" " * 20 + "GNU GENERAL PUBLIC LICENSE")
    assert meta["qgisMinimumVersion"] == "3.22"
    assert meta["qgisMaximumVersion"] == "4.99"
    assert meta["hasProcessingProvider"] == "yes"
    assert (REPO / "loc2_qgis" / meta["icon"]).is_file() or (REPO / meta["icon"]).is_file()


@pytest.mark.inqgis
def test_plugin_loads_and_unloads_cleanly(qgis_iface, monkeypatch):
    added, removed = [], []
    monkeypatch.setattr(qgis_iface, "addToolBarIcon", lambda action: added.append(("toolbar", action)))
    monkeypatch.setattr(qgis_iface, "addPluginToMenu", lambda menu, action: added.append(("menu", action)))
    monkeypatch.setattr(qgis_iface, "removeToolBarIcon", lambda action: removed.append(("toolbar", action)))
    monkeypatch.setattr(qgis_iface, "removePluginMenu", lambda menu, action: removed.append(("menu", action)),
                        raising=False)
    registry = QgsApplication.processingRegistry()
    plugin = loc2_qgis.classFactory(qgis_iface)
    plugin.initGui()
    assert registry.providerById("loc2") is not None
    assert registry.algorithmById("loc2:georeferencephotos") is not None
    assert plugin.action.objectName() == "loc2_dock_action"
    assert ("toolbar", plugin.action) in added and ("menu", plugin.action) in added
    action = plugin.action

    plugin.unload()
    QCoreApplication.processEvents()
    assert registry.providerById("loc2") is None
    assert sorted(map(id, (a for _, a in added))) == sorted(map(id, (a for _, a in removed)))
    assert plugin.action is None and plugin.dock is None and plugin.provider is None
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)  # runs deleteLater
    assert sip.isdeleted(action)


@pytest.mark.inqgis
def test_init_processing_without_iface_as_qgis_process_does():
    registry = QgsApplication.processingRegistry()
    plugin = loc2_qgis.classFactory(None)
    plugin.initProcessing()
    try:
        assert registry.providerById("loc2") is not None
    finally:
        plugin.unload()
    assert registry.providerById("loc2") is None


def qgis_process(home: Path, *args: str) -> subprocess.CompletedProcess:
    """qgis_process.bin with a throw-away profile (HOME) and the repository as plugin path."""
    env = {k: v for k, v in os.environ.items()  # pytest-qgis's QGIS_CUSTOM_CONFIG_PATH would win over HOME
           if not k.startswith("QGIS_") and k != "LD_PRELOAD"}
    env.update(HOME=str(home), QT_QPA_PLATFORM="offscreen", QGIS_PLUGINPATH=str(REPO))
    return subprocess.run([QGIS_PROCESS, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not Path(QGIS_PROCESS).exists(), reason="qgis_process.bin not installed")
def test_qgis_process_lists_the_provider_and_algorithm(tmp_path):
    enabled = qgis_process(tmp_path, "plugins", "enable", "loc2_qgis")
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    assert "* loc2_qgis" in enabled.stdout
    listed = qgis_process(tmp_path, "--json", "list")
    assert listed.returncode == 0, listed.stderr
    providers = json.loads(listed.stdout)["providers"]
    assert "loc2:georeferencephotos" in providers["loc2"]["algorithms"]


def test_missing_names_exactly_what_is_absent():
    reqs = (deps.Requirement("numpy", None, "arrays"),
            deps.Requirement("loc2_no_such_module", "loc2-no-such-package==1.0", "testing"))
    gone = deps.missing(reqs)
    assert [r.module for r in gone] == ["loc2_no_such_module"]
    text = deps.describe(gone)
    assert "loc2-no-such-package==1.0 (testing)" in text and "numpy" not in text


def test_install_command_targets_the_folder_outside_the_plugin(tmp_path):
    target = deps.local_site(tmp_path)
    assert target.name == f"python{sys.version_info.major}.{sys.version_info.minor}"
    cmd = deps.install_command(["Pillow"], target, python="/usr/bin/python3")
    assert cmd == ["/usr/bin/python3", "-m", "pip", "install", "--target", str(target), "Pillow"]
    assert Path(deps.qgis_python()).is_file()
    assert deps.PLUGIN_DIR not in deps.local_site().parents  # plugin upgrades replace the plugin folder


@pytest.mark.parametrize("platform", ["linux", "win32"])
def test_torch_is_the_cpu_build_from_the_cpu_index_unless_the_gpu_build_is_chosen(tmp_path, platform):
    cmd = deps.install_command(["torch==2.13.0", "safetensors"], tmp_path, python="py", platform=platform)
    assert cmd == ["py", "-m", "pip", "install", "--extra-index-url", deps.TORCH_CPU_INDEX, "--target",
                   str(tmp_path), "torch==2.13.0+cpu", "safetensors"]
    assert deps.TORCH_CPU_INDEX == "https://download.pytorch.org/whl/cpu"
    if "cuda" in deps.torch_builds(platform):  # PyPI's own torch, the CUDA build on Linux
        assert deps.install_command(["torch==2.13.0"], tmp_path, python="py", torch_build="cuda",
                                    platform=platform)[-1] == "torch==2.13.0"
    # macOS: PyPI's torch is the CPU build, and has no +cpu tag
    assert deps.install_command(["torch==2.13.0"], tmp_path, python="py", platform="darwin")[-1] == "torch==2.13.0"
    with pytest.raises(ValueError, match="torch_build"):
        deps.install_command(["torch==2.13.0"], tmp_path, python="py", torch_build="rocm")


def test_the_confirmation_states_the_size_of_the_torch_build_chosen(qgis_iface, monkeypatch):
    monkeypatch.setattr(deps, "qgis_python", lambda: "py")
    monkeypatch.setattr(deps, "torch_builds", lambda: ["cpu", "cuda"])
    torch = next(req for req in deps.REQUIREMENTS if req.module == "torch")
    dialog = deps.InstallDialog([torch], root=Path("/nonexistent/loc2_deps"))
    assert dialog.torch_build.isVisibleTo(dialog)
    assert "about 200 MB, CPU build" in dialog.message.text() and "torch==2.13.0+cpu" in dialog.command
    dialog.torch_build.setCurrentIndex(dialog.torch_build.findData("cuda"))
    assert "about 2.5 GB, GPU (CUDA) build" in dialog.message.text() and "200 MB" not in dialog.message.text()
    assert "torch==2.13.0" in dialog.command and deps.TORCH_CPU_INDEX not in dialog.command
    monkeypatch.setattr(deps, "torch_builds", lambda: ["cpu"])
    assert not deps.InstallDialog([torch], root=Path("/nonexistent/loc2_deps")).torch_build.isVisibleTo(dialog)


def make_wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel (module ``loc2probe``) so pip can install offline."""
    wheel = folder / "loc2probe-0.1-py3-none-any.whl"
    info = "loc2probe-0.1.dist-info"
    files = {
        "loc2probe/__init__.py": "VALUE = 42\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: loc2probe\nVersion: 0.1\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return wheel


@pytest.mark.inqgis
def test_install_dialog_installs_in_the_background_and_appends_to_sys_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # the local wheel only: no network
    monkeypatch.setattr(sys, "path", list(sys.path))  # the dialog appends; restore afterwards
    wheel = make_wheel(tmp_path)
    root = tmp_path / "loc2_deps"
    dialog = deps.InstallDialog([deps.Requirement("loc2probe", str(wheel), "testing")], root=root)
    assert "loc2probe" in dialog.message.text()
    dialog.install_button.click()
    assert not dialog.install_button.isEnabled()  # a second click while pip runs does nothing
    finished = []
    dialog.installer.finished.connect(lambda ok, msg: finished.append(ok))
    deadline = 600
    while not finished and deadline:
        dialog.installer.thread.join(0.1)
        QCoreApplication.processEvents()
        deadline -= 1
    QCoreApplication.processEvents()
    assert finished == [True], dialog.log.toPlainText()
    assert dialog.succeeded
    site = deps.local_site(root)
    assert (site / "loc2probe" / "__init__.py").is_file()
    assert sys.path[-1] == str(site)
    import loc2probe  # noqa: E402 (installed by the dialog)

    assert loc2probe.VALUE == 42
    sys.modules.pop("loc2probe")


@pytest.mark.inqgis
def test_missing_torch_is_named_on_load_and_run_offers_the_installer(qgis_iface, monkeypatch):
    from qgis.core import Qgis

    absent = deps.Requirement("loc2_absent_torch", "loc2-absent-torch==2.13.0", "the matching model")
    monkeypatch.setattr(deps, "REQUIREMENTS", deps.REQUIREMENTS + (absent,))
    bar = qgis_iface.messageBar()
    bar.clear_messages()
    plugin = loc2_qgis.classFactory(qgis_iface)
    plugin.initGui()  # loads anyway
    try:
        assert "loc2-absent-torch==2.13.0 (the matching model)" in plugin.deps_message.text()
        assert plugin.deps_message in bar.items() and plugin.deps_message.level() == Qgis.MessageLevel.Warning
        assert plugin.install_action is not None and plugin.install_action.objectName() == "loc2_install_action"
        plugin.action.trigger()
        plugin.dock.run_button.click()
        dialogs = [w for w in plugin.dock.findChildren(deps.InstallDialog)]
        assert dialogs and dialogs[0].isVisible() and dialogs[0].specs == ["loc2-absent-torch==2.13.0"]
        assert "loc2-absent-torch==2.13.0" in plugin.dock.status.text()
        assert plugin.dock.task is None
        dialogs[0].close()
    finally:
        plugin.unload()
