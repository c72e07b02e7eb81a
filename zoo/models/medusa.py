"""MEDUSA: Multi-scale Encoder-Decoder Self-Attention (Aboutalebi et al., Frontiers in Medicine 2022,
arXiv 2110.06063), on any timm backbone.

One high-capacity "body" (a 4-level U-Net, :class:`zoo.layers.encoder_decoder_attention.UNetBody`) looks at a
256x256 grayscale view of the image and produces one sigmoid attention map. Small "heads"
(:class:`~zoo.layers.encoder_decoder_attention.GateHead`: bilinear resize + 7x7 conv, no activation, no BN)
turn that map into a gate ``A_k`` for each tapped scale of the main network, fused as ``x <- x + x * A_k``.

``medusa_resnet50`` is the paper's network (COVIDNet-CXR-3): the body, four heads (after the stem and
max-pool, and after conv2_x, conv3_x and conv4_x; none after conv5_x), a ResNet-50 trunk on 480x480 RGB, and
the classifier of the development code (ReLU, AvgPool 7 stride 7, flatten, Linear: 2x2x2048 = 8192 features
at 480). :class:`MEDUSA` wraps any timm model that has ``feature_info``; the gates sit on the outputs of
trunk modules, given as ``feature_info`` indices (stage outputs) or module names. Registered on other trunks:
``medusa_convnext_tiny`` and ``medusa_mambaout_femto`` (channels-last stages, gated in their own layout).

Sources: the released TF1 checkpoint has no code; facts come from the authors' Keras development code in
``github.com/lindawangg/COVID-Net`` (``tf_dataset@a5d43a7``: ``model/build_model.py``, ``model/resnet1.py``,
``data_tf.py``; ``COVX@727cc7b:train_tf.py``). Choices the sources leave open (reasons in ``docs/medusa.md``):

* **Heads: 4** (``resnet1``, the default of the development code; the older ``SCOVX`` builder had 5). With 4
  the counted total, 29.09M, fits the reported 29.2M.
* **Trunk: timm's ResNet-50** (v1.5: stride in the 3x3 conv; Keras' v1 strides the 1x1 conv; same parameter
  count without Keras' conv biases), so timm's ImageNet weights load (``resnet50.tv_in1k`` via the pretrained
  cfg). The development code trains the ResNet from scratch; whether the paper did is unknown.
* **Resizing**: body view and gates are bilinear with half-pixel centres (``align_corners=False``), the
  conventions of OpenCV's ``INTER_LINEAR`` and TF2's ``tf.image.resize``; never checked against the TF graph.
* **Init**: heads He-normal (truncated, fan-in; Keras ``he_normal``) with zero bias; body and trunk convs keep
  PyTorch / timm defaults (Keras would use Glorot-uniform).
* **Body view** inside the model: the normalisation of the RGB input is undone, BT.601 luma, bilinear resize
  to ``body_size``, per-image z-score. For a gray image (R = G = B) the z-score makes the view independent of
  the input normalisation. An explicit body input can be passed as ``body_x``.
* **MACs**: counted from the layers (``zoo.benchmark.macs``), the network is 53.0 GMACs (ResNet-50 at 480: 18.8 G,
  body at 256: 33.9 G, the rest 0.36 G); the reported 29.1 G is not reproduced and its convention is unknown.
* **Classifier**: ``global_pool='paper'`` (the development code's ReLU + AvgPool 7/7, whose Linear size depends
  on ``img_size``) for ``medusa_resnet50``; ``'avg'`` (timm's global pooling, size-free) elsewhere.
* **Gradient checkpointing** recomputes the gated trunk as one segment (the gates are applied by forward hooks,
  which a per-block checkpoint of the trunk would skip).
"""

from __future__ import annotations

import functools
import importlib
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import timm
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import get_device_dtype, register_notrace_function
from timm.models import register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint
from torch import nn
from torch.fx._symbolic_trace import is_fx_symbolic_tracing

from zoo.hub import build_model_with_weights, load_checkpoint_file, unwrap_state_dict, zoo_default_cfgs
from zoo.layers.amp_conv import small_grid_depthwise_convs
from zoo.layers.encoder_decoder_attention import GateHead, UNetBody, body_view, gate_fuse

__all__ = [
    'MEDUSA',
    'PAPER_FACTS',
    'body_state_from_keras',
    'checkpoint_filter_fn',
    'keras_conv_order',
    'load_body_checkpoint',
    'read_keras_conv_weights',
]

