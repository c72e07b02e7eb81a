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
	OMP_NUM_THREADS=1 $(PY) tools/analysis/benchmark.py --models mambaout_femto agent_deit_tiny agent_pvt_tiny \
		agent_swin_tiny agent_cswin_tiny dcal_deit_tiny_patch16_448 qsd_transformer_15m meta_spikeformer_15m \
		mhs_vm_encoder_3h medusa_mambaout_femto --img-sizes 224 --batch-size 2 --rounds 2 --bench infer --threads 1 \
		--no-memory --variants fp32 bf16 compile bf16+compile --out benchmarks/fast_inference

readme: install
	$(PY) tools/analysis/model_table.py --write
	$(PY) tools/analysis/model_table.py --manifest
	$(PY) tools/analysis/model_table.py --speed --write
