"""mmengine model wrapper for binary segmentation networks (one logit channel)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from mmengine.model import BaseModel

from zoo.registry import MODELS


@MODELS.register_module()
class BinarySegmentor(BaseModel):
    """Wraps a network that maps (B, C, H, W) images to (B, 1, H, W) logits.

    Args:
        net: the network, or its config (e.g. ``dict(type='MHSVMUNetSeg', variant='mhs_vm_unet_4h')``).
        loss: loss config (default ``BceDiceLoss``, weights 1 and 1 as the official recipe).
        threshold: probability threshold for ``pred_mask`` in ``predict`` mode.
        data_preprocessor: mmengine data preprocessor config (default only moves data to device).

    Batches are ``dict(inputs=Tensor[B, C, H, W], data_samples=dict(gt_mask=Tensor[B, 1, H, W]))``.
    ``mode='loss'`` -> ``dict(loss=...)``; ``'predict'`` -> one dict per image with ``pred_prob``
    (sigmoid, [1, H, W]), ``pred_mask``, ``gt_mask`` and ``img_path``; ``'tensor'`` -> logits.
    """

    def __init__(
        self,
        net: dict | nn.Module,
        loss: dict | nn.Module | None = None,
        threshold: float = 0.5,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.net = MODELS.build(net) if isinstance(net, dict) else net
        loss = loss if loss is not None else dict(type='BceDiceLoss')
        self.loss_fn = MODELS.build(loss) if isinstance(loss, dict) else loss
        if not 0.0 < threshold < 1.0:
            raise ValueError(f'threshold: must be in (0, 1), got {threshold}')
        self.threshold = threshold

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """The network's own keys (what :class:`MHSVMUNet` / ``load_official_checkpoint`` load)."""
        return self.net.state_dict()

    def forward(self, inputs: torch.Tensor, data_samples: Any = None, mode: str = 'tensor') -> Any:
        logits = self.net(inputs)
        if mode == 'tensor':
            return logits
        if mode not in ('loss', 'predict'):
            raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")
        gt = _gt_masks(data_samples, logits)
        if mode == 'loss':
            return dict(loss=self.loss_fn(logits, gt))
        probs = logits.float().sigmoid()
        paths = _field(data_samples, 'img_path', len(probs))
        return [
            dict(pred_prob=p, pred_mask=p >= self.threshold, gt_mask=g, img_path=path)
            for p, g, path in zip(probs, gt, paths)
        ]


def _field(data_samples: Any, key: str, n: int) -> list:
    if isinstance(data_samples, dict):
        vals = data_samples.get(key)
        return list(vals) if vals is not None else [None] * n
    if isinstance(data_samples, (list, tuple)):
        return [d.get(key) for d in data_samples]
    return [None] * n


def _gt_masks(data_samples: Any, logits: torch.Tensor) -> torch.Tensor:
    if data_samples is None:
        raise ValueError('data_samples: loss and predict modes need gt_mask')
    if isinstance(data_samples, dict):
        gt = data_samples['gt_mask']
    else:  # list of per-sample dicts (pseudo_collate)
        gt = torch.stack([torch.as_tensor(d['gt_mask']) for d in data_samples])
    gt = torch.as_tensor(gt, device=logits.device).float()
    if gt.ndim == 3:
        gt = gt.unsqueeze(1)
    return gt
