#!/usr/bin/env python
"""MHS-VM benchmarks: selective-scan speed (vectorised vs sequential) and VM-UNet throughput.

  python tools/bench_selective_scan.py                 # both, writes benchmarks/mhs_vm_*.csv|png
  python tools/bench_selective_scan.py --what scan --lengths 1024 4096 16384 --threads 1
  python tools/bench_selective_scan.py --what model --sizes 256 512 --model-threads 1 2

scan:  ``zoo.layers.selective_scan`` against ``selective_scan_sequential`` (mamba_ssm's
       ``selective_scan_ref`` scheme: precomputed decays, one Python step per token) with the
       channels of one MHS head in stage 1 of the released model (K=4 directions x 24 channels,
       d_state 16, softplus(delta + bias), D skip), forward only, batch 1; also the max |difference|.
model: MHS-VM 4-head VM-UNet forward (eval, no grad), batch 1, images/s and peak RSS growth
       measured in a fresh subprocess per size.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'benchmarks')


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def scan_inputs(L: int, k: int = 4, d_sub: int = 24, n: int = 16, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    d = k * d_sub
    return dict(
        u=torch.randn(1, d, L, generator=g), delta=torch.randn(1, d, L, generator=g) * 0.5,
        A=-torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1), B=torch.randn(1, k, n, L, generator=g),
        C=torch.randn(1, k, n, L, generator=g), D=torch.ones(d),
        delta_bias=torch.log(torch.expm1(torch.full((d,), 0.01))), delta_softplus=True)


def bench_scan(lengths: list[int], repeats: int) -> list[dict]:
    from tqdm import tqdm

    from zoo.layers.selective_scan import selective_scan, selective_scan_sequential

    rows = []
    for L in tqdm(lengths, desc='scan'):
        x = scan_inputs(L)
        with torch.no_grad():
            fast = _time(lambda x=x: selective_scan(**x), repeats)
            seq = _time(lambda x=x: selective_scan_sequential(**x), max(1, repeats // 2))
            diff = (selective_scan(**x) - selective_scan_sequential(**x)).abs().max().item()
            ref = selective_scan_sequential(**{k: v.double() if torch.is_tensor(v) else v for k, v in x.items()})
            err64 = (selective_scan(**x).double() - ref).abs().max().item()
        rows.append(dict(L=L, channels=x['u'].shape[1], d_state=16, fast_ms=fast * 1e3, sequential_ms=seq * 1e3,
                         speedup=seq / fast, max_abs_diff=diff, max_abs_err_vs_float64=err64,
                         threads=torch.get_num_threads()))
    return rows


def _rss_kb() -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def _model_worker(size: int, repeats: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    from zoo.models.mhs_vm import create_mhs_vm_unet

    model = create_mhs_vm_unet('mhs_vm_unet_4h', img_size=size).eval()
    x = torch.randn(1, 3, size, size)
    base = _rss_kb()  # current RSS with the model built (ru_maxrss below is the process peak)
    with torch.no_grad():
        sec = _time(lambda: model(x), repeats)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return dict(size=size, batch=1, img_per_s=1.0 / sec, latency_ms=sec * 1e3,
                peak_rss_growth_mb=max(0, peak - base) / 1024, threads=threads,
                params_m=sum(p.numel() for p in model.parameters()) / 1e6)


def bench_model(sizes: list[int], repeats: int, threads: list[int]) -> list[dict]:
    from tqdm import tqdm

    rows = []
    for n in threads:
        for size in tqdm(sizes, desc=f'model ({n} thread(s))'):
            out = subprocess.run([sys.executable, __file__, '--worker', str(size), '--repeats', str(repeats),
                                  '--threads', str(n)], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return rows


def _write(rows: list[dict], name: str) -> str:
    path = os.path.join(OUT, name)
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: f'{v:.6g}' if isinstance(v, float) else v for k, v in r.items()})
    return path


def _plot_scan(rows: list[dict]) -> str:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    Ls = [r['L'] for r in rows]
    ax.loglog(Ls, [r['sequential_ms'] for r in rows], 'o-', label='sequential (selective_scan_ref scheme)')
    ax.loglog(Ls, [r['fast_ms'] for r in rows], 's-', label='zoo selective_scan (blocked, vectorised)')
    for r in rows:
        ax.annotate(f"{r['speedup']:.1f}x", (r['L'], r['fast_ms']), textcoords='offset points', xytext=(4, -12))
    ax.set_xlabel('sequence length L')
    ax.set_ylabel('forward time (ms)')
    ax.set_title(f"selective scan, {rows[0]['channels']} ch x N=16, {rows[0]['threads']} thread(s)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(OUT, 'mhs_vm_scan_speed.png')
    fig.savefig(path, dpi=120)
    return path


def _plot_model(rows: list[dict]) -> str:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(8, 3.5))
    labels = [f"{r['size']}², {r['threads']}t" for r in rows]
    ax[0].bar(labels, [r['img_per_s'] for r in rows])
    ax[0].set_ylabel('images / s')
    ax[1].bar(labels, [r['peak_rss_growth_mb'] for r in rows], color='tab:orange')
    ax[1].set_ylabel('peak RSS growth (MB)')
    fig.suptitle('MHS-VM 4h VM-UNet forward (eval), batch 1')
    fig.tight_layout()
    path = os.path.join(OUT, 'mhs_vm_throughput.png')
    fig.savefig(path, dpi=120)
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--what', choices=['scan', 'model', 'all'], default='all')
    p.add_argument('--lengths', type=int, nargs='+', default=[1024, 4096, 16384], help='scan lengths L')
    p.add_argument('--sizes', type=int, nargs='+', default=[256, 512], help='image sizes (divisible by 32)')
    p.add_argument('--repeats', type=int, default=3, help='timed runs per point (median)')
    p.add_argument('--threads', type=int, default=None, help='torch threads for the scan (default 1)')
    p.add_argument('--model-threads', type=int, nargs='+', default=[2],
                   help='torch thread counts for the model benchmark (default: 2)')
    p.add_argument('--worker', type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(_model_worker(args.worker, args.repeats, args.threads or 2)))
        return
    os.makedirs(OUT, exist_ok=True)
    summary = []
    if args.what in ('scan', 'all'):
        torch.set_num_threads(args.threads or 1)
        rows = bench_scan(args.lengths, args.repeats)
        _write(rows, 'mhs_vm_scan_speed.csv')
        _plot_scan(rows)
        summary.append('scan speed-up ' + ', '.join(f"L={r['L']}: {r['speedup']:.1f}x" for r in rows))
    if args.what in ('model', 'all'):
        rows = bench_model(args.sizes, args.repeats, args.model_threads)
        _write(rows, 'mhs_vm_throughput.csv')
        _plot_model(rows)
        summary.append('VM-UNet ' + ', '.join(f"{r['size']}² ({r['threads']}t): {r['img_per_s']:.3g} img/s"
                                              for r in rows))
    print('bench_selective_scan: ' + '; '.join(summary) + f' -> {OUT}/mhs_vm_*.csv|png', flush=True)


if __name__ == '__main__':
    main()
