# The README's commands. Each target sets itself up on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SIB := $(VENV)/bin/sib
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test bench schema clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

## make demo: run the main job on the bundled examples with the embedded database
demo: $(STAMP)
	$(SIB) check contracts/*.yaml
	@for f in contracts/*.yaml; do echo; $(SIB) show "$$f" || exit 1; done
	@for f in contracts/*.yaml; do stem=$$(basename "$$f" .yaml); echo; \
	  echo "== $(SIB) validate $$f outcomes/$$stem.csv --demo-key"; \
	  $(SIB) validate "$$f" "outcomes/$$stem.csv" --demo-key || exit 1; done

# Debian packages the tests use for real: Chromium renders the HTML reports.
# Installed when missing (CI and developers run as root on Debian).
.PHONY: system-deps
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium (for the report rendering test)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## make test: the layering check, the type check and the whole test suite
test: $(STAMP) system-deps
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(PY) -m pytest

## make bench: the benchmarks, printing their figures
bench: $(STAMP)
	$(PY) benchmarks/run.py

## make schema: regenerate the contract JSON Schema kept in the repository
schema: $(STAMP)
	$(SIB) schema > sib_engine/schema/contract.schema.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .hypothesis
