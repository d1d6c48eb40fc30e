#!/usr/bin/env bash
# `make screenshot`: three pictures of the real QGIS desktop (under Xvfb, no display needed) on the synthetic
# demo scene, from one QGIS run:
#   docs/screenshot-dock.png            the main window with the Loc² dock after localizing one photo, its
#                                       result layers on the map;
#   docs/screenshot-match-viewer.png    the match viewer of that result (photo and aerial window side by side);
#   docs/screenshot-processing.png      the Processing dialog of loc2:georeferencephotos, filled in for the
#                                       demo folder and aerial layer (not run).
#
# QGIS starts with a throw-away profile that enables the plugin from this checkout (QGIS_PLUGINPATH) and
# runs a startup script (--code) that drives the dock exactly as a user would: aerial layer, photo, prior,
# Run; when the task has finished and the canvas has drawn, it grabs the main window, then opens the match
# viewer and the Processing dialog in turn, grabs each, and quits.
# DATA=<dataset dir> (default data/demo, made with `loc2 synth` if missing), ROW=<manifest row> (default 2,
# the demo's panorama with a heading prior, which the default model localizes),
# OUT=<png> (default docs/screenshot-dock.png), VIEWER_OUT=<png> (default docs/screenshot-match-viewer.png),
# PROCESSING_OUT=<png> (default docs/screenshot-processing.png). Each PNG is kept under MAX_KB (default 800,
# they live in git and the README): a larger one is reduced to a palette image, then scaled down if need be.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-$ROOT/.venv/bin/python}
DATA=${DATA:-data/demo}
ROW=${ROW:-2}
OUT=${OUT:-docs/screenshot-dock.png}
VIEWER_OUT=${VIEWER_OUT:-docs/screenshot-match-viewer.png}
PROCESSING_OUT=${PROCESSING_OUT:-docs/screenshot-processing.png}
MAX_KB=${MAX_KB:-800}
export PROJ_DATA=${PROJ_DATA:-/usr/share/proj}
if [ ! -f "$DATA/manifest.csv" ]; then
  "$PY" -m loc2_engine synth "$DATA" --preset demo
fi
DATA=$(cd "$DATA" && pwd)
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$ROOT/$1" ;; esac; }
OUT=$(absolute "$OUT")
VIEWER_OUT=$(absolute "$VIEWER_OUT")
PROCESSING_OUT=$(absolute "$PROCESSING_OUT")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/profiles/default/QGIS" "$(dirname "$OUT")" "$(dirname "$VIEWER_OUT")" "$(dirname "$PROCESSING_OUT")"
# a stale picture must not pass for this run's: each is checked after QGIS has quit
rm -f "$OUT" "$VIEWER_OUT" "$PROCESSING_OUT"
printf '[PythonPlugins]\nloc2_qgis=true\n' > "$work/profiles/default/QGIS/QGIS3.ini"

cat > "$work/drive.py" <<'PY'
"""Run by QGIS at startup: drive the Loc² dock on one manifest row, grab the window, the match viewer and the
Processing dialog, quit."""
import csv, os, sys, time
from pathlib import Path
from qgis.core import QgsApplication, QgsCoordinateReferenceSystem, QgsPointXY, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import Qt, QTimer
import qgis.utils

data, row, out = Path(os.environ["LOC2_SHOT_DATA"]), int(os.environ["LOC2_SHOT_ROW"]), os.environ["LOC2_SHOT_OUT"]
viewer_out, processing_out = os.environ["LOC2_SHOT_VIEWER_OUT"], os.environ["LOC2_SHOT_PROCESSING_OUT"]
#: the dock's width in the main-window picture: wide enough for its fields and the results table's columns
DOCK_WIDTH = 480
started = time.time()
aerial = None

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
    global aerial
    aerial = layer = QgsRasterLayer(str(data / item["aerial"]), "aerial")
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
    # the dock opens at its minimum width, which cuts its fields and table off on the right
    qgis.utils.iface.mainWindow().resizeDocks([dock], [DOCK_WIDTH], Qt.Orientation.Horizontal)
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
    save(shot, out)
    open_viewer()

def save(pixmap, path):
    if pixmap.isNull() or not pixmap.save(path):
        fail(f"cannot write {path}")
    print("screenshot: wrote", path, flush=True)

