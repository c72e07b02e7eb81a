"""DSC / IoU for binary segmentation, as the official ``engine.test_one_epoch`` computes them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.evaluator import BaseMetric

from zoo.registry import METRICS


@METRICS.register_module()
class BinarySegMetric(BaseMetric):
    """One pixel confusion matrix over the whole evaluation set (not a per-image mean):
    DSC = 2TP / (2TP + FP + FN), IoU ("mIoU" in the paper) = TP / (TP + FP + FN) (foreground IoU,
    not a class mean), plus accuracy, specificity and sensitivity. Ground truth is ``gt_mask >= 0.5``;
    predictions are ``pred_prob >= threshold``.

    Args:
        threshold: probability threshold (official 0.5).
        prefix: metric key prefix (default ``'seg'``: keys ``seg/dsc``, ``seg/miou``, ...).
    """

    default_prefix = 'seg'

    def __init__(self, threshold: float = 0.5, collect_device: str = 'cpu', prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not 0.0 < threshold < 1.0:
            raise ValueError(f'threshold: must be in (0, 1), got {threshold}')
        self.threshold = threshold

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            pred = s['pred_prob'].detach() >= self.threshold
            gt = torch.as_tensor(s['gt_mask']).to(pred.device) >= 0.5
            tp = int((pred & gt).sum())
            fp = int((pred & ~gt).sum())
            fn = int((~pred & gt).sum())
            tn = int((~pred & ~gt).sum())
            self.results.append((tp, fp, fn, tn))

    def compute_metrics(self, results: list) -> dict[str, float]:
        tp, fp, fn, tn = (sum(r[i] for r in results) for i in range(4))
        return dict(
            dsc=2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0,
            miou=tp / (tp + fp + fn) if (tp + fp + fn) else 0.0,
            accuracy=(tp + tn) / (tp + fp + fn + tn) if (tp + fp + fn + tn) else 0.0,
            specificity=tn / (tn + fp) if (tn + fp) else 0.0,
            sensitivity=tp / (tp + fn) if (tp + fn) else 0.0,
        )
