#!/usr/bin/env python
"""MHS-VM benchmarks: selective-scan speed (vectorised vs sequential) and VM-UNet throughput.

  python tools/bench_selective_scan.py                 # both, writes benchmarks/mhs_vm_*.csv|png
  python tools/bench_selective_scan.py --what scan --lengths 1024 4096 16384 --threads 1 2
  python tools/bench_selective_scan.py --what model --sizes 256 512 --model-threads 2 --backends eager fused

scan:  ``zoo.layers.selective_scan`` (backends ``eager`` and ``fused``) against
       ``selective_scan_sequential`` (mamba_ssm's ``selective_scan_ref`` scheme: precomputed decays,
       one Python step per token) with the channels of one MHS head in stage 1 of the released model
       (K=4 directions x 24 channels, d_state 16, softplus(delta + bias), D skip), forward only,
       batch 1, for each thread count; also the max |difference| and the error against float64.
       The fused backend's first call (compile, or Inductor's disk cache) is timed separately.
model: MHS-VM 4-head VM-UNet forward (eval, no grad), batch 1, images/s and peak RSS growth
       measured in a fresh subprocess per size, thread count and scan backend.
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


def bench_scan(lengths: list[int], repeats: int, threads: list[int], backends: list[str]) -> list[dict]:
    from tqdm import tqdm

    from zoo.layers.selective_scan import selective_scan, selective_scan_sequential

    rows = []
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for L in tqdm(lengths, desc=f'scan ({n_threads} thread(s))'):
            x = scan_inputs(L)
            with torch.no_grad():
                seq = _time(lambda x=x: selective_scan_sequential(**x), max(1, repeats // 2))
                y_seq = selective_scan_sequential(**x)
                ref = selective_scan_sequential(**{k: v.double() if torch.is_tensor(v) else v for k, v in x.items()})
                for backend in backends:
                    t0 = time.perf_counter()
                    y = selective_scan(**x, backend=backend)
                    first = time.perf_counter() - t0
                    fast = _time(lambda x=x, b=backend: selective_scan(**x, backend=b), repeats)
                    rows.append(dict(
                        L=L, channels=x['u'].shape[1], d_state=16, backend=backend, threads=n_threads,
                        fast_ms=fast * 1e3, sequential_ms=seq * 1e3, speedup=seq / fast,
                        max_abs_diff=(y - y_seq).abs().max().item(),
                        max_abs_err_vs_float64=(y.double() - ref).abs().max().item(), first_call_s=first))
    return rows


def _rss_kb() -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def _model_worker(size: int, repeats: int, threads: int, backend: str) -> dict:
    torch.set_num_threads(threads)
    from zoo.layers.selective_scan import set_scan_backend
    from zoo.models.mhs_vm import create_mhs_vm_unet

    set_scan_backend(backend)

    model = create_mhs_vm_unet('mhs_vm_unet_4h', img_size=size).eval()
    x = torch.randn(1, 3, size, size)
    base = _rss_kb()  # current RSS with the model built (ru_maxrss below is the process peak)
    with torch.no_grad():
        sec = _time(lambda: model(x), repeats)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return dict(size=size, batch=1, backend=backend, img_per_s=1.0 / sec, latency_ms=sec * 1e3,
                peak_rss_growth_mb=max(0, peak - base) / 1024, threads=threads,
                params_m=sum(p.numel() for p in model.parameters()) / 1e6)


def bench_model(sizes: list[int], repeats: int, threads: list[int], backends: list[str]) -> list[dict]:
    from tqdm import tqdm

    rows = []
    for n in threads:
        for backend in backends:
            for size in tqdm(sizes, desc=f'model ({n} thread(s), {backend})'):
                out = subprocess.run([sys.executable, __file__, '--worker', str(size), '--repeats', str(repeats),
                                      '--threads', str(n), '--backends', backend],
                                     capture_output=True, text=True, check=True)
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

    threads = sorted({r['threads'] for r in rows})
    fig, axes = plt.subplots(1, len(threads), figsize=(5.5 * len(threads), 4), squeeze=False)
    for ax, n in zip(axes[0], threads):
        sub = [r for r in rows if r['threads'] == n]
        Ls = sorted({r['L'] for r in sub})
        seq = {r['L']: r['sequential_ms'] for r in sub}
        ax.loglog(Ls, [seq[L] for L in Ls], 'o-', label='sequential (selective_scan_ref scheme)')
        for backend, marker in (('eager', 's-'), ('fused', '^-')):
            pts = sorted((r['L'], r['fast_ms'], r['speedup']) for r in sub if r['backend'] == backend)
            if not pts:
                continue
            ax.loglog([p[0] for p in pts], [p[1] for p in pts], marker, label=f'zoo selective_scan ({backend})')
            for L, ms, sp in pts:
                ax.annotate(f'{sp:.1f}x', (L, ms), textcoords='offset points', xytext=(4, -12), fontsize=8)
        ax.set_xlabel('sequence length L')
        ax.set_ylabel('forward time (ms)')
        ax.set_title(f"selective scan, {sub[0]['channels']} ch x N=16, {n} thread(s)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(OUT, 'mhs_vm_scan_speed.png')
    fig.savefig(path, dpi=120)
    return path


def _plot_model(rows: list[dict]) -> str:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(8, 3.5))
    labels = [f"{r['size']}², {r['threads']}t\n{r['backend']}" for r in rows]
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
    p.add_argument('--threads', type=int, nargs='+', default=[1, 2], help='torch thread counts for the scan')
    p.add_argument('--backends', nargs='+', default=['eager', 'fused'], choices=['eager', 'fused'],
                   help='selective_scan backends to measure')
    p.add_argument('--model-threads', type=int, nargs='+', default=[2],
                   help='torch thread counts for the model benchmark (default: 2)')
    p.add_argument('--worker', type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(_model_worker(args.worker, args.repeats, args.threads[0], args.backends[0])))
        return
    os.makedirs(OUT, exist_ok=True)
    summary = []
    if args.what in ('scan', 'all'):
        rows = bench_scan(args.lengths, args.repeats, args.threads, args.backends)
        _write(rows, 'mhs_vm_scan_speed.csv')
        _plot_scan(rows)
        summary.append('scan speed-up ' + ', '.join(f"L={r['L']} {r['backend']} {r['threads']}t: {r['speedup']:.1f}x"
                                                    for r in rows))
    if args.what in ('model', 'all'):
        rows = bench_model(args.sizes, args.repeats, args.model_threads, args.backends)
        _write(rows, 'mhs_vm_throughput.csv')
        _plot_model(rows)
        summary.append('VM-UNet ' + ', '.join(
            f"{r['size']}² ({r['threads']}t, {r['backend']}): {r['img_per_s']:.3g} img/s" for r in rows))
    print('bench_selective_scan: ' + '; '.join(summary) + f' -> {OUT}/mhs_vm_*.csv|png', flush=True)


if __name__ == '__main__':
    main()
