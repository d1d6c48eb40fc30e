"""The plugin object: wires the toolbar button, menu entry, dock and Processing provider into QGIS.

Thin on purpose: the work is the engine's (`loc2_engine`), the interface is `dock.py`. Nothing here imports
torch or the engine, so QGIS loads the plugin even when they are missing.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsMessageLog
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from . import deps
from .compat import QAction, tr

PLUGIN_DIR = Path(__file__).resolve().parent
MENU = "&Loc²"
LOG_TAG = "Loc²"


def icon_path() -> str:
    """``resources/icons/loc2.svg``: inside the plugin folder (zip install) or beside it (repository)."""
    for root in (PLUGIN_DIR, PLUGIN_DIR.parent):
        path = root / "resources" / "icons" / "loc2.svg"
        if path.is_file():
            return str(path)
    return ""


class Loc2Plugin:
    """Created by `classFactory`; QGIS calls initProcessing/initGui on load and unload on unload."""

    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.action = None
        self.install_action = None
        self.dock = None
        self.missing = []
        self.deps_message = None

    # Processing -------------------------------------------------------------------------------------
    def initProcessing(self):  # noqa: N802 (QGIS's name)
        """Register the ``loc2`` provider; must not touch iface (qgis_process passes None)."""
        try:
            from .provider import Loc2Provider
        except ImportError as exc:
            # a provider that cannot import must not take the whole plugin (and QGIS's load) down
            QgsMessageLog.logMessage(tr("Loc² Processing provider unavailable: {error}").format(error=exc), LOG_TAG,
                                     Qgis.MessageLevel.Critical)
            return
        self.provider = Loc2Provider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    # GUI --------------------------------------------------------------------------------------------
    def initGui(self):  # noqa: N802 (QGIS's name)
        self.initProcessing()
        main_window = self.iface.mainWindow()
        self.action = QAction(QIcon(icon_path()), tr("Loc² photo localization"), main_window)
        self.action.setObjectName("loc2_dock_action")
        self.action.setToolTip(tr("Show the Loc² dock: locate a street-level photo on an aerial layer"))
        self.action.setCheckable(True)
        self.action.toggled.connect(self.show_dock)
        self.iface.addToolBarIcon(self.action)
        self.iface.addPluginToMenu(MENU, self.action)

        self.missing = deps.missing()
        if self.missing:
            self.install_action = QAction(tr("Install missing Python packages…"), main_window)
            self.install_action.setObjectName("loc2_install_action")
            self.install_action.triggered.connect(self.show_installer)
            self.iface.addPluginToMenu(MENU, self.install_action)
            bar = self.iface.messageBar()
            # kept, so that a successful install can take it away again without a restart
            self.deps_message = bar.createMessage(
                LOG_TAG,
                deps.describe(self.missing) + " " + tr("Use Plugins › Loc² › Install missing Python packages."))
            bar.pushWidget(self.deps_message, Qgis.MessageLevel.Warning, 0)
            # whichever installer succeeds, the menu's or the one the dock's Run offers
            deps.INSTALLS.done.connect(self.packages_installed)

    def show_installer(self):
        deps.InstallDialog(deps.missing(), self.iface.mainWindow()).exec()

    def packages_installed(self):
        """After an install that left nothing missing: the warning and the menu entry go, no restart."""
        self.missing = deps.missing()
        if self.missing:
            return
        self._stop_listening()
        if self.deps_message is not None:
            self.iface.messageBar().popWidget(self.deps_message)
            self.deps_message = None
        if self.install_action is not None:
            self.iface.removePluginMenu(MENU, self.install_action)
            self.install_action.deleteLater()
            self.install_action = None

    def _stop_listening(self):
        try:
            deps.INSTALLS.done.disconnect(self.packages_installed)
        except TypeError:  # not connected: nothing was missing at load
            pass

    def show_dock(self, visible: bool = True):
        """Create the dock on first use (it reads the engine registries), then show or hide it."""
        if self.dock is None:
            if not visible:
                return
            from .dock import Loc2Dock

            self.dock = Loc2Dock(self.iface, self.iface.mainWindow())
            self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
            self.dock.visibilityChanged.connect(self._dock_visibility)
        self.dock.setVisible(visible)

    def _dock_visibility(self, visible: bool):
        # keep the button in step when the dock is closed with its own close button
        if self.action is not None and self.action.isChecked() != visible:
            self.action.blockSignals(True)
            self.action.setChecked(visible)
            self.action.blockSignals(False)

    def unload(self):
        """Remove everything initGui/initProcessing added: actions, dock (with its map tool), provider."""
        self._stop_listening()
        if self.dock is not None:
            self.dock.close_down()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        for action in (self.action, self.install_action):
            if action is not None:
                self.iface.removePluginMenu(MENU, action)
                self.iface.removeToolBarIcon(action)
                action.deleteLater()
        self.action = self.install_action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
