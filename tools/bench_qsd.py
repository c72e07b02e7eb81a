#!/usr/bin/env python
"""CPU inference throughput of the spiking models at several time steps T (img/s), params and MACs.

``tools/analysis/benchmark.py`` has no way to pass model arguments such as ``T``, hence this script. Models
and T values are measured interleaved (round-robin for --rounds rounds, median per entry) so
ratios hold on a shared machine. Writes <out>.csv and <out>.png.

Example:
  python tools/bench_qsd.py --models qsd_transformer_15m meta_spikeformer_15m --T 1 4 --threads 2
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

DEFAULT_MODELS = ['qsd_transformer_15m', 'qsd_transformer_31m', 'qsd_transformer_55m',
                  'meta_spikeformer_15m', 'meta_spikeformer_31m', 'meta_spikeformer_55m']


def dense_gmacs(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Conv / linear multiply-accumulates per image for one forward (all T steps), in G."""
    total = [0.0]

    def hook(mod, inp, out):
        k = 1
        for s in getattr(mod, 'kernel_size', (1,)):
            k *= s
        cin = mod.in_features if isinstance(mod, torch.nn.Linear) else mod.in_channels // mod.groups
        total[0] += out.numel() * cin * k

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return total[0] / x.shape[0] / 1e9


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', nargs='+', default=DEFAULT_MODELS)
    p.add_argument('--T', nargs='+', type=int, default=[1, 4], help='time steps to measure')
    p.add_argument('--img-size', type=int, default=224)
    p.add_argument('--batch-size', type=int, default=1)
    p.add_argument('--rounds', type=int, default=3, help='interleaved rounds (median reported)')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--out', default='benchmarks/qsd_speed')
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import timm
    from tqdm import tqdm

    import zoo  # noqa: F401

    t0 = time.time()
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size)
    entries = [(m, T) for m in args.models for T in args.T]
    models, times, info = {}, {e: [] for e in entries}, {}
    for name, T in entries:
        m = timm.create_model(name, T=T).eval()
        models[(name, T)] = m
        # (the MAC count also warms the model up)
        info[(name, T)] = (sum(q.numel() for q in m.parameters()) / 1e6, dense_gmacs(m, x[:1]))
    with torch.inference_mode(), tqdm(total=args.rounds * len(entries), desc='bench', unit='run') as bar:
        for _ in range(args.rounds):
            for e in entries:
                bar.set_postfix_str(f'{e[0]} T={e[1]}')
                s = time.perf_counter()
                models[e](x)
                times[e].append(time.perf_counter() - s)
                bar.update()
    rows = []
    for e in entries:
        med = statistics.median(times[e])
        rows.append(dict(model=e[0], T=e[1], img_size=args.img_size, batch_size=args.batch_size,
                         threads=args.threads, params_m=round(info[e][0], 3), gmacs=round(info[e][1], 3),
                         img_s=round(args.batch_size / med, 3), ms_per_batch=round(med * 1000, 1)))
    os.makedirs(os.path.dirname(args.out) or '.', exist_ok=True)
    with open(f'{args.out}.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(args.T)
    for j, T in enumerate(args.T):
        vals = [r['img_s'] for r in rows if r['T'] == T]
        ax.bar([i + j * width for i in range(len(args.models))], vals, width, label=f'T={T}')
    ax.set_xticks([i + width * (len(args.T) - 1) / 2 for i in range(len(args.models))])
    ax.set_xticklabels(args.models, rotation=20, fontsize=8)
    ax.set_ylabel('img/s')
    ax.set_title(f'CPU inference, {args.threads} threads, batch {args.batch_size}, {args.img_size}px')
    ax.legend()
    fig.tight_layout()
    fig.savefig(f'{args.out}.png', dpi=110)
    plt.close(fig)
    for r in rows:
        print(r)
    fastest = max(rows, key=lambda r: r['img_s'])
    print(f"bench_qsd: {len(rows)} entries in {time.time() - t0:.0f}s; fastest {fastest['model']} "
          f"T={fastest['T']} {fastest['img_s']} img/s; wrote {args.out}.csv and {args.out}.png")
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
