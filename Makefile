# memjax: two commands on a fresh machine.
#   make demo   -- installs into .venv and runs the main job
#   make test   -- installs into .venv (with the dev extra) and runs the whole test suite
# (make bench installs the bench extra and runs the benchmarks.) Each install has its own
# stamp in .venv, so a target installs only what it lacks: `make test` after `make demo`
# adds the dev extra; a changed setup.cfg / setup.py reinstalls.
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

# The virtual environment itself (an order-only prerequisite: its mtime never reinstalls).
$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# memjax and its runtime dependencies (editable: the checkout is the installed library).
$(VENV)/.installed-runtime: setup.cfg setup.py | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

# + pytest, nbmake, ruff, ... (the dev extra)
$(VENV)/.installed-dev: $(VENV)/.installed-runtime
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# + faiss, threadpoolctl (the bench extra)
$(VENV)/.installed-bench: $(VENV)/.installed-runtime
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $@

install: $(VENV)/.installed-runtime

demo: $(VENV)/.installed-runtime
	$(PY) -m experiments.babi.main --config=experiments/babi/configs/default.py --workdir=$(WORKDIR)

test: $(VENV)/.installed-dev
	XLA_FLAGS=--xla_force_host_platform_device_count=8 $(PY) -m pytest -n auto --nbmake -q tests colab

bench: $(VENV)/.installed-bench
	$(PY) benchmarks/retrieval.py
	$(PY) benchmarks/memn2n.py
	$(PY) benchmarks/ntm.py
	$(PY) benchmarks/hrr_capacity.py
	$(PY) benchmarks/restarts.py
	$(PY) benchmarks/replay.py
	$(PY) benchmarks/meta.py
	$(PY) benchmarks/store.py

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check memjax experiments tests benchmarks

clean:
	rm -rf $(VENV) runs
