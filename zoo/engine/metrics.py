"""Classification metrics for mmengine evaluators."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from zoo.registry import METRICS


def evaluate_keyed(metric: BaseMetric, size: int) -> tuple[dict, int | None]:
    """``BaseMetric.evaluate`` for results whose first field is a sample key (index, or (split, index)):
    gathered from every rank and de-duplicated by key, so the sampler's DDP padding counts each image once.
    Without keys, mmengine's own collection. Returns the prefixed metrics and the number of images scored."""
    if not metric.results or any(r[0] is None for r in metric.results):
        return BaseMetric.evaluate(metric, size), getattr(metric, 'num_samples', None)
    from mmengine.dist import all_gather_object, get_world_size

    parts = all_gather_object(metric.results) if get_world_size() > 1 else [metric.results]
    unique: dict = {}
    for part in parts:
        for r in part:
            unique.setdefault(r[0], r)  # DDP padding repeats indices: count each image once
    results = [unique[k] for k in sorted(unique)]
    metric.results.clear()
    out = metric.compute_metrics(results)
    return {f'{metric.prefix}/{k}' if metric.prefix else k: v for k, v in out.items()}, len(results)


@METRICS.register_module()
class Accuracy(BaseMetric):
    """Top-k accuracy in percent over the samples actually read. Reports ``accuracy/top1``, ...

    Expects model predictions as dicts with ``pred_score`` (Tensor[K]) and ``gt_label``.
    ``k`` larger than the number of classes is clipped to it.

    Samples a dataset could not read are left out of their batch (``zoo.engine.SkippedSamplesHook``),
    never replaced, so the accuracy is over the images read; the metric logs
    ``accuracy over N of M images; K skipped`` (M = dataset length). When the batches carry
    ``data_samples['sample_idx']`` (the zoo's image datasets), results are keyed by it: under DDP the
    sampler's padding duplicates and uneven per-rank counts are resolved exactly, each image counted once.
    After ``evaluate``, ``num_samples`` and ``num_skipped`` hold the last counts.
    """

    default_prefix = 'accuracy'

    def __init__(self, topk: Sequence[int] = (1,), collect_device: str = 'cpu', prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = tuple(topk)
        self.num_samples: int | None = None
        self.num_skipped: int | None = None

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        index = _sample_indices(data_batch, len(data_samples))
        for i, sample in enumerate(data_samples):
            idx = index[i] if index is not None else None
            self.results.append((idx, sample['pred_score'].detach().cpu(), int(sample['gt_label'])))

    def evaluate(self, size: int) -> dict:
        metrics, n = evaluate_keyed(self, size)
        self.num_skipped = max(size - n, 0) if n is not None else None
        msg = f'{self.prefix or "accuracy"} over {n} of {size} images; {self.num_skipped} skipped'
        print_log(msg, logger='current')
        return metrics

    def compute_metrics(self, results: list) -> dict[str, float]:
        self.num_samples = len(results)
        if not results:
            return {f'top{k}': float('nan') for k in self.topk}
        scores = torch.stack([s for _, s, _ in results])
        labels = torch.tensor([lab for _, _, lab in results])
        out = {}
        for k in self.topk:
            top = scores.topk(min(k, scores.shape[1]), dim=1).indices
            out[f'top{k}'] = (top == labels[:, None]).any(dim=1).float().mean().item() * 100.0
        return out


def _sample_indices(data_batch, n: int) -> list[int] | None:
    """``data_samples['sample_idx']`` of a collated batch (dict or list of dicts), or None."""
    ds = data_batch.get('data_samples') if isinstance(data_batch, dict) else None
    if isinstance(ds, dict) and 'sample_idx' in ds:
        idx = torch.as_tensor(ds['sample_idx']).view(-1).tolist()
    elif isinstance(ds, (list, tuple)) and ds and all(isinstance(d, dict) and 'sample_idx' in d for d in ds):
        idx = [int(d['sample_idx']) for d in ds]
    else:
        return None
    return [int(i) for i in idx] if len(idx) == n else None
