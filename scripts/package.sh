#!/usr/bin/env bash
# `make package`: dist/loc2_qgis-<version>.zip, installable with QGIS's Plugins › Install from ZIP.
#
# Zip layout (one top folder, as QGIS's installer expects):
#   loc2_qgis/                 the plugin (git-tracked files of loc2_qgis/)
#   loc2_qgis/loc2_engine/     the engine, vendored (loc2_qgis/__init__.py registers it as `loc2_engine`)
#   loc2_qgis/resources/       styles, icons, model weights + cards: <engine parent>/resources, which is
#                              where loc2_engine.resources.resource_path looks (as <repo>/resources in git)
# Only git-tracked files go in (no caches, no local data), taken from the working tree.
# DIST=<dir> chooses the output folder (default dist/).
set -euo pipefail
cd "$(dirname "$0")/.."
DIST=${DIST:-dist}
version=$(sed -n 's/^version=//p' loc2_qgis/metadata.txt)
[ -n "$version" ] || { echo "no version= in loc2_qgis/metadata.txt" >&2; exit 1; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
plugin="$stage/loc2_qgis"
mkdir -p "$plugin"

copy_tracked() {  # copy_tracked <repo path> <destination folder>: tracked files present in the work tree
  git ls-files -z -- "$1" | while IFS= read -r -d '' f; do
    [ -f "$f" ] || continue
    dest="$2/${f#"$1"/}"
    mkdir -p "$(dirname "$dest")"
    cp -p "$f" "$dest"
  done
}
copy_tracked loc2_qgis "$plugin"
copy_tracked loc2_engine "$plugin/loc2_engine"
for part in styles icons models; do
  copy_tracked "resources/$part" "$plugin/resources/$part"
done
# plugins.qgis.org refuses a zip without the licence text
[ -f LICENSE ] || { echo "package: LICENSE is missing" >&2; exit 1; }
cp LICENSE "$plugin/LICENSE"

for required in metadata.txt __init__.py plugin.py provider.py loc2_engine/__init__.py loc2_engine/defaults.py \
                loc2_engine/pipeline.py resources/icons/loc2.svg; do
  [ -f "$plugin/$required" ] || { echo "package: $required is missing (not committed?)" >&2; exit 1; }
done

mkdir -p "$DIST"
zipfile="$(cd "$DIST" && pwd)/loc2_qgis-$version.zip"
rm -f "$zipfile"
(cd "$stage" && zip -qr -X "$zipfile" loc2_qgis)
echo "$zipfile ($(du -h "$zipfile" | cut -f1))"
