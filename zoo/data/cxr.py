"""Chest X-ray datasets of the MEDUSA / COVID-Net papers, the reference preprocessing and class-balanced sampling.

* **COVIDx** label files (``github.com/lindawangg/COVID-Net``, ``docs/COVIDx.md``): one image per line,
  ``patient_id filename label source``, images in one folder per split (``train/``, ``test/``). Labels are
  ``negative`` / ``positive`` (COVIDx8B and later, 2 classes) or ``normal`` / ``pneumonia`` / ``COVID-19``
  (3 classes). MEDUSA's development code keeps **RICORD** (``labels/ricord_annotated_{train,test}_1.txt``) and
  **RSNA Pneumonia** (``labels/train_pnemunia.txt``) subsets in the same layout, so :class:`COVIDxDataset`
  reads them too.
* **RSNA Pneumonia Detection Challenge** as published on Kaggle (:class:`RSNAPneumoniaDataset`):
  ``stage_2_train_labels.csv`` (``patientId,x,y,width,height,Target``, one row per box, ``Target`` 1 = opacity)
  and ``stage_2_train_images/<patientId>.dcm`` (or images converted to ``.png`` / ``.jpg``).

Preprocessing (:func:`cxr_crop`) is COVID-Net's ``process_image_file`` (``master:data.py``): drop the top 8 % of
rows (the burnt-in text of many CXRs), take the central square, resize (OpenCV ``INTER_LINEAR``). The body's view
(grayscale, resize 256, per-image z-score) is derived inside the model (``zoo.models.medusa``).

Annotation problems raise one line naming ``path:line``; unreadable images follow the zoo's skip rules
(:class:`zoo.data.image_datasets._ImageListDataset`).
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Sampler

from zoo.data.fgvc import _require_dir, _require_file
from zoo.data.image_datasets import _ImageListDataset
from zoo.registry import DATA_SAMPLERS, DATASETS

__all__ = ['COVIDX_CLASSES', 'COVIDxDataset', 'ClassBalancedSampler', 'RSNAPneumoniaDataset', 'cxr_crop']

# class order of the COVID-Net label maps (data.py: mapping = {'normal': 0, 'pneumonia': 1, 'COVID-19': 2};
# binary: {'negative': 0, 'positive': 1})
COVIDX_CLASSES = {2: ('negative', 'positive'), 3: ('normal', 'pneumonia', 'COVID-19')}


def cxr_crop(image: np.ndarray, size: int | None = 480, top_percent: float = 0.08) -> np.ndarray:
    """COVID-Net's preprocessing of an ``(H, W[, C])`` uint8 image: drop the top ``top_percent`` of rows, take the
    central square, resize to ``size`` (bilinear, OpenCV ``INTER_LINEAR``; ``None`` keeps the square)."""
    import cv2

    h = image.shape[0]
    image = image[int(round(h * top_percent)) :]
    h, w = image.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    image = image[y0 : y0 + side, x0 : x0 + side]
    if size is not None and side != size:
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(image)


def _preprocess_then(transform, size: int | None, top_percent: float, image: np.ndarray) -> torch.Tensor:
    return transform(cxr_crop(image, size, top_percent))


class _CXRDataset(_ImageListDataset):
    """``_ImageListDataset`` with :func:`cxr_crop` before the albumentations pipeline; exposes ``labels``."""

    def __init__(
        self,
        samples: list[tuple[str, int]],
        classes: Sequence[str],
        pipeline: Sequence[dict] | None,
        img_size: int | None,
        top_percent: float,
        skip_unreadable: bool | None,
    ) -> None:
        super().__init__(samples, classes, pipeline, skip_unreadable)
        if not 0.0 <= top_percent < 1.0:
            raise ValueError(f'{type(self).__name__}: top_percent must be in [0, 1), got {top_percent}')
        self.labels = [label for _, label in samples]
        self.transform = functools.partial(_preprocess_then, self.transform, img_size, top_percent)


@DATASETS.register_module()
class COVIDxDataset(_CXRDataset):
    """A COVIDx-style label file: ``patient_id filename label [source]`` per line.

    Args:
        data_root: dataset root.
        ann_file: label file, relative to ``data_root`` (e.g. ``'train_COVIDx9B.txt'``).
        img_dir: image folder, relative to ``data_root`` (``'train'`` / ``'test'``).
        num_classes: 2 (``negative`` / ``positive``) or 3 (``normal`` / ``pneumonia`` / ``COVID-19``); or give
            ``classes``.
        classes: label names in class-index order (overrides ``num_classes``; matched case-insensitively).
        pipeline: albumentations dicts applied after :func:`cxr_crop`.
        img_size: side after :func:`cxr_crop` (480; ``None`` keeps the central square).
        top_percent: rows dropped from the top (0.08).
        skip_unreadable: see :class:`zoo.data.image_datasets._ImageListDataset`.
    """

    def __init__(
        self,
        data_root: str,
        ann_file: str,
        img_dir: str,
        num_classes: int = 2,
        classes: Sequence[str] | None = None,
        pipeline: Sequence[dict] | None = None,
        img_size: int | None = 480,
        top_percent: float = 0.08,
        skip_unreadable: bool | None = None,
    ) -> None:
        owner = type(self).__name__
        if classes is None:
            if num_classes not in COVIDX_CLASSES:
                raise ValueError(f'{owner}: num_classes must be 2 or 3 (or pass classes=), got {num_classes}')
            classes = COVIDX_CLASSES[num_classes]
        index = {c.lower(): i for i, c in enumerate(classes)}
        root = Path(data_root)
        ann = _require_file(owner, root / ann_file)
        folder = _require_dir(owner, root / img_dir)
        samples = []
        with open(ann, encoding='utf-8') as f:
            for n, line in enumerate(f, start=1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) < 3:
                    raise ValueError(f'{owner}: {ann}:{n}: expected "patient_id filename label source", got {line!r}')
                name, label = fields[1], fields[2]
                if label.lower() not in index:
                    raise ValueError(f'{owner}: {ann}:{n}: label {label!r} is not one of {list(classes)}')
                samples.append((str(folder / name), index[label.lower()]))
        if not samples:
            raise ValueError(f'{owner}: {ann} lists no images')
        super().__init__(samples, classes, pipeline, img_size, top_percent, skip_unreadable)


@DATASETS.register_module()
class RSNAPneumoniaDataset(_CXRDataset):
    """The RSNA Pneumonia Detection Challenge (Kaggle) layout, as image-level labels: ``Target`` 1 on any row of a
    patient = ``pneumonia`` (class 1), else ``normal`` (class 0; "No Lung Opacity / Not Normal" included).

    Args:
        data_root: dataset root.
        ann_file: ``stage_2_train_labels.csv`` (relative to ``data_root``).
        img_dir: image folder (``stage_2_train_images``).
        suffix: image file suffix (``'.dcm'`` needs ``pydicom``; or converted ``'.png'`` / ``'.jpg'``).
        ids_file: optional text file of patient ids (one per line) selecting a split.
        pipeline, img_size, top_percent, skip_unreadable: as :class:`COVIDxDataset`.
    """

    CLASSES = ('normal', 'pneumonia')

    def __init__(
        self,
        data_root: str,
        ann_file: str = 'stage_2_train_labels.csv',
        img_dir: str = 'stage_2_train_images',
        suffix: str = '.png',
        ids_file: str | None = None,
        pipeline: Sequence[dict] | None = None,
        img_size: int | None = 480,
        top_percent: float = 0.08,
        skip_unreadable: bool | None = None,
    ) -> None:
        owner = type(self).__name__
        root = Path(data_root)
        ann = _require_file(owner, root / ann_file)
        folder = _require_dir(owner, root / img_dir)
        if suffix == '.dcm':
            try:
                import pydicom  # noqa: F401
            except ImportError:
                raise ImportError(
                    f"{owner}: suffix='.dcm' needs pydicom (pip install pydicom), or convert to PNG"
                ) from None
        target: dict[str, int] = {}
        with open(ann, encoding='utf-8', newline='') as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {'patientId', 'Target'} <= set(reader.fieldnames):
                raise ValueError(f'{owner}: {ann}: expected the columns patientId and Target, got {reader.fieldnames}')
            for n, row in enumerate(reader, start=2):
                if row['Target'] not in ('0', '1'):
                    raise ValueError(f'{owner}: {ann}:{n}: Target must be 0 or 1, got {row["Target"]!r}')
                pid = row['patientId']
                target[pid] = max(target.get(pid, 0), int(row['Target']))
        if ids_file is not None:
            ids_path = _require_file(owner, root / ids_file)
            wanted = [s.strip() for s in ids_path.read_text().splitlines() if s.strip()]
            unknown = [i for i in wanted if i not in target]
            if unknown:
                raise ValueError(f'{owner}: {ids_path}: patient {unknown[0]!r} is not in {ann.name}')
            target = {i: target[i] for i in wanted}
        samples = [(str(folder / f'{pid}{suffix}'), t) for pid, t in target.items()]
        super().__init__(samples, self.CLASSES, pipeline, img_size, top_percent, skip_unreadable)


@DATA_SAMPLERS.register_module()
class ClassBalancedSampler(Sampler):
    """Every draw picks a class uniformly, then an image of that class uniformly (with replacement): the
    development code's ``tf.data.experimental.sample_from_datasets`` with equal weights.

    An epoch has ``num_samples`` draws (default ``len(dataset)``), split evenly over DDP ranks (rank ``r`` takes
    draws ``r, r + W, ...``). Needs ``dataset.labels`` (the zoo's CXR datasets have it).

    Args:
        dataset: dataset with a ``labels`` list.
        num_samples: draws per epoch over all ranks.
        seed: base seed (epoch ``e`` uses ``seed + e``); ``None``: a seed shared by all ranks.
    """

    def __init__(self, dataset, num_samples: int | None = None, seed: int | None = None) -> None:
        from mmengine.dist import get_dist_info, sync_random_seed

        labels = getattr(dataset, 'labels', None)
        if labels is None:
            raise TypeError(f'ClassBalancedSampler: {type(dataset).__name__} has no `labels` attribute')
        self.by_class = [np.flatnonzero(np.asarray(labels) == c) for c in sorted(set(labels))]
        self.num_samples = int(num_samples or len(labels))
        self.seed = sync_random_seed() if seed is None else int(seed)
        self.rank, self.world_size = get_dist_info()
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng(self.seed + self.epoch)
        cls = rng.integers(len(self.by_class), size=self.num_samples)
        picks = [int(self.by_class[c][rng.integers(len(self.by_class[c]))]) for c in cls]
        return iter(picks[self.rank :: self.world_size])

    def __len__(self) -> int:
        return len(range(self.rank, self.num_samples, self.world_size))
