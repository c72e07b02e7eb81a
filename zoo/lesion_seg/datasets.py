"""Binary-segmentation datasets: the ISIC 2017/2018 layout of the official MHS-VM / VM-UNet code,
and a synthetic lesion set for smoke tests and demos (no download).

Items are ``dict(inputs=Tensor[3, H, W] float32, data_samples=dict(gt_mask=Tensor[1, H, W] float32
in {0, 1}, img_path=str))``; use ``collate_fn=dict(type='default_collate')``.
"""

from __future__ import annotations

import os

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from zoo.registry import DATASETS

IMG_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')
NORMALIZATIONS = ('minmax255', 'imagenet', 'none')


def normalize_image(img: np.ndarray, mode: str = 'minmax255') -> np.ndarray:
    """HWC uint8/float image -> float32.

    ``minmax255``: per-image min-max scaling to [0, 255] (what the official ``myNormalize`` amounts
    to: its per-dataset mean/std cancel out in the min-max step). ``imagenet``: [0, 1] then ImageNet
    mean/std. ``none``: float32 cast.
    """
    x = img.astype(np.float32)
    if mode == 'minmax255':
        lo, hi = float(x.min()), float(x.max())
        return (x - lo) / max(hi - lo, 1e-6) * 255.0
    if mode == 'imagenet':
        mean = np.array([0.485, 0.456, 0.406], np.float32) * 255
        std = np.array([0.229, 0.224, 0.225], np.float32) * 255
        return (x - mean) / std
    if mode == 'none':
        return x
    raise ValueError(f'normalize: expected one of {NORMALIZATIONS}, got {mode!r}')


def build_seg_transform(img_size: int, augment: bool) -> A.Compose:
    """Official augmentation: h/v flips (p 0.5), rotation by 0-360 degrees (p 0.5), resize."""
    ops = []
    if augment:
        ops += [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.Rotate(limit=(0, 360), border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, p=0.5),
        ]
    ops.append(A.Resize(img_size, img_size))
    return A.Compose(ops)


def _to_item(img: np.ndarray, mask: np.ndarray, path: str) -> dict:
    return dict(
        inputs=torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float(),
        data_samples=dict(gt_mask=torch.from_numpy((mask >= 0.5).astype(np.float32))[None], img_path=path),
    )


def _list_images(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f'data_root: expected the folder {folder} (ISIC layout: '
            f'<data_root>/<split>/images and <data_root>/<split>/masks)'
        )
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(IMG_EXTENSIONS))


@DATASETS.register_module()
class ISICSegDataset(Dataset):
    """Image/mask pairs in the layout the official code reads (VM-UNet's prepared ISIC data)::

        <data_root>/<split>/images/*.png|jpg
        <data_root>/<split>/masks/*.png      (0 background, 255 lesion)

    Images and masks are paired in sorted order, as the official ``NPY_datasets`` does (the counts
    must match). VM-UNet's splits are ``train`` and ``val`` (its 30 % test split).

    Args:
        data_root: dataset root.
        split: sub-folder (``'train'``, ``'val'``, ``'test'``).
        img_size: square output size.
        augment: official training augmentation (flips, 0-360 degree rotation).
        normalize: see :func:`normalize_image` (``'minmax255'`` = official).
    """

    def __init__(
        self,
        data_root: str,
        split: str = 'train',
        img_size: int = 256,
        augment: bool = False,
        normalize: str = 'minmax255',
    ) -> None:
        if normalize not in NORMALIZATIONS:
            raise ValueError(f'normalize: expected one of {NORMALIZATIONS}, got {normalize!r}')
        self.images = _list_images(os.path.join(data_root, split, 'images'))
        self.masks = _list_images(os.path.join(data_root, split, 'masks'))
        if len(self.images) != len(self.masks):
            raise ValueError(
                f'data_root: {len(self.images)} images but {len(self.masks)} masks in {os.path.join(data_root, split)}'
            )
        if not self.images:
            raise ValueError(f'data_root: no images in {os.path.join(data_root, split, "images")}')
        self.normalize = normalize
        self.transform = build_seg_transform(img_size, augment)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: int) -> dict:
        from PIL import Image

        from zoo.data import read_rgb

        img = read_rgb(self.images[idx])  # by the file's true bit depth (16-bit dermoscopy TIFFs too)
        with Image.open(self.masks[idx]) as im:
            mask = np.asarray(im.convert('L')).astype(np.float32) / 255.0
        img = normalize_image(img, self.normalize)
        out = self.transform(image=img, mask=mask)
        return _to_item(out['image'], out['mask'], self.images[idx])


def synthetic_lesion(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic dermoscopy-like image: a dark irregular blob on noisy skin. Returns
    (HWC uint8 image, HW {0, 1} mask)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cy, cx = rng.uniform(0.3, 0.7, 2)
    ry, rx = rng.uniform(0.12, 0.3, 2)
    theta = rng.uniform(0, np.pi)
    dy, dx = yy - cy, xx - cx
    u = (dx * np.cos(theta) + dy * np.sin(theta)) / rx
    v = (-dx * np.sin(theta) + dy * np.cos(theta)) / ry
    angle = np.arctan2(v, u)
    phase = rng.uniform(0, 2 * np.pi, 2)
    wobble = 1 + 0.15 * np.sin(3 * angle + phase[0]) + 0.08 * np.sin(5 * angle + phase[1])
    mask = (u**2 + v**2) <= wobble**2
    skin = np.array([rng.uniform(190, 235), rng.uniform(140, 180), rng.uniform(120, 160)], np.float32)
    lesion = skin * rng.uniform(0.35, 0.6)
    img = np.where(mask[..., None], lesion, skin) + rng.normal(0, 12, (size, size, 3))
    img += 20 * np.sin(xx * rng.uniform(3, 9))[..., None]  # uneven illumination
    return np.clip(img, 0, 255).astype(np.uint8), mask.astype(np.float32)


@DATASETS.register_module()
class SyntheticLesionDataset(Dataset):
    """Deterministic synthetic lesion images (item ``i`` depends only on ``seed`` and ``i``).

    Args:
        num_samples: dataset length.
        img_size: square size.
        seed: base seed; use different seeds for train and val.
        augment: official training augmentation.
        normalize: see :func:`normalize_image`.
    """

    def __init__(
        self,
        num_samples: int = 64,
        img_size: int = 64,
        seed: int = 0,
        augment: bool = False,
        normalize: str = 'minmax255',
    ) -> None:
        if num_samples < 1:
            raise ValueError(f'num_samples: must be >= 1, got {num_samples}')
        if normalize not in NORMALIZATIONS:
            raise ValueError(f'normalize: expected one of {NORMALIZATIONS}, got {normalize!r}')
        self.num_samples = num_samples
        self.img_size = img_size
        self.seed = seed
        self.normalize = normalize
        self.transform = build_seg_transform(img_size, augment)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, idx: int) -> dict:
        img, mask = synthetic_lesion(self.img_size, np.random.default_rng([self.seed, idx]))
        out = self.transform(image=normalize_image(img, self.normalize), mask=mask)
        return _to_item(out['image'], out['mask'], f'synthetic_{self.seed}_{idx}')
