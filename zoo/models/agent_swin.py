"""Agent-Swin: Swin Transformer (Liu et al., ICCV 2021) with agent attention (Han et al., ECCV 2024,
arXiv:2312.08874).

Layout of the official ``agent_transformer/models/agent_swin.py`` (LeapLabTHU/Agent-Attention):
Swin's patch embedding, patch merging and pre-norm blocks. ``attn_type`` has one letter per stage,
``A`` = agent attention, ``B`` = Swin's (shifted) window attention, ``M`` = the first ``k`` blocks of
that stage A and the rest B, ``k`` written after the stage letters (``'AAMB2'``). The official
``window_size`` (56 at 224, 72 at 288, 96 at 384) is at least the stage resolution, so ``A`` blocks
attend over the whole stage map (global agent attention, no shift); ``B`` blocks use Swin windows
of ``max(7, window_size // 8)`` with the usual shift on odd blocks (none where the map fits in one
window).

Choices we made (the official code leaves them open):

* Any input size divisible by 32. ``A`` blocks stay global at every size; their agent biases are
  resized bilinearly (``align_corners=False``) from the built stage grid (identity at the built
  size), the rule of the official downstream code. ``B`` blocks are timm's
  :class:`~timm.models.swin_transformer.SwinTransformerBlock` (keys as in the official checkpoints)
  with a mask computed for the actual size and zero padding up to a window multiple, as in timm.
* Patch merging sits at the start of stages 1-3 (timm's layout) rather than at the end of stages
  0-2; :func:`checkpoint_filter_fn` moves ``layers.{i}.downsample`` to ``layers.{i+1}``.

Official checkpoints (Tsinghua Cloud, no license stated by the authors: all rights reserved) load
unchanged through ``timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=PATH))``.
"""

from __future__ import annotations

import re

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import (
    DropPath,
    Mlp,
    PatchEmbed,
    calculate_drop_path_rates,
    get_device_dtype,
    register_notrace_function,
    resize_rel_pos_bias_table,
)
from timm.models import register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint
from timm.models.swin_transformer import PatchMerging, SwinTransformerBlock
from torch import nn

from zoo.hub import build_model_with_weights, unwrap_state_dict, zoo_default_cfgs
from zoo.layers.agent_attention import (
    AgentAttention,
    adapt_agent_bias,
    expand_attn_type,
    init_agent_biases,
)
from zoo.layers.weight_init import init_linear_layernorm

__all__ = ['AgentSwinTransformer', 'checkpoint_filter_fn']

_URL = 'https://cloud.tsinghua.edu.cn/f/{}/?dl=1'
_ORIGIN = 'https://github.com/LeapLabTHU/Agent-Attention'


@register_notrace_function  # FX: a size check on the traced input
@torch.fx.wrap
def check_input(x: torch.Tensor, total_stride: int) -> torch.Tensor:
    if x.shape[-2] % total_stride or x.shape[-1] % total_stride:
        raise ValueError(
            f'input height and width must be divisible by {total_stride} (total stride), got {tuple(x.shape[-2:])}'
        )
    return x


