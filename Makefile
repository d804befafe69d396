# Two entry points, each doing its own set-up in a local virtual environment (.venv):
#   make demo   the offline end-to-end run on the bundled tiny model (writes demo-out/report.html)
#   make test   the test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
# Two stamps: `make demo` installs what running needs (clipscope and its dependencies);
# `make test` adds the test extras (pytest, transformers, Ray, Embedding Atlas, a browser driver).
RUN_STAMP  = $(VENV)/.clipscope-run
TEST_STAMP = $(VENV)/.clipscope-test

.PHONY: demo test test-fast install lint bench clean baseline wheel-check

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .
	touch $(RUN_STAMP)

$(TEST_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[dev,distributed]'
	touch $(TEST_STAMP) $(RUN_STAMP)

install: $(RUN_STAMP)

demo: $(RUN_STAMP)
	$(VENV)/bin/clipscope demo --out demo-out

test: $(TEST_STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n 2 --dist worksteal -q

# the inner loop: everything but the tests marked slow (real processes, the demo, Ray, ViT-B-32)
test-fast: $(TEST_STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n 2 --dist worksteal -q -m "not slow"

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check clipscope tests tools benchmarks examples

wheel-check: $(TEST_STAMP)
	bash tools/wheel_check.sh

bench: $(TEST_STAMP)
	$(PY) benchmarks/extract.py
	$(PY) benchmarks/geometry.py

clean:
	rm -rf demo-out .pytest_cache

baseline: $(TEST_STAMP)
	rm -rf .baseline-run && $(VENV)/bin/clipscope demo --out .baseline-run
	cd .baseline-run && find . -name '*.json' -exec install -D -m 644 {} ../reports/baseline/{} \;
	rm -rf .baseline-run
