"""Focal and Global Knowledge Distillation for detectors (Yang et al., CVPR 2022, arXiv 2111.11837).

Named ``FocalGlobalLoss`` to keep it apart from QSD's fine-grained distillation (``zoo.distill.fgd``).

Per FPN level, with the aligned student map ``S`` and teacher map ``T`` (``(B, C, H, W)``):

* attention (Eq. 1-2): ``A^S = HW softmax(mean_c |F| / temp)`` over positions and
  ``A^C = C softmax(mean_hw |F| / temp)`` over channels, from the teacher for the feature loss;
* masks (Eq. 3-5): binary foreground mask of the ground-truth boxes scaled to the map, weighted by
  ``1 / (H_r W_r)`` (the box's area in cells, the largest weight where boxes overlap); background weight
  ``1 / N_bg``;
* focal loss (Eq. 6): ``alpha sum M^fg A^S A^C (T - S)^2 + beta sum M^bg A^S A^C (T - S)^2``;
* attention loss (Eq. 7): ``gamma (|A^S_T - A^S_S|_1 + |A^C_T - A^C_S|_1)``;
* global loss (Eq. 8-9): ``lambda sum (R(T) - R(S))^2`` with ``R`` a GcBlock (context pooling,
  1x1 conv C -> C/2, LayerNorm, ReLU, 1x1 conv C/2 -> C, added to the map), one for each side.

Sums are over all elements and divided by the batch size, as the authors' mmdet 2.x code does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn

from zoo.registry import MODELS

__all__ = ['FocalGlobalLoss', 'focal_attention', 'foreground_masks']


def focal_attention(x: torch.Tensor, temp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, C, H, W)`` -> spatial attention ``(B, H, W)`` (sums to ``HW``) and channel attention ``(B, C)``
    (sums to ``C``), FGD Eq. 1-2."""
    B, C, H, W = x.shape
    a = x.abs()
    spatial = H * W * torch.softmax(a.mean(1).flatten(1) / temp, dim=1)
    channel = C * torch.softmax(a.mean((2, 3)) / temp, dim=1)
    return spatial.view(B, H, W), channel


def foreground_masks(
    boxes: Sequence[torch.Tensor], img_shapes: Sequence[tuple[int, int]], hw: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """FGD Eq. 3-5 on an ``hw`` map: foreground ``(B, H, W)`` weighted ``1 / (box cells)`` and background
    ``(B, H, W)`` weighted ``1 / N_bg``.

    A box ``(x1, y1, x2, y2)`` in pixels of ``img_shape = (h, w)`` covers rows ``floor(y1 H / h) ..
    ceil(y2 H / h)`` and columns ``floor(x1 W / w) .. ceil(x2 W / w)`` (inclusive, clipped to the map).
    The authors' code indexes the first (row) axis with the column range; rows are rows here.
    """
    H, W = hw
    device = boxes[0].device if len(boxes) else torch.device('cpu')
    fg = torch.zeros(len(boxes), H, W, device=device)
    for i, (b, (ih, iw)) in enumerate(zip(boxes, img_shapes)):
        for x1, y1, x2, y2 in b.tolist():
            c0, c1 = math.floor(x1 / iw * W), math.ceil(x2 / iw * W)
            r0, r1 = math.floor(y1 / ih * H), math.ceil(y2 / ih * H)
            weight = 1.0 / ((r1 - r0 + 1) * (c1 - c0 + 1))
            r0, c0 = max(r0, 0), max(c0, 0)
            region = fg[i, r0 : r1 + 1, c0 : c1 + 1]
            region.clamp_(min=weight)
    bg = (fg == 0).float()
    bg = bg / bg.flatten(1).sum(1).clamp(min=1).view(-1, 1, 1)
    return fg, bg


class _GlobalContext(nn.Module):
    """GcBlock-style global relation (FGD Eq. 8): softmax context pooling and a bottleneck transform."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.attend = nn.Conv2d(channels, 1, 1)
        self.transform = nn.Sequential(
            nn.Conv2d(channels, channels // 2, 1),
            nn.LayerNorm([channels // 2, 1, 1]),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // 2, channels, 1),
        )
        nn.init.kaiming_normal_(self.attend.weight, mode='fan_in', nonlinearity='relu')
        nn.init.zeros_(self.attend.bias)
        nn.init.zeros_(self.transform[-1].weight)  # starts as the identity, as GcNet does
        nn.init.zeros_(self.transform[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.attend(x).flatten(1), dim=1)  # (B, HW)
        context = torch.einsum('bcn,bn->bc', x.flatten(2), w)[..., None, None]
        return x + self.transform(context)


@MODELS.register_module()
class FocalGlobalLoss(nn.Module):
    """FGD's feature loss at one FPN level (defaults: the weights of the authors' loss module).

    ``forward(s_feature, t_feature, gt_bboxes, img_shapes)`` with ``(B, C, H, W)`` maps, per-image boxes
    ``(n_i, 4)`` in input pixels (x1, y1, x2, y2) and per-image ``(h, w)`` input shapes; returns
    ``dict(fg=, bg=, attn=, global=)`` (weighted).
    """

    def __init__(
        self,
        channels: int,
        temp: float = 0.5,
        alpha_fgd: float = 0.001,
        beta_fgd: float = 0.0005,
        gamma_fgd: float = 0.001,
        lambda_fgd: float = 0.000005,
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.temp, self.loss_weight = temp, loss_weight
        self.alpha, self.beta, self.gamma, self.lam = alpha_fgd, beta_fgd, gamma_fgd, lambda_fgd
        self.context_s = _GlobalContext(channels)
        self.context_t = _GlobalContext(channels)

    def forward(
        self,
        s_feature: torch.Tensor,
        t_feature: torch.Tensor,
        gt_bboxes: Sequence[torch.Tensor],
        img_shapes: Sequence[tuple[int, int]],
    ) -> dict[str, torch.Tensor]:
        t = t_feature.detach()
        B = t.shape[0]
        sa_t, ca_t = focal_attention(t, self.temp)
        sa_s, ca_s = focal_attention(s_feature, self.temp)
        fg, bg = foreground_masks(gt_bboxes, img_shapes, tuple(t.shape[-2:]))
        weight = sa_t.unsqueeze(1) * ca_t[..., None, None]  # (B, C, H, W)
        d2 = (t - s_feature).pow(2) * weight
        fg_loss = (d2 * fg.unsqueeze(1)).sum() / B
        bg_loss = (d2 * bg.unsqueeze(1)).sum() / B
        attn_loss = ((ca_s - ca_t).abs().sum() + (sa_s - sa_t).abs().sum()) / B
        global_loss = (self.context_s(s_feature) - self.context_t(t)).pow(2).sum() / B
        w = self.loss_weight
        return {
            'fg': w * self.alpha * fg_loss,
            'bg': w * self.beta * bg_loss,
            'attn': w * self.gamma * attn_loss,
            'global': w * self.lam * global_loss,
        }
