"""zoo.benchmark.amp (``benchmark.py amp``): entries parse, one config's float32 and --amp steps run through the
config's classifier and optimizer wrapper, and the CSV / PNG are written with the documented columns. No timing
assertions (the numbers are machine-dependent)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from zoo.benchmark import amp

ROOT = Path(__file__).resolve().parent.parent


def test_parse_entry() -> None:
    assert amp.parse_entry('a.py') == ('a.py', {})
    assert amp.parse_entry('a.py:model.x=None,y=3,z=abc') == ('a.py', {'model.x': None, 'y': 3, 'z': 'abc'})
    assert all((ROOT / amp.parse_entry(e)[0]).is_file() for e in amp.CONFIGS)


@pytest.mark.filterwarnings('ignore::UserWarning')
def test_one_config_runs_and_writes_the_report(one_thread, tmp_path: Path) -> None:
    cfg = str(ROOT / 'configs/classification/dcal/dcal_tiny_digits.py')
    rows = amp.bench((cfg,), threads=(1,), rounds=1, iters=1, batch=8)
    assert len(rows) == 1
    row = rows[0]
    assert (row['config'], row['model'], row['img_size'], row['batch_size']) == (
        'dcal_tiny_digits.py',
        'dcal_deit_tiny_patch16_448',
        12,
        8,
    )
    assert row['fp32_ms'] > 0 and row['bf16_ms'] > 0 and row['ratio'] > 0
    paths = amp.write(rows, str(tmp_path / 'amp'))
    with open(paths[0]) as f:
        header = next(csv.reader(f))
    assert header == list(row)
    assert Path(paths[1]).stat().st_size > 0
