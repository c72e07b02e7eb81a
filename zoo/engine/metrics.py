"""Classification metrics for mmengine evaluators."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.evaluator import BaseMetric

from zoo.registry import METRICS


@METRICS.register_module()
class Accuracy(BaseMetric):
    """Top-k accuracy in percent. Reports ``accuracy/top1``, ``accuracy/top5``, ...

    Expects model predictions as dicts with ``pred_score`` (Tensor[K]) and ``gt_label``.
    ``k`` larger than the number of classes is clipped to it.
    """

    default_prefix = 'accuracy'

    def __init__(self, topk: Sequence[int] = (1,), collect_device: str = 'cpu', prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = tuple(topk)

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            self.results.append((sample['pred_score'].detach().cpu(), int(sample['gt_label'])))

    def compute_metrics(self, results: list) -> dict[str, float]:
        scores = torch.stack([s for s, _ in results])
        labels = torch.tensor([l for _, l in results])
        out = {}
        for k in self.topk:
            top = scores.topk(min(k, scores.shape[1]), dim=1).indices
            out[f'top{k}'] = (top == labels[:, None]).any(dim=1).float().mean().item() * 100.0
        return out
