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

# Re-pin after changing dependencies: writes the exact versions of the environment (run after
# `make bench` so that the bench extra is pinned too). torch stays pinned by setup.py only: the
# local `+cpu` build here would block the CUDA wheel on a GPU host.
constraints: $(STAMP)
	$(PY) -m pip freeze --exclude-editable | grep -v -e '^cpt-jax' -e '^torch==' > constraints.txt

# Benchmarks (benchmarks/README.md): installs the `bench` extra (PyTorch, sentence-transformers)
# once, then prints the tables and writes benchmarks/results*.json (~35 min on 2 cores): training
# (run.py), encoding against sentence-transformers, the embeddings server under load.
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: bench

$(BENCH_STAMP): $(STAMP) setup.py constraints.txt
	$(PY) -m pip install --quiet -c constraints.txt -e ".[bench]"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) benchmarks/run.py $(ARGS)
	$(PY) benchmarks/encode_throughput.py
	$(PY) benchmarks/serve_load.py

# The accelerator check (benchmarks/accelerator.py, benchmarks/README.md) for a session lent a
# GPU or TPU: the core package and JAX for the accelerator (JAX_ACCELERATOR: cuda12, cuda13,
# tpu) at the pinned jax version, then MiniLM and S-size (300M) steps, within ~8 minutes.
# On a machine without a package index, run `python benchmarks/accelerator.py` with the
# machine's own accelerator JAX and `pip install -e . --no-deps` instead.
JAX_ACCELERATOR ?= cuda12
ACCEL_STAMP := $(VENV)/.installed-accelerator

.PHONY: bench-accelerator

$(ACCEL_STAMP): setup.py constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e .
	$(PY) -m pip install --quiet "jax[$(JAX_ACCELERATOR)]==$$($(PY) -c 'import jax; print(jax.__version__)')"
	touch $(ACCEL_STAMP)

bench-accelerator: $(ACCEL_STAMP)
	cd benchmarks && ../$(PY) accelerator.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
