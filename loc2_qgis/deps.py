"""Python packages the engine needs inside QGIS, and a first-run installer for the missing ones.

QGIS ships its own Python; torch is usually not in it. Missing pip-installable packages go into
``<QGIS profile>/python/loc2_deps/python3.X`` (outside the plugin folder, which QGIS deletes when it upgrades
the plugin) with QGIS's own interpreter, ``<QGIS python> -m pip install --target``, run in a background
thread; that folder is *appended* to ``sys.path`` when the plugin loads and right after the install, so QGIS's
own packages (numpy, pyproj, GDAL) always win. Geo packages (pyproj) are never
pip-installed: their wheels bundle their own PROJ/GDAL and clash with QGIS's (docs/environment.md); they are
reported with advice instead.

torch is installed as its CPU build from PyTorch's CPU index (about 200 MB): on Linux, PyPI's torch is the
CUDA build, which pulls about 2.5 GB of CUDA libraries; on Linux the dialog offers that build as a choice.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QObject, pyqtSignal
from qgis.PyQt.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QPlainTextEdit,
                                 QPushButton, QVBoxLayout)

PLUGIN_DIR = Path(__file__).resolve().parent
#: download sizes the confirmation states; torch's is its build's (TORCH_BUILDS)
DOWNLOAD_SIZES = {"safetensors": "about 0.5 MB", "PIL": "about 4 MB"}
#: the torch builds: name -> (what it is, its download size with what it pulls in)
TORCH_BUILDS = {"cpu": ("CPU build", "about 200 MB"), "cuda": ("GPU (CUDA) build", "about 2.5 GB")}
#: PyTorch's index of CPU-only wheels, whose Linux and Windows versions carry the local tag ``+cpu``
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


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


def deps_root() -> Path:
    """Where the packages go: ``<QGIS profile>/python/loc2_deps``, beside the profile's plugins folder, so
    that upgrading or reinstalling the plugin (QGIS replaces its folder) keeps them."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "python" / "loc2_deps"


def local_site(root: Optional[Path] = None) -> Path:
    """The package folder for this Python version, e.g. ``<profile>/python/loc2_deps/python3.11``."""
    return Path(root if root is not None else deps_root()) / f"python{sys.version_info.major}.{sys.version_info.minor}"


def add_local_site(root: Optional[Path] = None) -> None:
    """Append the package folder to ``sys.path`` (appended: QGIS's own packages win) and forget the import
    system's cached misses, so a package installed a moment ago imports without a restart."""
    folder = str(local_site(root))
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


def _version_of(python: str) -> Optional[str]:
    """"X.Y" of the interpreter ``python``, or None when it does not run."""
    try:
        out = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def qgis_python() -> str:
    """The Python interpreter of this QGIS, runnable as a subprocess, of the running Python's version.

    Inside QGIS ``sys.executable`` is often the QGIS binary itself (Linux, macOS bundle), and the first
    ``python3`` on PATH may be another Python whose packages QGIS cannot import, so the candidates are the
    running Python's own (``sys._base_executable``, ``sys.executable``, then under ``sys.exec_prefix``), then
    ``pythonX.Y`` on PATH, each checked to be the running version.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [getattr(sys, "_base_executable", ""), sys.executable]
    for prefix in (Path(sys.exec_prefix), Path(sys.prefix)):
        candidates += [prefix / "bin" / f"python{version}", prefix / "bin" / "python3", prefix / "python3.exe",
                       prefix / "python.exe"]
    candidates.append(shutil.which(f"python{version}") or "")
    for candidate in candidates:
        path = Path(candidate) if candidate else None
        if path is None or not path.is_file() or not path.name.lower().startswith("python"):
            continue
        if _version_of(str(path)) == version:
            return str(path)
    raise FileNotFoundError(f"Cannot find the Python {version} interpreter of this QGIS to run pip.")


def torch_builds(platform: str = sys.platform) -> List[str]:
    """The torch builds pip can install here (`TORCH_BUILDS`): the CPU one everywhere; the CUDA one on Linux,
    where it is PyPI's torch (on Windows it needs another index, macOS has none)."""
    return ["cpu", "cuda"] if platform.startswith("linux") else ["cpu"]


