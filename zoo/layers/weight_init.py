"""Weight initialisation shared by the ViT/Swin-style families (Agent Attention, MHS-VM)."""

from __future__ import annotations

import torch.nn as nn
from timm.layers import trunc_normal_

__all__ = ['init_linear_layernorm']


def init_linear_layernorm(m: nn.Module) -> None:
    """Per-module rule for ``model.apply``: truncated-normal (std 0.02) Linear weights with zero
    biases, unit LayerNorms (``LayerNorm2d`` included); other modules keep PyTorch's defaults."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
