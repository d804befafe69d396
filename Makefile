# Two entry points, each doing its own set-up in a local virtual environment (.venv):
#   make demo   the offline end-to-end run on the bundled tiny model (writes demo-out/report.html)
#   make test   the test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.clipscope-installed

.PHONY: demo test test-fast install bench clean baseline wheel-check

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,distributed]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/clipscope demo --out demo-out

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n 2 --dist worksteal -q

# the inner loop: everything but the tests marked slow (real processes, the demo, Ray, ViT-B-32)
test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n 2 --dist worksteal -q -m "not slow"

wheel-check: $(STAMP)
	bash tools/wheel_check.sh

bench: $(STAMP)
	$(PY) benchmarks/extract.py
	$(PY) benchmarks/geometry.py

clean:
	rm -rf demo-out .pytest_cache

baseline: $(STAMP)
	rm -rf .baseline-run && $(VENV)/bin/clipscope demo --out .baseline-run
	cd .baseline-run && find . -name '*.json' -exec install -D -m 644 {} ../reports/baseline/{} \;
	rm -rf .baseline-run
