# Quick start: `make run` (serve on http://127.0.0.1:8000) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install browser run test lint jslint format docs screenshots bench train clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[dev,ray,docs]'
	touch $@

install: $(STAMP)

browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }

run: install
	$(PY) -m app serve --host $(HOST) --port $(PORT)

# Type-check the page's JavaScript (static/js, JSDoc types) with TypeScript's checker; see tsconfig.json.
$(NODE_STAMP): package.json package-lock.json tools/openapi-types/package.json
	npm ci
	touch $@

# The API's and the page config's TypeScript types are generated from the live OpenAPI schema (scripts/openapi_json.py)
# by openapi-typescript (pinned in tools/openapi-types, which needs TypeScript 5's API), then the page is type-checked.
# A stale committed $(API_TYPES) is regenerated and fails the run once, so CI (a fresh clone) catches the drift.
API_TYPES := static/js/api-types.d.ts
OPENAPI_TS := tools/openapi-types/node_modules/.bin/openapi-typescript

jslint: $(NODE_STAMP) install
	mkdir -p build
	$(PY) scripts/openapi_json.py > build/openapi.json
	$(OPENAPI_TS) build/openapi.json -o build/api-types.d.ts
	@cmp -s build/api-types.d.ts $(API_TYPES) || { cp build/api-types.d.ts $(API_TYPES); \
	  echo "$(API_TYPES) did not match the OpenAPI schema: regenerated it; review and commit it, then run make again" >&2; exit 1; }
	npx --no-install tsc -p tsconfig.json

lint: install jslint
	$(VENV)/bin/ruff check app tests benchmarks scripts
	$(VENV)/bin/ruff format --check app tests benchmarks scripts
	$(VENV)/bin/mypy --strict app
# tests/ at the [tool.mypy] level of pyproject.toml (check_untyped_defs), not --strict: the value is catching wrong calls
# into app/, and strict would only ask for annotations on fixtures and parametrised helpers that catch nothing.
# Two runs: tests/ and tests/web/ each have a conftest.py, and tests/web/ imports webutil as a top-level module.
	$(VENV)/bin/mypy tests --exclude 'tests/web/'
	MYPYPATH=tests/web $(VENV)/bin/mypy tests/web

test: install browser lint docs
	$(PY) -m pytest

format: install
	$(VENV)/bin/ruff format app tests benchmarks scripts
	$(VENV)/bin/ruff check --fix app tests benchmarks scripts

# The documentation site (mkdocs.yml, docs/) into site/; --strict: any warning or broken link fails.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# docs/screenshot.png, taken in headless Chromium from the app served by uvicorn.
screenshots: install browser
	$(PY) scripts/screenshot.py

bench: install
	$(PY) benchmarks/mc_sampling.py
	$(PY) benchmarks/error_bars_cost.py

train: install
	$(PY) -m app train --out models/default

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