def install_command(specs: List[str], target: Path, python: Optional[str] = None, torch_build: str = "cpu",
                    platform: str = sys.platform) -> List[str]:
    """``<QGIS python> -m pip install --target <target> <specs>`` as an argument list.

    torch_build "cpu": a ``torch==X`` spec becomes ``torch==X+cpu`` from `TORCH_CPU_INDEX` (PyPI stays the
    index of every other package), except on macOS, where PyPI's torch is the CPU build and carries no tag;
    "cuda": PyPI's torch as it is (Linux).
    """
    if torch_build not in TORCH_BUILDS:
        raise ValueError(f"torch_build must be one of {sorted(TORCH_BUILDS)}, got {torch_build!r}")
    index, out = [], []
    for spec in specs:
        pinned = re.fullmatch(r"torch==([\w.]+)", spec)
        if pinned and torch_build == "cpu" and platform != "darwin":
            spec, index = f"torch=={pinned.group(1)}+cpu", ["--extra-index-url", TORCH_CPU_INDEX]
        out.append(spec)
    return [python or qgis_python(), "-m", "pip", "install", *index, "--target", str(target), *out]


class _Installs(QObject):
    """Announces a successful install from any `InstallDialog` (the menu's or the dock's Run), so the plugin
    takes its missing-packages warning away whichever dialog did it."""

    done = pyqtSignal()


#: the one announcer; `InstallDialog` emits ``INSTALLS.done`` once nothing is missing any more
INSTALLS = _Installs()


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
    """Says exactly what is missing and what it downloads, and installs the pip-installable part into
    `local_site`. ``installed`` is emitted once everything is importable after an install."""

    installed = pyqtSignal()

    def __init__(self, reqs: List[Requirement], parent=None, root: Optional[Path] = None):
        super().__init__(parent)
        self.setObjectName("loc2_install_dialog")
        self.setWindowTitle("Loc²: missing Python packages")
        self.root = root
        self.target = local_site(root)
        self.specs = [req.pip_spec for req in reqs if req.pip_spec]
        system_only = [req.module for req in reqs if not req.pip_spec]
        self.reqs, self.system_only = list(reqs), system_only
        layout = QVBoxLayout(self)
        self.message = QLabel()
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        self.torch_build = QComboBox(self)
        self.torch_build.setObjectName("loc2_torch_build")
        for build in torch_builds():
            self.torch_build.addItem("{}, {}".format(*TORCH_BUILDS[build]), build)
        if any(req.module == "torch" for req in reqs if req.pip_spec) and self.torch_build.count() > 1:
            form = QFormLayout()
            form.addRow("torch", self.torch_build)
            layout.addLayout(form)
        else:
            self.torch_build.hide()
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setObjectName("loc2_install_log")
        layout.addWidget(self.log)
        self.install_button = QPushButton("Install")
        self.install_button.setObjectName("loc2_install_button")
        self.install_button.setEnabled(bool(self.specs))
        self.install_button.clicked.connect(self.install)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.install_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.installer: Optional[Installer] = None
        self.succeeded = False
        self.command = None
        self._build_chosen()
        self.torch_build.currentIndexChanged.connect(self._build_chosen)

    def _build_chosen(self, *_) -> None:
        """The confirmation and the pip command for the torch build chosen."""
        build = self.torch_build.currentData()
        sizes = {**DOWNLOAD_SIZES, "torch": "{1}, {0}".format(*TORCH_BUILDS[build])}
        sizes = [f"{req.pip_spec} ({sizes[req.module]})" for req in self.reqs if req.pip_spec and req.module in sizes]
        text = describe(self.reqs)
        if self.specs:
            text += (f" Installing downloads {', '.join(sizes) if sizes else ', '.join(self.specs)} into "
                     f"{self.target}, which plugin upgrades keep.")
        if self.system_only:
            text += (f" {', '.join(self.system_only)} must come with your QGIS installation (install it with the "
                     "package manager QGIS came from).")
        self.message.setText(text)
        if not self.specs:
            return
        try:
            self.command = install_command(self.specs, self.target, torch_build=build)
            self.log.appendPlainText("Will run: " + " ".join(self.command))
        except FileNotFoundError as exc:
            self.command = None
            self.install_button.setEnabled(False)
            self.log.appendPlainText(str(exc))

    def install(self) -> None:
        if not self.command or (self.installer and self.installer.running()):
            return
        self.install_button.setEnabled(False)
        self.torch_build.setEnabled(False)
        self.installer = Installer(self.command, self.target, self)
        self.installer.output.connect(self.log.appendPlainText)
        self.installer.finished.connect(self._done)
        self.installer.start()

    def _done(self, ok: bool, message: str) -> None:
        self.log.appendPlainText(message)
        self.succeeded = ok
        if ok:
            add_local_site(self.root)
            still = missing()
            self.log.appendPlainText(describe(still) if still else
                                     "Everything is available now; Loc² is ready.")
            if not still:
                self.installed.emit()
                INSTALLS.done.emit()
        else:
            self.install_button.setEnabled(True)
            self.torch_build.setEnabled(True)
