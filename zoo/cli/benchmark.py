"""Throughput, latency, peak memory, parameters and GMACs for a list of models (zoo and timm).

Models are measured interleaved (round-robin over models for --rounds rounds, median per model),
so that ratios between models hold on a noisy machine. Peak memory is the peak resident set
size of a separate process that builds the model and runs one step, above its size after the
imports (CPU), or the CUDA peak allocation.
Writes <out>.csv and <out>.png.

Examples:
  python tools/analysis/benchmark.py --models mambaout_femto resnet18 --out benchmarks/cpu_small
  python tools/analysis/benchmark.py --models agent_pvt_tiny pvt_v2_b1 --img-sizes 224 512 1024 --batch-size 1 \\
      --bench infer --out benchmarks/agent_resolution
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

import torch


@dataclass
class Result:
    model: str
    img_size: int
    batch_size: int
    params_m: float
    gmacs: float  # multiply-accumulates per image (FLOPs / 2), as the papers' "FLOPs" columns
    infer_img_s: float = float('nan')
    infer_ms_per_batch: float = float('nan')
    latency_ms: float = float('nan')  # batch 1
    train_img_s: float = float('nan')
    peak_mem_mb: float = float('nan')
    device: str = 'cpu'
    threads: int = field(default_factory=torch.get_num_threads)


def build(name: str, img_size: int, device: str) -> torch.nn.Module:
    import timm

    import zoo  # noqa: F401

    kwargs = {}
    try:
        model = timm.create_model(name, img_size=img_size, **kwargs)
    except TypeError:  # models without an img_size argument take any size
        model = timm.create_model(name, **kwargs)
    return model.to(device)


def count_gmacs(model: torch.nn.Module, x: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x[:1])
    return counter.get_total_flops() / 2 / 1e9


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def time_infer(model: torch.nn.Module, x: torch.Tensor, iters: int, device: str) -> float:
    """Seconds per forward pass (no grad, eval mode)."""
    model.eval()
    with torch.inference_mode():
        model(x)  # warm-up
        _sync(device)
        t = time.perf_counter()
        for _ in range(iters):
            model(x)
        _sync(device)
    return (time.perf_counter() - t) / iters


def time_train(model: torch.nn.Module, x: torch.Tensor, iters: int, device: str) -> float:
    """Seconds per training step (forward, backward, SGD update)."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        model(x).float().logsumexp(dim=1).mean().backward()
        opt.step()

    step()
    _sync(device)
    t = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    return (time.perf_counter() - t) / iters


def peak_memory_mb(name: str, img_size: int, batch: int, mode: str, device: str) -> float:
    """Peak memory of one step in a fresh process (CPU: peak RSS; CUDA: max allocated)."""
    cmd = [sys.executable, '-m', 'zoo.cli.benchmark', '--memory-probe', json.dumps(
        dict(name=name, img_size=img_size, batch=batch, mode=mode, device=device))]
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        print(f'benchmark: memory probe failed for {name}: {out.stderr.strip().splitlines()[-1:]}', file=sys.stderr)
        return float('nan')


def _status_mb(field: str) -> float:
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def _memory_probe(spec: dict) -> None:
    import timm  # noqa: F401  (imports are not part of the model's footprint)

    import zoo  # noqa: F401

    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # resets the peak-RSS mark (VmHWM) to the current RSS
    base = _status_mb('VmRSS')
    model = build(spec['name'], spec['img_size'], spec['device'])
    x = torch.randn(spec['batch'], 3, spec['img_size'], spec['img_size'], device=spec['device'])
    if spec['device'].startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    if spec['mode'] == 'train':
        model.train()
        model(x).float().mean().backward()
    else:
        model.eval()
        with torch.inference_mode():
            model(x)
    if spec['device'].startswith('cuda'):
        print(torch.cuda.max_memory_allocated() / 2**20)
    else:
        # peak RSS during build + step, above the process after imports: weights + activations
        print(_status_mb('VmHWM') - base)


