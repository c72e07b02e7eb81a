"""What the tools print and write for a person: a short console log with no escape codes or known spurious
warnings when output is redirected, the full dump in the work dir, --auto-scale-lr, and tools/test.py's
--show-dir pictures and --out records."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import run_tool

AUTO_SCALE = '\nauto_scale_lr = dict(base_batch_size=32)\ntrain_dataloader = dict(batch_size=64)\n'


@pytest.mark.slow
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
    proc = run_tool(
        'tools/test.py',
        cfg,
        str(work / 'model.safetensors'),
        '--work-dir',
        str(tmp_path / 'eval'),
        '--show-dir',
        str(shows),
        '--out',
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = json.loads(out.read_text())
    assert len(records) == 359  # the digits validation split, one record per image
    first = records[0]
    assert {'pred_label', 'gt_label'} <= set(first) and len(first['pred_score']) == 10, first
    assert abs(sum(first['pred_score']) - 1) < 1e-4  # class probabilities
    acc = 100 * sum(r['pred_label'] == r['gt_label'] for r in records) / len(records)
    metrics = json.loads((tmp_path / 'eval/metrics.json').read_text())
    assert abs(acc - metrics['accuracy/top1']) < 1e-4, (acc, metrics)  # the metric is float32
    pictures = sorted(shows.glob('*.png'))
    assert pictures and all(p.stat().st_size > 500 for p in pictures)


@pytest.mark.slow
def test_benchmark_writes_inference_training_and_memory(tmp_path: Path) -> None:
    import csv

    from PIL import Image

    out = tmp_path / 'bench'
    proc = run_tool(
        'tools/analysis/benchmark.py',
        '--models',
        'test_mambaout',
        '--img-sizes',
        '32',
        '--batch-size',
        '2',
        '--rounds',
        '1',
        '--iters',
        '1',
        '--out',
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(f'{out}.csv')))
    assert len(rows) == 1 and rows[0]['model'] == 'test_mambaout'
    for col in ('infer_img_s', 'train_img_s', 'peak_mem_mb', 'params_m', 'gmacs', 'latency_ms'):
        assert float(rows[0][col]) > 0, col
    assert abs(float(rows[0]['params_m']) - 0.448) < 0.001
    assert Image.open(f'{out}.png').size[0] > 800  # one panel each: inference, training, memory
    bad = run_tool('tools/analysis/benchmark.py', '--models', 'test_mambaot', '--out', str(out))
    assert bad.returncode == 2 and "did you mean 'test_mambaout'" in bad.stderr and 'Traceback' not in bad.stderr


def _bench_rows(path: str) -> list[dict]:
    """The benchmark's CSV rows; numeric columns as floats (NaN kept), the rest as text."""
    import csv

    def value(v: str):
        try:
            return float(v)
        except ValueError:
            return v

    with open(path, newline='') as f:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _positive(row: dict, *cols: str) -> None:
    import math

    for col in cols:
        assert isinstance(row[col], float) and math.isfinite(row[col]) and row[col] > 0, (col, row[col])


