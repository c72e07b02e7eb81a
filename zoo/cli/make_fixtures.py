"""Write a small synthetic data set for the smoke configs in configs/smoke/ (no download).

Examples:
  python tools/make_fixtures.py coco --out data/fixtures/coco        # COCO instances: squares and discs
  python tools/make_fixtures.py coco --coco-categories                # ... labelled as COCO's person / bicycle
  python tools/make_fixtures.py ade --out data/fixtures/ade          # ADE20K layout: wall / building / sky
  python tools/make_fixtures.py slides --out data/fixtures/wsi       # pyramidal TIFF slides + slides.csv
  python tools/make_fixtures.py lesions --out data/fixtures/lesions  # ISIC layout: skin-lesion masks
  python tools/make_fixtures.py scans --out data/fixtures/scans      # COVIDx layout: gray scans, lesion = class
  python tools/make_fixtures.py all --out data/fixtures              # the five above, in sub-folders

The training and validation splits (and the test split of the slides) come from the same generator
with different random streams, so validation images are never copies of training images. The same
--seed writes the same files. --out defaults are the data roots of configs/smoke/.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

KINDS = ('coco', 'ade', 'slides', 'lesions', 'scans')
# sizes the smoke configs are tuned for (docs/dense.md, docs/acmil.md, docs/mhs_vm.md)
DEFAULTS = dict(
    coco=dict(num_images=16, size=128),
    ade=dict(num_images=16, size=128),
    slides=dict(size=2048),
    lesions=dict(num_images=64, size=64),
    scans=dict(num_images=320, num_val=100, size=64),
)
SUBDIR = dict(coco='coco', ade='ade', slides='wsi', lesions='lesions', scans='scans')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('kind', choices=[*KINDS, 'all'], help='which data set to write')
    p.add_argument(
        '--out', help='output folder (default data/fixtures/<coco|ade|wsi|lesions>, or data/fixtures for "all")'
    )
    p.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    p.add_argument('--num-images', type=int, help='training images (coco/ade default 16, lesions 64, scans 320)')
    p.add_argument(
        '--num-val',
        type=int,
        help='held-out validation images (default: coco/ade as many as training, lesions a quarter, scans 100)',
    )
    p.add_argument('--size', type=int, help='image side in pixels (coco/ade 128, lesions/scans 64, slides 2048)')
    p.add_argument(
        '--coco-categories',
        action='store_true',
        help="coco: list COCO's 80 categories and label squares 'person', discs 'bicycle', so a config for real "
        'COCO (80-class heads) reads the fixture with only its data paths changed',
    )
    p.add_argument(
        '--slides',
        type=int,
        nargs=3,
        default=(6, 2, 4),
        metavar=('TRAIN', 'VAL', 'TEST'),
        help='slides per split, each half tumour (default 6 2 4)',
    )
    return p.parse_args(argv)


def make(kind: str, out: str, args: argparse.Namespace) -> str:
    """Write one data set; returns its one-line description."""
    opts = dict(DEFAULTS[kind])
    if args.num_images is not None and kind != 'slides':
        opts['num_images'] = args.num_images
    if args.size is not None:
        opts['size'] = args.size
    if kind in ('coco', 'ade', 'lesions', 'scans') and args.num_val is not None:
        opts['num_val'] = args.num_val
    if kind == 'scans':
        from zoo.testing.scans import fit_body_to_masks, make_scan_fixture

        info = make_scan_fixture(
            out, num_train=opts['num_images'], num_test=opts['num_val'], size=opts['size'], seed=args.seed
        )
        body = fit_body_to_masks(out, os.path.join(out, 'body.pth'), seed=args.seed)
        return (
            f'COVIDx layout, {info["num_train"]} train / {info["num_test"]} test gray scans (lesion '
            f'{100 * info["lesion_fraction"]:.1f}% of a positive scan) and a body pre-trained on the lesion masks '
            f'({body["path"]}, loss {body["loss"]:.3f})'
        )
    if kind == 'coco':
        from zoo.testing.dense import make_coco_fixture

        info = make_coco_fixture(out, seed=args.seed, coco_categories=args.coco_categories, **opts)
        return (
            f'COCO instances, {info["num_images"]} train / {info["num_val"]} val images '
            f'({info["num_objects"]} training objects)'
        )
    if kind == 'ade':
        from zoo.testing.dense import make_ade_fixture

        info = make_ade_fixture(out, seed=args.seed, **opts)
        return f'ADE20K layout, {info["num_images"]} training / {info["num_val"]} validation images'
    if kind == 'lesions':
        from zoo.testing.lesions import make_lesion_fixture

        info = make_lesion_fixture(out, seed=args.seed, **opts)
        return (
            f'ISIC layout, {info["num_images"]} train / {info["num_val"]} val lesion images '
            f'(lesion {100 * info["lesion_fraction"]:.1f}% of val pixels)'
        )
    from zoo.testing.slides import make_slide_fixture

    n_train, n_val, n_test = args.slides
    info = make_slide_fixture(out, n_train=n_train, n_val=n_val, n_test=n_test, seed=args.seed, **opts)
    return f'{len(info["slides"])} slides ({n_train} train / {n_val} val / {n_test} test) and {info["csv_path"]}'


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kinds = KINDS if args.kind == 'all' else (args.kind,)
    base = args.out or 'data/fixtures'
    for kind in kinds:
        out = os.path.join(base, SUBDIR[kind]) if args.kind == 'all' or not args.out else args.out
        start = time.time()
        try:
            what = make(kind, out, args)
        except (ValueError, ImportError) as err:
            print(f'make_fixtures: {kind}: {err}', file=sys.stderr)
            return 2
        print(f'make_fixtures: wrote {what} to {out} in {time.time() - start:.1f}s', flush=True)
    return 0


def cli() -> None:
    """Console entry point (``zoo-make-fixtures``, ``python tools/make_fixtures.py``)."""
    sys.exit(main())


if __name__ == '__main__':
    cli()
