# Two commands for a fresh machine:  `make repro` (install + dvc repro)  and  `make test`.
VENV ?= .venv
MOTO_VENV ?= .venv-moto
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: install moto postgres repro test test-slow lint repro-check bench clean-venv

install: $(VENV)/.installed

# torch first and pinned exactly: on a CPU machine a looser pin pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# moto's S3 server (moto_server) for the remote tests, in its own venv: moto needs a botocore newer
# than the one dvc-s3's aiobotocore accepts, so it cannot live in $(VENV). Pinned; a no-op once made.
moto: $(MOTO_VENV)/.installed

$(MOTO_VENV)/.installed:
	test -x $(MOTO_VENV)/bin/python || python3 -m venv $(MOTO_VENV)
	$(MOTO_VENV)/bin/python -m pip install -q 'moto[server]==5.2.5'
	touch $@

repro: install
	dvc repro

# PostgreSQL's server binaries (initdb, pg_ctl, postgres) for the two-worker tune test, which starts a
# private cluster on loopback itself: Debian's package when absent, nothing when present (no service is used).
postgres:
	@if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "postgres: server binaries present"; \
	else \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends postgresql; \
	fi

# RERANK_LAB_REQUIRE_POSTGRES: here a missing server or driver fails the PostgreSQL tests instead of skipping them
test: install moto postgres
	RERANK_LAB_REQUIRE_POSTGRES=1 $(PY) -m pytest -m "not slow" --durations=15

test-slow: install
	$(PY) -m pytest -m slow

lint: install
	$(PY) -m ruff check src tests bench

repro-check: install
	rerank-lab repro --table repro/beir.yaml
