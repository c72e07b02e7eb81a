"""mmengine model wrapper that turns any timm model (zoo or timm) into a trainable classifier."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from mmengine.model import BaseModel

from zoo.registry import MODELS


@MODELS.register_module()
class TimmClassifier(BaseModel):
    """Cross-entropy classifier over ``timm.create_model(model_name, **model_kwargs)``.

    Args:
        model_name: any name from ``timm.list_models()`` (``import zoo`` adds the zoo's).
        model_kwargs: keyword arguments for ``timm.create_model`` (``num_classes``, ``img_size``,
            ``pretrained``, ``pretrained_cfg_overlay=dict(file=...)``, ``drop_path_rate``, ...).
        label_smoothing: cross-entropy label smoothing (without mixup: ``F.cross_entropy(label_smoothing=)``, equal to
            timm's ``LabelSmoothingCrossEntropy``).
        mixup: keyword arguments of ``timm.data.Mixup`` (``mixup_alpha``, ``cutmix_alpha``, ``cutmix_minmax``,
            ``prob``, ``switch_prob``, ``mode``, ``correct_lam``); ``num_classes`` defaults to the network's and
            ``label_smoothing`` to the one above. Training batches are then mixed (Mixup / CutMix) and the loss is
            timm's ``SoftTargetCrossEntropy`` on the mixed, smoothed targets, as in the official scripts. An odd
            batch (the last one of an epoch) mixes its first ``B - 1`` images and keeps the last one unmixed.
        data_preprocessor: mmengine data preprocessor config (default only moves data to device).

    Batches are ``dict(inputs=Tensor[B, C, H, W], data_samples=dict(gt_label=Tensor[B]))``.
    ``mode='loss'`` returns ``dict(loss=...)``; ``'predict'`` returns one dict per image with
    ``pred_score`` (softmax over classes) and ``gt_label``; ``'tensor'`` returns logits ``[B, K]``.
    """

    def __init__(
        self,
        model_name: str,
        model_kwargs: dict | None = None,
        label_smoothing: float = 0.0,
        mixup: dict | None = None,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        import zoo  # noqa: F401  (zoo models must be registered before create_model)
        from zoo.engine.config import ConfigKeyError
        from zoo.hub import create_model

        kwargs = dict(model_kwargs or {})
        try:  # the zoo's weight route: one-line errors for a bad weights file or a failed download
            self.backbone = create_model(model_name, **kwargs)
        except TypeError as err:  # timm's message does not say which config key was wrong
            raise ConfigKeyError(f"unknown config key in model.model_kwargs for '{model_name}': {err}") from None
        except RuntimeError as err:
            if 'Unknown model' in str(err):
                raise ConfigKeyError(f"model.model_name: unknown timm model '{model_name}'") from None
            raise
        # timm's depthwise convs (MambaOut's 7 x 7) on maps no larger than the kernel (the late stages at 32 px):
        # cropped taps, and float32 in a --amp (bf16) step, where oneDNN's bf16 depthwise backward is slow
        from zoo.layers.amp_conv import small_grid_depthwise_convs

        small_grid_depthwise_convs(self.backbone)
        self.model_name = model_name
        self.label_smoothing = label_smoothing
        if kwargs.get('pretrained') and 'num_classes' in kwargs:
            _report_new_head(self.backbone, model_name, int(kwargs['num_classes']))
        self.mixup = build_mixup(mixup, self.backbone.num_classes, label_smoothing) if mixup else None
        if self.mixup is not None:
            from timm.loss import SoftTargetCrossEntropy

            self.soft_target_loss = SoftTargetCrossEntropy()

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """The timm model's own keys: what ``pretrained_cfg_overlay=dict(file=...)`` loads."""
        return self.backbone.state_dict()

    def forward(self, inputs: torch.Tensor, data_samples: Any = None, mode: str = 'tensor') -> Any:
        if mode == 'loss' and self.mixup is not None and self.training:
            labels = labels_of(data_samples, inputs.device)
            inputs, targets = mix_batch(self.mixup, inputs, labels)
            logits = self.backbone(inputs)
            return dict(loss=self.soft_target_loss(logits.float(), targets))
        logits = self.backbone(inputs)
        if mode == 'tensor':
            return logits
        labels = labels_of(data_samples, logits.device)
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing))
        if mode == 'predict':
            scores = logits.float().softmax(dim=1)
            return [dict(pred_score=s, gt_label=l) for s, l in zip(scores, labels)]
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")


def _report_new_head(net: torch.nn.Module, model_name: str, num_classes: int) -> None:
    """Fine-tuning: say when the checkpoint's classifier was dropped (timm drops it when the class count differs from
    the model's pretrained_cfg) and a new head is trained from scratch."""
    from mmengine.logging import print_log

    cfg_classes = (getattr(net, 'pretrained_cfg', None) or {}).get('num_classes')
    if cfg_classes is None or int(cfg_classes) == num_classes:
        return
    head = (getattr(net, 'pretrained_cfg', None) or {}).get('classifier', 'the classifier')
    print_log(
        f'{model_name}: pretrained weights loaded except the classifier ({head}), which is new: {num_classes} classes '
        f"instead of the checkpoint config's {cfg_classes}, initialised from scratch",
        logger='current',
    )


def build_mixup(cfg: dict, num_classes: int, label_smoothing: float):
    """``timm.data.Mixup`` from a config dict; an unknown key is a one-line ``ConfigKeyError`` naming it."""
    import inspect

    from timm.data import Mixup

    from zoo.engine.config import ConfigKeyError

    cfg = dict(cfg)
    known = set(inspect.signature(Mixup).parameters)
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ConfigKeyError(f'model.mixup: unknown key(s) {unknown} (timm.data.Mixup takes {sorted(known)})')
    cfg.setdefault('num_classes', num_classes)
    cfg.setdefault('label_smoothing', label_smoothing)
    if isinstance(cfg.get('cutmix_minmax'), list):
        cfg['cutmix_minmax'] = tuple(cfg['cutmix_minmax'])
    return Mixup(**cfg)


def mix_batch(mixup, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """timm's Mixup / CutMix on a batch: mixed images and soft targets ``[B, K]`` (timm needs an even batch: an odd
    one mixes all but its last image, whose target is the smoothed one-hot label)."""
    from timm.data.mixup import mixup_target

    n = inputs.shape[0] - inputs.shape[0] % 2
    if n == 0:
        return inputs, mixup_target(labels, mixup.num_classes, smoothing=mixup.label_smoothing)
    mixed, targets = mixup(inputs[:n].clone(), labels[:n])
    if n == inputs.shape[0]:
        return mixed, targets
    rest = mixup_target(labels[n:], mixup.num_classes, smoothing=mixup.label_smoothing)
    return torch.cat([mixed, inputs[n:]]), torch.cat([targets, rest.to(targets.dtype)])


def labels_of(data_samples: Any, device: torch.device) -> torch.Tensor:
    """The ``gt_label`` of a batch as a ``(B,)`` int64 tensor on ``device``: from a collated dict
    (``default_collate``) or a list of per-sample dicts (``pseudo_collate``)."""
    if isinstance(data_samples, dict):
        labels = data_samples['gt_label']
    else:  # a list of per-sample dicts (pseudo_collate)
        labels = torch.as_tensor([d['gt_label'] for d in data_samples])
    return torch.as_tensor(labels, device=device).long().view(-1)
