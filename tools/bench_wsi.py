#!/usr/bin/env python
"""Benchmark WSI feature extraction: slide reading + resizing + forward + HDF5 writing, against a
bare forward of the same extractor on patches already in memory. Goal: <= 10% overhead.

Examples:
  python tools/bench_wsi.py                          # synthetic 20x slides, resnet18 at 224
  python tools/bench_wsi.py --slides data/wsi/slides --models resnet18 vit_small_patch16_224 --device cuda
  python tools/bench_wsi.py --workers 0 2 4 --batch-size 128

Without --slides, synthetic pyramidal TIFFs are written to a temporary folder (the test fixture's
generator, zoo/testing/slides.py). Weights are random (throughput does not depend on them).
Writes benchmarks/wsi_extract.csv and benchmarks/wsi_extract.png.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--slides', help='folder of slides (default: synthetic slides)')
    p.add_argument('--n-slides', type=int, default=3, help='synthetic slides to write (default 3)')
    p.add_argument('--slide-size', type=int, default=6144, help='synthetic level-0 side (default 6144)')
    p.add_argument('--models', nargs='+', default=['resnet18'], help='timm / zoo extractors')
    p.add_argument('--patch-size', type=int, default=512, help='patch side at --magnification (default 512)')
    p.add_argument('--magnification', type=float, default=20.0)
    p.add_argument('--target-size', type=int, default=224, help='model input side (default 224)')
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--read', nargs='+', choices=['pyramid', 'level0'], default=['pyramid'],
                   help="patch reading: 'pyramid' (read_pyramid=True, default) and/or 'level0' (at the "
                        "requested magnification, as the official code)")
    p.add_argument('--workers', type=int, nargs='+', default=[0, 2], help='DataLoader workers to try')
    p.add_argument('--device', default='auto')
    p.add_argument('--repeats', type=int, default=3,
                   help='alternating bare/pipeline runs per setting; medians are reported (default 3)')
    p.add_argument('--out', default=str(ROOT / 'benchmarks'), help='folder for wsi_extract.csv / .png')
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    import torch
    from tqdm import tqdm

    from zoo.mil.features import bare_forward_throughput, build_extractor, extract_slides
    from zoo.mil.tiling import list_slides, save_coords, tile_slide

    device = args.device if args.device != 'auto' else ('cuda' if torch.cuda.is_available() else 'cpu')
    tmp = Path(tempfile.mkdtemp(prefix='bench_wsi_'))
    try:
        if args.slides:
            slides = list_slides([args.slides])
        else:
            from zoo.testing.slides import make_cohort

            n_pos = (args.n_slides + 1) // 2
            slides = [s.path for s in make_cohort(tmp / 'slides', n_pos, args.n_slides - n_pos, size=args.slide_size)]
        tilings, tiling_s = {}, {}
        for mode in args.read:
            tilings[mode] = dict(patch_size=args.patch_size, magnification=args.magnification,
                                 target_size=args.target_size, read_pyramid=mode == 'pyramid')
            t0 = time.perf_counter()
            n_patches = 0
            for sp in slides:
                res = tile_slide(sp, tilings[mode])
                save_coords(res, tmp / f'coords_{mode}' / f'{sp.stem}.h5')
                n_patches += len(res.coords)
            tiling_s[mode] = (time.perf_counter() - t0) / len(slides)
        read_ms = {mode: read_time_ms(slides, tmp / f'coords_{mode}', args.batch_size) for mode in args.read}
        rows = []
        settings = [(m, w, r) for m in args.models for r in args.read for w in args.workers
                    if not (r == 'level0' and w > 0 and len(args.workers) > 1)]
        for model, workers, mode in tqdm(settings, desc='bench', unit='setting'):
            ex = build_extractor(model, device=device)
            bares, pipes = [], []
            # bare forward and pipeline alternate, so each pair sees the same machine load; medians
            for r in range(args.repeats):
                bares.append(bare_forward_throughput(ex, n=n_patches, batch_size=args.batch_size,
                                                     size=args.target_size))
                out = tmp / f'feats_{model}_{workers}_{r}'
                t = time.perf_counter()
                res = extract_slides(slides, out, ex, tilings[mode], coords_dir=tmp / f'coords_{mode}',
                                     batch_size=args.batch_size, num_workers=workers, show_progress=False)
                pipes.append(sum(o.n_patches for o in res) / (time.perf_counter() - t))
                shutil.rmtree(out)
            bare, best = statistics.median(bares), statistics.median(pipes)
            ratio = statistics.median(b / p for b, p in zip(bares, pipes))
            rows.append(dict(extractor=model, device=device, input=args.target_size,
                             read=mode, batch_size=args.batch_size, num_workers=workers,
                             slides=len(slides), patches=n_patches,
                             bare_forward_img_s=round(bare, 2), pipeline_img_s=round(best, 2),
                             overhead_pct=round(100.0 * (ratio - 1.0), 1), repeats=args.repeats,
                             read_ms_per_patch=round(read_ms[mode], 2), forward_ms_per_patch=round(1e3 / bare, 2),
                             read_vs_forward_pct=round(100.0 * read_ms[mode] * bare / 1e3, 1),
                             tiling_s_per_slide=round(tiling_s[mode], 3),
                             torch_threads=torch.get_num_threads(), cpus=os.cpu_count()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / 'wsi_extract.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    _plot(rows, out_dir / 'wsi_extract.png')
    best = min(rows, key=lambda r: r['overhead_pct'])
    print(f'bench_wsi: {len(rows)} settings on {device}; best: {best["extractor"]} with '
          f'{best["num_workers"]} workers: {best["pipeline_img_s"]} patches/s vs '
          f'{best["bare_forward_img_s"]} bare forward '
          f'({best["overhead_pct"]:+.1f}% overhead) -> {out_dir / "wsi_extract.csv"}', flush=True)
    return rows


def read_time_ms(slides: list[Path], coords_dir: Path, batch_size: int) -> float:
    """Milliseconds per patch to read and resize the patches alone (no model), in this process."""
    from torch.utils.data import DataLoader

    from zoo.mil.features import PatchDataset
    from zoo.mil.tiling import load_coords

    n, t0 = 0, time.perf_counter()
    for sp in slides:
        coords, a = load_coords(coords_dir / f'{sp.stem}.h5')
        ds = PatchDataset(sp, coords, int(a['read_level']), int(a['read_size']), int(a['target_size']))
        for batch in DataLoader(ds, batch_size=batch_size):
            n += len(batch)
    return 1e3 * (time.perf_counter() - t0) / max(n, 1)


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    labels = [f'{r["extractor"]}\n{r["read"]}, {r["num_workers"]} workers' for r in rows]
    x = range(len(rows))
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(rows), 3.6))
    ax.bar([i - 0.2 for i in x], [r['bare_forward_img_s'] for r in rows], 0.4, label='bare forward')
    ax.bar([i + 0.2 for i in x], [r['pipeline_img_s'] for r in rows], 0.4,
           label='read + resize + forward + write')
    for i, r in zip(x, rows):
        ax.text(i + 0.2, r['pipeline_img_s'], f'{r["overhead_pct"]:+.0f}%', ha='center', va='bottom',
                fontsize=8)
    ax.set_xticks(list(x), labels, fontsize=8)
    ax.set_ylabel('patches / s')
    ax.set_title(f'WSI feature extraction, {rows[0]["device"]}, batch {rows[0]["batch_size"]}, '
                 f'{rows[0]["input"]} px', fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == '__main__':
    main()
