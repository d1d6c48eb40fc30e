#!/usr/bin/env bash
# Idempotent setup: Debian's QGIS + geo stack, and a --system-site-packages venv from /usr/bin/python3
# holding only torch and pure-Python tools (why: docs/environment.md).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
VENV=${VENV:-.venv}
APT_PKGS="qgis python3-qgis qgis-providers python3-numpy python3-rasterio python3-geopandas python3-shapely
  python3-pyproj python3-fiona python3-rtree python3-scipy python3-matplotlib python3-pil python3-tqdm proj-bin
  python3-distributed python3-venv python3-pip xvfb xauth xdotool imagemagick x11-apps zip libimage-exiftool-perl"
missing=""
for p in $APT_PKGS; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"; done
if [ -n "$(echo $missing)" ]; then
  echo "setup: installing Debian packages:$(echo " $missing" | tr -s ' ')"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends $APT_PKGS >/dev/null
fi
if [ ! -x "$VENV/bin/python" ]; then
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
stamp="$VENV/.requirements.stamp"
if [ ! -f "$stamp" ] || ! cmp -s requirements.txt "$stamp"; then
  # constraints keep Debian's numpy/geo stack: pip must never shadow them with binary wheels
  "$VENV/bin/pip" install -q --disable-pip-version-check -c constraints.txt -r requirements.txt
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  cp requirements.txt "$stamp"
fi
"$VENV/bin/python" - <<'PY'
import numpy, torch, rasterio, pyproj, shapely
from qgis.core import Qgis
assert numpy.__version__.startswith("1."), f"numpy {numpy.__version__} shadows Debian's numpy 1.x"
assert numpy.__file__.startswith("/usr/lib/python3/"), f"numpy must come from Debian, not {numpy.__file__}"
print("setup ok: QGIS", Qgis.QGIS_VERSION, "numpy", numpy.__version__, "torch", torch.__version__,
      "GDAL", rasterio.__gdal_version__, "shapely", shapely.__version__)
PY
