# The two commands of the README: `make quickstart` (the main job) and `make test`.
# Each creates the virtual environment on first use, pinned by constraints.txt.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-test
ARGS ?=

.PHONY: install quickstart test test-fast lint format constraints clean

$(STAMP): setup.py constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(PY) -m cpt_jax.quickstart $(ARGS)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest tests -q -ra --durations=15

test-fast: $(STAMP)
	$(PY) -m pytest tests -q -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# Re-pin after changing dependencies: writes the exact versions of the test environment.
constraints: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | grep -v '^cpt-jax' > constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info
