"""The ``wsi`` suite: whole-slide feature extraction (slide reading + resizing + forward + HDF5 writing)
against a bare forward of the same extractor on patches already in memory. Goal: <= 10% overhead.

Without slides, synthetic pyramidal TIFFs (:mod:`zoo.testing.slides`) are written to a temporary folder.
Weights are random (throughput does not depend on them). Bare forward and extraction alternate
(round-robin) for ``rounds`` rounds; medians are reported.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from pathlib import Path

import torch

from zoo.benchmark.report import Panel, write_report
from zoo.benchmark.timing import measure, round_robin

__all__ = ['bench_extraction', 'read_time_ms', 'write_wsi']


def read_time_ms(slides: list[Path], coords_dir: Path, batch_size: int) -> float:
    """Milliseconds per patch to read and resize the patches alone (no model), in this process."""
    from torch.utils.data import DataLoader

    from zoo.mil.features import PatchDataset
    from zoo.mil.tiling import load_coords

    n = [0]

    def read_all() -> None:
        for sp in slides:
            coords, a = load_coords(coords_dir / f'{sp.stem}.h5')
            ds = PatchDataset(sp, coords, int(a['read_level']), int(a['read_size']), int(a['target_size']))
            for batch in DataLoader(ds, batch_size=batch_size):
                n[0] += len(batch)

    return 1e3 * measure(read_all).wall_s / max(n[0], 1)


def bench_extraction(
    models: list[str],
    slides_dir: str | None = None,
    n_slides: int = 3,
    slide_size: int = 6144,
    patch_size: int = 512,
    magnification: float = 20.0,
    target_size: int = 224,
    batch_size: int = 64,
    reads: tuple[str, ...] = ('pyramid',),
    workers: tuple[int, ...] = (0, 2),
    device: str = 'cpu',
    rounds: int = 3,
) -> list[dict]:
    """One row per (extractor, read mode, DataLoader workers): patches/s of the bare forward and of the
    whole extraction, the overhead (median over rounds of bare / pipeline - 1), the reading time per
    patch and the tiling time per slide."""
    from tqdm import tqdm

    from zoo.mil.features import build_extractor, extract_slides
    from zoo.mil.tiling import list_slides, save_coords, tile_slide

    tmp = Path(tempfile.mkdtemp(prefix='zoo_wsi_benchmark_'))
    try:
        if slides_dir:
            slides = list_slides([slides_dir])
        else:
            from zoo.testing.slides import make_cohort

            n_pos = (n_slides + 1) // 2
            slides = [s.path for s in make_cohort(tmp / 'slides', n_pos, n_slides - n_pos, size=slide_size)]
        tilings, tiling_s, n_patches = {}, {}, 0
        for mode in reads:
            tilings[mode] = dict(
                patch_size=patch_size,
                magnification=magnification,
                target_size=target_size,
                read_pyramid=mode == 'pyramid',
            )
            counts = []

            def tile_all(mode=mode, counts=counts) -> None:
                for sp in slides:
                    res = tile_slide(sp, tilings[mode])
                    save_coords(res, tmp / f'coords_{mode}' / f'{sp.stem}.h5')
                    counts.append(len(res.coords))

            tiling_s[mode] = measure(tile_all).wall_s / len(slides)
            n_patches = sum(counts)
        if n_patches == 0:
            raise ValueError('wsi benchmark: the tiling found no tissue patches (smaller --patch-size?)')
        read_ms = {mode: read_time_ms(slides, tmp / f'coords_{mode}', batch_size) for mode in reads}
        # level-0 reads with several worker settings: only the first (the official code's setting)
        settings = [
            (m, w, r)
            for m in models
            for r in reads
            for w in workers
            if not (r == 'level0' and w > 0 and len(workers) > 1)
        ]
        rows = []
        for model, n_workers, mode in tqdm(settings, desc='wsi', unit='setting', disable=None):
            ex = build_extractor(model, device=device)
            x = torch.randint(0, 256, (batch_size, 3, target_size, target_size), dtype=torch.uint8)
            steps = max(1, -(-n_patches // batch_size))  # whole batches covering the patches
            ex(x)  # warm-up
            done: list[int] = []

            def bare(ex=ex, x=x, steps=steps) -> None:
                for _ in range(steps):
                    ex(x)

            def pipeline(ex=ex, model=model, n_workers=n_workers, mode=mode, done=done) -> None:
                out = tmp / f'feats_{model}_{mode}_{n_workers}_{len(done)}'  # a new folder: finished slides skip
                res = extract_slides(
                    slides,
                    out,
                    ex,
                    tilings[mode],
                    coords_dir=tmp / f'coords_{mode}',
                    batch_size=batch_size,
                    num_workers=n_workers,
                    show_progress=False,
                )
                done.append(sum(o.n_patches for o in res))

            t = round_robin({'bare': bare, 'pipeline': pipeline}, rounds, warmup=0, device=device)
            if min(done) < n_patches:  # the failures were logged above; a partial run is no measurement
                raise RuntimeError(f'wsi benchmark: extraction with {model} covered {min(done)} of {n_patches} patches')
            bares = [steps * batch_size / s.wall_s for s in t['bare']]
            pipes = [n / s.wall_s for n, s in zip(done, t['pipeline'])]
            bare_s = statistics.median(bares)
            ratio = statistics.median(b / p for b, p in zip(bares, pipes))
            rows.append(
                dict(
                    extractor=model,
                    device=device,
                    input=target_size,
                    read=mode,
                    batch_size=batch_size,
                    num_workers=n_workers,
                    slides=len(slides),
                    patches=n_patches,
                    bare_forward_img_s=round(bare_s, 2),
                    pipeline_img_s=round(statistics.median(pipes), 2),
                    overhead_pct=round(100.0 * (ratio - 1.0), 1),
                    repeats=rounds,
                    read_ms_per_patch=round(read_ms[mode], 2),
                    forward_ms_per_patch=round(1e3 / bare_s, 2),
                    read_vs_forward_pct=round(100.0 * read_ms[mode] * bare_s / 1e3, 1),
                    tiling_s_per_slide=round(tiling_s[mode], 3),
                    torch_threads=torch.get_num_threads(),
                    cpus=os.cpu_count(),
                )
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def write_wsi(rows: list[dict], out: str) -> tuple[str, str]:
    """``<out>.csv`` and ``<out>.png``: bare forward and whole extraction per setting, with the overhead."""
    groups = [f'{r["extractor"]}\n{r["read"]}, {r["num_workers"]} workers' for r in rows]
    pipe = 'read + resize + forward + write'
    panel = Panel(
        'patches / s',
        {'bare forward': [r['bare_forward_img_s'] for r in rows], pipe: [r['pipeline_img_s'] for r in rows]},
        groups=groups,
        notes={pipe: [f'{r["overhead_pct"]:+.0f}%' for r in rows]},
    )
    r0 = rows[0]
    return write_report(
        rows, [panel], out, title=f'WSI feature extraction, {r0["device"]}, batch {r0["batch_size"]}, {r0["input"]} px'
    )
