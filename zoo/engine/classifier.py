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
        label_smoothing: cross-entropy label smoothing.
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
        self.model_name = model_name
        self.label_smoothing = label_smoothing

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """The timm model's own keys: what ``pretrained_cfg_overlay=dict(file=...)`` loads."""
        return self.backbone.state_dict()

    def forward(self, inputs: torch.Tensor, data_samples: Any = None, mode: str = 'tensor') -> Any:
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


def labels_of(data_samples: Any, device: torch.device) -> torch.Tensor:
    """The ``gt_label`` of a batch as a ``(B,)`` int64 tensor on ``device``: from a collated dict
    (``default_collate``) or a list of per-sample dicts (``pseudo_collate``)."""
    if isinstance(data_samples, dict):
        labels = data_samples['gt_label']
    else:  # a list of per-sample dicts (pseudo_collate)
        labels = torch.as_tensor([d['gt_label'] for d in data_samples])
    return torch.as_tensor(labels, device=device).long().view(-1)
