"""Shared fixtures: repository paths and a tiny, fast classification config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

TINY_DIGITS = """
_base_ = ['{root}/configs/_base_/datasets/digits.py', '{root}/configs/_base_/schedules/adamw_cosine.py',
          '{root}/configs/_base_/default_runtime.py']
model = dict(type='TimmClassifier', model_name='test_mambaout', model_kwargs=dict(num_classes=10))
train_dataloader = dict(batch_size=64)
max_epochs = {epochs}
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=1e-5,
                        convert_to_iter_based=True)]
optim_wrapper = dict(optimizer=dict(lr=3e-3))
default_hooks = dict(logger=dict(interval=5))
custom_hooks = [dict(type='ProgressBarHook'), dict(type='TrainingCurveHook'), dict(type='ExportSafetensorsHook')]
"""


@pytest.fixture
def one_thread():
    """One intra-op thread for the test: tiny tensors gain nothing from more, and on a shared 2-core machine
    OpenMP barriers make every small op wait for a descheduled thread (measured: up to 50x slower)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tiny_config(tmp_path: Path):
    """Write a digits config for timm's ``test_mambaout`` with ``epochs`` epochs; returns its path."""

    def make(epochs: int = 2, name: str = 'tiny_digits.py', extra: str = '') -> str:
        path = tmp_path / name
        path.write_text(TINY_DIGITS.format(root=ROOT, epochs=epochs) + extra)
        return str(path)

    return make


# Every subprocess a test starts has this wall-clock limit. It is a guard against a hang, never a speed check
# (speed lives in benchmarks/): a tool that takes 15-90 s on the idle machine took more than 900 s when three
# copies of the suite ran at once, so the limit sits far above any load a test machine should see, and a test
# asserts on what a run did, never on how long it took.
HANG_GUARD_S = 3600


def run_tool(*args: str, timeout: int = HANG_GUARD_S, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python tools/<args>`` as a user would, from the repository root."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=full_env
    )
