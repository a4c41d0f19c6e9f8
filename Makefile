# The two commands of the README: `make demo` (the main job) and `make test`.
# Each creates or reuses .venv/ and installs the project into it, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.reidlab-installed

.PHONY: demo test setup notebooks clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[notebooks,dev]"
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m reidlab demo

test: $(STAMP)
	$(PY) -m pytest -q

notebooks: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean-venv:
	rm -rf $(VENV)
