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
import re
from collections.abc import Iterable, Sequence
from typing import Any

import timm
import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from timm.layers import LayerNorm2d
from timm.models._manipulate import group_with_matcher
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
        return model_name, dict(pretrained=True, pretrained_cfg_overlay=dict(hf_hub_id=pretrained[len('hf-hub:') :]))
    if pretrained.startswith(('http://', 'https://')):
        return model_name, dict(pretrained=True, pretrained_cfg_overlay=dict(url=pretrained))
    if os.path.isfile(pretrained):
        return model_name, dict(pretrained=True, pretrained_cfg_overlay=dict(file=pretrained))
    if os.sep in pretrained or pretrained.endswith(('.pth', '.pt', '.bin', '.safetensors')):
        raise FileNotFoundError(f'ZooBackbone: pretrained file {pretrained} does not exist')
    return f'{model_name}.{pretrained}', dict(pretrained=True)


# ``model_kwargs`` that configure timm's feature wrapper, not the model (dropped for the probe model).
_WRAPPER_KWARGS = ('feature_cls', 'feature_cfg', 'flatten_sequential', 'out_indices', 'output_fmt')


def _probe_model(model_name: str, kwargs: dict) -> nn.Module:
    """The full timm model (random init), for its ``feature_info`` and ``group_matcher``.

    Built on the CPU: the meta device would skip the memory but is slower to construct for models
    initialised with ``trunc_normal_`` (every op is dispatched through Python).
    """
    kwargs = {k: v for k, v in kwargs.items() if k not in _WRAPPER_KWARGS}
    return timm.create_model(model_name, pretrained=False, **kwargs)


def _feature_info_list(model: nn.Module) -> list[dict]:
    info = getattr(model, 'feature_info', None)
    if info is None:
        raise ValueError(f'ZooBackbone: {type(model).__name__} has no feature_info (needed for features_only)')
    return list(info.info) if hasattr(info, 'info') else list(info)


def _stem_patterns(stem: Any) -> list[re.Pattern]:
    """The regexes of a ``group_matcher`` 'stem' entry (a regex, or a list of ``(regex, ordinal)``)."""
    if stem is None:
        return []
    if isinstance(stem, str):
        return [re.compile(stem)]
    return [re.compile(spec[0] if isinstance(spec, (tuple, list)) else spec) for spec in stem]


def stage_parameters(model: nn.Module) -> list[list[str]]:
    """Parameter names of the stem and of every feature stage of a timm model.

    Returns ``[stem, stage_0, ..., stage_{n-1}]`` with ``n = len(model.feature_info)``; names are
    ``model.named_parameters()`` names. Both come from what the model declares, not from its
    module names:

    * ``model.group_matcher(coarse=True)`` puts the parameters into ordered groups (timm's
      layer-decay grouping: execution order). The stem is what its ``'stem'`` entry matches.
    * Feature ``k`` is taken from ``model.feature_info[k]['module']``. Stage ``k`` ends with the
      last group holding a parameter of that module (but before the first group of the next tap's
      module) and starts after stage ``k - 1``, so it holds the downsampling that produces feature
      ``k`` wherever the family keeps it (timm Swin /
      MambaOut ``stages.k.downsample``, PVT ``stages.k.patch_embed``, CSwin ``merge{k}``, MHS-VM
      ``layers.{k-1}.downsample``, QSD ``downsample{k+1}``). For a plain ViT every block is a stage.

    Hence stem + stages ``0..k-1`` are exactly the parameters that feed feature ``k - 1``, and
    nothing that only feeds later features (``tests/test_backbone_adapter.py`` checks this
    against autograd for every family). Parameters after the last tap (final norm, head) belong to
    no stage.
    """
    if not hasattr(model, 'group_matcher'):
        raise ValueError(f'ZooBackbone: frozen_stages needs {type(model).__name__}.group_matcher()')
    matcher = model.group_matcher(coarse=True)
    names = [n for n, _ in model.named_parameters()]
    sentinel = '\0ungrouped'  # matches no regex: its group id is the one of unmatched parameters
    named = [(n, None) for n in names]
    if isinstance(matcher, dict):
        named.append((sentinel, None))
    gid = group_with_matcher(named, matcher, reverse=True)
    ungrouped = gid.pop(sentinel, None)

    info = _feature_info_list(model)
    order = [n for n, _ in model.named_modules()]
    owner = {}  # parameter -> position of its owning module in registration order
    for pos, (mname, mod) in enumerate(model.named_modules()):
        for pname, _ in mod.named_parameters(recurse=False):
            owner.setdefault(f'{mname}.{pname}' if mname else pname, pos)
    inside = [[n for n in names if n.startswith(tap['module'] + '.')] for tap in info]
    ends: list[int] = []
    for k, tap in enumerate(info):
        if inside[k]:
            bad = [n for n in inside[k] if gid[n] == ungrouped]
            if bad:
                raise ValueError(f'ZooBackbone: {type(model).__name__}.group_matcher() leaves {bad[0]} ungrouped')
            end = max(gid[n] for n in inside[k])
            if k + 1 < len(info) and inside[k + 1]:
                # A tap taken inside its module, before a downsampling that the matcher groups with
                # the next stage (MHS-VM's layers.{k}.downsample): the stage ends before that group.
                end = min(end, min(gid[n] for n in inside[k + 1]) - 1)
        else:  # a tap without parameters (e.g. ResNet's act1): the groups registered before it
            if tap['module'] not in order:
                raise ValueError(f"ZooBackbone: feature_info module '{tap['module']}' is not in {type(model).__name__}")
            pos = order.index(tap['module'])
            end = max((gid[n] for n in names if owner[n] < pos and gid[n] != ungrouped), default=-1)
        ends.append(max(end, ends[-1] if ends else -1))

    stem_re = _stem_patterns(matcher.get('stem') if isinstance(matcher, dict) else None)
    stem = [n for n in names if any(r.match(n) for r in stem_re)]
    stem_set = set(stem)
    stages = []
    for k, end in enumerate(ends):
        start = ends[k - 1] if k else -1
        stages.append([n for n in names if start < gid[n] <= end and n not in stem_set])
    return [stem, *stages]


