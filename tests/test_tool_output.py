"""What the tools print and write for a person: a short console log with no escape codes or known spurious
warnings when output is redirected, the full dump in the work dir, --auto-scale-lr, and tools/test.py's
--show-dir pictures and --out records."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import run_tool

AUTO_SCALE = "\nauto_scale_lr = dict(base_batch_size=32)\ntrain_dataloader = dict(batch_size=64)\n"


def test_train_console_is_short_and_clean_when_redirected(tiny_config, tmp_path: Path) -> None:
    cfg = tiny_config(epochs=1, extra=AUTO_SCALE)
    work = tmp_path / 'work'
    proc = run_tool('tools/train.py', cfg, '--work-dir', str(work), '--auto-scale-lr')
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    # redirected: no progress-bar carriage returns or cursor escapes, no known spurious warnings
    assert '\x1b[' not in text and '\r' not in text
    for noise in ('Failed to search registry', 'pkg_resources is deprecated'):
        assert noise not in text, noise
    lines = text.splitlines()
    first_train = next(i for i, ln in enumerate(lines) if 'Epoch(train)' in ln)
    assert first_train < 15, lines[:first_train]  # a header of a few lines, then progress
    for field in ('config:', 'work dir:', 'model:', 'data:', 'run:'):
        assert any(ln.lstrip().startswith(field) or f' {field}' in ln for ln in lines[:first_train]), field
    assert 'sys.platform' not in text and 'Config:' not in text  # environment and config dump: log file only
    log = next(work.glob('*/*.log')).read_text()
    assert 'sys.platform' in log and 'optim_wrapper' in log
    # --auto-scale-lr: batch 64 against the config's base of 32 doubles the lr (mmengine logs the factor)
    assert re.search(r'Scaling the original LR by 2\.0', log), [ln for ln in log.splitlines() if 'LR' in ln]
    assert 'train: tiny_digits.py finished 1 epochs' in proc.stdout  # the one-line summary


def test_auto_scale_lr_needs_a_base_batch(tiny_config) -> None:
    proc = run_tool('tools/train.py', tiny_config(epochs=1), '--auto-scale-lr')
    assert proc.returncode == 2 and 'auto_scale_lr = dict(base_batch_size=N)' in proc.stderr
    assert 'Traceback' not in proc.stderr


def test_test_tool_show_dir_and_out(tiny_config, tmp_path: Path) -> None:
    cfg = tiny_config(epochs=1)
    work = tmp_path / 'work'
    assert run_tool('tools/train.py', cfg, '--work-dir', str(work)).returncode == 0
    shows, out = tmp_path / 'shows', tmp_path / 'preds.json'
    proc = run_tool('tools/test.py', cfg, str(work / 'model.safetensors'), '--work-dir', str(tmp_path / 'eval'),
                    '--show-dir', str(shows), '--out', str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = json.loads(out.read_text())
    assert len(records) == 359  # the digits validation split, one record per image
    first = records[0]
    assert {'pred_label', 'gt_label'} <= set(first) and len(first['pred_score']) == 10, first
    assert abs(sum(first['pred_score']) - 1) < 1e-4  # class probabilities
    acc = 100 * sum(r['pred_label'] == r['gt_label'] for r in records) / len(records)
    metrics = json.loads((tmp_path / 'eval/metrics.json').read_text())
    assert abs(acc - metrics["accuracy/top1"]) < 1e-4, (acc, metrics)  # the metric is float32
    pictures = sorted(shows.glob('*.png'))
    assert pictures and all(p.stat().st_size > 500 for p in pictures)


def test_benchmark_writes_inference_training_and_memory(tmp_path: Path) -> None:
    import csv

    from PIL import Image

    out = tmp_path / 'bench'
    proc = run_tool('tools/analysis/benchmark.py', '--models', 'test_mambaout', '--img-sizes', '32',
                    '--batch-size', '2', '--rounds', '1', '--iters', '1', '--out', str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(f'{out}.csv')))
    assert len(rows) == 1 and rows[0]['model'] == 'test_mambaout'
    for col in ('infer_img_s', 'train_img_s', 'peak_mem_mb', 'params_m', 'gmacs', 'latency_ms'):
        assert float(rows[0][col]) > 0, col
    assert abs(float(rows[0]['params_m']) - 0.448) < 0.001
    assert Image.open(f'{out}.png').size[0] > 800  # one panel each: inference, training, memory
    bad = run_tool('tools/analysis/benchmark.py', '--models', 'test_mambaot', '--out', str(out))
    assert bad.returncode == 2 and "did you mean 'test_mambaout'" in bad.stderr and 'Traceback' not in bad.stderr
