"""Synthetic grayscale "chest scans" in the COVIDx label-file layout, for MEDUSA's tests, smoke config and docs::

    root/train/000000.png ...        8-bit grayscale scans
    root/test/000000.png ...
    root/masks/{train,test}/000000.png   the drawn lesion (255 inside), all zero for negatives
    root/train.txt, root/test.txt    one line per image: ``patient_id filename label source``

Each scan is a smooth, unevenly lit field with two darker elliptic "lungs" and noise. A **positive** scan has one
small bright lesion (a soft disc of radius ``size/14 .. size/9``) drawn inside a lung; a negative has none, so the
lesion alone decides the class. Both classes are equally frequent. Each split draws from its own random stream,
so the test split is held out. CLI: ``python tools/make_fixtures.py scans --out DIR``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ('negative', 'positive')


def synthetic_scan(size: int, positive: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One ``(size, size)`` uint8 scan and its lesion mask (float, 1 inside the lesion)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    # uneven illumination: a random linear ramp plus a constant
    img = 0.55 + 0.15 * (rng.uniform(-1, 1) * (xx - 0.5) + rng.uniform(-1, 1) * (yy - 0.5))
    lungs = []
    for side in (-1, 1):
        cx = 0.5 + side * rng.uniform(0.18, 0.24)
        cy = rng.uniform(0.45, 0.55)
        ax, ay = rng.uniform(0.12, 0.16), rng.uniform(0.25, 0.32)
        inside = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 < 1
        img = np.where(inside, img - 0.25, img)
        lungs.append((cx, cy, ax, ay))
    mask = np.zeros((size, size))
    if positive:
        cx, cy, ax, ay = lungs[rng.integers(2)]
        r = rng.uniform(size / 14, size / 9) / size
        t, rho = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.6)
        lx, ly = cx + rho * (ax - r) * np.cos(t), cy + rho * (ay - r) * np.sin(t)
        d = np.sqrt((xx - lx) ** 2 + (yy - ly) ** 2) / r
        blob = np.clip(1.5 - d, 0, 1)  # flat core, soft rim
        img = img + 0.3 * blob
        mask = (d < 1).astype(np.float64)
    img = img + rng.normal(0, 0.04, size=img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8), mask


def make_scan_fixture(
    root: str | os.PathLike, num_train: int = 160, num_test: int = 80, size: int = 64, seed: int = 0
) -> dict:
    """Write ``train`` and ``test`` splits of synthetic scans with COVIDx label files under ``root``.

    Returns ``dict(data_root, num_train, num_test, lesion_fraction)`` (mean lesion area of positive test scans).
    """
    if num_train < 2 or num_test < 2 or size < 32:
        raise ValueError(
            f'make_scan_fixture: need num_train >= 2, num_test >= 2 and size >= 32, got '
            f'num_train={num_train}, num_test={num_test}, size={size}'
        )
    root = Path(root)
    fractions = []
    for k, (split, count) in enumerate((('train', num_train), ('test', num_test))):
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / 'masks' / split).mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(count):
            positive = i % 2 == 1
            img, mask = synthetic_scan(size, positive, np.random.default_rng([seed, k, i]))
            name = f'{i:06d}.png'
            Image.fromarray(img).save(root / split / name)
            Image.fromarray((mask > 0.5).astype(np.uint8) * 255).save(root / 'masks' / split / name)
            lines.append(f'P{k}{i:05d} {name} {CLASSES[int(positive)]} synthetic')
            if split == 'test' and positive:
                fractions.append(float(mask.mean()))
        (root / f'{split}.txt').write_text('\n'.join(lines) + '\n')
    return dict(data_root=str(root), num_train=num_train, num_test=num_test, lesion_fraction=float(np.mean(fractions)))


def _read_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images ``(N, H, W)`` in [0, 1], lesion masks ``(N, H, W)`` bool and labels ``(N,)`` of a written split."""
    images, masks, labels = [], [], []
    for line in (root / f'{split}.txt').read_text().splitlines():
        _, name, label, _ = line.split()
        images.append(np.asarray(Image.open(root / split / name), dtype=np.float32) / 255.0)
        masks.append(np.asarray(Image.open(root / 'masks' / split / name)) > 0)
        labels.append(CLASSES.index(label))
    return np.stack(images), np.stack(masks), np.asarray(labels)


def fit_body_to_masks(
    root: str | os.PathLike,
    out: str | os.PathLike,
    body_size: int = 32,
    dims: tuple[int, ...] = (8, 16, 16, 32, 32),
    decoder_dims: tuple[int, ...] = (32, 32, 16, 8),
    steps: int = 200,
    lr: float = 1e-3,
    batch_size: int = 16,
    seed: int = 0,
    top_percent: float = 0.08,
) -> dict:
    """Pre-train a MEDUSA body on the fixture's lesion masks and save it (``body_checkpoint=`` for the model).

    The stand-in for the reference's pre-trained body (``trained_model.hdf5``, most likely a lung-segmentation
    U-Net): BCE + soft Dice between the body map of the training scans' view (the model's own
    :func:`~zoo.layers.encoder_decoder_attention.body_view`) and the masks resized to ``body_size``. Adam,
    ``steps`` batches drawn with replacement. Scans and masks first go through the datasets' preprocessing
    (:func:`zoo.data.cxr.cxr_crop` with ``top_percent``, back to the scan size). Returns ``dict(path, loss)``
    (the last batch's loss).
    """
    import torch
    import torch.nn.functional as F

    from zoo.data.cxr import cxr_crop
    from zoo.layers.encoder_decoder_attention import UNetBody, body_view

    root = Path(root)
    images, masks, _ = _read_split(root, 'train')
    size = images.shape[-1]
    images = np.stack([cxr_crop(im, size, top_percent) for im in images])
    masks = np.stack([cxr_crop(m.astype(np.uint8) * 255, size, top_percent) > 127 for m in masks])
    torch.manual_seed(seed)
    body = UNetBody(1, dims, decoder_dims)
    views = body_view(torch.from_numpy(images)[:, None], body_size)
    targets = F.interpolate(torch.from_numpy(masks)[:, None].float(), size=body_size, mode='bilinear')
    opt = torch.optim.Adam(body.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    loss = torch.zeros(())
    for _ in range(steps):
        idx = torch.randint(len(views), (batch_size,), generator=gen)
        p, t = body(views[idx]), targets[idx]
        dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
        loss = F.binary_cross_entropy(p, t) + dice
        opt.zero_grad()
        loss.backward()
        opt.step()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(body.state_dict(), out)
    return dict(path=str(out), loss=loss.item())
