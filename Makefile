# The README's two commands: `make demo` and `make test`. Each installs what it needs first
# (scripts/install.sh: .venv with the pinned stack). The demo needs only the core (torch, timm, mmengine);
# the tests need everything (mmcv is built once, then reused from the cache).
PY := .venv/bin/python
DEMO_CFG := configs/classification/mambaout/mambaout_femto_digits.py
# Tests run two workers on the two cores; each torch process then takes one thread. Work stealing keeps
# both workers busy to the end (the smoke trainings take one to three minutes each).
TEST_WORKERS ?= 2

.PHONY: install install-core demo test lint bench readme

install:
	bash scripts/install.sh

install-core:
	bash scripts/install.sh core

demo: install-core
	bash scripts/demo.sh

test: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal --durations=15 tests

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

bench: install
	$(PY) tools/analysis/benchmark.py --models mambaout_femto mambaout_kobe mambaout_tiny resnet50 convnext_tiny \
		--bench both --batch-size 8 --out benchmarks/mambaout_cpu

readme: install
	$(PY) tools/analysis/model_table.py --write
	$(PY) tools/analysis/model_table.py --manifest
