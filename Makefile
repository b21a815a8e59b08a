# Set-up and checks. Every target creates the virtual environment when it is missing and
# reinstalls only when a requirements file changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: test test-all lint clean-venv demo

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# The fast suite (under 10 minutes on 2 CPU cores); `slow` tests are left out.
test: $(VENV)/.dev
	$(PY) -m pytest -q -m "not slow"

# Everything, the slow tests included.
test-all: $(VENV)/.dev
	$(PY) -m pytest -q

lint: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

clean-venv:
	rm -rf $(VENV)

# Smoke-scale Spirograph run on the CPU (a few minutes): train ResNet-18 with the penalty, then
# evaluate the checkpoint and the same architecture at random initialisation.
DEMO_TRAIN := --dataset spirograph --arch resnet18 --proportion 0.01 --batch-size 64 \
	--num-epochs 2 --test-freq 0 --save-freq 100 --lambda-gp 1e-2 --gp-upper-limit 1000 \
	--filename demo --device cpu
.PHONY: demo
demo: $(VENV)/.runtime
	$(PY) invariance_by_gradient.py $(DEMO_TRAIN)
	$(PY) lbfgs_linear_clf_spirograph.py --load-from demo.pth --device cpu --componentwise
	$(PY) lbfgs_linear_clf_spirograph.py --load-from demo.pth --device cpu --random-init