class AgentSwinBlock(nn.Module):
    """Pre-norm block with global agent attention over the whole stage map. NHWC in and out."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        grid: tuple[int, int],
        agent_num: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_layer=nn.LayerNorm,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.norm1 = norm_layer(dim, **dd)
        self.attn = AgentAttention(
            dim,
            num_heads,
            agent_num=agent_num,
            window_size=grid,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            **dd,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        x = x.reshape(B, H * W, C)
        x = x + self.drop_path(self.attn(self.norm1(x), (H, W)))
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x.reshape(B, H, W, C)


class AgentSwinStage(nn.Module):
    """Optional patch merging, then a mix of agent (``A``) and Swin window (``B``) blocks. NHWC."""

    def __init__(
        self,
        dim: int,
        out_dim: int,
        grid: tuple[int, int],
        depth: int,
        num_heads: int,
        kinds: list[str],
        window_size: int,
        agent_num: int,
        downsample: bool,
        drop_path: list[float],
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        norm_layer=nn.LayerNorm,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.downsample = PatchMerging(dim, out_dim, norm_layer, **dd) if downsample else nn.Identity()
        self.grad_checkpointing = False
        blocks = []
        swin_window = max(7, window_size // 8)
        for j in range(depth):
            common = dict(
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                proj_drop=proj_drop,
                attn_drop=attn_drop,
                drop_path=drop_path[j],
                norm_layer=norm_layer,
            )
            if kinds[j] == 'A':
                blocks.append(AgentSwinBlock(out_dim, num_heads, grid, agent_num, **common, **dd))
            else:
                blocks.append(
                    SwinTransformerBlock(
                        out_dim,
                        grid,
                        num_heads,
                        window_size=swin_window,
                        shift_size=0 if j % 2 == 0 else swin_window // 2,
                        dynamic_mask=True,
                        **common,
                        **dd,
                    )
                )
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        for blk in self.blocks:
            x = checkpoint(blk, x) if self.grad_checkpointing and not torch.jit.is_scripting() else blk(x)
        return x


class AgentSwinTransformer(nn.Module):
    """Agent-Swin.

    Args:
        img_size: the size the agent biases are built for (any size divisible by 32 runs).
        patch_size, in_chans, num_classes, embed_dim, depths, num_heads, mlp_ratio, qkv_bias: as Swin.
        window_size: the official ``WINDOW_SIZE`` (56 / 72 / 96); Swin windows are
            ``max(7, window_size // 8)``.
        attn_type: per-stage ``A`` / ``B`` / ``M`` string (see module docstring).
        agent_num: agent tokens per stage.
        drop_rate, proj_drop_rate, attn_drop_rate, drop_path_rate: dropout rates.
        global_pool: ``'avg'`` or ``''``.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 96,
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        window_size: int = 56,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        attn_type: str = 'AAAB',
        agent_num: tuple[int, ...] = (9, 16, 49, 49),
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        global_pool: str = 'avg',
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.patch_size = patch_size
        num_stages = len(depths)
        self.total_stride = patch_size * 2 ** (num_stages - 1)
        self.num_features = self.head_hidden_size = int(embed_dim * 2 ** (num_stages - 1))
        self.patch_embed = PatchEmbed(
            img_size,
            patch_size,
            in_chans,
            embed_dim,
            norm_layer=nn.LayerNorm,
            output_fmt='NHWC',
            strict_img_size=False,
            **dd,
        )
        kinds = expand_attn_type(attn_type, depths)
        n = sum(depths)
        dpr = calculate_drop_path_rates(drop_path_rate, n)
        self.layers = nn.ModuleList()
        self.feature_info = []
        dim, cur = embed_dim, 0
        for i, depth in enumerate(depths):
            out_dim = int(embed_dim * 2**i)
            stride = patch_size * 2**i
            grid = (img_size[0] // stride, img_size[1] // stride)
            self.layers.append(
                AgentSwinStage(
                    dim,
                    out_dim,
                    grid,
                    depth,
                    num_heads[i],
                    kinds[i],
                    window_size,
                    int(agent_num[i]),
                    i > 0,
                    dpr[cur : cur + depth],
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    proj_drop=proj_drop_rate,
                    attn_drop=attn_drop_rate,
                    **dd,
                )
            )
            self.feature_info.append(dict(num_chs=out_dim, reduction=stride, module=f'layers.{i}'))
            dim, cur = out_dim, cur + depth
        self.norm = nn.LayerNorm(self.num_features, **dd)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.apply(init_linear_layernorm)
        init_agent_biases(self)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """The Swin relative position tables: the official recipe exempts them by keyword
        (``no_weight_decay_keywords``, read by its optimizer.py); timm's optimizer factory reads only
        this list. There is no absolute position embedding (``ape=False`` in every official config)."""
        return {n for n, _ in self.named_parameters() if n.endswith('relative_position_bias_table')}

    @torch.jit.ignore
    def no_weight_decay_keywords(self) -> set[str]:
        return {'relative_position_bias_table'}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r'^patch_embed',
            blocks=r'^layers\.(\d+)'
            if coarse
            else [
                (r'^layers\.(\d+)\.downsample', (0,)),
                (r'^layers\.(\d+)\.\w+\.(\d+)', None),
                (r'^norm', (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for layer in self.layers:
            layer.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            if global_pool not in ('avg', ''):
                raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
            self.global_pool = global_pool
        dd = get_device_dtype(self)
        self.head = nn.Linear(self.num_features, num_classes, **dd) if num_classes > 0 else nn.Identity()

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_embed(check_input(x, self.total_stride))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = 'NCHW',
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs ``(B, C_i, H / 2^(i+2), W / 2^(i+2))`` (NHWC with ``output_fmt='NHWC'``);
        ``norm`` applies the final norm to the last stage's output."""
        if output_fmt not in ('NCHW', 'NHWC'):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        x = self._stem(x)
        layers = self.layers[: max_index + 1] if stop_early else self.layers
        last = len(self.layers) - 1
        intermediates = []
        for i, layer in enumerate(layers):
            x = layer(x)
            if i in take_indices:
                y = self.norm(x) if norm and i == last else x
                intermediates.append(y.permute(0, 3, 1, 2).contiguous() if output_fmt == 'NCHW' else y)
        if intermediates_only:
            return intermediates
        return self.norm(x), intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        take_indices, max_index = feature_take_indices(len(self.layers), indices)
        self.layers = self.layers[: max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if max_index < len(self.feature_info) - 1:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
            self.norm = nn.Identity()
            prune_head = True
        if prune_head:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> normed ``(B, H/32, W/32, C)`` (NHWC)."""
        x = self._stem(x)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == 'avg':
            x = x.mean(dim=(1, 2))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def checkpoint_filter_fn(state_dict: dict, model: AgentSwinTransformer) -> dict[str, torch.Tensor]:
    """Official Agent-Swin checkpoint (``{'model': ...}`` or a plain state dict) -> zoo keys.

    Drops the non-persistent buffers (``relative_position_index``, ``attn_mask``), moves patch merging
    to the next stage (official layout only: the zoo's own state dict loads unchanged), and resizes
    agent biases and relative position tables trained at another resolution (e.g. the 288 / 384
    checkpoints into a model built at 224).
    """
    state_dict = unwrap_state_dict(state_dict)
    # The official layout merges patches at the end of stages 0-2 (layers.0.downsample exists);
    # the zoo's own state dict (and files exported from it) already has them at stages 1-3.
    official = any(k.startswith('layers.0.downsample.') for k in state_dict)
    target = model.state_dict()
    out = {}
    for k, v in state_dict.items():
        if k.endswith(('relative_position_index', 'attn_mask')):
            continue
        if official:
            k = re.sub(r'^layers\.(\d+)\.downsample\.', lambda m: f'layers.{int(m[1]) + 1}.downsample.', k)
        if k.endswith('relative_position_bias_table') and k in target and v.shape != target[k].shape:
            # a Swin window of another size (e.g. a 288 / 384 checkpoint): timm's table resize
            v = resize_rel_pos_bias_table(v, model.get_submodule(k[:-29]).window_size, target[k].shape)
        elif k in target and v.shape != target[k].shape:
            v = adapt_agent_bias(k, v, target[k].shape)
        out[k] = v
    return out


def _create(variant: str, pretrained: bool = False, **kwargs) -> AgentSwinTransformer:
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    return build_model_with_weights(
        AgentSwinTransformer,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        **kwargs,
    )


def _cfg(file_id: str, **kwargs) -> dict:
    return {
        'url': _URL.format(file_id),
        'num_classes': 1000,
        'input_size': (3, 224, 224),
        'pool_size': (7, 7),
        'crop_pct': 0.875,
        'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN,
        'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'patch_embed.proj',
        'classifier': 'head',
        'license': 'unknown (no license in the official repository)',
        'paper_ids': 'arXiv:2312.08874',
        'paper_name': 'Agent Attention: On the Integration of Softmax and Linear Attention',
        'origin_url': _ORIGIN,
        **kwargs,
    }


# Agent Attention (arXiv 2312.08874), official repo LeapLabTHU/Agent-Attention. params_m: counted by
# instantiating agent_transformer/models/agent_swin.py at each cfg resolution (the README rounds them to whole
# millions); gmacs: the 'FLOPs' column of agent_transformer/README.md, which (Swin convention) counts
# multiply-adds, at the cfg resolution; top1: ImageNet-1k from the same table; weights: the Tsinghua Cloud links
# in that table.
PAPER_FACTS: dict[str, dict] = {
    'agent_swin_tiny': dict(params_m=28.90, gmacs=4.5, top1=82.6),
    'agent_swin_small': dict(params_m=49.67, gmacs=8.7, top1=83.7),
    'agent_swin_small_288': dict(params_m=49.71, gmacs=14.6, top1=84.1, img_size=288),
    'agent_swin_base': dict(params_m=88.10, gmacs=15.4, top1=84.0),
    'agent_swin_base_384': dict(params_m=88.31, gmacs=46.3, top1=84.9, img_size=384),
}

default_cfgs = zoo_default_cfgs(
    {
        'agent_swin_tiny.in1k': _cfg('a2ddc1190c224f768a41'),
        'agent_swin_small.in1k': _cfg('f607172c9fea4d6e99bb'),
        'agent_swin_small_288.in1k': _cfg(
            '09760394e93b4046a25e', input_size=(3, 288, 288), pool_size=(9, 9), crop_pct=1.0
        ),
        'agent_swin_base.in1k': _cfg('4fcd2d0114bb490483c3'),
        'agent_swin_base_384.in1k': _cfg(
            'bb84ee9058954706a557', input_size=(3, 384, 384), pool_size=(12, 12), crop_pct=1.0
        ),
    },
    paper=PAPER_FACTS,
)


_T = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), attn_type='AAAB')
_S = dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), attn_type='AABB')
_B = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), attn_type='AAMB2')


@register_model
def agent_swin_tiny(pretrained: bool = False, **kwargs) -> AgentSwinTransformer:
    """Agent-Swin-T: 2-2-6-2, C=96, attn AAAB, window 56."""
    return _create('agent_swin_tiny', pretrained, **{**_T, 'window_size': 56, **kwargs})


@register_model
def agent_swin_small(pretrained: bool = False, **kwargs) -> AgentSwinTransformer:
    """Agent-Swin-S: 2-2-18-2, C=96, attn AABB, window 56."""
    return _create('agent_swin_small', pretrained, **{**_S, 'window_size': 56, **kwargs})


@register_model
def agent_swin_small_288(pretrained: bool = False, **kwargs) -> AgentSwinTransformer:
    """Agent-Swin-S built at 288x288 (window 72: Swin windows 9)."""
    return _create('agent_swin_small_288', pretrained, **{**_S, 'window_size': 72, 'img_size': 288, **kwargs})


@register_model
def agent_swin_base(pretrained: bool = False, **kwargs) -> AgentSwinTransformer:
    """Agent-Swin-B: 2-2-18-2, C=128, attn AAMB2 (stage 3: 2 agent blocks then Swin), window 56."""
    return _create('agent_swin_base', pretrained, **{**_B, 'window_size': 56, **kwargs})


@register_model
def agent_swin_base_384(pretrained: bool = False, **kwargs) -> AgentSwinTransformer:
    """Agent-Swin-B built at 384x384 (window 96: Swin windows 12)."""
    return _create('agent_swin_base_384', pretrained, **{**_B, 'window_size': 96, 'img_size': 384, **kwargs})
