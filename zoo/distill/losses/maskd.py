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
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from zoo.registry import MODELS

from .acam_kd import dice_diversity

__all__ = ['MasKDLoss', 'load_stage1', 'mask_weight_head', 'teacher_masks']


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


def _stage1_levels(state: Mapping[str, Any]) -> dict[int, dict[str, torch.Tensor]]:
    """The ``mask_modules.<level>.*`` tensors of a state dict, per level. A key is cut where ``mask_modules.``
    starts, as the authors' ``MasKDLoss.init_weights`` cuts it, so a prefix in front (a wrapper's ``module.``)
    does not matter."""
    levels: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        at = key.find('mask_modules.') if isinstance(key, str) else -1
        if at < 0 or not isinstance(value, torch.Tensor):
            continue
        level, _, name = key[at + len('mask_modules.') :].partition('.')
        if level.isdigit() and name:
            levels.setdefault(int(level), {})[name] = value
    return levels


def load_stage1(source: str, level: int | None = None) -> dict[str, torch.Tensor]:
    """One level of a MasKD stage-1 checkpoint: ``{'mask_token': (M, C)}`` plus, when the file has the
    weighting head, ``'prob.0.weight' (C, C, 3, 3)``, ``'prob.0.bias' (C,)``, ``'prob.2.weight' (M, C, 1, 1)``,
    ``'prob.2.bias' (M,)``.

    ``source`` is a file or an http(s) URL (downloaded once into ``<torch hub>/checkpoints/maskd/``). The file is
    read with ``torch.load(weights_only=True)``. Its layout is the one the authors' stage 1 writes (hunto/MasKD
    ``mmdetection/maskd_hook.py`` adds ``mask_modules`` to the detector, and mmcv 1.x's ``save_checkpoint`` writes
    ``{'meta': ..., 'state_dict': <detector + mask_modules, float32>, 'optimizer': ...}``), which their
    distillation stage reads back as ``ckpt['state_dict']`` (``mmrazor/mmrazor/models/losses/maskd.py``,
    ``MasKDLoss.init_weights``). A bare state dict (no ``state_dict`` entry) is taken as well. ``level=None``
    takes the file's only level. Every failure is a one-line ``CheckpointError`` naming the file and the key.
    """
    from zoo.hub import CheckpointError, load_checkpoint_file, local_or_cached

    path = local_or_cached(source, 'maskd', what='MasKD masks')
    name = source if path == source else f'{path} (downloaded from {source}; delete it to download again)'
    try:
        ckpt = load_checkpoint_file(path)
    except CheckpointError as err:
        raise CheckpointError(str(err).replace(path, name, 1)) from None
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, Mapping) else ckpt
    if not isinstance(state, Mapping):
        what = "its 'state_dict' is" if isinstance(ckpt, Mapping) else 'it holds'
        raise CheckpointError(
            f'{name}: not a MasKD stage-1 checkpoint: {what} a {type(state).__name__}, expected '
            "{'state_dict': {'mask_modules.<level>.mask_token': ...}}"
        )
    levels = _stage1_levels(state)
    if not levels:
        keys = [str(k) for k in list(state)[:3]]
        raise CheckpointError(
            f"{name}: no 'mask_modules.<level>.mask_token' key in its state dict ({len(state)} keys: "
            f'{", ".join(keys)}{", ..." if len(state) > 3 else ""}): not a MasKD stage-1 checkpoint'
        )
    found = ', '.join(map(str, sorted(levels)))
    if level is None:
        if len(levels) != 1:
            raise CheckpointError(f'{name}: holds mask modules of levels {found}; pass level=')
        level = next(iter(levels))
    if level not in levels:
        raise CheckpointError(f"{name}: no key 'mask_modules.{level}.mask_token' (the file has levels {found})")
    out = levels[level]
    token = out.get('mask_token')
    if token is None or token.dim() != 2 or not token.is_floating_point():
        what = 'missing' if token is None else f'{tuple(token.shape)} {token.dtype}'
        raise CheckpointError(
            f"{name}: 'mask_modules.{level}.mask_token' is {what}, expected a floating (num_masks, channels) tensor"
        )
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
            self._load(tokens, level)
        trainable = tokens is None if freeze is None else not freeze
        self.requires_grad_(trainable)
        self.custom_mask_warmup = custom_mask_warmup
        # training calls so far (MasKD's ``_iter``); a buffer, so a resumed run keeps counting
        self.register_buffer('calls', torch.zeros((), dtype=torch.long))
        self.mass_eps, self.lambda_div, self.loss_weight = mass_eps, lambda_div, loss_weight

    def _load(self, source: str, level: int | None) -> None:
        """Copy a stage-1 level (``load_stage1``) into the tokens and, with ``weight_mask``, the head; shapes must
        match exactly (the authors load with ``strict=True``)."""
        from zoo.hub import CheckpointError

        loaded = load_stage1(source, level)
        key = 'mask_modules.' + (str(level) if level is not None else '<its only level>')
        own = {'mask_token': self.tokens}
        if self.prob is not None:
            own.update({f'prob.{k}': v for k, v in self.prob.state_dict().items()})
            if not any(k.startswith('prob.') for k in loaded):
                raise CheckpointError(f'{source}: weight_mask=True but the file holds no weighting head ({key}.prob.*)')
        for k, mine in own.items():
            if k not in loaded:
                raise CheckpointError(f'{source}: no key {key}.{k!r} (the file has {sorted(loaded)})')
            if loaded[k].shape != mine.shape:
                raise CheckpointError(
                    f'{source}: {key}.{k} has shape {tuple(loaded[k].shape)}, this loss needs {tuple(mine.shape)} '
                    f'(channels={self.tokens.shape[1]}, num_masks={self.tokens.shape[0]})'
                )
            with torch.no_grad():
                mine.copy_(loaded[k])

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
