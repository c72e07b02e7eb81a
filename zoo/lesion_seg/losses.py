"""BCE + Dice loss for binary segmentation (the official ``BceDiceLoss(wb=1, wd=1)``), on logits."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from zoo.registry import MODELS


def dice_score(prob: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice per sample, ``(2 * sum(p*t) + smooth) / (sum(p) + sum(t) + smooth)``; (B, ...) -> (B,)."""
    p = prob.reshape(prob.shape[0], -1)
    t = target.reshape(target.shape[0], -1)
    return (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)


@MODELS.register_module()
class BceDiceLoss(nn.Module):
    """``wb * BCE + wd * (1 - mean soft Dice)`` with smooth 1, as the official loss.

    The official model outputs sigmoid probabilities and uses ``nn.BCELoss``; this takes logits
    and uses ``binary_cross_entropy_with_logits`` (same value, numerically safer).

    Args:
        wb: BCE weight.
        wd: Dice weight.
    """

    def __init__(self, wb: float = 1.0, wd: float = 1.0) -> None:
        super().__init__()
        self.wb = wb
        self.wd = wd

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits, target: (B, 1, H, W); target in {0, 1}."""
        if logits.shape != target.shape:
            raise ValueError(f'target: shape {tuple(target.shape)} does not match the logits {tuple(logits.shape)}')
        target = target.to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, target)
        dice = dice_score(logits.sigmoid(), target).mean()
        return self.wb * bce + self.wd * (1 - dice)
