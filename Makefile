# Two commands set up and run everything on a fresh machine: `make pipeline` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/sample

.PHONY: venv pipeline test lint bench clean

# The virtualenv is rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[ml,airflow,dev]"
	touch $@

venv: $(VENV)/.installed

# The whole Airflow DAG, end to end, on a generated sample archive (SQLite, local runner).
pipeline: venv
	WORKDIR=$(abspath $(WORKDIR)) scripts/run_dag.sh

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(VENV)/bin/pytest

# The stage timing table (full-size sample archive, CPU); writes BENCHMARKS.md.
bench: venv
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
