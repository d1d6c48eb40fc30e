"""The first-run installer: QGIS's own interpreter, a package folder outside the plugin folder (plugin
upgrades keep it) that is on sys.path from the plugin's load, the download size stated before installing,
and the missing-packages warning gone after a successful install without a restart. pip itself is mocked
(the subprocess call only); the real install of a local wheel is in test_plugin.py."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from qgis.PyQt.QtCore import QCoreApplication

import loc2_qgis
from loc2_qgis import deps


class FakePip:
    """subprocess.Popen stand-in: records the command, 'installs' a module into the --target folder."""

    commands = []

    def __init__(self, command, **_kwargs):
        FakePip.commands.append(list(command))
        target = Path(command[command.index("--target") + 1])
        (target / "loc2fakepkg").mkdir(parents=True, exist_ok=True)
        (target / "loc2fakepkg" / "__init__.py").write_text("VALUE = 7\n")
        self.stdout = io.StringIO("Successfully installed loc2fakepkg\n")

    def wait(self):
        return 0


def finish(dialog):
    dialog.install_button.click()
    dialog.installer.thread.join(30)
    for _ in range(20):
        QCoreApplication.processEvents()


def test_the_interpreter_is_this_pythons_version_never_just_the_first_python3(monkeypatch, tmp_path):
    fake_qgis = tmp_path / "qgis"  # inside QGIS, sys.executable is the qgis binary
    fake_qgis.write_text("")
    monkeypatch.setattr(sys, "executable", str(fake_qgis))
    other = tmp_path / "bin" / "python3"
    other.parent.mkdir()
    other.write_text("")
    monkeypatch.setenv("PATH", str(other.parent))
    found = deps.qgis_python()
    assert found != str(other) and Path(found).name.startswith("python")
    assert deps._version_of(found) == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_the_package_folder_is_outside_the_plugin_folder_and_on_sys_path_at_load(qgis_iface, monkeypatch):
    from qgis.core import QgsApplication

    site = deps.local_site()
    assert deps.PLUGIN_DIR not in site.parents
    assert Path(QgsApplication.qgisSettingsDirPath()) in site.parents
    site.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(site)])
    loc2_qgis.classFactory(qgis_iface)
    assert sys.path[-1] == str(site)  # appended: QGIS's own packages win


@pytest.fixture
def missing_package(monkeypatch, tmp_path):
    """A required package that is not installed, pip faked (FakePip), packages going under tmp_path."""
    absent = deps.Requirement("loc2fakepkg", "loc2fakepkg==1.0", "testing")
    monkeypatch.setattr(deps, "REQUIREMENTS", deps.REQUIREMENTS + (absent,))
    monkeypatch.setattr(deps, "deps_root", lambda: tmp_path / "loc2_deps")
    monkeypatch.setattr(deps, "qgis_python", lambda: "/opt/qgis/bin/python3.11")
    monkeypatch.setattr(subprocess, "Popen", FakePip)
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.mark.inqgis
def test_a_successful_install_clears_the_warning_without_a_restart(qgis_iface, missing_package, tmp_path):
    from qgis.core import Qgis

    FakePip.commands.clear()
    bar = qgis_iface.messageBar()
    plugin = loc2_qgis.classFactory(qgis_iface)
    plugin.initGui()
    try:
        item = plugin.deps_message
        assert item in bar.items() and item.level() == Qgis.MessageLevel.Warning
        dialog = deps.InstallDialog(deps.missing(), root=None)
        assert "loc2fakepkg==1.0" in dialog.message.text() and str(dialog.target) in dialog.message.text()
        dialog.installed.connect(plugin.packages_installed)
        finish(dialog)
        assert FakePip.commands == [["/opt/qgis/bin/python3.11", "-m", "pip", "install", "--target",
                                     str(tmp_path / "loc2_deps" / deps.local_site(Path("x")).name),
                                     "loc2fakepkg==1.0"]]
        assert dialog.succeeded and not deps.missing()
        assert plugin.deps_message is None and item not in bar.items()
        assert plugin.install_action is None
        import loc2fakepkg  # noqa: E402 (installed a moment ago, no restart)

        assert loc2fakepkg.VALUE == 7
        sys.modules.pop("loc2fakepkg")
    finally:
        plugin.unload()


@pytest.mark.inqgis
def test_an_install_offered_by_the_docks_run_clears_the_warning_and_run_goes_on(qgis_iface, missing_package):
    from qgis.core import Qgis

    bar = qgis_iface.messageBar()
    plugin = loc2_qgis.classFactory(qgis_iface)
    plugin.initGui()
    try:
        item = plugin.deps_message
        assert item in bar.items() and item.level() == Qgis.MessageLevel.Warning
        plugin.action.trigger()
        plugin.dock.run_button.click()  # Run offers the installer instead of running
        dialogs = plugin.dock.findChildren(deps.InstallDialog)
        assert len(dialogs) == 1 and plugin.dock.task is None
        finish(dialogs[0])
        assert dialogs[0].succeeded and not deps.missing()
        assert plugin.deps_message is None and item not in bar.items() and plugin.install_action is None
        plugin.dock.run_button.click()  # no restart: Run now goes past the packages to its own checks
        assert len(plugin.dock.findChildren(deps.InstallDialog)) == 1
        assert "aerial raster layer" in plugin.dock.status.text()
        sys.modules.pop("loc2fakepkg", None)
    finally:
        plugin.unload()


def test_the_confirmation_states_the_download_size_of_torch(qgis_iface):
    torch = next(req for req in deps.REQUIREMENTS if req.module == "torch")
    dialog = deps.InstallDialog([torch], root=Path("/nonexistent/loc2_deps"))
    assert "torch==" in dialog.message.text() and "200 MB" in dialog.message.text() and "CPU" in \
        dialog.message.text()
