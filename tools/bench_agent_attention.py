#!/usr/bin/env python
"""Resolution sweep for agent attention vs softmax attention: forward time per image against input side.

What ``tools/analysis/benchmark.py`` does not cover: it reports wall-clock time, which on a shared,
oversubscribed CPU measures the other jobs more than the model. This script also records the
process CPU time of each forward (``time.process_time``, all threads), which is stable under such
load, and the attention MACs counted analytically (PyTorch's FLOP counter does not see CPU SDPA).
Models are built at each size and measured interleaved (round-robin), median of ``--rounds``.
Writes ``<out>.csv`` and ``<out>.png`` (CPU seconds per image, log-log).

Example:
  python tools/bench_agent_attention.py --models agent_deit_tiny deit_tiny_patch16_224 \\
      --img-sizes 224 512 768 1024 --out benchmarks/agent_attention_resolution_cputime
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


def attention_gmacs(model: torch.nn.Module, img_size: int) -> float:
    """MACs of the token-mixing products (QK^T and AV, or their agent counterparts) for one image."""
    from timm.models.vision_transformer import Attention

    from zoo.layers.agent_attention import AgentAttention

    total = 0
    for m in model.modules():
        if isinstance(m, AgentAttention):
            h, w = img_size // 16, img_size // 16  # DeiT grid; hierarchical models are not used here
            n_tok = m.num_prefix_tokens + h * w
            total += 4 * n_tok * m.agent_num * m.dim  # agent aggregation (2 GEMMs) + broadcast (2 GEMMs)
        elif isinstance(m, Attention):
            n_tok = 1 + (img_size // 16) ** 2
            total += 2 * n_tok * n_tok * m.num_heads * m.head_dim
    return total / 1e9


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', nargs='+', required=True, help='ViT-layout timm / zoo models (patch 16)')
    p.add_argument('--img-sizes', nargs='+', type=int, default=[224, 512, 768, 1024])
    p.add_argument('--rounds', type=int, default=5)
    p.add_argument('--out', default='benchmarks/agent_attention_resolution_cputime')
    args = p.parse_args(argv)

    import timm

    import zoo  # noqa: F401

    start = time.time()
    models = {(n, s): timm.create_model(n, img_size=s).eval() for s in args.img_sizes for n in args.models}
    cpu: dict = {k: [] for k in models}
    wall: dict = {k: [] for k in models}
    with torch.inference_mode():
        for (_, s), m in models.items():  # warm-up
            m(torch.randn(1, 3, s, s))
        for r in range(args.rounds):
            for (n, s), m in models.items():
                x = torch.randn(1, 3, s, s)
                c0, w0 = time.process_time(), time.perf_counter()
                m(x)
                cpu[n, s].append(time.process_time() - c0)
                wall[n, s].append(time.perf_counter() - w0)
            print(f'bench_agent_attention: round {r + 1}/{args.rounds}', file=sys.stderr, flush=True)
    rows = []
    for (n, s), m in models.items():
        rows.append(dict(
            model=n, img_size=s, params_m=round(sum(q.numel() for q in m.parameters()) / 1e6, 3),
            attn_gmacs=round(attention_gmacs(m, s), 3), cpu_s_per_img=round(statistics.median(cpu[n, s]), 4),
            wall_s_per_img=round(statistics.median(wall[n, s]), 4), threads=torch.get_num_threads()))
    os.makedirs(os.path.dirname(args.out) or '.', exist_ok=True)
    with open(args.out + '.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for n in args.models:
        pts = [(r['img_size'], r['cpu_s_per_img']) for r in rows if r['model'] == n]
        ax.plot(*zip(*pts), marker='o', label=n)
    ax.set(xlabel='input side (pixels)', ylabel='CPU seconds per image (forward)', xscale='log', yscale='log',
           title=f'CPU, {torch.get_num_threads()} threads, batch 1')
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out + '.png', dpi=110)
    for r in rows:
        print(f"{r['model']:26s} {r['img_size']:5d}px  attn {r['attn_gmacs']:7.2f} GMACs  "
              f"cpu {r['cpu_s_per_img']:8.3f} s  wall {r['wall_s_per_img']:8.3f} s")
    print(f'bench_agent_attention: {len(rows)} runs in {time.time() - start:.0f}s -> {args.out}.csv, {args.out}.png')


if __name__ == '__main__':
    main()
