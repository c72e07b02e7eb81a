"""Synthetic skin-lesion images in the ISIC layout that :class:`zoo.lesion_seg.ISICSegDataset` reads::

    root/{train,val}/images/000000.png    RGB, a dark irregular blob on noisy, unevenly lit skin
    root/{train,val}/masks/000000.png     0 background, 255 lesion

The images come from :func:`zoo.lesion_seg.datasets.synthetic_lesion` (the generator behind
``SyntheticLesionDataset``); each split draws from its own random stream, so the validation images
are held out. CLI: ``python tools/make_fixtures.py lesions --out DIR [--num-images N] [--size S]``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from zoo.lesion_seg.datasets import synthetic_lesion


def make_lesion_fixture(
    root: str | os.PathLike, num_images: int = 64, size: int = 64, seed: int = 0, num_val: int | None = None
) -> dict:
    """Write ISIC-layout ``train`` and ``val`` splits of synthetic lesions under ``root``.

    Args:
        root: output folder (the config's ``data_root``).
        num_images: training images.
        size: square image side in pixels.
        seed: RNG seed; the same seed gives the same files.
        num_val: held-out validation images (default: ``num_images // 4``, at least 1).

    Returns:
        ``dict(data_root, num_images, num_val, lesion_fraction)`` (mean lesion area of the val masks).
    """
    num_val = max(num_images // 4, 1) if num_val is None else num_val
    if num_images < 1 or num_val < 1 or size < 16:
        raise ValueError(
            f'make_lesion_fixture: need num_images >= 1, num_val >= 1 and size >= 16, got '
            f'num_images={num_images}, num_val={num_val}, size={size}'
        )
    root = Path(root)
    fractions = []
    for k, (split, count) in enumerate((('train', num_images), ('val', num_val))):
        (root / split / 'images').mkdir(parents=True, exist_ok=True)
        (root / split / 'masks').mkdir(parents=True, exist_ok=True)
        for i in range(count):
            img, mask = synthetic_lesion(size, np.random.default_rng([seed, k, i]))
            Image.fromarray(img).save(root / split / 'images' / f'{i:06d}.png')
            Image.fromarray((mask > 0.5).astype(np.uint8) * 255).save(root / split / 'masks' / f'{i:06d}.png')
            if split == 'val':
                fractions.append(float(mask.mean()))
    return dict(data_root=str(root), num_images=num_images, num_val=num_val, lesion_fraction=float(np.mean(fractions)))
