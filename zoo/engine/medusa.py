"""MEDUSA training glue: the COVID-Net report metric and the alternating body / trunk schedule.

* :class:`CXRReport`: accuracy, per-class sensitivity (recall) and PPV (precision), the numbers COVID-Net
  reports (``master:eval.py``), plus the macro one-vs-rest AUC that the MEDUSA paper adds for RICORD / RSNA.
* :class:`BodyTrunkAlternationHook`: the first schedule of the development code (``COVX@727cc7b:train_tf.py``):
  on epochs with ``epoch % period == 0`` only the body and its heads (the ``sem*`` variables) update, on the
  others only the trunk and the classifier. Without the hook training is joint, the final schedule
  (``9fed4b3``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from zoo.engine.metrics import _sample_indices, evaluate_keyed
from zoo.registry import HOOKS, METRICS

__all__ = ['BodyTrunkAlternationHook', 'CXRReport', 'macro_auc', 'roc_auc']


def roc_auc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` ``(N,)`` for the boolean labels ``positive`` ``(N,)``: the
    Mann-Whitney probability that a positive outranks a negative, ties counted half. NaN without both classes."""
    pos, neg = scores[positive], scores[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return float('nan')
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).float().mean() + 0.5 * (diff == 0).float().mean()).item()


def macro_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean one-vs-rest AUC over the classes present in ``labels`` (``scores``: ``(N, K)`` probabilities)."""
    aucs = [roc_auc(scores[:, k], labels == k) for k in range(scores.shape[1]) if (labels == k).any()]
    aucs = [a for a in aucs if a == a]
    return float(sum(aucs) / len(aucs)) if aucs else float('nan')


@METRICS.register_module()
class CXRReport(BaseMetric):
    """COVID-Net's evaluation report, in percent: ``accuracy``, ``sensitivity/<class>``, ``ppv/<class>`` and
    ``auc`` (macro one-vs-rest over the classes present).

    Sensitivity of class k = TP_k / (images of class k); PPV = TP_k / (images predicted k), NaN when none is.
    Predictions are the argmax of ``pred_score``. Results are keyed by ``sample_idx`` like :class:`Accuracy`, so
    DDP padding counts each image once.

    Args:
        classes: class names for the keys (default ``'0'``, ``'1'``, ...).
    """

    default_prefix = 'cxr'

    def __init__(
        self, classes: Sequence[str] | None = None, collect_device: str = 'cpu', prefix: str | None = None
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.classes = tuple(classes) if classes is not None else None

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        index = _sample_indices(data_batch, len(data_samples))
        for i, sample in enumerate(data_samples):
            idx = index[i] if index is not None else None
            self.results.append((idx, sample['pred_score'].detach().cpu().float(), int(sample['gt_label'])))

    def evaluate(self, size: int) -> dict:
        metrics, n = evaluate_keyed(self, size)
        print_log(f'{self.prefix or "cxr"} report over {n} of {size} images', logger='current')
        return metrics

    def compute_metrics(self, results: list) -> dict[str, float]:
        if not results:
            return {'accuracy': float('nan')}
        scores = torch.stack([s for _, s, _ in results])
        labels = torch.tensor([lab for _, _, lab in results])
        num_classes = scores.shape[1]
        names = self.classes or tuple(str(k) for k in range(num_classes))
        if len(names) != num_classes:
            raise ValueError(f'CXRReport: classes has {len(names)} names but the model scores {num_classes} classes')
        pred = scores.argmax(1)
        out = {'accuracy': (pred == labels).float().mean().item() * 100.0}
        for k, name in enumerate(names):
            tp = ((pred == k) & (labels == k)).sum().item()
            n_true, n_pred = (labels == k).sum().item(), (pred == k).sum().item()
            out[f'sensitivity/{name}'] = 100.0 * tp / n_true if n_true else float('nan')
            out[f'ppv/{name}'] = 100.0 * tp / n_pred if n_pred else float('nan')
        out['auc'] = 100.0 * macro_auc(scores, labels)
        return out


def _medusa_of(model: torch.nn.Module) -> torch.nn.Module:
    if is_model_wrapper(model):
        model = model.module
    for m in model.modules():
        if hasattr(m, 'set_body_trainable') and hasattr(m, 'body_parameters'):
            return m
    raise TypeError(f'BodyTrunkAlternationHook: {type(model).__name__} holds no MEDUSA model')


@HOOKS.register_module()
class BodyTrunkAlternationHook(Hook):
    """Alternate which part trains, per epoch (``COVX@727cc7b:train_tf.py``).

    Epochs before ``warmup_epochs`` train jointly. After them, epoch ``e`` trains only the body and heads when
    ``(e - warmup_epochs) % period == 0``, else only the trunk and classifier (the development code: period 3,
    ``in_sem`` warm-up). Frozen parameters get no gradient, so the optimiser leaves them (and their moments)
    alone. After training everything is trainable again.

    Args:
        period: epochs per cycle (one body epoch, ``period - 1`` trunk epochs).
        warmup_epochs: joint epochs first.
    """

    priority = 'NORMAL'

    def __init__(self, period: int = 3, warmup_epochs: int = 0) -> None:
        if period < 2 or warmup_epochs < 0:
            raise ValueError(
                f'BodyTrunkAlternationHook: need period >= 2 and warmup_epochs >= 0, got {period}, {warmup_epochs}'
            )
        self.period = period
        self.warmup_epochs = warmup_epochs

    def phase(self, epoch: int) -> str:
        """``'joint'``, ``'body'`` or ``'trunk'`` for a 0-based epoch."""
        if epoch < self.warmup_epochs:
            return 'joint'
        return 'body' if (epoch - self.warmup_epochs) % self.period == 0 else 'trunk'

    def before_train_epoch(self, runner) -> None:
        model = _medusa_of(runner.model)
        phase = self.phase(runner.epoch)
        body = {id(p) for p in model.body_parameters()}
        for p in model.parameters():
            p.requires_grad_(phase == 'joint' or (id(p) in body) == (phase == 'body'))
        runner.logger.info(f'BodyTrunkAlternationHook: epoch {runner.epoch} trains {phase}')

    def after_train(self, runner) -> None:
        for p in _medusa_of(runner.model).parameters():
            p.requires_grad_(True)
