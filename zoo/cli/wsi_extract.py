"""Extract patch features of whole-slide images with any timm / zoo model (num_classes=0).

Examples:
  python tools/wsi_extract.py data/wsi/slides --out data/wsi/features
  python tools/wsi_extract.py data/wsi/slides --model vit_small_patch16_224.augreg_in21k \\
      --cfg-options wsi.extractor.model_kwargs.dynamic_img_size=True
  python tools/wsi_extract.py slides/ --model resnet50 --checkpoint my_weights.safetensors
  python tools/wsi_extract.py slides/ --model resnet50 --bf16 --channels-last   # the fast path

One <slide>.h5 per slide in --out (feat (N, D), coords (N, 2), extractor name and cfg). Coordinates
come from wsi.coords_dir (tools/wsi_tile.py) or the slide is tiled on the fly. Resumable: finished
slides are skipped. An unreadable slide is reported and skipped (exit code 1 at the end).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from zoo.cli.wsi_tile import DEFAULT_CONFIG, wsi_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('slides', nargs='*', help="slide files or folders (default: the config's wsi.slide_dir)")
    p.add_argument('--config', default=DEFAULT_CONFIG, help=f'config with a wsi dict (default {DEFAULT_CONFIG})')
    p.add_argument('--out', help='feature folder (default: wsi.feat_dir)')
    p.add_argument('--coords', help='coordinate folder from tools/wsi_tile.py (default: wsi.coords_dir)')
    p.add_argument('--model', help='timm / zoo model name (default: wsi.extractor.model)')
    p.add_argument('--checkpoint', help='local weights file for the model (timm pretrained_cfg_overlay)')
    p.add_argument('--no-pretrained', action='store_true', help='random weights (testing only)')
    p.add_argument('--seed', type=int, default=0, help='torch seed before building the model')
    p.add_argument('--batch-size', type=int, help='patches per forward (default: wsi.extractor.batch_size)')
    p.add_argument('--num-workers', type=int, help='patch-reading processes (default: wsi.extractor.num_workers)')
    p.add_argument('--device', help="'cpu', 'cuda', 'cuda:1' or 'auto' (default: wsi.extractor.device)")
    p.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        default={},
        metavar='KEY=VALUE',
        help='override config keys, e.g. wsi.tiling.magnification=10 wsi.extractor.dtype=float32',
    )
    p.add_argument('--quiet', action='store_true', help='no progress bars')
    from zoo.cli.common import add_fast_args

    add_fast_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    from zoo.mil.features import build_extractor, extract_slides
    from zoo.mil.tiling import list_slides

    start = time.time()
    wsi = wsi_config(args.config, args.cfg_options).wsi
    ex = dict(wsi.extractor)
    device = args.device or ex.get('device', 'auto')
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    workers = args.num_workers if args.num_workers is not None else ex.get('num_workers', 'auto')
    if workers == 'auto':  # benchmarks/wsi_extract.csv: 2 reading processes beat 0 even on 2 CPU cores
        workers = min(2 if device == 'cpu' else 8, os.cpu_count() or 1)
    slides = list_slides(args.slides or [wsi.slide_dir])
    if not slides:
        raise FileNotFoundError(f'no slides found in {args.slides or wsi.slide_dir}')
    pretrained = bool(ex.get('pretrained')) and not args.no_pretrained
    torch.manual_seed(args.seed)  # reproducible features also for randomly initialised layers
    extractor = build_extractor(
        args.model or ex['model'],
        pretrained=pretrained,
        checkpoint=args.checkpoint or ex.get('checkpoint'),
        device=device,
        input_size=ex.get('input_size'),
        model_kwargs=ex.get('model_kwargs'),
    )
    from zoo.cli.common import apply_fast_args, fast_summary

    compiled = apply_fast_args(extractor.model, args, what=f'tools/wsi_extract.py {extractor.name}')
    extractor.channels_last = args.channels_last
    out_dir = args.out or wsi.feat_dir
    outcomes = extract_slides(
        slides,
        out_dir,
        extractor,
        tiling=wsi.tiling,
        coords_dir=args.coords or wsi.get('coords_dir'),
        batch_size=args.batch_size or ex.get('batch_size', 64),
        num_workers=workers,
        dtype=ex.get('dtype', 'float16'),
        show_progress=not args.quiet,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    done = [o for o in outcomes if o.status == 'done']
    failed = [o for o in outcomes if o.status == 'failed']
    n = sum(o.n_patches for o in done)
    secs = sum(o.seconds for o in done)
    names = f' ({", ".join(o.slide for o in failed)})' if failed else ''
    print(
        f'wsi_extract: {len(done)} slides extracted ({n} patches, {n / max(secs, 1e-9):.0f} patches/s with '
        f'{extractor.name} on {device}), {len(outcomes) - len(done) - len(failed)} already done, '
        f'{len(failed)} failed{names} in {time.time() - start:.1f}s -> {out_dir}{fast_summary(args, compiled)}',
        flush=True,
    )
    return dict(done=len(done), failed=[o.slide for o in failed], patches=n, outcomes=outcomes)


def cli() -> None:
    """Console entry point (``zoo-wsi-extract``, ``python tools/wsi_extract.py``)."""
    from zoo.hub import WeightsError  # a failed download or a bad --checkpoint: one line, exit code 2

    try:
        result = main()
    except (FileNotFoundError, KeyError, ValueError, WeightsError) as err:
        print(f'error: {err.args[0] if err.args else err}', file=sys.stderr)
        sys.exit(2)
    sys.exit(1 if result['failed'] else 0)


if __name__ == '__main__':
    cli()