def open_viewer():
    # the dock's own button on the selected result row, as a user opens it
    dock = qgis.utils.plugins["loc2_qgis"].dock
    dock.table.selectRow(len(dock.results) - 1)
    dock.viewer_button.click()
    if dock.viewer is None or not dock.viewer.isVisible():
        fail("the match viewer did not open: " + dock.status.text())
    QTimer.singleShot(1500, lambda: grab_viewer(dock.viewer))  # let it lay out and fit the picture

def grab_viewer(viewer):
    # the dialog alone (widget.grab renders it; no window manager means no frame to crop off anyway)
    save(viewer.grab(), viewer_out)
    viewer.close()
    QTimer.singleShot(300, open_processing)

def open_processing():
    # the dialog a user gets from the Processing toolbox, filled in for the demo: its photo folder and the
    # aerial layer; createAlgorithmDialog sets the widgets through the dialog's setParameters
    import processing
    parameters = {"FOLDER": str(data / "photos"), "AERIAL": aerial.id()}
    dialog = processing.createAlgorithmDialog("loc2:georeferencephotos", parameters)
    if dialog is None:
        fail("no Processing algorithm loc2:georeferencephotos")
    # nearly the whole screen: the parameter panel's widest row (a long checkbox label) is about 1050 px, and the
    # help panel beside it should stay readable
    dialog.resize(1390, 860)
    dialog.show()
    QTimer.singleShot(800, lambda: fit_processing(dialog))

def fit_processing(dialog):
    # give the parameters the width their widest row needs (no horizontal scroll bar), the help the rest
    from qgis.PyQt.QtWidgets import QScrollArea, QSplitter
    splitter = dialog.findChild(QSplitter)
    areas = [a for a in dialog.findChildren(QScrollArea) if a.widget() is not None]
    if splitter is not None and areas:
        panel = max(areas, key=lambda a: a.widget().minimumSizeHint().width())
        slack = splitter.sizes()[0] - panel.viewport().width()  # the scroll bar and the margins around the area
        left = panel.widget().minimumSizeHint().width() + slack + 4
        splitter.setSizes([left, max(200, sum(splitter.sizes()) - left)])
    QTimer.singleShot(1000, lambda: grab_processing(dialog))

def grab_processing(dialog):
    save(dialog.grab(), processing_out)
    dialog.reject()  # closed without running
    quit_qgis(0)

QTimer.singleShot(1500, start)
PY

LOC2_SHOT_DATA="$DATA" LOC2_SHOT_ROW="$ROW" LOC2_SHOT_OUT="$OUT" \
LOC2_SHOT_VIEWER_OUT="$VIEWER_OUT" LOC2_SHOT_PROCESSING_OUT="$PROCESSING_OUT" \
QGIS_PLUGINPATH="$ROOT" PYTHONPATH="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
  timeout 600 xvfb-run -a -s "-screen 0 1400x900x24 -nolisten tcp" \
  qgis --noversioncheck --nologo --profiles-path "$work" --code "$work/drive.py"
for png in "$OUT" "$VIEWER_OUT" "$PROCESSING_OUT"; do
  test -s "$png" || { echo "screenshot: $png was not written" >&2; exit 1; }
done
"$PY" - "$MAX_KB" "$OUT" "$VIEWER_OUT" "$PROCESSING_OUT" <<'PY'
"""Keep each PNG under MAX_KB: first a 256-colour palette (screenshots of widgets barely change), then scale
down in steps of 15 % while still too big."""
import os, sys
from PIL import Image

limit = int(sys.argv[1]) * 1024
for path in sys.argv[2:]:
    if os.path.getsize(path) <= limit:
        continue
    original = Image.open(path).convert("RGB")
    image, scale = original.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE), 1.0
    image.save(path, optimize=True)
    while os.path.getsize(path) > limit:
        scale *= 0.85
        size = (round(original.width * scale), round(original.height * scale))
        image = original.resize(size, Image.Resampling.LANCZOS)
        image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    print(f"screenshot: reduced {path} to {os.path.getsize(path) // 1024} KB (scale {scale:.2f})")
PY
for png in "$OUT" "$VIEWER_OUT" "$PROCESSING_OUT"; do echo "wrote $png"; done
