"""``ZooBackbone``: any timm model (zoo or timm) as an mmdet / mmseg backbone.

The model is built with ``timm.create_model(..., features_only=True)`` and the adapter returns a
tuple of NCHW feature maps, one per ``out_indices`` entry:

* NHWC-native models (MambaOut, timm's Swin) are permuted to NCHW;
* ``out_norm=True`` adds a LayerNorm over channels on every output (the MambaOut maintainer's
  dense recipe: "add an LN on each stage output");
* non-hierarchical models (DeiT / ViT: every tap has the same reduction) get a simple multi-scale
  neck (ViTDet style) that turns the last map into strides 4, 8, 16 and 32.

The class is registered in mmengine's root ``MODELS`` registry, so ``type='ZooBackbone'`` builds
from mmdet, mmseg and zoo configs alike.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import timm
import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from timm.layers import LayerNorm2d
from torch.nn.modules.batchnorm import _BatchNorm

from zoo.hub import create_model

PYRAMID_STRIDES = (4, 8, 16, 32)


def _pretrained_kwargs(model_name: str, pretrained: Any) -> tuple[str, dict]:
    """Map the ``pretrained`` argument to ``timm.create_model`` arguments.

    ``None``/``False``: random init. ``True``: the model's default pretrained cfg source.
    A path to an existing file: loaded through ``pretrained_cfg_overlay=dict(file=...)`` (the
    model's ``checkpoint_filter_fn`` maps official checkpoints). ``'hf-hub:org/repo'`` or an
    ``http(s)://`` URL: that source. Any other string without a path separator: a pretrained tag
    of ``model_name`` (``'in1k'`` -> ``'<model_name>.in1k'``).
    """
    if pretrained is None or pretrained is False:
        return model_name, dict(pretrained=False)
    if pretrained is True:
        return model_name, dict(pretrained=True)
    if not isinstance(pretrained, str):
        raise TypeError(f'ZooBackbone: pretrained must be None, a bool or a string, got {type(pretrained).__name__}')
    if pretrained.startswith('hf-hub:'):
        return model_name, dict(pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id=pretrained[len('hf-hub:'):]))
    if pretrained.startswith(('http://', 'https://')):
        return model_name, dict(pretrained=True, pretrained_cfg_overlay=dict(url=pretrained))
    if os.path.isfile(pretrained):
        return model_name, dict(pretrained=True, pretrained_cfg_overlay=dict(file=pretrained))
    if os.sep in pretrained or pretrained.endswith(('.pth', '.pt', '.bin', '.safetensors')):
        raise FileNotFoundError(f'ZooBackbone: pretrained file {pretrained} does not exist')
    return f'{model_name}.{pretrained}', dict(pretrained=True)


class SimplePyramid(nn.Module):
    """ViTDet-style simple feature pyramid from one map of stride ``in_stride``.

    Input ``(B, C, H, W)`` at stride ``in_stride``; outputs ``(B, C_s, H * in_stride / s, ...)`` for
    each ``s`` in ``strides``: 2x2 stride-2 transposed convs to go up (LayerNorm + GELU between
    two of them), max-pooling to go down, identity at the input stride. Channels halve per
    upsampling step (ViTDet), so ``C_s = C * min(1, s / in_stride)``.
    """

    def __init__(self, channels: int, in_stride: int, strides: Sequence[int] = PYRAMID_STRIDES) -> None:
        super().__init__()
        self.branches = nn.ModuleList()
        self.out_channels: list[int] = []
        for s in strides:
            if s % in_stride and in_stride % s:
                raise ValueError(f'ZooBackbone: pyramid stride {s} is not a power-of-two multiple of {in_stride}')
            layers: list[nn.Module] = []
            c = channels
            if s < in_stride:
                steps = (in_stride // s).bit_length() - 1
                for k in range(steps):
                    layers.append(nn.ConvTranspose2d(c, c // 2, kernel_size=2, stride=2))
                    c //= 2
                    if k < steps - 1:
                        layers += [LayerNorm2d(c), nn.GELU()]
            elif s > in_stride:
                for _ in range((s // in_stride).bit_length() - 1):
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            self.branches.append(nn.Sequential(*layers))
            self.out_channels.append(c)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [b(x) for b in self.branches]


@MODELS.register_module()
class ZooBackbone(BaseModule):
    """A timm model as a dense-prediction backbone returning a tuple of NCHW maps.

    Args:
        model_name: any name ``timm.create_model`` knows after ``import zoo``.
        out_indices: which feature taps to return (timm ``features_only`` indices). For a
            non-hierarchical model only the last tap is used, and ``out_indices`` selects levels
            of the simple pyramid (0..3 = strides 4, 8, 16, 32).
        pretrained: ``None``/``False``, ``True`` (the model's default weights), a checkpoint file
            (official or zoo layout), ``'hf-hub:org/repo'``, a URL, or a pretrained tag.
        drop_path_rate: stochastic depth of the timm model.
        frozen_stages: -1 trains everything; 0 freezes the stem (everything before the first
            stage); k >= 1 also freezes stages 0..k-1.
        norm_eval: keep BatchNorm layers in eval mode while training.
        out_norm: add a LayerNorm (over channels) on every returned map.
        model_kwargs: extra ``timm.create_model`` arguments (e.g. ``dynamic_img_size=True`` for ViT).
        init_cfg: mmengine init config for the adapter's own layers (the timm weights are loaded
            at construction and never re-initialised).

    Attributes:
        out_channels: channels of each returned map, for the neck's ``in_channels``.
        out_strides: stride of each returned map.
    """

    def __init__(
        self,
        model_name: str,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        pretrained: Any = None,
        drop_path_rate: float | None = None,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        out_norm: bool = False,
        model_kwargs: dict | None = None,
        init_cfg: dict | list | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if not timm.is_model(model_name):
            raise KeyError(f"ZooBackbone: unknown timm model '{model_name}' (did you import zoo?)")
        kwargs = dict(model_kwargs or {})
        if drop_path_rate is not None:
            kwargs['drop_path_rate'] = drop_path_rate
        name, pre = _pretrained_kwargs(model_name, pretrained)
        self.model_name = model_name
        self.out_indices = tuple(int(i) for i in out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        # Probe the feature layout once (cheap: no weights) to decide between taps and a pyramid.
        info = timm.create_model(model_name, pretrained=False, features_only=True, **kwargs).feature_info
        reductions = info.reduction()
        self._stage_modules = [d['module'] for d in info.info]  # every tap, for frozen_stages
        # Every tap at one stride (>= 8) means a plain ViT-like model: build the pyramid ourselves.
        self.flat = len(set(reductions)) == 1 and reductions[0] >= 8
        if self.flat:
            take = (len(reductions) - 1,)
        else:
            n = len(reductions)
            bad = [i for i in self.out_indices if not -n <= i < n]
            if bad:
                raise ValueError(f'ZooBackbone: out_indices {bad} out of range for {model_name} ({n} feature levels)')
            take = self.out_indices
        # the zoo's weight route: a failed download or a bad file is one line naming it
        self.body = create_model(name, features_only=True, out_indices=take, **kwargs, **pre)
        fmt = getattr(self.body, 'output_fmt', 'NCHW')
        self.nhwc = str(getattr(fmt, 'value', fmt)).upper() == 'NHWC'
        channels = list(self.body.feature_info.channels())
        strides = list(self.body.feature_info.reduction())
        self.pyramid = None
        if self.flat:
            bad = [i for i in self.out_indices if not 0 <= i < len(PYRAMID_STRIDES)]
            if bad:
                raise ValueError(f'ZooBackbone: out_indices {bad} must be pyramid levels 0..3 for the flat '
                                 f'model {model_name}')
            self.pyramid = SimplePyramid(channels[-1], strides[-1], [PYRAMID_STRIDES[i] for i in self.out_indices])
            channels = self.pyramid.out_channels
            strides = [PYRAMID_STRIDES[i] for i in self.out_indices]
        self.out_channels: list[int] = channels
        self.out_strides: list[int] = strides
        self.out_norms = nn.ModuleList([LayerNorm2d(c) for c in channels]) if out_norm else None
        self._freeze()

    # -- freezing --------------------------------------------------------------------------------
    def _stage_of(self, param_name: str) -> int | None:
        """Index of the feature stage a parameter belongs to, or None (stem, pos-embed, ...)."""
        name = param_name[len('model.'):] if param_name.startswith('model.') else param_name
        for i, mod in enumerate(self._stage_modules):
            for prefix in (mod, mod.replace('.', '_', 1)):
                if name == prefix or name.startswith(prefix + '.'):
                    return i
        return None

    def _freeze(self) -> None:
        if self.frozen_stages < 0:
            return
        seen_stage = False
        frozen = 0
        for name, p in self.body.named_parameters():
            stage = self._stage_of(name)
            seen_stage = seen_stage or stage is not None
            if (stage is None and not seen_stage) or (stage is not None and stage < self.frozen_stages):
                p.requires_grad_(False)
                frozen += 1
        if frozen == 0:
            raise ValueError(f'ZooBackbone: frozen_stages={self.frozen_stages} froze nothing in {self.model_name}')

    def train(self, mode: bool = True) -> ZooBackbone:
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def init_weights(self) -> None:
        """Initialise only the adapter's own layers; mmengine's default would also call the timm
        model's ``init_weights`` (ViT has one) and wipe pretrained weights."""
        if self.init_cfg:
            super().init_weights()
            return
        for m in [self.pyramid, self.out_norms]:
            if m is None:
                continue
            for sub in m.modules():
                if isinstance(sub, (nn.ConvTranspose2d, nn.Conv2d)):
                    nn.init.kaiming_normal_(sub.weight, mode='fan_out')
                    if sub.bias is not None:
                        nn.init.zeros_(sub.bias)
        self._is_init = True

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(B, 3, H, W)`` -> tuple of ``(B, out_channels[i], H / out_strides[i], W / out_strides[i])``."""
        feats = self.body(x)
        if isinstance(feats, dict):
            feats = list(feats.values())
        if self.nhwc:
            feats = [f.permute(0, 3, 1, 2) for f in feats]
        if self.pyramid is not None:
            feats = self.pyramid(feats[-1])
        if self.out_norms is not None:
            feats = [norm(f) for norm, f in zip(self.out_norms, feats)]
        return tuple(f.contiguous() for f in feats)
