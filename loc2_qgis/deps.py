"""Python packages the engine needs inside QGIS, and a first-run installer for the missing ones.

QGIS ships its own Python; torch is usually not in it. Following the Deepness plugin (docs/environment.md),
missing pip-installable packages go into a plugin-local folder ``<plugin>/python3.X`` with
``<QGIS python> -m pip install --target``, run in a background thread, and that folder is *appended* to
``sys.path`` so QGIS's own packages (numpy, pyproj, GDAL) always win. Geo packages (pyproj) are never
pip-installed: their wheels bundle their own PROJ/GDAL and clash with QGIS's (docs/environment.md); they are
reported with advice instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from qgis.PyQt.QtCore import QObject, pyqtSignal
from qgis.PyQt.QtWidgets import (QDialog, QDialogButtonBox, QLabel, QPlainTextEdit, QPushButton,
                                 QVBoxLayout)

PLUGIN_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Requirement:
    """One importable module the engine needs; ``pip_spec`` None = must come with QGIS's Python."""

    module: str
    pip_spec: Optional[str]
    purpose: str


REQUIREMENTS = (
    Requirement("numpy", None, "arrays (comes with QGIS)"),
    Requirement("pyproj", None, "coordinate transformations (comes with QGIS; never pip-install it)"),
    Requirement("PIL", "Pillow", "reading photos and their EXIF"),
    Requirement("torch", "torch==2.13.0", "the matching model"),
    Requirement("safetensors", "safetensors", "loading model weights without running code"),
)


def local_site(plugin_dir: Path = PLUGIN_DIR) -> Path:
    """The plugin-local package folder for this Python version, e.g. ``<plugin>/python3.11``."""
    return Path(plugin_dir) / f"python{sys.version_info.major}.{sys.version_info.minor}"


def add_local_site(plugin_dir: Path = PLUGIN_DIR) -> None:
    """Append the plugin-local package folder to ``sys.path`` (appended: QGIS's own packages win)."""
    folder = str(local_site(plugin_dir))
    if Path(folder).is_dir() and folder not in sys.path:
        sys.path.append(folder)
        importlib.invalidate_caches()


def missing(requirements=None) -> List[Requirement]:
    """Requirements (default `REQUIREMENTS`) whose module cannot be found; checked without importing them
    (torch is slow to import)."""
    return [req for req in (REQUIREMENTS if requirements is None else requirements)
            if importlib.util.find_spec(req.module) is None]


def describe(reqs: List[Requirement]) -> str:
    """One sentence naming exactly what is missing and what each package is for."""
    if not reqs:
        return "All Python packages Loc² needs are available."
    names = "; ".join(f"{req.pip_spec or req.module} ({req.purpose})" for req in reqs)
    return f"Loc² needs Python packages that QGIS's Python does not have: {names}."


def qgis_python() -> str:
    """The Python interpreter of this QGIS, runnable as a subprocess.

    Inside QGIS ``sys.executable`` is often the QGIS binary itself (Linux, macOS bundle), so look for the
    interpreter that belongs to the running ``sys.prefix`` first and fall back to PATH.
    """
    exe = Path(sys.executable)
    if exe.name.lower().startswith("python"):
        return str(exe)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for prefix in (Path(sys.prefix), Path(sys.exec_prefix)):
        for candidate in (prefix / "bin" / f"python{version}", prefix / "bin" / "python3",
                          prefix / "python3.exe", prefix / "python.exe"):
            if candidate.is_file():
                return str(candidate)
    found = shutil.which(f"python{version}") or shutil.which("python3")
    if found:
        return found
    raise FileNotFoundError(f"Cannot find the Python {version} interpreter of this QGIS to run pip.")


def install_command(specs: List[str], target: Path, python: Optional[str] = None) -> List[str]:
    """``<QGIS python> -m pip install --target <target> <specs>`` as an argument list."""
    return [python or qgis_python(), "-m", "pip", "install", "--target", str(target), *specs]


class Installer(QObject):
    """Runs pip in a background thread so QGIS stays responsive; output comes back through signals.

    Signals are emitted from the worker thread and delivered queued on the main thread (this object lives
    there), so slots may touch widgets.
    """

    output = pyqtSignal(str)
    finished = pyqtSignal(bool, str)  # success, last message

    def __init__(self, command: List[str], target: Path, parent=None):
        super().__init__(parent)
        self.command = list(command)
        self.target = Path(target)
        self.thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="loc2-pip", daemon=True)
        self.thread.start()

    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def _run(self) -> None:
        self.target.mkdir(parents=True, exist_ok=True)
        self.output.emit("$ " + " ".join(self.command))
        try:
            proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        except OSError as exc:
            self.finished.emit(False, f"Could not start pip: {exc}")
            return
        for line in proc.stdout:
            self.output.emit(line.rstrip())
        code = proc.wait()
        if code == 0:
            self.finished.emit(True, f"Installed into {self.target}.")
        else:
            self.finished.emit(False, f"pip failed with exit status {code}; see the log above.")


class InstallDialog(QDialog):
    """Says exactly what is missing and installs the pip-installable part into the plugin-local folder."""

    def __init__(self, reqs: List[Requirement], parent=None, plugin_dir: Path = PLUGIN_DIR):
        super().__init__(parent)
        self.setObjectName("loc2_install_dialog")
        self.setWindowTitle("Loc²: missing Python packages")
        self.target = local_site(plugin_dir)
        self.specs = [req.pip_spec for req in reqs if req.pip_spec]
        system_only = [req.module for req in reqs if not req.pip_spec]
        layout = QVBoxLayout(self)
        text = describe(reqs)
        if system_only:
            text += (f" {', '.join(system_only)} must come with your QGIS installation (install it with the "
                     "package manager QGIS came from).")
        self.message = QLabel(text)
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setObjectName("loc2_install_log")
        layout.addWidget(self.log)
        self.install_button = QPushButton("Install into the plugin folder")
        self.install_button.setObjectName("loc2_install_button")
        self.install_button.setEnabled(bool(self.specs))
        self.install_button.clicked.connect(self.install)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.install_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.installer: Optional[Installer] = None
        self.succeeded = False
        if self.specs:
            try:
                self.command = install_command(self.specs, self.target)
                self.log.appendPlainText("Will run: " + " ".join(self.command))
            except FileNotFoundError as exc:
                self.command = None
                self.install_button.setEnabled(False)
                self.log.appendPlainText(str(exc))

    def install(self) -> None:
        if not self.command or (self.installer and self.installer.running()):
            return
        self.install_button.setEnabled(False)
        self.installer = Installer(self.command, self.target, self)
        self.installer.output.connect(self.log.appendPlainText)
        self.installer.finished.connect(self._done)
        self.installer.start()

    def _done(self, ok: bool, message: str) -> None:
        self.log.appendPlainText(message)
        self.succeeded = ok
        if ok:
            add_local_site(self.target.parent)
            still = missing()
            self.log.appendPlainText(describe(still) if still else
                                     "Everything is available now; Loc² is ready.")
        else:
            self.install_button.setEnabled(True)
