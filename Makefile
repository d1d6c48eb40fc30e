# Two commands do everything on a fresh Debian 12 machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
QGIS_CORE := $(firstword $(wildcard /lib/libqgis_core.so.3.* /usr/lib/libqgis_core.so.3.* /usr/lib/x86_64-linux-gnu/libqgis_core.so.3.*))
export PROJ_DATA ?= /usr/share/proj
export PYTHONUNBUFFERED := 1

.PHONY: setup test demo data bench bench-ransac package screenshot clean

setup:
	@bash scripts/setup.sh

test: setup
	$(PY) -m pytest -q
	LD_PRELOAD=$(QGIS_CORE) $(PY) -m pytest -q -m inqgis

demo: setup
	$(PY) -m loc2_engine demo --out out/demo

bench: setup
	bash scripts/bench.sh

clean:
	rm -rf out build dist .qgis-settings

package: setup
	bash scripts/package.sh

screenshot: setup
	bash scripts/screenshot.sh

bench-ransac: setup
	$(PY) scripts/bench_ransac.py

data: setup
	$(PY) -m loc2_engine synth data/train --preset train --workers 2
	$(PY) -m loc2_engine synth data/bench --preset bench --workers 2
	$(PY) -m loc2_engine synth data/demo --preset demo