def run(models: list[str], img_sizes: list[int], batch: int, bench: str, rounds: int, iters: int,
        device: str, memory: bool) -> list[Result]:
    from tqdm import tqdm

    jobs = [(m, s) for s in img_sizes for m in models]
    built, results = {}, {}
    for m, s in tqdm(jobs, desc='build', leave=False, disable=None):  # no bar when not a terminal
        model = build(m, s, device)
        x = torch.randn(batch, 3, s, s, device=device)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        built[m, s] = (model, x)
        results[m, s] = Result(m, s, batch, round(params, 3), round(count_gmacs(model, x), 3), device=device)
    samples: dict = {k: dict(infer=[], train=[], lat=[]) for k in jobs}
    with tqdm(total=rounds * len(jobs), desc='measure', leave=False, disable=None) as bar:
        for _ in range(rounds):
            for key in jobs:  # round-robin: each model sees the same machine state on average
                model, x = built[key]
                if bench in ('infer', 'both'):
                    samples[key]['infer'].append(time_infer(model, x, iters, device))
                    samples[key]['lat'].append(time_infer(model, x[:1], iters, device))
                if bench in ('train', 'both'):
                    samples[key]['train'].append(time_train(model, x, max(1, iters // 2), device))
                bar.update(1)
    for key in jobs:
        r, s = results[key], samples[key]
        if s['infer']:
            med = statistics.median(s['infer'])
            r.infer_img_s, r.infer_ms_per_batch = round(batch / med, 2), round(med * 1e3, 2)
            r.latency_ms = round(statistics.median(s['lat']) * 1e3, 2)
        if s['train']:
            r.train_img_s = round(batch / statistics.median(s['train']), 2)
        if memory:
            r.peak_mem_mb = round(peak_memory_mb(key[0], key[1], batch, 'infer' if bench == 'infer' else 'train',
                                                 device), 1)
    return [results[k] for k in jobs]


def write_outputs(results: list[Result], out: str) -> None:
    os.makedirs(os.path.dirname(out) or '.', exist_ok=True)
    rows = [asdict(r) for r in results]
    with open(out + '.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    # One panel per measured quantity; panels without data (e.g. no --bench train) are left out.
    # memory is probed on the training step when training was timed
    mode = 'training' if any(r.train_img_s == r.train_img_s for r in results) else 'inference'
    panels = [(f, label) for f, label in (('infer_img_s', 'inference (images / s)'),
                                          ('train_img_s', 'training (images / s)'),
                                          ('peak_mem_mb', f'peak memory (MB, {mode})'))
              if any(getattr(r, f) == getattr(r, f) for r in results)]  # NaN != NaN: not measured
    sizes = sorted({r.img_size for r in results})
    models = list(dict.fromkeys(r.model for r in results))
    width = max(4.0, 0.45 * len(models) + 2) if len(sizes) == 1 else 4.5
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), 4.2), squeeze=False)
    for ax, (f, label) in zip(axes[0], panels):
        if len(sizes) == 1:
            ax.bar(models, [getattr(r, f) for r in results], color='tab:blue')
            ax.tick_params(axis='x', rotation=45)
            for tick in ax.get_xticklabels():
                tick.set_ha('right')
            ax.set_xlabel('model')
        else:
            for name in models:
                pts = [(r.img_size, getattr(r, f)) for r in results if r.model == name]
                ax.plot(*zip(*pts), marker='o', label=name)
            ax.set(xlabel='input side (pixels)', xscale='log', yscale='log')
            ax.legend(fontsize=7)
        ax.set_ylabel(label)
        ax.set_title(label.split(' (')[0])
    r0 = results[0]
    fig.suptitle(f'{r0.device}, {r0.threads} thread{"s" if r0.threads != 1 else ""}, batch {r0.batch_size}'
                 + (f', {sizes[0]}x{sizes[0]} px' if len(sizes) == 1 else ''), fontsize=10)
    fig.tight_layout()
    fig.savefig(out + '.png', dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[Result]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', nargs='+', required=False, help='timm / zoo model names')
    p.add_argument('--img-sizes', '--img-size', nargs='+', type=int, default=[224], help='square input sides')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--bench', choices=['infer', 'train', 'both'], default='both',
                   help='what to time (default both: inference and training; the PNG plots each, and memory)')
    p.add_argument('--rounds', type=int, default=5, help='interleaved rounds (median is reported)')
    p.add_argument('--iters', type=int, default=3, help='timed iterations per round')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--no-memory', action='store_true', help='skip the peak-memory subprocesses')
    p.add_argument('--out', default='benchmarks/benchmark', help='output prefix for .csv and .png')
    p.add_argument('--memory-probe', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_probe:
        _memory_probe(json.loads(args.memory_probe))
        return []
    if not args.models:
        p.error('--models is required')
    from zoo.cli.common import check_model_names

    check_model_names(args.models, '--models')
    start = time.time()
    results = run(args.models, args.img_sizes, args.batch_size, args.bench, args.rounds, args.iters,
                  args.device, memory=not args.no_memory)
    write_outputs(results, args.out)
    for r in results:
        print(f'{r.model:28s} {r.img_size:5d}px  {r.params_m:8.2f}M  {r.gmacs:7.2f} GMACs  '
              f'infer {r.infer_img_s:8.2f} img/s  latency {r.latency_ms:8.2f} ms  train {r.train_img_s:8.2f} img/s  '
              f'peak {r.peak_mem_mb:8.1f} MB')
    print(f'benchmark: {len(results)} runs on {args.device} in {time.time() - start:.0f}s -> {args.out}.csv, '
          f'{args.out}.png')
    return results


def cli() -> None:
    """Console entry point (``zoo-benchmark``, ``python tools/analysis/benchmark.py``)."""
    from zoo.cli.common import run_cli

    run_cli(main)


if __name__ == '__main__':
    cli()
