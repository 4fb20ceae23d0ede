# Two commands for a fresh machine:  `make repro` (install + dvc repro)  and  `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install repro test test-slow lint repro-check bench clean-venv

install: $(VENV)/.installed

# torch first and pinned exactly: on a CPU machine a looser pin pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

repro: install
	dvc repro

test: install
	$(PY) -m pytest -m "not slow"

test-slow: install
	$(PY) -m pytest -m slow

lint: install
	$(PY) -m ruff check src tests bench

repro-check: install
	rerank-lab repro --table repro/beir.yaml
