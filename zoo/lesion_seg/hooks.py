"""Writes prediction masks as PNG overlays during ``tools/test.py`` (and optionally validation)."""

from __future__ import annotations

import os

import numpy as np
import torch
from mmengine.hooks import Hook

from zoo.registry import HOOKS


def _boundary(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:-1, 1:-1] = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    return mask & ~inner


def to_display(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """A normalised (3, H, W) tensor or HWC array -> HWC uint8 by per-image min-max."""
    if isinstance(image, torch.Tensor):
        x = image.detach().cpu().float().numpy()
    else:
        x = np.asarray(image, np.float32)
    if x.ndim == 3 and x.shape[0] in (1, 3) and x.shape[-1] not in (1, 3):
        x = x.transpose(1, 2, 0)
    lo, hi = float(x.min()), float(x.max())
    x = (x - lo) / max(hi - lo, 1e-6) * 255
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return x.astype(np.uint8)


def save_overlay(
    image: np.ndarray, pred: np.ndarray, path: str, gt: np.ndarray | None = None, alpha: float = 0.45
) -> str:
    """Saves ``image`` (HWC uint8) with the predicted mask tinted red and the ground-truth outline
    in green. Returns the path."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.image as mpimg

    out = image.astype(np.float32).copy()
    pred = np.asarray(pred, bool)
    out[pred] = (1 - alpha) * out[pred] + alpha * np.array([255, 0, 0], np.float32)
    if gt is not None:
        out[_boundary(np.asarray(gt, bool))] = (0, 255, 0)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    mpimg.imsave(path, out.clip(0, 255).astype(np.uint8))
    return path


@HOOKS.register_module()
class SegOverlayHook(Hook):
    """Saves ``<out_dir>/<image name>.png`` overlays (prediction red, ground truth outline green).

    Args:
        out_dir: folder (default ``<work_dir>/overlays``).
        max_images: stop after this many images per run (``None``: all).
        on_val: also write during validation (overwritten each epoch).
    """

    priority = 'LOW'

    def __init__(self, out_dir: str | None = None, max_images: int | None = 32, on_val: bool = False) -> None:
        self.out_dir = out_dir
        self.max_images = max_images
        self.on_val = on_val
        self._count = 0

    def _dir(self, runner) -> str:
        return self.out_dir or os.path.join(runner.work_dir, 'overlays')

    def before_test_epoch(self, runner) -> None:
        self._count = 0

    def before_val_epoch(self, runner) -> None:
        self._count = 0

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._write(runner, data_batch, outputs)

    def after_val_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.on_val:
            self._write(runner, data_batch, outputs)

    def _write(self, runner, data_batch, outputs) -> None:
        if not outputs or data_batch is None:
            return
        inputs = data_batch['inputs']
        for i, out in enumerate(outputs):
            if self.max_images is not None and self._count >= self.max_images:
                return
            name = os.path.splitext(os.path.basename(str(out.get('img_path') or f'img_{self._count}')))[0]
            image = to_display(inputs[i])
            pred = out['pred_mask'][0].cpu().numpy()
            gt = out['gt_mask'][0].cpu().numpy() >= 0.5 if out.get('gt_mask') is not None else None
            save_overlay(image, pred, os.path.join(self._dir(runner), f'{name}.png'), gt)
            self._count += 1
