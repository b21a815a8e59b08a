# Set-up and checks. Every target creates the virtual environment when it is missing and
# reinstalls only when a requirements file changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test test-all lint clean-venv demo gpu-check

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# Two pytest-xdist workers of one torch thread each: while one waits on a process it started,
# the other computes (docs/design.md, "How the suite runs"). A file's tests stay on one worker,
# which builds its module fixtures once.
TEST_WORKERS ?= 2
PYTEST = OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# The fast suite; `slow` tests are left out. The ten slowest tests are listed at the end.
test: $(VENV)/.dev
	$(PYTEST) -m "not slow" --durations=10

# Everything, the slow tests included.
test-all: $(VENV)/.dev
	$(PYTEST)

lint: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean-venv:
	rm -rf $(VENV)

# Smoke-scale Spirograph run on the CPU (a few minutes): train ResNet-18 with the penalty, then
# evaluate the checkpoint and the same architecture at random initialisation (see demo.py).
demo: $(VENV)/.runtime
	$(PY) demo.py

# On a GPU machine, with its own python3 (no .venv, nothing installed; PYTHON=... overrides):
# every GPU-only path and the GPU benchmarks in about 6 minutes, ending with one JSON line.
# CIFAR is the CIFAR-10 folder or its .tar.gz. Without CUDA: one line, exit 2, nothing created.
CIFAR ?=
gpu-check:
	@PYTHON="$(PYTHON)" bash tools/gpu_check.sh "$(CIFAR)"
