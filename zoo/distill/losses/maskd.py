"""MasKD: masked knowledge distillation with learned receptive tokens (Huang et al., ICLR 2023,
arXiv 2205.14589), the distillation stage, as the baseline of ACAM-KD.

Per distillation point, with ``M`` mask tokens ``(M, C)`` and the aligned student / teacher maps
``S``, ``T`` ``(B, C, H, W)``, ``N = HW``:

* masks from the teacher: ``M^T = sigmoid(tokens @ flatten(T))`` ``(B, M, N)``; after
  ``custom_mask_warmup`` training steps they are multiplied by the student's masks
  ``sigmoid(tokens @ flatten(S))`` (no gradient), MasKD's "student-customised" masks;
* per mask and channel, the masked squared error normalised by the mask's mass:
  ``l_{b,m,k} = sum_p (M_{m,p} (T - S)_{k,p})^2 / sum_p M_{m,p}``;
* ``weight_mask=True``: a per-mask weight ``w = softmax_m(conv1x1(GAP(conv3x3(T))))`` ``(B, M)`` and the
  loss ``mean_b sum_m w_{b,m} mean_k l_{b,m,k}``; ``weight_mask=False``: ``mean_{b,m,k} l``.

This follows the authors' ``MasKDLoss.forward`` and ``MaskModule`` (hunto/MasKD,
``mmrazor/mmrazor/models/losses/maskd.py``), rewritten here. In MasKD the tokens and the weighting head come
from a first stage (``mmdetection/maskd_hook.py``: the frozen teacher's task loss on the masked neck outputs
plus the Dice loss) and stay fixed in the distillation stage (``lr_mult=0`` on ``distiller.losses`` in their
configs). Load them with ``tokens=PATH_OR_URL`` (a checkpoint holding ``mask_modules.<level>.mask_token`` and
``mask_modules.<level>.prob.*``, the layout of MasKD's released stage-1 checkpoints, with ``level``), and
they are frozen. Without a file, tokens (and the head) are learned jointly with the Dice loss of weight
``lambda_div``: a fallback for smoke runs, not MasKD's procedure.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from zoo.registry import MODELS

from .acam_kd import dice_diversity

__all__ = ['MasKDLoss', 'mask_weight_head', 'teacher_masks']


def teacher_masks(tokens: torch.Tensor, t_feature: torch.Tensor) -> torch.Tensor:
    """``tokens (M, C)``, ``t_feature (B, C, H, W)`` -> masks ``(B, M, H * W)`` in ``(0, 1)``."""
    return torch.sigmoid(torch.einsum('mc,bcn->bmn', tokens, t_feature.flatten(2)))


def mask_weight_head(channels: int, num_masks: int) -> nn.Sequential:
    """MasKD's per-mask weighting head: 3x3 conv ``C -> C``, global average pool, 1x1 conv ``C -> M``
    (logits ``(B, M, 1, 1)``; the loss takes a softmax over ``M``). Convolutions are drawn from
    ``N(0, 2 / fan_out)`` with zero bias, as ``MaskModule.init_weights`` does."""
    head = nn.Sequential(
        nn.Conv2d(channels, channels, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Conv2d(channels, num_masks, 1)
    )
    for m in head:
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
            nn.init.zeros_(m.bias)
    return head


def _load_stage1(path: str, level: int | None) -> dict[str, torch.Tensor]:
    """The tokens (key ``tokens``) and weighting-head tensors (keys ``prob.*``) of one level of a stage-1
    checkpoint; ``level=None`` takes the only ``mask_token`` / ``tokens`` tensor of the file."""
    from zoo.hub import _default_cache, download_file, load_checkpoint_file, unwrap_state_dict

    if path.startswith(('http://', 'https://')):
        path = download_file(path, _default_cache() / 'maskd' / path.rsplit('/', 1)[1], what='MasKD masks')
    sd = unwrap_state_dict(load_checkpoint_file(path))
    if level is None:
        found = [k for k in sd if k.endswith(('mask_token', 'tokens'))]
        if len(found) != 1:
            raise ValueError(f'{path}: expected one mask-token tensor, found {len(found)}; pass level=')
        prefix = found[0][: -len('mask_token' if found[0].endswith('mask_token') else 'tokens')]
    else:
        prefix = next((k[: k.index('mask_modules.')] for k in sd if 'mask_modules.' in k), '')
        prefix = f'{prefix}mask_modules.{level}.'
    out = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    if 'mask_token' in out:
        out['tokens'] = out.pop('mask_token')
    if 'tokens' not in out:
        raise ValueError(f'{path}: no mask tokens under {prefix!r}')
    return out


@MODELS.register_module()
class MasKDLoss(nn.Module):
    """MasKD's masked feature loss at one distillation point.

    Args:
        channels: ``C``; num_masks: ``M`` (6 in MasKD's detection configs).
        tokens: optional stage-1 checkpoint (file or http(s) URL) with the tokens and, for
            ``weight_mask``, the weighting head.
        level: which ``mask_modules.<level>`` of the checkpoint (MasKD keeps one module per FPN level).
        freeze: keep the loaded tokens and head fixed (default: frozen when ``tokens`` is given).
        weight_mask: weight the masks by the softmax head (MasKD's detection configs: on).
        custom_mask_warmup: after this many training calls, multiply the teacher's masks by the student's
            (MasKD's configs: 7000 RetinaNet, 7330 Faster R-CNN, 5000 RepPoints); ``None``: never.
        mass_eps: added to each mask's mass in the denominator (MasKD's segmentation loss: 1e-5; its
            detection loss: none).
        lambda_div: Dice diversity weight while the tokens are learned here.
        loss_weight: overall factor (MasKD's configs: 7 RetinaNet, 1 Faster R-CNN, 10 RepPoints, applied to
            the sum over the 5 levels, i.e. to each level's term).

    ``forward(s_feature, t_feature)`` returns ``dict(feat=[, div=])``.
    """

    def __init__(
        self,
        channels: int,
        num_masks: int = 6,
        tokens: str | None = None,
        level: int | None = None,
        freeze: bool | None = None,
        weight_mask: bool = False,
        custom_mask_warmup: int | None = None,
        mass_eps: float = 0.0,
        lambda_div: float = 1.0,
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(num_masks, channels) * 0.01)
        self.prob = mask_weight_head(channels, num_masks) if weight_mask else None
        if tokens is not None:
            loaded = _load_stage1(tokens, level)
            self.tokens.data.copy_(loaded.pop('tokens'))
            head = {k[len('prob.') :]: v for k, v in loaded.items() if k.startswith('prob.')}
            if self.prob is not None:
                if not head:
                    raise ValueError(f'{tokens}: weight_mask=True but the file holds no weighting head (prob.*)')
                self.prob.load_state_dict(head)
        trainable = tokens is None if freeze is None else not freeze
        self.requires_grad_(trainable)
        self.custom_mask_warmup = custom_mask_warmup
        # training calls so far (MasKD's ``_iter``); a buffer, so a resumed run keeps counting
        self.register_buffer('calls', torch.zeros((), dtype=torch.long))
        self.mass_eps, self.lambda_div, self.loss_weight = mass_eps, lambda_div, loss_weight

    def forward(self, s_feature: torch.Tensor, t_feature: torch.Tensor) -> dict[str, torch.Tensor]:
        t = t_feature.detach()
        masks = teacher_masks(self.tokens, t)  # (B, M, N)
        learned = masks
        if self.training:
            if self.custom_mask_warmup is not None and int(self.calls) >= self.custom_mask_warmup:
                with torch.no_grad():
                    student_masks = teacher_masks(self.tokens, s_feature)
                masks = masks * student_masks
            self.calls += 1
        d2 = (t - s_feature).pow(2).flatten(2)  # (B, C, N)
        per_mask = torch.einsum('bmn,bcn->bmc', masks.pow(2), d2) / (masks.sum(-1, keepdim=True) + self.mass_eps).clamp(
            min=1e-12
        )
        if self.prob is not None:
            w = torch.softmax(self.prob(t).flatten(1), dim=1)  # (B, M)
            feat = (per_mask.mean(-1) * w).sum(-1).mean()
        else:
            feat = per_mask.mean()
        out = {'feat': self.loss_weight * feat}
        if self.tokens.requires_grad:
            out['div'] = self.loss_weight * self.lambda_div * dice_diversity(learned)
        return out
