# Two commands on a fresh machine with Python 3.11 and pip:
#   make demo   - set up, start the emulator (or use WAVESPEED_API_KEY) and a real Airflow (api-server, scheduler,
#                 dag-processor, triggerer), run the avatar DAG end to end
#   make test   - set up, lint, type-check, run the whole suite on Airflow 3.3 (current), then the
#                 Airflow-facing tests (unit, integration) on the lowest supported Airflow, 3.1.
#                 Installs the test services first (PostgreSQL 15, redis-server; apt, needs root)
#                 for the production-shaped cluster suite in tests/cluster.
#   make test-wheel - build the sdist and wheel, install the wheel into a clean venv, check it registers
#                     and its emulator runs (part of make test).
#   make test-fast - unit and integration tests only (no real Airflow processes, no services; < 2 min),
#                    for day-to-day work. Where a test goes: tests/conftest.py.
PYTHON ?= python3
VENV ?= .venv
VENV_31 ?= .venv-airflow-3.1
PYTEST_ARGS ?=

.PHONY: install demo test test-fast test-services test-wheel lint pytest pytest-airflow-3.1 clean

$(VENV)/.installed: pyproject.toml constraints-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -c constraints-dev.txt -e ".[test,s3test,bench,cluster]"
	touch $@

$(VENV_31)/.installed: pyproject.toml constraints-airflow-3.1.txt
	$(PYTHON) -m venv $(VENV_31)
	$(VENV_31)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_31)/bin/python -m pip install --quiet -c constraints-airflow-3.1.txt -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/python scripts/demo.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check airflow_provider_wavespeed tests example_dags benchmarks scripts
	$(VENV)/bin/ruff format --check airflow_provider_wavespeed tests example_dags benchmarks scripts
	$(VENV)/bin/mypy airflow_provider_wavespeed

# PostgreSQL and Redis servers for tests/cluster, Chromium and chromedriver for the real-browser UI test
# (idempotent: installs only what is missing).
test-services:
	scripts/install-test-services.sh

# Tests without real Airflow processes run on $(TEST_WORKERS) pytest-xdist workers (each with its own
# AIRFLOW_HOME and SQLite DB, see tests/conftest.py); the e2e and cluster tests, which start schedulers,
# triggerers and workers of their own, run after them, one at a time. Exit 5 (PYTEST_ARGS selected
# nothing in one of the two runs) is not a failure.
TEST_WORKERS ?= 2
PYTEST_OK = rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

pytest: $(VENV)/.installed test-services
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) -m "not e2e and not cluster" $(PYTEST_ARGS); $(PYTEST_OK)
	$(VENV)/bin/python -m pytest -m "e2e or cluster" $(PYTEST_ARGS); $(PYTEST_OK)

test-fast: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) -m "not e2e and not cluster" tests/unit tests/integration $(PYTEST_ARGS)

# Unit + integration on the lowest supported Airflow, plus the e2e tests that prove 3.1's history path and
# the deployment shapes (generated airflow.cfg, environment only, the container layout), cancel on kill and the
# UI plugin's tabs in a real browser there.
pytest-airflow-3.1: $(VENV_31)/.installed test-services
	$(VENV_31)/bin/python -m pytest -p no:cacheprovider -n $(TEST_WORKERS) tests/unit tests/integration \
		$(PYTEST_ARGS); $(PYTEST_OK)
	$(VENV_31)/bin/python -m pytest -p no:cacheprovider tests/e2e/test_lost_submit_replies_in_a_batch.py \
		tests/e2e/test_deployment_shapes.py tests/e2e/test_cancel_on_kill.py tests/e2e/test_ui_browser.py \
		$(PYTEST_ARGS); $(PYTEST_OK)

# The package as a user gets it: build the sdist and the wheel (into a temporary folder), twine check both,
# check the wheel's contents, install it (not editable) into a new venv with -c constraints-dev.txt from
# a temporary directory, then: the provider and its connection type are registered (airflow providers
# get/hooks in a throw-away AIRFLOW_HOME) and wavespeed-emulator starts on 127.0.0.1 and answers.
# WHEEL_ARGS="--dist dist --keep" keeps the built files and the venv. 30-60 s on a 2-core machine.
WHEEL_ARGS ?=

test-wheel: $(VENV)/.installed
	$(VENV)/bin/python scripts/check_wheel.py $(WHEEL_ARGS)

test: lint pytest pytest-airflow-3.1 test-wheel

clean:
	rm -rf $(VENV) $(VENV_31) .demo .pytest_cache .mypy_cache .ruff_cache
