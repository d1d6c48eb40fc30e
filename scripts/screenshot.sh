#!/usr/bin/env bash
# `make screenshot`: docs/screenshot-dock.png, the real QGIS desktop (under Xvfb, no display needed) with the
# Loc² dock after localizing one photo of the synthetic demo scene, its result layers on the map.
#
# QGIS starts with a throw-away profile that enables the plugin from this checkout (QGIS_PLUGINPATH) and
# runs a startup script (--code) that drives the dock exactly as a user would: aerial layer, photo, prior,
# Run; when the task has finished and the canvas has drawn, it grabs the main window and quits.
# DATA=<dataset dir> (default data/demo, made with `loc2 synth` if missing), ROW=<manifest row> (default 2,
# the demo's panorama with a heading prior, which the default model localizes),
# OUT=<png> (default docs/screenshot-dock.png).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-$ROOT/.venv/bin/python}
DATA=${DATA:-data/demo}
ROW=${ROW:-2}
OUT=${OUT:-docs/screenshot-dock.png}
export PROJ_DATA=${PROJ_DATA:-/usr/share/proj}
if [ ! -f "$DATA/manifest.csv" ]; then
  "$PY" -m loc2_engine synth "$DATA" --preset demo
fi
DATA=$(cd "$DATA" && pwd)
case "$OUT" in /*) ;; *) OUT=$ROOT/$OUT ;; esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/profiles/default/QGIS" "$(dirname "$OUT")"
printf '[PythonPlugins]\nloc2_qgis=true\n' > "$work/profiles/default/QGIS/QGIS3.ini"

cat > "$work/drive.py" <<'PY'
"""Run by QGIS at startup: drive the Loc² dock on one manifest row, grab the window, quit."""
import csv, os, sys, time
from pathlib import Path
from qgis.core import QgsApplication, QgsCoordinateReferenceSystem, QgsPointXY, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QTimer
import qgis.utils

data, row, out = Path(os.environ["LOC2_SHOT_DATA"]), int(os.environ["LOC2_SHOT_ROW"]), os.environ["LOC2_SHOT_OUT"]
started = time.time()

def fail(msg):
    print("screenshot:", msg, file=sys.stderr, flush=True)
    os._exit(1)

def quit_qgis(code=0):
    QgsProject.instance().setDirty(False)
    sys.stdout.flush()
    os._exit(code)  # QGIS's exit path can ask to save; the picture is written already

def start():
    iface = qgis.utils.iface
    plugin = qgis.utils.plugins.get("loc2_qgis")
    if plugin is None:
        fail("the loc2_qgis plugin did not load")
    rows = list(csv.DictReader(open(data / "manifest.csv", encoding="utf-8")))
    item = rows[row]
    layer = QgsRasterLayer(str(data / item["aerial"]), "aerial")
    QgsProject.instance().addMapLayer(layer)
    iface.mainWindow().setGeometry(0, 0, 1400, 900)  # no window manager: place it on the 1400x900 screen
    plugin.action.trigger()
    dock = plugin.dock
    dock.raster_combo.setLayer(layer)
    dock.photo.setFilePath(str(data / item["photo"]))
    if dock.prior_point is None and item.get("prior_x"):  # no EXIF GPS: the manifest's prior
        dock.set_prior(QgsPointXY(float(item["prior_x"]), float(item["prior_y"])),
                       QgsCoordinateReferenceSystem(item["crs"]))
    dock.radius.setValue(float(item["radius_m"]))
    if item.get("heading_prior_deg"):  # a known-orientation row, as the manifest says
        dock.heading_known.setChecked(True)
        dock.heading.setValue(float(item["heading_prior_deg"]))
        dock.tolerance.setValue(float(item["heading_tolerance_deg"]))
    dock.run_button.click()
    wait_task(dock)

def wait_task(dock):
    if dock.task is not None:
        if time.time() - started > 540:
            fail("the localization did not finish in 9 minutes")
        QTimer.singleShot(200, lambda: wait_task(dock))
        return
    if not dock.results:
        fail("no result: " + dock.status.text())
    print("screenshot:", dock.status.text(), flush=True)
    qgis.utils.iface.messageBar().clearWidgets()  # the dock's status line says the same; the map shows more
    QTimer.singleShot(2000, lambda: redraw(dock))  # let the layout settle (canvas resized, layer tree)

def redraw(dock):
    canvas = qgis.utils.iface.mapCanvas()
    canvas.mapCanvasRefreshed.connect(lambda: QTimer.singleShot(500, grab))
    dock.zoom_to(len(dock.results) - 1)  # again, now that the canvas has its final size

def grab():
    # the X server's pixels (what a user would see), not a re-render of the widget tree
    window = qgis.utils.iface.mainWindow()
    frame = window.frameGeometry()
    shot = QgsApplication.primaryScreen().grabWindow(0, frame.x(), frame.y(), frame.width(), frame.height())
    if not shot.save(out):
        fail(f"cannot write {out}")
    print("screenshot: wrote", out, flush=True)
    quit_qgis(0)

QTimer.singleShot(1500, start)
PY

LOC2_SHOT_DATA="$DATA" LOC2_SHOT_ROW="$ROW" LOC2_SHOT_OUT="$OUT" \
QGIS_PLUGINPATH="$ROOT" PYTHONPATH="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
  timeout 600 xvfb-run -a -s "-screen 0 1400x900x24 -nolisten tcp" \
  qgis --noversioncheck --nologo --profiles-path "$work" --code "$work/drive.py"
test -s "$OUT" && echo "wrote $OUT"
