# Two commands on a fresh machine with Python 3.11 and pip:
#   make demo   - set up, start the emulator (or use WAVESPEED_API_KEY), run the avatar DAG end to end
#   make test   - set up, lint, type-check and run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install demo test lint pytest clean

$(STAMP): pyproject.toml constraints-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints-dev.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check airflow_provider_wavespeed tests example_dags benchmarks scripts
	$(BIN)/mypy airflow_provider_wavespeed

pytest: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint pytest

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
