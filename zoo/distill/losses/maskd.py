"""MasKD: masked knowledge distillation with learned receptive tokens (Huang et al., ICLR 2023,
arXiv 2205.14589), as the baseline of ACAM-KD: masks from the teacher only.

``M`` mask tokens ``(M, C)`` give masks ``sigmoid(tokens @ flatten(F_T))`` ``(B, M, HW)``; the loss is the
masked squared error normalised by each mask's mass, averaged over masks, channels and the batch:
``1/(B M C) sum_{b,m,k} sum_p (M_{m,p} (T - S)_{k,p})^2 / sum_p M_{m,p}``.

MasKD learns its tokens in a first stage (the teacher's task loss on masked features plus the Dice
diversity) and then distils with them; load such tokens with ``tokens=PATH`` and keep ``freeze=True``.
Without a file the tokens are learned jointly with the Dice loss (weight ``lambda_div``). MasKD's optional
per-mask weighting head and its late "student customised" masks are left out (the ACAM-KD comparison
is the teacher-only mask).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from zoo.registry import MODELS

from .acam_kd import dice_diversity

__all__ = ['MasKDLoss', 'teacher_masks']


def teacher_masks(tokens: torch.Tensor, t_feature: torch.Tensor) -> torch.Tensor:
    """``tokens (M, C)``, ``t_feature (B, C, H, W)`` -> masks ``(B, M, H * W)`` in ``(0, 1)``."""
    return torch.sigmoid(torch.einsum('mc,bcn->bmn', tokens, t_feature.flatten(2)))


@MODELS.register_module()
class MasKDLoss(nn.Module):
    """MasKD's masked feature loss at one distillation point.

    Args:
        channels: ``C``; num_masks: ``M`` (6 in MasKD's detection configs).
        tokens: optional file with a ``(M, C)`` tensor (a state dict entry ending in ``mask_token`` or
            ``tokens``) from a first-stage run.
        freeze: keep the tokens fixed (the default when ``tokens`` is given).
        lambda_div: Dice diversity weight while the tokens are learned here.
        loss_weight: overall factor.

    ``forward(s_feature, t_feature)`` returns ``dict(feat=[, div=])``.
    """

    def __init__(
        self,
        channels: int,
        num_masks: int = 6,
        tokens: str | None = None,
        freeze: bool | None = None,
        lambda_div: float = 1.0,
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(num_masks, channels) * 0.01)
        if tokens is not None:
            from zoo.hub import load_checkpoint_file, unwrap_state_dict

            sd = unwrap_state_dict(load_checkpoint_file(tokens))
            found = [v for k, v in sd.items() if k.endswith(('mask_token', 'tokens'))]
            if len(found) != 1:
                raise ValueError(f'{tokens}: expected one mask-token tensor, found {len(found)}')
            self.tokens.data.copy_(found[0])
        self.tokens.requires_grad_(not (tokens is not None if freeze is None else freeze))
        self.lambda_div, self.loss_weight = lambda_div, loss_weight

    def forward(self, s_feature: torch.Tensor, t_feature: torch.Tensor) -> dict[str, torch.Tensor]:
        t = t_feature.detach()
        masks = teacher_masks(self.tokens, t)  # (B, M, N)
        d2 = (t - s_feature).pow(2).flatten(2)  # (B, C, N)
        per_mask = torch.einsum('bmn,bcn->bmc', masks.pow(2), d2) / masks.sum(-1, keepdim=True).clamp(min=1e-12)
        out = {'feat': self.loss_weight * per_mask.mean()}
        if self.tokens.requires_grad:
            out['div'] = self.loss_weight * self.lambda_div * dice_diversity(masks)
        return out