ORIGIN_URL = 'https://github.com/lindawangg/COVID-Net'
PAPER_POOL = 7  # AveragePooling2D(7, 7) of the development code's classifier


def _prefix_regex(regex: str, prefix: str) -> str:
    """A timm group-matcher regex for names under ``prefix`` (``'^conv1|bn1'`` -> ``'^trunk\\.(?:conv1|bn1)'``)."""
    body = re.sub(r'(^|\|)\^', r'\1', regex)
    return f'^{re.escape(prefix)}(?:{body})'


def _match_ordinal(compiled: list[tuple[re.Pattern, tuple, Any]], name: str) -> tuple[float, ...]:
    """timm's ``group_with_matcher`` ordinal of one parameter name (``inf`` if unmatched)."""
    for pattern, prefix, suffix in compiled:
        m = pattern.match(name)
        if m:
            parts = [prefix, m.groups(), suffix]
            return tuple(float(v) for part in parts if part for v in part)
    return (float('inf'),)


def _compile(matcher: dict) -> list[tuple[re.Pattern, tuple, Any]]:
    out = []
    for i, spec in enumerate(matcher.values()):
        if spec is None:
            continue
        if isinstance(spec, (tuple, list)):
            out += [(re.compile(s[0]), (i,), s[1]) for s in spec]
        else:
            out.append((re.compile(spec), (i,), None))
    return out


@register_notrace_function  # FX: a shape check on the traced input
@torch.fx.wrap
def check_input(x: torch.Tensor, in_chans: int, reduction: int) -> torch.Tensor:
    if x.ndim != 4 or x.shape[1] != in_chans:
        raise ValueError(f'MEDUSA: expected a (B, {in_chans}, H, W) image batch, got {tuple(x.shape)}')
    if min(x.shape[-2:]) < reduction:
        raise ValueError(f'MEDUSA: input {x.shape[-2]}x{x.shape[-1]} is smaller than the trunk stride {reduction}')
    return x


