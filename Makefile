# The two commands of the README: `make demo` (the main job) and `make test`.
# Each creates or reuses .venv/ and installs the project into it, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.reidlab-installed

.PHONY: demo market test setup notebooks clean-venv browser

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[notebooks,dev,export]"
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m reidlab demo

# The same chain on real Market-1501 (prepare it first: data_scripts/prepare_market1501.py), about two hours on
# 2 cores; it resumes where it stopped and publishes results/tables/tricks_market1501_cpu.md
market: $(STAMP)
	$(PY) -m reidlab market

test: $(STAMP) browser
	$(PY) -m pytest -q

# The real-browser test drives Debian's Chromium (never a browser download); it skips, saying why, without it.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium not installed: the real-browser test will skip"; }

notebooks: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean-venv:
	rm -rf $(VENV)
