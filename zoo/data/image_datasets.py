"""Image-classification datasets on disk: ImageNet-style folders and CSV lists.

A corrupt or unreadable image is reported once (naming the file) and skipped: the item is
replaced by the next readable one, so training goes on.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from zoo.data.transforms import build_pipeline
from zoo.registry import DATASETS

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def read_rgb(path: str) -> np.ndarray:
    """Decode an image file to an HWC uint8 RGB array; raises ``OSError`` naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert('RGB'))
    except Exception as err:  # PIL raises many types for truncated/corrupt data
        raise OSError(f'cannot decode image {path}: {err}') from None


class _ImageListDataset(Dataset):
    """(path, label) samples + an albumentations pipeline; items are
    ``dict(inputs=Tensor[3, H, W], data_samples=dict(gt_label=int))``."""

    def __init__(self, samples: list[tuple[str, int]], classes: Sequence[str], pipeline: Sequence[dict] | None):
        if not samples:
            raise ValueError(f'{type(self).__name__}: no images found')
        self.samples = samples
        self.classes = tuple(classes)
        self.metainfo = dict(classes=self.classes)
        self.transform = build_pipeline(pipeline)
        self.bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        for step in range(len(self.samples)):
            j = (i + step) % len(self.samples)
            if j in self.bad:
                continue
            path, label = self.samples[j]
            try:
                image = read_rgb(path)
            except OSError as err:
                self.bad.add(j)
                warnings.warn(f'skipping corrupt image: {err}', stacklevel=2)
                continue
            return dict(inputs=self.transform(image), data_samples=dict(gt_label=label))
        raise RuntimeError(f'{type(self).__name__}: every image is unreadable')


@DATASETS.register_module()
class ImageFolderDataset(_ImageListDataset):
    """``data_root/split/<class>/<image>`` (ImageNet layout); classes sorted by folder name.

    Args:
        data_root: dataset root.
        split: sub-folder (``'train'``, ``'val'``); ``''`` uses ``data_root`` itself.
        pipeline: albumentations transform dicts (see ``zoo.data.transforms``).
    """

    def __init__(self, data_root: str, split: str = 'train', pipeline: Sequence[dict] | None = None) -> None:
        root = Path(data_root) / split
        if not root.is_dir():
            raise FileNotFoundError(f"ImageFolderDataset: data_root/split '{root}' does not exist")
        classes = sorted(d.name for d in root.iterdir() if d.is_dir())
        samples = [
            (str(p), label)
            for label, c in enumerate(classes)
            for p in sorted((root / c).rglob('*'))
            if p.suffix.lower() in IMG_EXTENSIONS
        ]
        super().__init__(samples, classes, pipeline)


@DATASETS.register_module()
class CsvImageDataset(_ImageListDataset):
    """A CSV list with columns ``path,label`` (header required; paths relative to ``data_root``).

    Labels may be integers or class names; names are mapped to sorted indices.
    """

    def __init__(self, ann_file: str, data_root: str = '', pipeline: Sequence[dict] | None = None) -> None:
        if not os.path.isfile(ann_file):
            raise FileNotFoundError(f"CsvImageDataset: ann_file '{ann_file}' does not exist")
        with open(ann_file, newline='') as f:
            rows = list(csv.DictReader(f))
        if rows and not {'path', 'label'} <= set(rows[0]):
            raise KeyError(f"CsvImageDataset: {ann_file} needs columns 'path' and 'label', has {list(rows[0])}")
        raw = [r['label'] for r in rows]
        if all(v.strip().lstrip('-').isdigit() for v in raw):
            labels = [int(v) for v in raw]
            classes = [str(c) for c in range(max(labels) + 1)] if labels else []
        else:
            classes = sorted(set(raw))
            labels = [classes.index(v) for v in raw]
        samples = [(os.path.join(data_root, r['path']), lab) for r, lab in zip(rows, labels)]
        super().__init__(samples, classes, pipeline)
