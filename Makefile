# ishow: `make run` sets up a virtualenv and starts the daemon; `make test` sets it up and runs every check.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU build by default. GPU users: make run TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu128"
# EXTRAS=cudnn (cuDNN attention on NVIDIA GPUs; several: EXTRAS=cudnn,onnx)
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?=
ARGS ?=

.PHONY: run test lint venv dev clean

# `make run` installs only what the daemon needs; `make test` adds the dev tools and the optional cluster extra
# (Ray Serve, for `ishow serve` and its tests) on top of the same virtualenv.
venv: $(VENV)/.installed
dev: $(VENV)/.dev-installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.$(if $(EXTRAS),[$(EXTRAS)])'
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev,cluster]'
	touch $@

run: venv
	$(VENV)/bin/ishow run $(ARGS)

lint: dev
	$(PY) -m ruff check ishow tests tools
	$(PY) -m ruff format --check ishow tests tools
	$(PY) -m mypy  # strict, over ishow, tests and tools ([tool.mypy] files)

test: lint
	$(PY) -m pytest -q $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
