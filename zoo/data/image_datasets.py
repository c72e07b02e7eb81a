"""Image-classification datasets on disk: ImageNet-style folders and CSV lists, and the image reader.

Reading rule (:func:`read_rgb`): every image becomes an ``(H, W, 3)`` uint8 RGB array, scaled by the
true bit depth of the file, never clipped:

* 8-bit data (``L``, ``RGB``, ``P``, ``CMYK``, ``1``, ...) is converted by PIL as usual;
* 16-bit samples (16-bit grayscale or RGB(A) PNG/TIFF) are mapped with ``round(v / 257)``, i.e.
  ``v * 255 / 65535``, so 0 -> 0 and 65535 -> 255 (PIL alone clips 16-bit grayscale to 255, which
  made such images almost pure white; its 16-bit RGB keeps only the high byte);
* other integer samples (32-bit TIFF) are scaled by the maximum of their type (``2**31 - 1``);
* float samples (``F`` mode TIFF) are intensities in ``[0, 1]``; a float image outside that range
  (beyond half a level) has no defined scale and is reported as unreadable instead of being guessed;
* alpha (``RGBA``, ``LA``, ``PA``, palette transparency) is dropped, keeping the stored colours, as
  timm's and torchvision's loaders do.

Unreadable images: a dataset item whose file cannot be decoded is a :class:`~zoo.data.skipping.SkippedSample`
(path and reason) instead of an image. The runner's ``SkippedSamplesHook`` (added to every run by the tools)
drops those from their batch, so metrics count only the images actually read, and lists every skipped
file with its reason at the end of the run. Without the hook (``skip_unreadable`` left at ``None``) an
unreadable image raises ``OSError`` naming the file, so nothing is silently replaced.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from zoo.data.skipping import SkippedSample
from zoo.data.transforms import build_pipeline
from zoo.registry import DATASETS

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


class UnreadableImageError(OSError):
    """An image file that cannot be decoded or has no defined intensity scale; ``str()`` names the file."""


def _scale_to_uint8(arr: np.ndarray, path: str) -> np.ndarray:
    """Samples of any depth -> uint8 by the rule in the module docstring."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == 'f':
        arr = arr.astype(np.float64)
        finite = arr[np.isfinite(arr)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if finite.size != arr.size or lo < -0.5 / 255 or hi > 1 + 0.5 / 255:
            raise UnreadableImageError(
                f'cannot decode image {path}: float samples in [{lo:.4g}, {hi:.4g}] (non-finite values: '
                f'{arr.size - finite.size}); float images must hold intensities in [0, 1]'
            )
        return np.rint(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8)
    if arr.dtype.kind in 'ui':
        # 16-bit data (PIL's I;16 and I;16B, cv2's uint16) -> /257; wider integers by their type maximum.
        top = 65535.0 if arr.dtype.itemsize <= 2 else float(np.iinfo(arr.dtype).max)
        return np.rint(np.clip(arr.astype(np.float64), 0.0, top) * (255.0 / top)).astype(np.uint8)
    raise UnreadableImageError(f'cannot decode image {path}: unsupported sample type {arr.dtype}')


def _rawmode(im) -> str:
    """The decoder's raw mode before loading ('RGB;16B' for a 16-bit RGB PNG), or ''."""
    try:
        args = im.tile[0][3]
    except (AttributeError, IndexError, TypeError):
        return ''
    return str(args[0] if isinstance(args, tuple) else args)


def _read_wide_colour(path: str) -> np.ndarray | None:
    """16-bit RGB(A) / gray+alpha at full precision through OpenCV (PIL keeps only the high byte)."""
    try:
        import cv2
    except ImportError:
        return None
    data = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if data is None or data.dtype != np.uint16:
        return None
    if data.ndim == 2:
        return np.repeat(data[..., None], 3, axis=2)
    if data.shape[2] == 2:  # gray + alpha
        return np.repeat(data[..., :1], 3, axis=2)
    return np.ascontiguousarray(data[..., 2::-1])  # BGR(A) -> RGB


def read_rgb(path: str) -> np.ndarray:
    """Decode an image file to an ``(H, W, 3)`` uint8 RGB array, scaled by its true bit depth
    (see the module docstring). Raises :class:`UnreadableImageError` (an ``OSError``) naming the file."""
    from PIL import Image

    path = str(path)
    try:
        with Image.open(path) as im:
            mode, raw = im.mode, _rawmode(im)
            if mode not in ('I', 'F') and not mode.startswith('I;16') and ';16' in raw:
                wide = _read_wide_colour(path)  # 16-bit RGB / RGBA / LA
                if wide is not None:
                    return _scale_to_uint8(wide, path)
            if mode == 'P':
                im = im.convert('RGBA' if 'transparency' in im.info else 'RGB')
                mode = im.mode
            if mode in ('I', 'F') or mode.startswith('I;16'):
                arr = np.asarray(im)
                if mode == 'I' and ';16' in raw:  # a 16-bit file PIL widened to 32 bits
                    arr = arr.astype(np.uint16)
                gray = _scale_to_uint8(arr, path)
                return np.repeat(gray[..., None], 3, axis=2)
            return np.asarray(im.convert('RGB'))
    except UnreadableImageError:
        raise
    except Exception as err:  # PIL raises many types for truncated/corrupt data
        raise UnreadableImageError(f'cannot decode image {path}: {err}') from None


class _ImageListDataset(Dataset):
    """(path, label) samples + an albumentations pipeline; items are
    ``dict(inputs=Tensor[3, H, W], data_samples=dict(gt_label=int, sample_idx=int))``, or a
    :class:`SkippedSample` for an unreadable file when ``skip_unreadable`` is set.

    ``skip_unreadable``: ``None`` (default) skips when the run has a ``SkippedSamplesHook`` (the tools add
    one) and raises otherwise; ``True`` always returns the sentinel (use
    :class:`zoo.data.SkipCollate` in your DataLoader); ``False`` always raises.
    """

    def __init__(
        self,
        samples: list[tuple[str, int]],
        classes: Sequence[str],
        pipeline: Sequence[dict] | None,
        skip_unreadable: bool | None = None,
    ):
        if not samples:
            raise ValueError(f'{type(self).__name__}: no images found')
        self.samples = samples
        self.classes = tuple(classes)
        self.metainfo = dict(classes=self.classes)
        self.transform = build_pipeline(pipeline)
        self.skip_unreadable = skip_unreadable

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict | SkippedSample:
        path, label = self.samples[i]
        try:
            image = read_rgb(path)
        except OSError as err:
            if not self.skip_unreadable:
                hint = (
                    ''
                    if self.skip_unreadable is False
                    else (' (add SkippedSamplesHook to custom_hooks, or pass skip_unreadable=True, to skip such files)')
                )
                raise UnreadableImageError(f'{type(self).__name__}[{i}]: {err}{hint}') from None
            return SkippedSample(path=path, reason=_reason(err, path), index=i)
        return dict(inputs=self.transform(image), data_samples=dict(gt_label=label, sample_idx=i))


def _reason(err: OSError, path: str) -> str:
    text = str(err)
    prefix = f'cannot decode image {path}: '
    return text[len(prefix) :] if text.startswith(prefix) else text


@DATASETS.register_module()
class ImageFolderDataset(_ImageListDataset):
    """``data_root/split/<class>/<image>`` (ImageNet layout); classes sorted by folder name.

    Args:
        data_root: dataset root.
        split: sub-folder (``'train'``, ``'val'``); ``''`` uses ``data_root`` itself.
        pipeline: albumentations transform dicts (see ``zoo.data.transforms``).
        skip_unreadable: see :class:`_ImageListDataset`.
    """

    def __init__(
        self,
        data_root: str,
        split: str = 'train',
        pipeline: Sequence[dict] | None = None,
        skip_unreadable: bool | None = None,
    ) -> None:
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
        super().__init__(samples, classes, pipeline, skip_unreadable)


@DATASETS.register_module()
class CsvImageDataset(_ImageListDataset):
    """A CSV list with columns ``path,label`` (header required; paths relative to ``data_root``).

    Labels may be integers or class names; names are mapped to sorted indices.
    """

    def __init__(
        self,
        ann_file: str,
        data_root: str = '',
        pipeline: Sequence[dict] | None = None,
        skip_unreadable: bool | None = None,
    ) -> None:
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
        super().__init__(samples, classes, pipeline, skip_unreadable)
