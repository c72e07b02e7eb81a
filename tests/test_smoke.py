"""The MHS-VM smoke config (configs/smoke/mhs_vm/mhs_vm_4h_lesions.py) run as docs/mhs_vm.md shows it:
tools/make_fixtures.py lesions -> tools/train.py -> tools/test.py, scored on held-out lesion images.
(The dense smoke configs are tested in test_mm.py, the WSI one in test_mil.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import ROOT, run_tool

CONFIG = str(ROOT / 'configs/smoke/mhs_vm/mhs_vm_4h_lesions.py')
# Measured (seed 0, shared 2-core machine at load ~14, one thread): validation DSC 0.567 / 0.602 / 0.589 /
# 0.655 / 0.631 over epochs 6-10, best 0.655 (IoU 0.487). The trivial predictors score DSC 0 (no lesion)
# and 2p / (1 + p) = 0.23 (lesion everywhere; p = 12.9 % lesion pixels in the validation masks).
MIN_DSC = 0.45


def _ok(proc) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]


def test_mhs_vm_lesion_smoke_config(tmp_path: Path) -> None:
    from PIL import Image

    env = {'OMP_NUM_THREADS': '1', 'ZOO_FIXTURES': str(tmp_path / 'fixtures')}
    _ok(run_tool('tools/make_fixtures.py', 'lesions', '--out', str(tmp_path / 'fixtures/lesions'), env=env))
    masks = [np.asarray(Image.open(p)) > 127 for p in sorted((tmp_path / 'fixtures/lesions/val/masks').glob('*.png'))]
    p = float(np.mean(masks))
    trivial = 2 * p / (1 + p)  # DSC of "lesion everywhere"
    assert len(masks) == 16 and trivial < MIN_DSC - 0.15, trivial
    work = tmp_path / 'work'
    _ok(run_tool('tools/train.py', CONFIG, '--work-dir', str(work), env=env))
    best = next(work.glob('best_seg_dsc_epoch_*.pth'))
    _ok(run_tool('tools/test.py', CONFIG, str(best), '--work-dir', str(tmp_path / 'test'), env=env))
    metrics = json.loads((tmp_path / 'test/metrics.json').read_text())
    print('lesion smoke metrics:', metrics, 'trivial DSC', trivial)
    assert metrics['seg/dsc'] > MIN_DSC, metrics
    assert len(list((tmp_path / 'test/overlays').glob('*.png'))) > 0