@register_notrace_function  # FX: body_x is an optional input (a graph placeholder that may be None)
@torch.fx.wrap
def body_input_for(
    x: torch.Tensor, body_x: torch.Tensor | None, body_size: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """``body_x`` after a shape check, or, when it is None, the body's view of ``x`` (:func:`body_view`)."""
    if body_x is None:
        return body_view(x, body_size, mean, std)
    if body_x.ndim != 4 or body_x.shape[1] != 1 or body_x.shape[0] != x.shape[0]:
        raise ValueError(
            f'MEDUSA: body_x must be (B={x.shape[0]}, 1, H, W) with H, W multiples of 16, got {tuple(body_x.shape)}'
        )
    return body_x


@register_notrace_function  # FX: a shape check on a traced feature map
@torch.fx.wrap
def check_tap(output: torch.Tensor, k: int, channels: int, nhwc: bool, module: str) -> torch.Tensor:
    if output.ndim != 4 or output.shape[-1 if nhwc else 1] != channels:
        raise ValueError(
            f'MEDUSA: gate {k} expects an {"NHWC" if nhwc else "NCHW"} map with {channels} channels from {module}, '
            f'got {tuple(output.shape)}'
        )
    return output


@register_notrace_function  # FX: a shape check on the traced pooled features
@torch.fx.wrap
def check_paper_features(x: torch.Tensor, features: int, img_size: tuple[int, int]) -> torch.Tensor:
    if x.shape[1] != features:
        raise ValueError(
            f"MEDUSA: the 'paper' classifier was built for img_size={img_size} ({features} pooled features) but "
            f'this input gives {x.shape[1]}; feed {img_size[0]}x{img_size[1]} images, build with img_size=, or use '
            "global_pool='avg'"
        )
    return x


class MEDUSA(nn.Module):
    """A timm trunk gated at several scales by one U-Net body (MEDUSA).

    Args:
        trunk: timm model name of the main network (built without pretrained weights; use the pretrained cfg
            or ``pretrained_cfg_overlay=dict(file=...)`` to load a plain timm checkpoint of it).
        gate_taps: where the gates act: indices into the trunk's own ``feature_info`` (ints: that tap's module
            output; for timm ResNets index 0 is the stride-2 stem, so 1-3 are layer1-layer3) or trunk module names
            (strings: that module's output), in execution order. Channels-last trunks (``output_fmt='NHWC'``,
            timm's MambaOut) are gated in their own layout.
        num_classes: classifier outputs (0: the pooled features).
        global_pool: ``'paper'`` (ReLU, AvgPool 7 stride 7, flatten: the development code) or a timm pool type
            (``'avg'``, ...; the trunk's own head, e.g. ConvNeXt's norm, is then used).
        img_size: main input side; sizes the ``'paper'`` classifier (480 gives 2x2 pooled maps).
        in_chans: main input channels.
        body_size: side of the body's input (256).
        body_dims, body_decoder_dims: U-Net widths (see :class:`UNetBody`).
        head_kernel: gate conv kernel (7).
        drop_rate: dropout before the classifier.
        drop_path_rate: the trunk's stochastic depth (passed to it when given).
        input_mean, input_std: the main input's normalisation, undone for the body view.
        body_checkpoint: a checkpoint of the body (keys of :class:`UNetBody`, optionally under ``body.``).
        freeze_body: freeze the body and the heads (no gradient; see :meth:`set_body_trainable`).
        trunk_kwargs: extra ``timm.create_model`` arguments for the trunk (e.g. ``layers=(1, 1, 1, 1)``).

    Shapes: ``forward(x)``: ``(B, in_chans, H, W)`` -> ``(B, num_classes)``; the body map is
    ``(B, 1, body_size, body_size)``. ``feature_info`` lists the trunk taps of reduction >= 4 (their outputs
    after gating, as ``features_only`` returns them).
    """

    def __init__(
        self,
        trunk: str = 'resnet50',
        gate_taps: Sequence[int | str] = ('maxpool', 'layer1', 'layer2', 'layer3'),
        num_classes: int = 2,
        global_pool: str = 'avg',
        img_size: int | Sequence[int] = 480,
        in_chans: int = 3,
        body_size: int = 256,
        body_dims: Sequence[int] = (32, 64, 64, 128, 256),
        body_decoder_dims: Sequence[int] = (256, 256, 128, 64),
        head_kernel: int = 7,
        drop_rate: float = 0.0,
        drop_path_rate: float | None = None,
        input_mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
        input_std: Sequence[float] = IMAGENET_DEFAULT_STD,
        body_checkpoint: str | None = None,
        freeze_body: bool = False,
        trunk_kwargs: dict | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        kwargs.pop('pretrained_cfg', None)  # timm passes these through build_model_with_cfg
        kwargs.pop('pretrained_cfg_overlay', None)
        if kwargs:
            raise TypeError(f'MEDUSA: unexpected arguments {sorted(kwargs)}')
        if body_size % 16:
            raise ValueError(f'MEDUSA: body_size={body_size} must be a multiple of 16 (four 2x poolings)')
        self.trunk_name = trunk
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.body_size = int(body_size)
        self.input_mean = tuple(float(v) for v in input_mean)
        self.input_std = tuple(float(v) for v in input_std)
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        self._gate_ctx: dict | None = None

        self.body = UNetBody(1, body_dims, body_decoder_dims, **dd)
        trunk_kwargs = dict(trunk_kwargs or {})
        if drop_path_rate is not None:
            trunk_kwargs['drop_path_rate'] = drop_path_rate
        self.trunk = timm.create_model(trunk, pretrained=False, num_classes=0, in_chans=in_chans, **trunk_kwargs, **dd)
        # depthwise convs (MambaOut's 7 x 7) on maps no larger than the kernel: cropped taps, and float32 in a bf16
        # autocast training step, where oneDNN's bf16 depthwise backward is slow (zoo.layers.amp_conv)
        small_grid_depthwise_convs(self.trunk)
        self.trunk_nhwc = str(getattr(self.trunk, 'output_fmt', 'NCHW')).upper().endswith('NHWC')
        self.output_fmt = 'NHWC' if self.trunk_nhwc else 'NCHW'  # of forward_features, as timm's MambaOut
        info = list(self.trunk.feature_info)
        # taps of reduction >= 4: features_only gives the usual [4, 8, 16, 32] pyramid (ResNet's stride-2 act1 out)
        self._trunk_index = [i for i, d in enumerate(info) if d['reduction'] >= 4]
        self.feature_info = [
            dict(info[i], module=f'trunk.{info[i]["module"]}', index=k) for k, i in enumerate(self._trunk_index)
        ]
        self.num_features = self.trunk.num_features

        # gates: module names and channels (string taps are probed with a forward on a small input)
        names, channels = [], []
        probe: list[str] = []
        for tap in gate_taps:
            if isinstance(tap, int):
                if not -len(info) <= tap < len(info):
                    raise ValueError(f'MEDUSA: gate tap {tap} out of range for {trunk} ({len(info)} feature taps)')
                names.append(info[tap]['module'])
                channels.append(int(info[tap]['num_chs']))
            else:
                names.append(str(tap))
                channels.append(-1)
                probe.append(str(tap))
        modules = dict(self.trunk.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise ValueError(f'MEDUSA: gate taps {missing} are not modules of {trunk}')
        if probe:
            found = self._probe_channels(probe)
            channels = [found[n] if c < 0 else c for n, c in zip(names, channels)]
        self.gate_modules = tuple(names)
        self.gate_channels = tuple(channels)
        self.heads = nn.ModuleList([GateHead(c, head_kernel, **dd) for c in channels])
        for k, n in enumerate(names):
            modules[n].register_forward_hook(functools.partial(MEDUSA._gate_hook, self, k))

        self.global_pool = ''
        self.head_drop = nn.Dropout(drop_rate)
        self.fc: nn.Module = nn.Identity()
        self.reset_classifier(num_classes, global_pool)

        if body_checkpoint is not None:
            load_body_checkpoint(self, body_checkpoint)
        if freeze_body:
            self.set_body_trainable(False)

    # ---------------------------------------------------------------- construction helpers
    def _probe_channels(self, names: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        ch = -1 if self.trunk_nhwc else 1
        handles = [
            self.trunk.get_submodule(n).register_forward_hook(
                functools.partial(lambda n, _m, _a, out: found.__setitem__(n, int(out.shape[ch])), n)
            )
            for n in names
        ]
        was_training = self.trunk.training
        try:
            with torch.no_grad():
                self.trunk.eval().forward_features(
                    torch.zeros(1, self.in_chans, 64, 64, **get_device_dtype(self.trunk))
                )
        finally:
            for h in handles:
                h.remove()
            self.trunk.train(was_training)
        return found

    def _paper_features(self) -> int:
        red = self.feature_info[-1]['reduction']
        sides = [math.ceil(s / red) for s in self.img_size]
        if min(sides) < PAPER_POOL:
            raise ValueError(
                f'MEDUSA: img_size={self.img_size} gives a {sides[0]}x{sides[1]} final map, smaller than the '
                f"'paper' classifier's {PAPER_POOL}x{PAPER_POOL} pool; use a larger img_size or global_pool='avg'"
            )
        cells = [(s - PAPER_POOL) // PAPER_POOL + 1 for s in sides]
        return self.num_features * cells[0] * cells[1]

    # ---------------------------------------------------------------- the gates
    def _gate_hook(self, k: int, _module: nn.Module, _args: Any, output: torch.Tensor) -> torch.Tensor | None:
        ctx = self._gate_ctx
        if ctx is None:  # the trunk called on its own: ungated
            return None
        nhwc = self.trunk_nhwc
        output = check_tap(output, k, self.gate_channels[k], nhwc, self.gate_modules[k])
        size = output.shape[1:3] if nhwc else output.shape[-2:]
        gate = self.heads[k](ctx['attn'].to(output.dtype), size)
        if nhwc:  # channels-last trunks (timm MambaOut): the same gate, laid out like the map
            gate = gate.permute(0, 2, 3, 1)
        if ctx['gates'] is not None:
            ctx['gates'].append(gate)
        return gate_fuse(output, gate)

    def _gated(self, fn, x: torch.Tensor, attn: torch.Tensor, gates: list | None = None):
        """``fn(x)`` (a trunk method) with every gate applied, for body map ``attn``."""
        if is_fx_symbolic_tracing():
            # FX keeps torch.nn modules as leaves and never runs their forward hooks, where the gates act
            taps = {n: self.trunk.get_submodule(n) for n in self.gate_modules}
            leaves = [
                n
                for n, m in taps.items()
                if type(m).__module__.startswith('torch.nn') and not isinstance(m, nn.Sequential)
            ]
            if leaves:
                raise TypeError(
                    f'MEDUSA: gate taps {leaves} are torch.nn modules, which FX traces as leaves without their hooks '
                    '(the gates); trace a MEDUSA whose taps are trunk blocks or stages, or use torch.export'
                )
        self._gate_ctx = dict(attn=attn, gates=gates)
        try:
            return fn(x)
        finally:
            self._gate_ctx = None

    def set_body_trainable(self, trainable: bool = True) -> None:
        """Freeze (``False``) or unfreeze the body and its heads (the development code's ``sem*`` variables)."""
        for p in self.body_parameters():
            p.requires_grad_(trainable)

    def body_parameters(self) -> list[nn.Parameter]:
        """The body's and the heads' parameters (``sem/*`` in the development code)."""
        return list(self.body.parameters()) + list(self.heads.parameters())

    def trunk_parameters(self) -> list[nn.Parameter]:
        """Every other parameter: the trunk and the classifier (``train_vars_resnet``)."""
        ids = {id(p) for p in self.body_parameters()}
        return [p for p in self.parameters() if id(p) not in ids]

    # ---------------------------------------------------------------- inputs
    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        return check_input(x, self.in_chans, self.feature_info[-1]['reduction'])

    def body_input(self, x: torch.Tensor) -> torch.Tensor:
        """The body's view of a main input ``(B, C, H, W)``: ``(B, 1, body_size, body_size)`` (see
        :func:`~zoo.layers.encoder_decoder_attention.body_view`)."""
        return body_view(x, self.body_size, self.input_mean, self.input_std)

    def forward_body(self, x: torch.Tensor, body_x: torch.Tensor | None = None) -> torch.Tensor:
        """Body map ``(B, 1, body_size, body_size)`` in (0, 1), from ``x`` or from an explicit ``body_x``."""
        return self.body(body_input_for(x, body_x, self.body_size, self.input_mean, self.input_std))

    # ---------------------------------------------------------------- timm API
    def forward_features(self, x: torch.Tensor, body_x: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, C, H, W)`` -> the trunk's final map ``(B, num_features, H/32, W/32)`` (gated trunk)."""
        x = self._check_input(x)
        attn = self.forward_body(x, body_x)
        if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
            return checkpoint(self._gated, self.trunk.forward_features, x, attn)
        return self._gated(self.trunk.forward_features, x, attn)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Final map -> logits ``(B, num_classes)`` or pooled features ``(B, head_hidden_size)``."""
        if self.global_pool == 'paper':
            x = F.avg_pool2d(F.relu(x), PAPER_POOL, PAPER_POOL).flatten(1)
            x = check_paper_features(x, self.head_hidden_size, self.img_size)
        else:
            x = self.trunk.forward_head(x, pre_logits=True)
        x = self.head_drop(x)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor, body_x: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, C, H, W)`` (and optionally the body input ``(B, 1, h, w)``) -> ``(B, num_classes)``."""
        return self.forward_head(self.forward_features(x, body_x))

    @torch.no_grad()
    def forward_attention(self, x: torch.Tensor, body_x: torch.Tensor | None = None) -> dict[str, Any]:
        """For visualisation: ``body`` ``(B, 1, body_size, body_size)``, ``gates`` (one ``(B, C_k, H_k, W_k)``
        tensor ``A_k`` per head, in execution order) and ``names`` (the gated trunk modules)."""
        x = self._check_input(x)
        attn = self.forward_body(x, body_x)
        gates: list[torch.Tensor] = []
        self._gated(self.trunk.forward_features, x, attn, gates)
        return dict(body=attn, gates=gates, names=list(self.gate_modules[: len(gates)]))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = 'NCHW',
        intermediates_only: bool = False,
        body_x: torch.Tensor | None = None,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The gated trunk's stage outputs at ``feature_info`` taps (and the final map unless
        ``intermediates_only``)."""
        take, _ = feature_take_indices(len(self.feature_info), indices)
        x = self._check_input(x)
        attn = self.forward_body(x, body_x)
        fn = functools.partial(
            self.trunk.forward_intermediates,
            indices=[self._trunk_index[i] for i in take],
            norm=norm,
            stop_early=stop_early,
            output_fmt=output_fmt,
            intermediates_only=intermediates_only,
        )
        return self._gated(fn, x, attn)

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop what no kept tap needs (the trunk's later stages, the classifier and the unused heads)."""
        take, _ = feature_take_indices(len(self.feature_info), indices)
        self.trunk.prune_intermediate_layers(
            [self._trunk_index[i] for i in take], prune_norm=prune_norm, prune_head=prune_head
        )
        alive = {id(m) for m in self.trunk.modules()}
        for k, n in enumerate(self.gate_modules):
            mod = dict(self.trunk.named_modules()).get(n)
            if mod is None or id(mod) not in alive or not mod._forward_hooks:  # replaced by the trunk's prune
                self.heads[k] = nn.Identity()
        if prune_head:
            self.fc = nn.Identity()
            self.num_classes = 0
        return take

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """New classifier for ``num_classes`` (0: none); ``global_pool`` ``'paper'`` or a timm pool type."""
        if global_pool is not None:
            self.global_pool = global_pool
            # the trunk's own head pools for timm pool types; the paper's pool needs its raw map
            self.trunk.reset_classifier(0, '' if global_pool == 'paper' else global_pool)
        if self.global_pool == 'paper':
            if self.trunk_nhwc:
                raise ValueError(f"MEDUSA: global_pool='paper' needs an NCHW trunk; {self.trunk_name} is channels-last")
            self.head_hidden_size = self._paper_features()
        else:
            self.head_hidden_size = getattr(self.trunk, 'head_hidden_size', None) or self.trunk.num_features
        self.num_classes = num_classes
        dd = get_device_dtype(self.trunk)
        self.fc = nn.Linear(self.head_hidden_size, num_classes, **dd) if num_classes > 0 else nn.Identity()

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {f'trunk.{n}' for n in getattr(self.trunk, 'no_weight_decay', lambda: set())()}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """The trunk's groups under ``trunk.``; the body joins the stem (it feeds the first gate), and each head
        joins the group of the module it gates (so layer decay follows execution order)."""
        inner = self.trunk.group_matcher(coarse=coarse)
        if not isinstance(inner, dict):
            raise ValueError(f'MEDUSA: {self.trunk_name}.group_matcher() must be a dict of regexes')

        def prefixed(spec: Any) -> list:
            if spec is None:
                return []
            if isinstance(spec, str):
                return [(_prefix_regex(spec, 'trunk.'), None)]
            return [(_prefix_regex(s[0], 'trunk.'), s[1]) for s in spec]

        matcher: dict[str, list] = {'stem': [(r'^body\.', None), *prefixed(inner.get('stem'))]}
        for key, spec in inner.items():
            if key != 'stem':
                matcher[key] = prefixed(spec)
        compiled = _compile(matcher)
        params = [n for n, _ in self.trunk.named_parameters()]
        order = [n for n, _ in self.trunk.named_modules()]
        keys = list(matcher)
        for k, mod in enumerate(self.gate_modules):
            if isinstance(self.heads[k], nn.Identity):
                continue
            pos = order.index(mod) if mod in order else len(order)
            # parameters registered before the gated module or inside it: the last group the gate follows
            before = [n for n in params if order.index(n.rpartition('.')[0]) <= pos or n.startswith(mod + '.')]
            ords = [_match_ordinal(compiled, f'trunk.{n}') for n in before]
            ords = [o for o in ords if math.isfinite(o[0])] or [(0.0,)]
            last = max(ords)
            key = keys[int(last[0])]
            matcher[key] = [*matcher[key], (rf'^heads\.{k}\.', tuple(last[1:]))]
        return {k: v for k, v in matcher.items() if v}


def keras_conv_order(body: UNetBody) -> list[nn.Conv2d]:
    """The body's convs in the layer order of the Keras ``build_UNet2D_4L`` (``sem/1`` ... ``sem/34`` without the
    pooling, upsampling and concatenation layers): encoder, bottleneck, then per decoder level its two convs and the
    conv after the concatenation, and the output conv (22 convs)."""
    convs = [conv[0] for level in body.encoder for conv in level] + [body.bottleneck[0]]
    for up, fuse in zip(body.decoder, body.fuse):
        convs += [up[0][0], up[1][0], fuse[0]]
    return convs + [body.out]


def read_keras_conv_weights(path: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(kernel (kh, kw, cin, cout), bias (cout,))`` of every 2-D conv layer of a Keras HDF5 weights file
    (``model.save`` or ``save_weights``: the ``layer_names`` / ``weight_names`` attributes), in layer order."""
    import h5py

    def text(v: Any) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    convs = []
    with h5py.File(path, 'r') as f:
        root = f['model_weights'] if 'model_weights' in f else f
        for name in (text(n) for n in root.attrs.get('layer_names', [])):
            weights = [text(w) for w in root[name].attrs.get('weight_names', [])]
            kernel = [w for w in weights if w.rsplit('/', 1)[-1].startswith('kernel')]
            bias = [w for w in weights if w.rsplit('/', 1)[-1].startswith('bias')]
            if kernel and root[name][kernel[0]].ndim == 4:
                k = np.asarray(root[name][kernel[0]])
                b = np.asarray(root[name][bias[0]]) if bias else np.zeros(k.shape[-1], k.dtype)
                convs.append((k, b))
    return convs


def body_state_from_keras(convs: Sequence[tuple[np.ndarray, np.ndarray]], body: UNetBody) -> dict[str, torch.Tensor]:
    """A :class:`UNetBody` state dict from the Keras body's conv weights in layer order
    (:func:`read_keras_conv_weights`): kernels ``(kh, kw, cin, cout)`` -> ``(cout, cin, kh, kw)``. The
    concatenations are ``[encoder level, upsampled]`` in both, so input channels line up."""
    targets = keras_conv_order(body)
    if len(convs) != len(targets):
        raise ValueError(f'expected the {len(targets)} conv layers of build_UNet2D_4L, got {len(convs)}')
    names = {id(m): n for n, m in body.named_modules()}
    state = {}
    for i, ((kernel, bias), conv) in enumerate(zip(convs, targets)):
        w = torch.from_numpy(np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1))))
        if tuple(w.shape) != tuple(conv.weight.shape):
            raise ValueError(
                f'conv {i + 1} of 22: Keras kernel {tuple(kernel.shape)} does not fit {tuple(conv.weight.shape)}'
            )
        state[f'{names[id(conv)]}.weight'] = w.float()
        state[f'{names[id(conv)]}.bias'] = torch.from_numpy(np.asarray(bias)).float()
    return state


def load_body_checkpoint(model: MEDUSA, path: str) -> None:
    """Load the body from ``path``: a :class:`UNetBody` state dict, a MEDUSA one (its ``body.*`` keys), or a Keras
    HDF5 file of ``build_UNet2D_4L`` (``.h5`` / ``.hdf5``, e.g. the reference's ``trained_model.hdf5``; converted
    by :func:`body_state_from_keras`). Raises ``ValueError`` in one line naming the file when it does not fit."""
    if str(path).endswith(('.h5', '.hdf5')):
        try:
            state = body_state_from_keras(read_keras_conv_weights(path), model.body)
        except (ValueError, KeyError, OSError) as err:
            raise ValueError(f'body_checkpoint {path}: does not fit the MEDUSA body ({err})') from None
        model.body.load_state_dict(state)
        return
    state = unwrap_state_dict(load_checkpoint_file(path))
    if any(k.startswith('body.') for k in state):
        state = {k[len('body.') :]: v for k, v in state.items() if k.startswith('body.')}
    own = model.body.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        what = missing[:2] and f'missing {missing[:2]}' or unexpected[:2] and f'unexpected {unexpected[:2]}'
        what = what or f'shape of {shapes[0]}: {tuple(state[shapes[0]].shape)} vs {tuple(own[shapes[0]].shape)}'
        raise ValueError(f'body_checkpoint {path}: does not fit the MEDUSA body ({what})')
    model.body.load_state_dict(state)


def checkpoint_filter_fn(state_dict: dict, model: MEDUSA) -> dict[str, torch.Tensor]:
    """Map a checkpoint onto a MEDUSA model.

    * a zoo MEDUSA state dict (``trunk.*`` / ``body.*`` keys) passes unchanged;
    * a plain timm state dict of the trunk (e.g. ``resnet50.tv_in1k``: ``conv1.weight``, ``layer1.0...``,
      ``fc.weight``) goes under ``trunk.`` (through the trunk module's own ``checkpoint_filter_fn`` if timm
      has one); its classifier becomes ours only when the shapes agree.

    Keys the file lacks (the body and the heads for a trunk checkpoint) keep the model's current values, so a
    ``body_checkpoint`` loaded at construction survives.
    """
    state = unwrap_state_dict(state_dict)
    own = model.state_dict()
    if any(k.startswith(('trunk.', 'body.', 'heads.')) for k in state):
        out = dict(state)
    else:
        mod = importlib.import_module(type(model.trunk).__module__)
        trunk_filter = getattr(mod, 'checkpoint_filter_fn', None)
        if trunk_filter is not None:
            state = trunk_filter(state, model.trunk)
        cls_name = model.trunk.pretrained_cfg.get('classifier', 'fc')
        cls_names = cls_name if isinstance(cls_name, (tuple, list)) else (cls_name,)
        out = {}
        for k, v in state.items():
            head = next((c for c in cls_names if k.startswith(c + '.')), None)
            if head is not None:
                ours = 'fc' + k[len(head) :]
                if ours in own and own[ours].shape == v.shape:
                    out[ours] = v
                continue
            out[f'trunk.{k}'] = v
    for k, v in own.items():
        out.setdefault(k, v)
    return out


def _cfg(hf_hub_id: str = '', **kwargs) -> dict:
    return {
        'hf_hub_id': hf_hub_id,
        'num_classes': 2,
        'input_size': (3, 480, 480),
        'pool_size': None,
        'crop_pct': 1.0,
        'interpolation': 'bilinear',
        'mean': IMAGENET_DEFAULT_MEAN,
        'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'trunk.conv1',
        'classifier': 'fc',
        'license': 'agpl-3.0',
        'paper_ids': 'arXiv:2110.06063',
        'paper_name': 'MEDUSA: Multi-scale Encoder-Decoder Self-Attention Deep Neural Network Architecture for '
        'Medical Image Analysis',
        'origin_url': ORIGIN_URL,
        'notes': ('trunk: timm ImageNet weights (the body and heads start from their init or body_checkpoint=)',),
        **kwargs,
    }


# COVIDNet-CXR-3 (= MEDUSA on ResNet-50): params and MACs as published (COVID-Net README / docs/models.md,
# master@1090a2f); the COVIDx8B test results of the same table (200 COVID-negative / 200 positive images).
# Our count, 29.086M with 2 classes (ResNet-50 23.508M + body 5.469M + 4 heads 0.093M + fc 8192->2), is
# within 0.4% of 29.2M (Keras adds conv biases and BN statistics). MACs: see the module docstring.
PAPER_FACTS: dict[str, dict] = {
    'medusa_resnet50': dict(
        params_m=29.2,
        gmacs=29.1,
        # not an ImageNet top-1: COVIDx8B test accuracy (the README table's top-1 column stays empty)
        accuracy=98.3,
        dataset='COVIDx8B (2-class: COVID-negative / positive)',
        sensitivity=(99.0, 97.5),
        ppv=(97.5, 99.0),
        body_params=5_468_897,
        tf1_checkpoint='bit.ly/COVIDNet-CXR-3 (TF1 meta-graph; no PyTorch weights exist)',
    ),
    # no published model: MEDUSA's body and three heads (after stages 0-2) on timm's ConvNeXt-T
    'medusa_convnext_tiny': dict(body_params=5_468_897, source='zoo composition (no published model)'),
    # no published model: the same on timm's MambaOut-Femto (channels-last stages, gated in their own layout)
    'medusa_mambaout_femto': dict(body_params=5_468_897, source='zoo composition (no published model)'),
}

default_cfgs = zoo_default_cfgs(
    {
        # the trunk's ImageNet weights (torchvision's original recipe); body and heads are not in the file
        'medusa_resnet50.tv_in1k': _cfg('timm/resnet50.tv_in1k', license='bsd-3-clause'),
        'medusa_mambaout_femto.in1k': _cfg(
            'timm/mambaout_femto.in1k', input_size=(3, 224, 224), first_conv='trunk.stem.conv1', license='apache-2.0'
        ),
        'medusa_convnext_tiny.fb_in1k': _cfg(
            'timm/convnext_tiny.fb_in1k', input_size=(3, 224, 224), first_conv='trunk.stem.0', license='apache-2.0'
        ),
    },
    paper=PAPER_FACTS,
)


def _create(variant: str, pretrained: bool = False, **kwargs) -> MEDUSA:
    return build_model_with_weights(
        MEDUSA,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), feature_cls='getter'),
        **kwargs,
    )


@register_model
def medusa_resnet50(pretrained: bool = False, **kwargs) -> MEDUSA:
    """COVIDNet-CXR-3: the body, 4 heads (stem + max-pool, conv2_x, conv3_x, conv4_x), ResNet-50 on 480x480 and the
    development code's classifier (AvgPool 7/7 -> 8192 features)."""
    args = dict(
        trunk='resnet50', gate_taps=('maxpool', 'layer1', 'layer2', 'layer3'), global_pool='paper', img_size=480
    )
    return _create('medusa_resnet50', pretrained, **dict(args, **kwargs))


@register_model
def medusa_convnext_tiny(pretrained: bool = False, **kwargs) -> MEDUSA:
    """MEDUSA on timm's ConvNeXt-T: gates on the outputs of stages 0-2 (as the paper's, none on the last stage),
    timm's global average pooling, 224x224."""
    args = dict(trunk='convnext_tiny', gate_taps=(0, 1, 2), global_pool='avg', img_size=224)
    return _create('medusa_convnext_tiny', pretrained, **dict(args, **kwargs))


@register_model
def medusa_mambaout_femto(pretrained: bool = False, **kwargs) -> MEDUSA:
    """MEDUSA on timm's MambaOut-Femto (the zoo's MambaOut family): gates on the (channels-last) outputs of stages
    0-2, timm's global average pooling, 224x224."""
    args = dict(trunk='mambaout_femto', gate_taps=(0, 1, 2), global_pool='avg', img_size=224)
    return _create('medusa_mambaout_femto', pretrained, **dict(args, **kwargs))
