"""Model EMA that is evaluated next to the raw weights (as the official CSwin / Agent-CSwin ``main_ema.py`` and the
QSD-Transformer ``main_finetune.py`` report both)."""

from __future__ import annotations

import torch
from mmengine.hooks import EMAHook

from zoo.registry import HOOKS


@HOOKS.register_module()
class ModelEMAHook(EMAHook):
    """mmengine's ``EMAHook`` (``momentum = 1 - decay``; validation, checkpoints and the ``model.safetensors`` export
    use the EMA weights) that also evaluates the raw weights after each validation and logs them as ``raw/<metric>``
    (``val/raw/accuracy/top1`` in the message hub and the log line). The best checkpoint is still chosen by the EMA
    metrics.

    Args:
        decay: the EMA decay of the official scripts (timm ``ModelEma(decay=)``); sets ``momentum = 1 - decay``.
        eval_raw: also evaluate the raw weights (default True).
        **kwargs: ``EMAHook``'s (``ema_type``, ``begin_iter``, ``begin_epoch``, ``update_buffers``, ...).
    """

    priority = 'NORMAL'

    def __init__(self, decay: float | None = None, eval_raw: bool = True, **kwargs) -> None:
        if decay is not None:
            if 'momentum' in kwargs:
                raise KeyError('ModelEMAHook: give decay or momentum, not both')
            kwargs['momentum'] = 1.0 - float(decay)
        kwargs.setdefault('update_buffers', True)  # as timm's ModelEma: buffers (BN statistics) are averaged too
        super().__init__(**kwargs)
        self.eval_raw = eval_raw

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # tools/test.py loads the checkpoint before the run starts, when there is no EMA model yet: the checkpoint's
        # state_dict already holds the EMA weights (mmengine saves them there), and before_run copies them.
        if not hasattr(self, 'ema_model'):
            return
        super().after_load_checkpoint(runner, checkpoint)

    def after_val_epoch(self, runner, metrics: dict | None = None) -> None:
        super().after_val_epoch(runner, metrics)  # the raw weights are back in the model
        if not self.eval_raw:
            return
        raw = self.evaluate(runner)
        for key, value in raw.items():
            runner.message_hub.update_scalar(f'val/raw/{key}', value)
            if metrics is not None:
                metrics[f'raw/{key}'] = value

    @staticmethod
    @torch.no_grad()
    def evaluate(runner) -> dict:
        """The validation metrics of the model's current (raw) weights, through the val loop's loader and
        evaluator; no hooks are called."""
        loop = runner.val_loop
        model = runner.model
        model.eval()
        for data_batch in loop.dataloader:
            outputs = model.val_step(data_batch)
            loop.evaluator.process(data_samples=outputs, data_batch=data_batch)
        return loop.evaluator.evaluate(len(loop.dataloader.dataset))