def test_benchmark_model_kwargs_sweep(tmp_path: Path) -> None:
    """--model-kwargs T=1,2: one entry per time step, kwargs recorded, dense MACs scale with T (the count the
    former spiking-model script made: conv + linear layers, 0.131798 G per image at 32 px and T=1), --cpu-time."""
    import json

    out = tmp_path / 'qsd'
    args = '--models qsd_transformer_15m --model-kwargs T=1,2 --img-sizes 32 --batch-size 1 --bench infer '
    args += '--rounds 1 --iters 1 --threads 1 --no-memory --cpu-time'
    proc = run_tool('tools/analysis/benchmark.py', *args.split(), '--out', str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _bench_rows(f'{out}.csv')
    assert [json.loads(r['model_kwargs']) for r in rows] == [{'T': 1}, {'T': 2}]
    assert [r['T'] for r in rows] == [1, 2] and {r['model'] for r in rows} == {'qsd_transformer_15m'}
    for r in rows:
        _positive(r, 'params_m', 'gmacs', 'dense_gmacs', 'attn_gmacs', 'infer_img_s', 'latency_ms', 'cpu_s_per_img')
        assert r['gmacs'] >= r['dense_gmacs'] and r['threads'] == 1 and r['train_img_s'] != r['train_img_s']
    t1, t2 = rows
    assert abs(t1['dense_gmacs'] - 0.131798) < 2e-6, t1['dense_gmacs']
    assert abs(t2['dense_gmacs'] / t1['dense_gmacs'] - 2) < 0.01 and abs(t2['gmacs'] / t1['gmacs'] - 2) < 0.01
    assert t1['params_m'] == t2['params_m']  # T changes the compute, not the weights
    assert (tmp_path / 'qsd.png').stat().st_size > 5000


def test_benchmark_attention_macs_include_cpu_sdpa(tmp_path: Path) -> None:
    """attn_gmacs: agent attention's four GEMMs and softmax attention through CPU SDPA (which torch's FLOP
    counter misses, so gmacs keeps leaving it out), as the former agent-attention script counted them."""
    out = tmp_path / 'attn'
    args = '--models agent_deit_tiny deit_tiny_patch16_224 --img-sizes 64 --batch-size 1 --bench infer --rounds 1'
    proc = run_tool('tools/analysis/benchmark.py', *args.split(), '--iters', '1', '--no-memory', '--out', str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    agent, deit = _bench_rows(f'{out}.csv')
    n_tok, dim, depth = 1 + (64 // 16) ** 2, 192, 12
    assert abs(agent['attn_gmacs'] - 4 * n_tok * 49 * dim * depth / 1e9) < 2e-6, agent  # 49 agents
    assert abs(deit['attn_gmacs'] - 2 * n_tok * n_tok * dim * depth / 1e9) < 2e-6, deit
    assert deit['gmacs'] == deit['dense_gmacs']  # as before: the counter's total, without CPU SDPA
    assert abs(agent['gmacs'] - agent['dense_gmacs'] - agent['attn_gmacs']) < 2e-6
    assert agent['cpu_s_per_img'] != agent['cpu_s_per_img']  # NaN: not asked for


def test_benchmark_scan_suite(tmp_path: Path) -> None:
    """The selective-scan kernel sweep (eager backend, two lengths): times, speed-up and agreement with the
    sequential scan and float64."""
    out = tmp_path / 'scan'
    args = 'scan --lengths 64 256 --threads 1 --backends eager --rounds 2'
    proc = run_tool('tools/analysis/benchmark.py', *args.split(), '--out', str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _bench_rows(f'{out}.csv')
    points = [(r['L'], r['backend'], r['threads'], r['channels'], r['d_state']) for r in rows]
    assert points == [(64, 'eager', 1, 96, 16), (256, 'eager', 1, 96, 16)], points
    for r in rows:
        _positive(r, 'fast_ms', 'sequential_ms', 'speedup', 'first_call_s')
        assert abs(r['speedup'] - r['sequential_ms'] / r['fast_ms']) < 1e-3 * r['speedup']
        assert r['max_abs_diff'] < 1e-4 and r['max_abs_err_vs_float64'] < 1e-4, r
    assert rows[1]['sequential_ms'] > rows[0]['sequential_ms']  # one Python step per token: 4x the tokens
    assert (tmp_path / 'scan.png').stat().st_size > 5000


def test_benchmark_scan_suite_vm_unet(tmp_path: Path) -> None:
    """--what model: the VM-UNet forward in a fresh process, with its peak RSS growth."""
    out = tmp_path / 'unet'
    args = 'scan --what model --img-sizes 64 --threads 1 --backends eager --rounds 1'
    proc = run_tool('tools/analysis/benchmark.py', *args.split(), '--out', str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = _bench_rows(f'{out}.csv')
    assert (row['size'], row['batch'], row['backend'], row['threads']) == (64, 1, 'eager', 1)
    _positive(row, 'img_per_s', 'latency_ms', 'peak_rss_growth_mb', 'params_m')
    assert abs(row['img_per_s'] * row['latency_ms'] - 1e3) < 1 and abs(row['params_m'] - 17.2571) < 1e-3


def test_benchmark_wsi_suite(tmp_path: Path) -> None:
    """The extraction pipeline on one small synthetic slide against the bare forward of the same extractor."""
    out = tmp_path / 'wsi'
    args = 'wsi --n-slides 1 --slide-size 1024 --models test_convnext --patch-size 256 --target-size 32 '
    args += '--batch-size 8 --workers 0 --rounds 1 --threads 1'
    proc = run_tool('tools/analysis/benchmark.py', *args.split(), '--out', str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = _bench_rows(f'{out}.csv')
    setting = tuple(row[k] for k in ('extractor', 'read', 'num_workers', 'slides', 'input'))
    assert setting == ('test_convnext', 'pyramid', 0, 1, 32), setting
    assert row['patches'] >= 1 and row['torch_threads'] == 1
    _positive(
        row, 'bare_forward_img_s', 'pipeline_img_s', 'read_ms_per_patch', 'forward_ms_per_patch', 'tiling_s_per_slide'
    )
    # the pipeline does the bare forward's work and more (reading, resizing, writing)
    assert row['pipeline_img_s'] < row['bare_forward_img_s'] and row['overhead_pct'] > 0
    assert (tmp_path / 'wsi.png').stat().st_size > 5000
