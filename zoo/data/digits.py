"""scikit-learn's handwritten digits as an image-classification dataset (the embedded default).

1,797 real 8x8 grey-level scans of the digits 0-9 (UCI ML digits, shipped inside scikit-learn,
so nothing is downloaded). Resized to ``img_size`` and repeated to 3 channels so ImageNet-shaped
models take them unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from zoo.data.transforms import build_pipeline
from zoo.registry import DATASETS

_SPLIT_SEED = 0
_VAL_FRACTION = 0.2


def _split_indices(labels: torch.Tensor, split: str) -> torch.Tensor:
    """Stratified, seeded 80/20 split: the same images land in 'val' on every machine."""
    gen = torch.Generator().manual_seed(_SPLIT_SEED)
    train, val = [], []
    for c in labels.unique():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_val = round(len(idx) * _VAL_FRACTION)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return torch.cat(val if split == 'val' else train).sort().values


@DATASETS.register_module()
class DigitsDataset(Dataset):
    """Digits split ``'train'`` (1,438 images) or ``'val'`` (359 images).

    Args:
        split: ``'train'`` or ``'val'``.
        img_size: output side; images are ``Tensor[3, img_size, img_size]``, normalised to [-1, 1].
        augment: random shifts of up to 1/8 of the side (training only).
        pipeline: instead of ``augment``, an image pipeline (``zoo.data.transforms``; e.g. timm's
            ``TimmTransform`` with RandAugment and random erasing) applied to the ``img_size`` image as an
            HWC uint8 RGB array; it should normalise with mean = std = 0.5 to keep the [-1, 1] range.
        digits: keep only these digits, relabelled ``0..len(digits)-1`` in the order given (a new label set,
            e.g. for the fine-tuning example); ``None`` keeps all ten.

    Items are ``dict(inputs=Tensor[3, S, S], data_samples=dict(gt_label=int))``.
    """

    classes = tuple(str(i) for i in range(10))

    def __init__(
        self,
        split: str = 'train',
        img_size: int = 32,
        augment: bool = False,
        pipeline: Sequence[dict] | None = None,
        digits: Sequence[int] | None = None,
    ) -> None:
        from sklearn.datasets import load_digits

        if split not in ('train', 'val'):
            raise ValueError(f"DigitsDataset split must be 'train' or 'val', got {split!r}")
        if augment and pipeline:
            raise ValueError('DigitsDataset: give either augment=True or a pipeline, not both')
        data = load_digits()
        images = torch.tensor(data.images, dtype=torch.float32) / 16.0  # [N, 8, 8] in [0, 1]
        labels = torch.tensor(data.target, dtype=torch.long)
        keep = _split_indices(labels, split)
        images = F.interpolate(images[keep, None], size=(img_size, img_size), mode='bilinear', align_corners=False)
        self.images = ((images - 0.5) / 0.5).expand(-1, 3, -1, -1).contiguous()
        self.labels = labels[keep]
        if digits is not None:
            digits = [int(d) for d in digits]
            if not digits or len(set(digits)) != len(digits) or not set(digits) <= set(range(10)):
                raise ValueError(f'DigitsDataset digits must be distinct values in 0..9, got {digits}')
            chosen = torch.isin(self.labels, torch.tensor(digits))
            self.images = self.images[chosen]
            self.labels = torch.tensor([digits.index(int(y)) for y in self.labels[chosen]], dtype=torch.long)
            self.classes = tuple(str(d) for d in digits)
        self.augment = augment
        self.transform = build_pipeline(pipeline) if pipeline else None
        self.max_shift = max(1, img_size // 8)
        self.metainfo = dict(classes=self.classes)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        img = self.images[i]
        if self.augment:
            dy, dx = torch.randint(-self.max_shift, self.max_shift + 1, (2,)).tolist()
            img = torch.roll(img, shifts=(dy, dx), dims=(1, 2))
        elif self.transform is not None:
            pixels = ((img * 0.5 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            img = self.transform(pixels)
        return dict(inputs=img, data_samples=dict(gt_label=int(self.labels[i])))


def write_digit_images(out: str, count: int = 1, img_size: int = 32, split: str = 'val') -> list[str]:
    """Write the first ``count`` images of ``split`` as PNGs ``out/digit_<i>_label<y>.png`` (grey, ``img_size``
    square): the pixels ``DigitsDataset`` gives the model, before its [-1, 1] scaling. Sample inputs for tools
    that take image files (tools/attention_map.py on a digits run). Returns the paths."""
    import os

    from PIL import Image

    ds = DigitsDataset(split=split, img_size=img_size, augment=False)
    os.makedirs(out, exist_ok=True)
    paths = []
    for i in range(min(count, len(ds))):
        grey = ((ds.images[i, 0] * 0.5 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        path = os.path.join(out, f'digit_{i}_label{int(ds.labels[i])}.png')
        Image.fromarray(grey).save(path)  # uint8 (H, W): mode L
        paths.append(path)
    return paths
