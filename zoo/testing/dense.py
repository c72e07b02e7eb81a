"""Tiny synthetic dense-prediction datasets, written by code (no downloads), in the standard layouts
that mmdet's ``CocoDataset`` and mmseg's ``ADE20KDataset`` read:

* COCO instances (boxes + polygon masks), :func:`make_coco_fixture`::

      root/annotations/instances_{train,val}2017.json
      root/{train,val}2017/000000.jpg ...

* ADE20K-style semantic segmentation, :func:`make_ade_fixture`::

      root/images/{training,validation}/000000.jpg
      root/annotations/{training,validation}/000000.png   (0 = ignore, k = class k-1)

Images are lightly textured backgrounds with filled squares and discs of distinct colours, so a
small model learns them in a few dozen iterations on a CPU. The two splits come from the same
generator with different random streams (``default_rng([seed, split])``): the validation images are
held out, never copies of the training images, so the metrics measure generalisation.

CLI: ``python tools/make_fixtures.py {coco,ade} --out DIR [--num-images N] [--size S] [--seed S]``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# Fixture classes. COCO: free names. ADE: CocoDataset-style renaming is not possible there (mmseg
# maps custom classes by name onto ADE20K's 150), so the three shapes borrow ADE20K's first three
# class names: background -> 'wall', squares -> 'building', discs -> 'sky'.
COCO_CLASSES = ('square', 'disc')
# COCO 2017's 80 detection categories in their annotation-file order (the order of mmdet's CocoDataset.METAINFO).
# With ``coco_categories=True`` the fixture lists all 80 and labels the squares 'person' and the discs 'bicycle',
# so a config written for real COCO (80-class heads, COCO's class names) reads it with only its paths changed.
COCO80_CLASSES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat', 'traffic light',
    'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
    'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee',
    'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard',
    'tennis racket', 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple',
    'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch',
    'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard',
    'cell phone', 'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors',
    'teddy bear', 'hair drier', 'toothbrush',
)  # fmt: skip
ADE_CLASSES = ('wall', 'building', 'sky')
_SHAPE_COLOURS = {'square': (220, 60, 40), 'disc': (40, 90, 230)}


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = rng.integers(90, 160, size=3)
    noise = rng.normal(0, 6, size=(size, size, 3))
    return np.clip(base[None, None, :] + noise, 0, 255)


def _shapes(rng: np.random.Generator, size: int, max_objects: int) -> list[dict]:
    """Random non-overlapping squares and discs: ``kind``, box ``(x0, y0, x1, y1)``, polygon."""
    out: list[dict] = []
    tries = 0
    n = int(rng.integers(1, max_objects + 1))
    while len(out) < n and tries < 200:
        tries += 1
        kind = COCO_CLASSES[int(rng.integers(0, len(COCO_CLASSES)))]
        side = int(rng.integers(size // 5, size // 2))
        x0, y0 = (int(v) for v in rng.integers(2, size - side - 2, size=2))
        box = (x0, y0, x0 + side, y0 + side)
        if any(
            not (
                box[2] + 3 < o['box'][0]
                or o['box'][2] + 3 < box[0]
                or box[3] + 3 < o['box'][1]
                or o['box'][3] + 3 < box[1]
            )
            for o in out
        ):
            continue
        if kind == 'square':
            poly = [(x0, y0), (x0 + side, y0), (x0 + side, y0 + side), (x0, y0 + side)]
        else:
            cx, cy, r = x0 + side / 2, y0 + side / 2, side / 2
            poly = [
                (cx + r * math.cos(t), cy + r * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 32, endpoint=False)
            ]
        out.append(dict(kind=kind, box=box, poly=poly))
    return out


def _render(rng: np.random.Generator, size: int, max_objects: int) -> tuple[Image.Image, list[dict]]:
    img = Image.fromarray(_background(rng, size).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    shapes = _shapes(rng, size, max_objects)
    for s in shapes:
        jitter = rng.integers(-15, 16, size=3)
        colour = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(_SHAPE_COLOURS[s['kind']], jitter))
        draw.polygon(s['poly'], fill=colour)
    return img, shapes


def _polygon_area(poly: list[tuple[float, float]]) -> float:
    xs, ys = np.array([p[0] for p in poly]), np.array([p[1] for p in poly])
    return float(0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))


def _split_rng(seed: int, split: int) -> np.random.Generator:
    """Independent streams per (seed, split): split 1 of seed 0 never equals split 0 of seed 1."""
    return np.random.default_rng([seed, split])


def make_coco_fixture(
    root: str | os.PathLike,
    num_images: int = 6,
    size: int = 128,
    max_objects: int = 3,
    seed: int = 0,
    num_val: int | None = None,
    coco_categories: bool = False,
) -> dict:
    """Write a COCO-format instance set of squares and discs under ``root``.

    Args:
        root: output folder (created).
        num_images: training images.
        size: square image side in pixels.
        max_objects: at most this many shapes per image (at least one).
        seed: RNG seed; the same seed gives the same files.
        num_val: held-out validation images (default: ``num_images``), drawn from another stream.
        coco_categories: list COCO's 80 categories (``COCO80_CLASSES``, ids 1-80) and label squares 'person'
            and discs 'bicycle' (the same images and boxes), for configs written for real COCO.

    Returns:
        ``dict(data_root, classes, num_images, num_val, num_objects)`` (``num_objects``: training split).
    """
    num_val = num_images if num_val is None else num_val
    _check_sizes('make_coco_fixture', num_images, num_val, size)
    root = Path(root)
    (root / 'annotations').mkdir(parents=True, exist_ok=True)
    names = COCO80_CLASSES if coco_categories else COCO_CLASSES
    categories = [dict(id=i + 1, name=n, supercategory='shape') for i, n in enumerate(names)]
    n_objects = 0
    for k, (split, count) in enumerate((('train2017', num_images), ('val2017', num_val))):
        rng = _split_rng(seed, k)
        (root / split).mkdir(exist_ok=True)
        images, anns = [], []
        for i in range(count):
            img, shapes = _render(rng, size, max_objects)
            name = f'{i:06d}.jpg'
            img.save(root / split / name, quality=95)
            images.append(dict(id=i + 1, file_name=name, width=size, height=size))
            for s in shapes:
                x0, y0, x1, y1 = s['box']
                anns.append(
                    dict(
                        id=len(anns) + 1,
                        image_id=i + 1,
                        category_id=COCO_CLASSES.index(s['kind']) + 1,
                        bbox=[x0, y0, x1 - x0, y1 - y0],
                        area=_polygon_area(s['poly']),
                        iscrowd=0,
                        segmentation=[[round(float(v), 2) for p in s['poly'] for v in p]],
                    )
                )
        n_objects += len(anns) if split == 'train2017' else 0
        with open(root / 'annotations' / f'instances_{split}.json', 'w') as f:
            json.dump(dict(images=images, annotations=anns, categories=categories), f)
    return dict(data_root=str(root), classes=names, num_images=num_images, num_val=num_val, num_objects=n_objects)


def _check_sizes(fn: str, num_images: int, num_val: int, size: int) -> None:
    if num_images < 1 or num_val < 1 or size < 32:
        raise ValueError(
            f'{fn}: need num_images >= 1, num_val >= 1 and size >= 32, got num_images={num_images}, '
            f'num_val={num_val}, size={size}'
        )


def make_ade_fixture(
    root: str | os.PathLike,
    num_images: int = 6,
    size: int = 128,
    max_objects: int = 3,
    seed: int = 0,
    num_val: int | None = None,
) -> dict:
    """Write an ADE20K-layout semantic segmentation set under ``root``.

    Label PNGs follow ADE20K: value 0 is "other" (ignored with ``reduce_zero_label=True``) and value
    ``k`` is class ``k - 1`` of ``ADE_CLASSES`` (background 1, squares 2, discs 3). Arguments as
    :func:`make_coco_fixture`.

    Returns:
        ``dict(data_root, classes, num_images, num_val)``.
    """
    num_val = num_images if num_val is None else num_val
    _check_sizes('make_ade_fixture', num_images, num_val, size)
    root = Path(root)
    for k, (split, count) in enumerate((('training', num_images), ('validation', num_val))):
        rng = _split_rng(seed, k)
        (root / 'images' / split).mkdir(parents=True, exist_ok=True)
        (root / 'annotations' / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            img, shapes = _render(rng, size, max_objects)
            label = Image.new('L', (size, size), 1)
            draw = ImageDraw.Draw(label)
            for s in shapes:
                draw.polygon(s['poly'], fill=2 + COCO_CLASSES.index(s['kind']))
            img.save(root / 'images' / split / f'{i:06d}.jpg', quality=95)
            label.save(root / 'annotations' / split / f'{i:06d}.png')
    return dict(data_root=str(root), classes=ADE_CLASSES, num_images=num_images, num_val=num_val)
