"""Tile whole-slide images: tissue mask, patch grid, coordinates (HDF5) and a check thumbnail (PNG).

Examples:
  python tools/wsi_tile.py data/wsi/slides --out data/wsi
  python tools/wsi_tile.py a.svs b.tif --out data/wsi --cfg-options wsi.tiling.magnification=10
  python tools/wsi_tile.py data/wsi/slides --config configs/mil/acmil/acmil_ga_camelyon16.py

Writes <out>/coords/<slide>.h5 and <out>/thumbnails/<slide>.png (without --out: the config's
wsi.coords_dir / wsi.thumb_dir). Tiling parameters come from the config's wsi.tiling. A slide that
openslide cannot read is reported and skipped; the others go on (exit code 1 if any failed).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

DEFAULT_CONFIG = 'configs/mil/acmil/acmil_ga_default.py'


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('slides', nargs='*', help="slide files or folders (default: the config's wsi.slide_dir)")
    p.add_argument('--config', default=DEFAULT_CONFIG, help=f'config with a wsi dict (default {DEFAULT_CONFIG})')
    p.add_argument('--out', help='output root: coords/ and thumbnails/ go under it')
    p.add_argument('--overwrite', action='store_true', help='tile again slides that have coordinates')
    p.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        default={},
        metavar='KEY=VALUE',
        help='override config keys, e.g. wsi.tiling.patch_size=256',
    )
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    return p.parse_args(argv)


def wsi_config(path: str, options: dict):
    """The ``wsi`` dict of a config, with ``--cfg-options`` applied (paths relative to the repo root)."""
    from mmengine.config import Config

    from zoo.cli.common import REPO_ROOT

    root = str(REPO_ROOT)
    if not os.path.isfile(path) and os.path.isfile(os.path.join(root, path)):
        path = os.path.join(root, path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'config file {path} does not exist')
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(options)
    if 'wsi' not in cfg:
        raise KeyError(f'{path} has no wsi dict (see configs/mil/_base_/wsi_pipeline.py)')
    return cfg


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from tqdm import tqdm

    from zoo.mil.tiling import (
        SlideReadError,
        TilingConfig,
        draw_thumbnail,
        list_slides,
        save_coords,
        tile_slide,
        write_png,
    )

    start = time.time()
    wsi = wsi_config(args.config, args.cfg_options).wsi
    tcfg = TilingConfig.from_dict(wsi.tiling)
    coords_dir = os.path.join(args.out, 'coords') if args.out else wsi.coords_dir
    thumb_dir = os.path.join(args.out, 'thumbnails') if args.out else wsi.thumb_dir
    slides = list_slides(args.slides or [wsi.slide_dir])
    if not slides:
        raise FileNotFoundError(f'no slides found in {args.slides or wsi.slide_dir}')
    done, skipped, failed, n_patches = 0, 0, [], 0
    for sp in tqdm(slides, unit='slide', desc='tile', disable=args.quiet, dynamic_ncols=True):
        out = os.path.join(coords_dir, f'{sp.stem}.h5')
        if os.path.isfile(out) and not args.overwrite:
            skipped += 1
            continue
        try:
            res = tile_slide(sp, tcfg)
            save_coords(res, out, extra=dict(slide_path=str(sp)))
            write_png(os.path.join(thumb_dir, f'{sp.stem}.png'), draw_thumbnail(sp, res, tcfg.thumbnail_size))
        except (SlideReadError, OSError, ValueError) as err:
            failed.append(sp.name)
            tqdm.write(f'FAILED {err} -- skipped', file=sys.stderr)
            continue
        done += 1
        n_patches += len(res.coords)
    names = f' ({", ".join(failed)})' if failed else ''
    print(
        f'wsi_tile: {done} slides tiled ({n_patches} patches), {skipped} already tiled, '
        f'{len(failed)} failed{names} in {time.time() - start:.1f}s -> {coords_dir}',
        flush=True,
    )
    return dict(done=done, skipped=skipped, failed=failed, patches=n_patches)


def cli() -> None:
    """Console entry point (``zoo-wsi-tile``, ``python tools/wsi_tile.py``)."""
    try:
        result = main()
    except (FileNotFoundError, KeyError, ValueError) as err:
        print(f'error: {err.args[0] if err.args else err}', file=sys.stderr)
        sys.exit(2)
    sys.exit(1 if result['failed'] else 0)


if __name__ == '__main__':
    cli()
