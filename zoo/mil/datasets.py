"""Bag datasets: per-slide feature files (``<feat_dir>/<slide>.h5``) plus a CSV of labels and splits.

CSV columns (header required): ``slide``, ``label``, ``split`` (``train`` / ``val`` / ``test``).
The official BRACS CSV's ``slide_id`` and ``split_info`` are accepted as aliases. ``label`` is an
integer, or a class name when ``classes`` is given; ``label_map`` then remaps integers (BRACS: the
7 subtypes to 3 classes with ``{0: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 2, 6: 2}``).

A slide listed in the CSV without a feature file (its extraction failed) is reported once and left
out; a dataset left empty is an error.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from zoo.registry import DATASETS

_ALIASES = dict(slide=('slide', 'slide_id'), label=('label',), split=('split', 'split_info'))


def read_slide_table(csv_path: str | Path) -> list[dict]:
    """Rows of the slide CSV as dicts with keys ``slide``, ``label``, ``split``."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f'{csv_path}: slide CSV not found')
    with open(csv_path, newline='') as f:
        reader = csv.DictReader(f)
        cols = {}
        for key, names in _ALIASES.items():
            hit = next((n for n in names if n in (reader.fieldnames or [])), None)
            if hit is None:
                raise ValueError(f'{csv_path}: needs a column {" or ".join(names)} (has {reader.fieldnames})')
            cols[key] = hit
        return [{k: row[c].strip() for k, c in cols.items()} for row in reader]


@DATASETS.register_module()
class MILBagDataset(Dataset):
    """Slides of one split as bags of features.

    Args:
        feat_dir: folder of ``<slide>.h5`` feature files (``tools/wsi_extract.py``).
        csv_path: the slide table (see the module docstring).
        split: ``'train'``, ``'val'`` or ``'test'`` (several: ``'train,val'``).
        classes: class names, when the CSV's labels are names.
        label_map: integer label remapping (e.g. BRACS 7 -> 3 classes).
        cache: keep the bags in memory after the first read (the official code loads all).

    ``__getitem__`` returns ``dict(inputs=Tensor[N, D] float32, data_samples=dict(gt_label=int64 scalar,
    slide=name))``; with batch size 1 and ``default_collate`` the model gets ``(1, N, D)``.
    """

    def __init__(
        self,
        feat_dir: str,
        csv_path: str,
        split: str = 'train',
        classes: list[str] | None = None,
        label_map: dict | None = None,
        cache: bool = True,
    ) -> None:
        self.feat_dir = Path(feat_dir)
        if not self.feat_dir.is_dir():
            raise FileNotFoundError(f'{self.feat_dir}: feature folder not found (run tools/wsi_extract.py)')
        splits = {s.strip() for s in split.split(',')}
        self.classes = list(classes) if classes else None
        self.label_map = {int(k): int(v) for k, v in (label_map or {}).items()}
        rows = [r for r in read_slide_table(csv_path) if r['split'] in splits]
        missing = [r['slide'] for r in rows if not (self.feat_dir / f'{r["slide"]}.h5').is_file()]
        if missing:
            more = ' ...' if len(missing) > 5 else ''
            warnings.warn(
                f'{csv_path}: {len(missing)} {split} slide(s) have no features in {self.feat_dir} '
                f'and are left out: {", ".join(missing[:5])}{more}',
                stacklevel=2,
            )
        gone = set(missing)
        self.items = [(r['slide'], self._label(r['label'], csv_path)) for r in rows if r['slide'] not in gone]
        if not self.items:
            raise ValueError(f'{csv_path}: no {split!r} slides with features in {self.feat_dir}')
        self.cache = cache
        self._bags: dict[int, torch.Tensor] = {}

    def _label(self, raw: str, csv_path) -> int:
        if self.classes is not None and raw in self.classes:
            y = self.classes.index(raw)
        else:
            try:
                y = int(raw)
            except ValueError:
                raise ValueError(f'{csv_path}: label {raw!r} is no integer nor in {self.classes}') from None
        return self.label_map.get(y, y)

    @property
    def metainfo(self) -> dict:
        return dict(classes=self.classes)

    def __len__(self) -> int:
        return len(self.items)

    def load_bag(self, i: int) -> torch.Tensor:
        """Features of slide ``i``: ``(N, D)`` float32."""
        if i in self._bags:
            return self._bags[i]
        path = self.feat_dir / f'{self.items[i][0]}.h5'
        try:
            with h5py.File(path, 'r') as f:
                bag = torch.from_numpy(np.asarray(f['feat'][:], dtype=np.float32))
        except (OSError, KeyError) as err:
            raise OSError(f'{path}: unreadable feature file ({err})') from None
        if self.cache:
            self._bags[i] = bag
        return bag

    def __getitem__(self, i: int) -> dict:
        slide, label = self.items[i]
        return dict(inputs=self.load_bag(i), data_samples=dict(gt_label=torch.tensor(label), slide=slide))