def _wrapper_name_maps(model: nn.Module) -> Iterable[dict[str, str]]:
    """Candidate ``{features_only name: model name}`` maps for timm's feature wrappers.

    ``FeatureGetterNet`` keeps the model as ``model.``; ``FeatureListNet`` / ``FeatureDictNet`` /
    ``FeatureHookNet`` re-register its children, with ``flatten_sequential`` renaming a child
    ``stages.0`` of a top-level ``nn.Sequential`` to ``stages_0``.
    """
    names = [n for n, _ in model.named_parameters()]
    seq = {n for n, m in model.named_children() if isinstance(m, nn.Sequential)}

    def flat(n: str) -> str:
        head, _, rest = n.partition('.')
        return f'{head}_{rest}' if head in seq else n

    for prefix in ('', 'model.', 'body.'):
        yield {prefix + n: n for n in names}
        yield {prefix + flat(n): n for n in names}


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
        frozen_stages: -1 trains everything; 0 freezes the stem; k >= 1 freezes the stem and
            stages 0..k-1, i.e. every parameter that feeds feature tap k-1 and nothing after it
            (stages as declared by the model's ``group_matcher`` and ``feature_info``, see
            :func:`stage_parameters`; for a plain ViT a stage is one block). Frozen parts stay in
            eval mode through ``.train()`` (BatchNorm statistics, dropout, drop-path).
        norm_eval: keep every BatchNorm layer in eval mode while training.
        out_norm: add a LayerNorm (over channels) on every returned map.
        model_kwargs: extra ``timm.create_model`` arguments (e.g. ``dynamic_img_size=True`` for ViT).
        init_cfg: mmengine init config for the adapter's own layers (the timm weights are loaded
            at construction and never re-initialised).

    Attributes:
        out_channels: channels of each returned map, for the neck's ``in_channels``.
        out_strides: stride of each returned map.
        num_stages: feature taps of the timm model (the largest valid ``frozen_stages``).
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

        # Probe the full model once (no weights) for every feature tap (features_only defaults may
        # list fewer, e.g. ViT's last three blocks) and for the stage declaration.
        probe = _probe_model(model_name, kwargs)
        reductions = [d['reduction'] for d in _feature_info_list(probe)]
        self.num_stages = len(reductions)
        if not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(
                f'ZooBackbone: frozen_stages={frozen_stages} must be in -1..{self.num_stages} '
                f'for {model_name} ({self.num_stages} stages)'
            )
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
                raise ValueError(
                    f'ZooBackbone: out_indices {bad} must be pyramid levels 0..3 for the flat model {model_name}'
                )
            self.pyramid = SimplePyramid(channels[-1], strides[-1], [PYRAMID_STRIDES[i] for i in self.out_indices])
            channels = self.pyramid.out_channels
            strides = [PYRAMID_STRIDES[i] for i in self.out_indices]
        self.out_channels: list[int] = channels
        self.out_strides: list[int] = strides
        self.out_norms = nn.ModuleList([LayerNorm2d(c) for c in channels]) if out_norm else None
        self._frozen_modules: list[nn.Module] = []
        if frozen_stages >= 0:
            self._freeze(probe)

    # -- freezing --------------------------------------------------------------------------------
    def _freeze(self, probe: nn.Module) -> None:
        """Freeze the stem and stages ``0..frozen_stages-1`` (see :func:`stage_parameters`)."""
        groups = stage_parameters(probe)
        body_names = [n for n, _ in self.body.named_parameters()]
        to_probe = next((m for m in _wrapper_name_maps(probe) if all(n in m for n in body_names)), None)
        if to_probe is None:
            raise ValueError(
                f'ZooBackbone: cannot match the parameters of the features_only {self.model_name} '
                f'to the model (wrapper {type(self.body).__name__})'
            )
        frozen_probe = {n for g in groups[: self.frozen_stages + 1] for n in g}
        frozen = {n for n in body_names if to_probe[n] in frozen_probe}
        if not frozen:
            raise ValueError(f'ZooBackbone: frozen_stages={self.frozen_stages} froze nothing in {self.model_name}')
        for n, p in self.body.named_parameters():
            if n in frozen:
                p.requires_grad_(False)
        # The largest submodules whose parameters are all frozen: kept in eval mode by train().
        ids = {id(p) for n, p in self.body.named_parameters() if n in frozen}
        covered: set[int] = set()
        for m in self.body.modules():
            if id(m) in covered:
                continue
            params = list(m.parameters())
            if params and all(id(p) in ids for p in params):
                self._frozen_modules.append(m)
                covered.update(id(sub) for sub in m.modules())
        self.train(self.training)

    def train(self, mode: bool = True) -> ZooBackbone:
        """``nn.Module.train``, with frozen stages (and every BatchNorm if ``norm_eval``) in eval mode."""
        super().train(mode)
        if mode:
            for m in self._frozen_modules:
                m.eval()
            if self.norm_eval:
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
