# Quick start: `make run` (main experiment) and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv install run test test-all bench clean

venv: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

# Optional, not needed by run/test (they run from this folder, where `import mpjax` already
# finds the checkout): make `import mpjax` work from any folder with this venv. An editable
# install writes this checkout's path into .venv, so it is opt-in; offline (the
# dependencies come from requirements.txt, setuptools is already in .venv).
install: $(STAMP)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .

# The default experiment: exact regret on Covertype-shaped data, adversarial stream, all learners.
run: $(STAMP)
	$(PY) -m experiments.regret --dataset=covtype --stream=adv

# Unit tests (slow full-size runs excluded; `make test-all` includes them), one pytest-xdist
# worker per core: most of the time is XLA compilation, which runs on one core per process.
# PYTEST_WORKERS=0 runs them in this process (e.g. to debug with -s or --pdb).
PYTEST_WORKERS ?= auto
test: $(STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) -m "not slow" tests

test-all: $(STAMP)
	$(PY) -m pytest -q -n $(PYTEST_WORKERS) tests

bench: $(STAMP)
	$(PY) -m benchmarks.throughput

clean:
	rm -rf $(VENV) .pytest_cache
