"""Slide-level metrics for MIL: macro AUC, accuracy, macro-F1, micro-F1 and the selection key.

The official ACMIL code logs ``torchmetrics.F1Score(task='multiclass')``, whose default average is
*micro*: for single-label data that equals accuracy. Both F1s are reported here, labelled.

Choice (documented in docs/acmil.md): the model-selection key ``f1_auc`` is ``f1_macro + auc_macro``
by default (the paper selects by "F1 + AUC"); ``select_f1='micro'`` reproduces the official code's
``accuracy + AUC``. All values are fractions in [0, 1] (not percent), as in the paper's tables.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from sklearn.metrics import f1_score, roc_auc_score

from zoo.registry import METRICS


def macro_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """One-vs-rest AUC averaged over classes (binary: AUC of the positive-class score).

    Classes with no positive or no negative sample have no AUC and are left out of the mean
    (``nan`` when none is left).
    """
    num_classes = scores.shape[1]
    if num_classes == 2:
        classes = [1]
    else:
        classes = range(num_classes)
    aucs = []
    for c in classes:
        y = labels == c
        if y.all() or not y.any():
            continue
        aucs.append(roc_auc_score(y, scores[:, c]))
    return float(np.mean(aucs)) if aucs else float('nan')


@METRICS.register_module()
class MILMetric(BaseMetric):
    """Reports ``mil/auc_macro``, ``mil/accuracy``, ``mil/f1_macro``, ``mil/f1_micro`` and ``mil/f1_auc``.

    Expects predictions as dicts with ``pred_score`` (Tensor[C], softmax) and ``gt_label``. Use
    ``default_hooks.checkpoint.save_best='mil/f1_auc'`` for the official model selection.

    Args:
        select_f1: ``'macro'`` (default) or ``'micro'``: which F1 enters ``f1_auc``.
    """

    default_prefix = 'mil'

    def __init__(self, select_f1: str = 'macro', collect_device: str = 'cpu', prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if select_f1 not in ('macro', 'micro'):
            raise ValueError(f"MILMetric.select_f1 must be 'macro' or 'micro', got {select_f1!r}")
        self.select_f1 = select_f1

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        for s in data_samples:
            self.results.append((s['pred_score'].detach().float().cpu().numpy(), int(s['gt_label'])))

    def compute_metrics(self, results: list) -> dict[str, float]:
        scores = np.stack([s for s, _ in results])
        labels = np.array([y for _, y in results])
        pred = scores.argmax(axis=1)
        auc = macro_auc(scores, labels)
        if math.isnan(auc):
            warnings.warn('MILMetric: AUC undefined (only one class in the evaluated slides)', stacklevel=2)
        out = dict(
            auc_macro=auc,
            accuracy=float((pred == labels).mean()),
            f1_macro=float(f1_score(labels, pred, average='macro', zero_division=0)),
            f1_micro=float(f1_score(labels, pred, average='micro', zero_division=0)),
        )
        out['f1_auc'] = out[f'f1_{self.select_f1}'] + (0.0 if math.isnan(auc) else auc)
        return out
