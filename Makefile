# Two commands set everything up from a fresh clone and run it; each is safe to run again:
#
#   make run             serve the demo at http://127.0.0.1:7860 (flags: make run ARGS="--port 8080")
#   make test            the everyday tests; make test FULL=1: every test, as CI runs them
#
# Each first installs what it needs, once, into a virtual environment in .venv: PyTorch (its CPU
# build on Linux without an NVIDIA GPU), then the project; for the tests also its dev extra and
# axe-core (npm), and with FULL=1 Debian's Chromium and nginx where they are missing. An install
# is redone when pyproject.toml or tests/package-lock.json changes. Without make (Windows):
# docs/install.md has the same steps by hand.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# PyPI's PyTorch for Linux carries NVIDIA's CUDA libraries (several GB); PyTorch's own index has
# the CPU build. A Mac's PyPI build is the CPU (and MPS) one already.
CPU_ONLY := $(and $(filter Linux,$(shell uname -s)),$(if $(shell command -v nvidia-smi),,yes))
CPU_INDEX := https://download.pytorch.org/whl/cpu
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: run test system-packages

run: $(VENV)/.app
	$(BIN)/python app.py $(ARGS)

# A process per core, up to 4 (pytest-xdist), each test file in one of them (its fixtures set up once).
test: $(VENV)/.dev tests/node_modules/.package-lock.json $(if $(FULL),system-packages)
	$(BIN)/python -m pytest --numprocesses auto --maxprocesses 4 --dist loadfile $(if $(FULL),,-m "not slow") $(ARGS)

$(VENV)/.torch:
	$(PYTHON) -m venv $(VENV)
	@if [ -n "$(CPU_ONLY)" ] && $(BIN)/python -c "import urllib.request; urllib.request.urlopen('$(CPU_INDEX)/', timeout=10)" 2> /dev/null; \
	then $(PIP) torch torchvision --index-url $(CPU_INDEX); \
	else [ -z "$(CPU_ONLY)" ] || echo "PyTorch's CPU index ($(CPU_INDEX)) cannot be reached: taking PyPI's PyTorch"; \
	    $(PIP) torch torchvision; fi
	$(BIN)/python -c "import torch, torchvision" || { echo "PyTorch does not import in $(VENV): remove $(VENV) and try again"; exit 1; }
	touch $@

$(VENV)/.app: $(VENV)/.torch pyproject.toml
	$(PIP) -e .
	touch $@

$(VENV)/.dev: $(VENV)/.app
	$(PIP) -e ".[dev]"
	touch $@

tests/node_modules/.package-lock.json: tests/package-lock.json
	npm ci --prefix tests --silent --no-audit --no-fund

# The full run's outside programs: the browser tests drive Chromium (Playwright cannot download its
# own here), the replicas test puts nginx in front of two apps.
system-packages:
	@for program in chromium nginx; do \
	    command -v $$program > /dev/null || [ -x /usr/sbin/$$program ] || \
	    apt-get install -y -qq $$program > /dev/null || { apt-get update -qq && apt-get install -y -qq $$program > /dev/null; } || \
	    { echo "the full run needs $$program: install it (Debian and Ubuntu: apt-get install $$program)"; exit 1; }; \
	done
