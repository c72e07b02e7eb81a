"""Connectors: align a student map to the teacher's channels before a distillation loss (MMRazor's
``connectors``). FGD (arXiv 2111.11837) and MasKD (arXiv 2205.14589) align with one 1x1 convolution."""

from __future__ import annotations

import torch
import torch.nn as nn

from zoo.registry import MODELS

__all__ = ['ConvModuleConnector']


@MODELS.register_module()
class ConvModuleConnector(nn.Module):
    """``(B, in_channel, H, W)`` -> ``(B, out_channel, H, W)`` by a ``kernel_size`` convolution with bias.

    The name and the ``in_channel`` / ``out_channel`` keys are MMRazor's; MMRazor's optional norm and
    activation are left out (the aligners of FGD, MasKD and ACAM-KD are a bare convolution).
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channel, out_channel, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
