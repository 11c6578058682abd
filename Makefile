# memjax: two commands on a fresh machine.
#   make demo   -- installs into .venv and runs the main job
#   make test   -- installs into .venv (with the dev extra) and runs the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED_DATA := $(abspath ../shared/data)
ifeq ($(wildcard $(SHARED_DATA)),)
else
export MEMJAX_DATA_DIR ?= $(SHARED_DATA)
endif
WORKDIR ?= runs/demo

.PHONY: demo test bench lint install clean

$(VENV)/.installed: setup.cfg setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m experiments.babi.main --config=experiments/babi/configs/default.py --workdir=$(WORKDIR)

test: install
	XLA_FLAGS=--xla_force_host_platform_device_count=8 $(PY) -m pytest -n auto --nbmake -q tests colab

bench: install
	$(PY) benchmarks/retrieval.py
	$(PY) benchmarks/memn2n.py
	$(PY) benchmarks/ntm.py
	$(PY) benchmarks/hrr_capacity.py

lint: install
	$(VENV)/bin/ruff check memjax experiments tests benchmarks

clean:
	rm -rf $(VENV) runs
