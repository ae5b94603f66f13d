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

## make demo: run the main job on the bundled examples with the embedded database (./sib.db;
## running it again records nothing new), then verify the ledger, show a history and an INDIGO export
demo: $(STAMP)
	$(SIB) check contracts/*.yaml
	@for f in contracts/*.yaml; do echo; $(SIB) show "$$f" || exit 1; done
	@mkdir -p demo-output
	@for f in contracts/*.yaml; do stem=$$(basename "$$f" .yaml); echo; \
	  echo "== $(SIB) run $$f outcomes/$$stem.csv --demo-key --report demo-output/$$stem"; \
	  $(SIB) run "$$f" "outcomes/$$stem.csv" --demo-key --report "demo-output/$$stem" || exit 1; done
	@echo; echo "== $(SIB) simulate contracts/brussels_mentoring_2014.yaml --paths 20000 --seed 2014 --report demo-output/brussels_mentoring_2014"
	@$(SIB) simulate contracts/brussels_mentoring_2014.yaml --paths 20000 --seed 2014 --report demo-output/brussels_mentoring_2014
	@echo; echo "== $(SIB) verify"; $(SIB) verify
	@echo; echo "== $(SIB) history contracts/utrecht_training_kitchen_2015.yaml"
	@$(SIB) history contracts/utrecht_training_kitchen_2015.yaml
	@echo; echo "== $(SIB) export contracts/utrecht_training_kitchen_2015.yaml --format indigo"
	@$(SIB) export contracts/utrecht_training_kitchen_2015.yaml --format indigo -o demo-output/utrecht_training_kitchen_2015.indigo.json

# Debian packages the tests use for real: Chromium renders the HTML reports.
# Installed when missing (CI and developers run as root on Debian).
.PHONY: system-deps
system-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium (for the report rendering test)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## make test: the layering check, the type check and the whole test suite (the storage tests
## run on SQLite and on a throwaway PostgreSQL server, installed from Debian's packages if missing)
test: $(STAMP) system-deps
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	scripts/with-postgres.sh $(PY) -m pytest

## make bench: the benchmarks, printing their figures
bench: $(STAMP)
	scripts/with-postgres.sh $(PY) benchmarks/run.py

## make schema: regenerate the contract JSON Schema kept in the repository
schema: $(STAMP)
	$(SIB) schema > sib_engine/schema/contract.schema.json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .hypothesis
