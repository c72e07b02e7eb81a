"""zoo.engine.patches: nothing is patched by an import, everything by apply_patches(), and only on the pinned
releases (a pin that moves without a review of the patches fails here)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from zoo.engine import patches


def test_installed_versions_are_the_ones_the_patches_were_written_for() -> None:
    for dist, pinned in patches.PINNED.items():
        assert patches.installed_version(dist) == pinned, (
            f'{dist} {patches.installed_version(dist)} installed; review zoo/engine/patches.py, then update PINNED'
        )


def test_pyproject_pins_the_same_versions() -> None:
    from conftest import ROOT

    text = (ROOT / 'pyproject.toml').read_text()
    for dist, pinned in patches.PINNED.items():
        assert f'"{dist}=={pinned}"' in text


@pytest.mark.slow
def test_import_patches_nothing_and_apply_patches_everything() -> None:
    code = """
import zoo, zoo.engine, zoo.mm
import importlib
nms_mod = importlib.import_module('mmcv.ops.nms')  # mmcv.ops.nms is also a function name
from mmengine.hooks import CheckpointHook
from mmengine.logging.history_buffer import HistoryBuffer
import mmengine.runner.runner as runner_module
mod = lambda f: getattr(f, '__module__', None) or ''  # noqa: E731
state = lambda: [mod(CheckpointHook._save_checkpoint_with_step), mod(runner_module.save_checkpoint),  # noqa: E731
                 mod(HistoryBuffer.__getstate__), mod(nms_mod.NMSop.apply)]
before = state()
from zoo.engine.patches import apply_patches
applied = apply_patches()
assert apply_patches() == applied  # idempotent
after = state()
import json
print(json.dumps([before, after, applied]))
"""
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before, after, applied = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not any(m.startswith('zoo') for m in before), before
    assert after == ['zoo.engine.checkpoint_order', 'zoo.engine.checkpoint_order', 'zoo.engine.safe_load', 'zoo.mm.amp']
    assert applied == ['mmcv', 'mmengine']


def test_version_guard_refuses_another_release(monkeypatch) -> None:
    monkeypatch.setattr(patches, '_applied', set())
    monkeypatch.setitem(patches.PINNED, 'mmengine', '0.10.6')
    with pytest.raises(patches.UnpinnedVersionError, match=r'mmengine 0\.10\.7 is installed.*for mmengine 0\.10\.6'):
        patches.apply_patches()
