"""Render attention heatmaps of a trained MIL model: each branch's and the bag's attention over the
slide thumbnail, one PNG per slide.

Examples:
  python tools/wsi_heatmap.py configs/mil/acmil/acmil_ga_default.py \\
      work_dirs/acmil_ga_default/best_mil_f1_auc_epoch_12.pth
  python tools/wsi_heatmap.py CONFIG CKPT --slides data/wsi/slides --feats data/wsi/features --out heatmaps \\
      --only slide_007 slide_012

The checkpoint is an mmengine checkpoint of tools/train.py, or an official ACMIL state dict (re-saved
tensors, see docs/acmil.md). Slides are matched to <feats>/<slide>.h5 by file stem. A slide that fails
is reported and skipped (exit code 1 at the end).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from zoo.cli.wsi_tile import wsi_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='the MIL config the model was trained with')
    p.add_argument('checkpoint', help='checkpoint (.pth from tools/train.py, or .safetensors)')
    p.add_argument('--slides', help='slide folder (default: wsi.slide_dir)')
    p.add_argument('--feats', help='feature folder (default: wsi.feat_dir)')
    p.add_argument('--out', help='PNG folder (default: wsi.heatmap_dir)')
    p.add_argument('--only', nargs='+', help='slide names (file stems) to render; default: all with features')
    p.add_argument('--size', type=int, default=768, help='thumbnail size in pixels (default 768)')
    p.add_argument(
        '--norm',
        choices=['minmax', 'rank'],
        default='minmax',
        help='colour scale per map: min-max of the scores (default) or percentile ranks',
    )
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={}, metavar='KEY=VALUE')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch
    from tqdm import tqdm

    import zoo.mil  # noqa: F401  (registers the MIL classes)
    from zoo.mil.classifier import load_mil_checkpoint
    from zoo.mil.features import read_features
    from zoo.mil.heatmap import attention_maps, render_heatmaps
    from zoo.mil.models import checkpoint_filter_fn
    from zoo.mil.tiling import SlideReadError, list_slides
    from zoo.registry import MODELS

    start = time.time()
    cfg = wsi_config(args.config, args.cfg_options)
    wsi = cfg.wsi
    model = MODELS.build(cfg.model)
    model.load_state_dict(checkpoint_filter_fn(load_mil_checkpoint(args.checkpoint), model), strict=True)
    model.eval()
    feat_dir, out_dir = args.feats or wsi.feat_dir, args.out or wsi.heatmap_dir
    slides = {p.stem: p for p in list_slides([args.slides or wsi.slide_dir])}
    names = args.only or sorted(n for n in slides if os.path.isfile(os.path.join(feat_dir, f'{n}.h5')))
    if not names:
        raise FileNotFoundError(f'no slide in {args.slides or wsi.slide_dir} has features in {feat_dir}')
    written, failed = [], []
    for name in tqdm(names, unit='slide', desc='heatmap', disable=args.quiet, dynamic_ncols=True):
        try:
            if name not in slides:
                raise FileNotFoundError(f'{name}: no slide of this name in {args.slides or wsi.slide_dir}')
            feats, coords, attrs = read_features(os.path.join(feat_dir, f'{name}.h5'))
            maps = attention_maps(model, feats)
            with torch.no_grad():
                prob = model(torch.from_numpy(feats.astype('float32')), mode='tensor').softmax(-1)[0]
            title = f'{name}: p = ' + ', '.join(f'{p:.2f}' for p in prob.tolist())
            png = os.path.join(out_dir, f'{name}.png')
            written.append(
                render_heatmaps(slides[name], coords, maps, attrs, png, size=args.size, norm=args.norm, title=title)
            )
        except (SlideReadError, OSError, ValueError, KeyError) as err:
            failed.append(name)
            tqdm.write(f'FAILED {name}: {err} -- skipped', file=sys.stderr)
    print(
        f'wsi_heatmap: {len(written)} heatmaps, {len(failed)} failed in {time.time() - start:.1f}s -> {out_dir}',
        flush=True,
    )
    return dict(written=[str(w) for w in written], failed=failed)


def cli() -> None:
    """Console entry point (``zoo-wsi-heatmap``, ``python tools/wsi_heatmap.py``)."""
    try:
        result = main()
    except (FileNotFoundError, KeyError, ValueError, RuntimeError) as err:
        print(f'error: {err.args[0] if err.args else err}', file=sys.stderr)
        sys.exit(2)
    sys.exit(1 if result['failed'] else 0)


if __name__ == '__main__':
    cli()
