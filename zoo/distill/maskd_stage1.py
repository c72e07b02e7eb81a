"""MasKD's first stage: learn the mask tokens (and the per-mask weighting head) on a frozen teacher.

MasKD (Huang et al., ICLR 2023, arXiv 2205.14589) learns its receptive tokens before distilling: mask modules
are attached to the teacher's neck, every neck output ``F`` (``(B, C, H, W)``) is replaced by the masked sum
``sum_m w_m sigmoid(tokens_m . F) F`` (``w = softmax_m(head(F))`` with the weighting head, else ``w = 1``),
and only the mask modules are trained, on the teacher's own task loss plus the Dice overlap of each level's
masks. The detector's weights stay fixed and its BatchNorm layers stay in eval mode. This is the procedure of
the authors' ``MasKDHook`` (hunto/MasKD, ``mmdetection/maskd_hook.py``, with ``MaskModule.forward_train`` in
``mmdetection/maskd.py``), written here as an mmengine model in our own code.

The saved state dict holds ``mask_modules.<level>.mask_token`` and ``mask_modules.<level>.prob.*``, the layout
of MasKD's released stage-1 checkpoints, so ``MasKDLoss(tokens=<checkpoint>, level=<level>)`` loads either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from mmengine.model import BaseModel
from torch.nn.modules.batchnorm import _BatchNorm

from zoo.registry import MODELS

from .distiller import load_teacher_weights, model_config
from .losses.acam_kd import dice_diversity
from .losses.maskd import mask_weight_head, teacher_masks

__all__ = ['MasKDMaskLearner', 'MaskModule']


class MaskModule(nn.Module):
    """One level's mask tokens ``(M, C)`` (drawn from ``N(0, 0.01)``) and optional weighting head.

    ``forward(x)`` with ``x (B, C, H, W)`` returns the masked map ``sum_m w_m M_m x`` ``(B, C, H, W)`` and the
    pairwise Dice overlap of the masks ``M (B, M, HW)`` (a scalar).
    """

    def __init__(self, channels: int, num_masks: int = 6, weight_mask: bool = True) -> None:
        super().__init__()
        self.mask_token = nn.Parameter(torch.randn(num_masks, channels) * 0.01)
        self.prob = mask_weight_head(channels, num_masks) if weight_mask else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, C, H, W = x.shape
        masks = teacher_masks(self.mask_token, x)  # (B, M, HW)
        weights = masks.view(B, -1, 1, H, W)
        if self.prob is not None:
            weights = weights * torch.softmax(self.prob(x).flatten(1), dim=1).view(B, -1, 1, 1, 1)
        out = (x.unsqueeze(1) * weights).sum(1)
        return out, dice_diversity(masks)


@MODELS.register_module()
class MasKDMaskLearner(BaseModel):
    """A frozen model whose ``module`` outputs pass through trainable mask modules (MasKD stage 1).

    Args:
        model: the teacher's model config, or ``dict(cfg_path=..., pretrained=...)`` (``model_config``).
        checkpoint: the teacher's weights (file or http(s) URL, as ``teacher_ckpt`` of the distiller).
        module: the module whose output (a tuple of maps, or one map) is masked; MasKD: the neck.
        channels: the channels of each output map (one mask module per map).
        num_masks: ``M`` (6 in MasKD's detection configs).
        weight_mask: the per-mask weighting head (MasKD's detection configs: on).
        lambda_div: weight of each level's Dice loss (1 in MasKD).

    In ``'loss'`` mode it returns the model's task losses plus ``loss_div_<level>``; the other modes are the
    model's own, on the masked maps.
    """

    def __init__(
        self,
        model: dict,
        channels: Sequence[int],
        checkpoint: str | None = None,
        module: str = 'neck',
        num_masks: int = 6,
        weight_mask: bool = True,
        lambda_div: float = 1.0,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.model = MODELS.build(model_config(model))
        if data_preprocessor is None and hasattr(self.model, 'data_preprocessor'):
            self.data_preprocessor = self.model.data_preprocessor
        if checkpoint:
            load_teacher_weights(self.model, checkpoint)
        self.model.requires_grad_(False)
        self.mask_modules = nn.ModuleList(MaskModule(c, num_masks, weight_mask) for c in channels)
        self.lambda_div = lambda_div
        self._div: list[torch.Tensor] = []
        self.model.get_submodule(module).register_forward_hook(self._mask_outputs)

    def _mask_outputs(self, module: nn.Module, args: tuple, output: Any) -> Any:
        maps = output if isinstance(output, (tuple, list)) else (output,)
        if len(maps) != len(self.mask_modules):
            raise ValueError(f'{len(maps)} output maps but {len(self.mask_modules)} mask modules (channels=)')
        masked = []
        self._div = []
        for mask_module, x in zip(self.mask_modules, maps):
            out, div = mask_module(x)
            masked.append(out)
            self._div.append(div)
        return tuple(masked) if isinstance(output, (tuple, list)) else masked[0]

    def init_weights(self) -> None:
        """The model keeps its loaded weights; the mask modules are initialised when built."""

    def train(self, mode: bool = True) -> MasKDMaskLearner:
        super().train(mode)
        for m in self.model.modules():  # as MasKDHook.before_train_iter: the frozen BN statistics stay fixed
            if isinstance(m, _BatchNorm):
                m.eval()
        return self

    def forward(self, inputs: torch.Tensor, data_samples: Any = None, mode: str = 'tensor') -> Any:
        if mode != 'loss':
            return self.model(inputs, data_samples, mode=mode)
        losses = dict(self.model(inputs, data_samples, mode='loss'))
        for i, div in enumerate(self._div):
            losses[f'loss_div_{i}'] = self.lambda_div * div
        self._div = []
        return losses
