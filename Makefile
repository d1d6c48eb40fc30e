# Two commands do everything on a fresh Debian 12 machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
QGIS_CORE := $(firstword $(wildcard /lib/libqgis_core.so.3.* /usr/lib/libqgis_core.so.3.* /usr/lib/x86_64-linux-gnu/libqgis_core.so.3.*))
export PROJ_DATA ?= /usr/share/proj
export PYTHONUNBUFFERED := 1

.PHONY: setup test test-engine test-inqgis demo bench package screenshot run-qgis clean

setup:
	@bash scripts/setup.sh

test: setup
	$(PY) -m pytest -q
	LD_PRELOAD=$(QGIS_CORE) $(PY) -m pytest -q -m inqgis

demo: setup
	$(PY) -m loc2_engine demo --out out/demo

bench: setup
	$(PY) -m loc2_engine bench data/bench --json out/bench.json

clean:
	rm -rf out build dist .qgis-settings
