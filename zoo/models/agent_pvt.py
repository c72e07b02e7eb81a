"""Agent-PVT: PVT v1 (Wang et al., ICCV 2021) with agent attention (Han et al., ECCV 2024, arXiv:2312.08874).

Layout of the official ``agent_transformer/models/agent_pvt.py`` (LeapLabTHU/Agent-Attention):
four stages, each a strided-conv patch embedding (4x4 then 2x2) with LayerNorm, a learned absolute
position embedding per stage, then pre-norm blocks (LayerNorm eps 1e-6, MLP ratios 8, 8, 4, 4,
qkv_bias). ``attn_type`` ``'A'`` stages use agent attention (separate ``q`` / ``kv`` projections,
no spatial reduction), ``'B'`` stages PVT's spatial-reduction attention (sr 8, 4, 2, 1). No final
norm; the head averages the last stage's tokens.

Choices we made (the official code leaves them open):

* Any input size divisible by 32: position embeddings and agent biases are resized bilinearly
  (``align_corners=False``) from the built grid to the actual one (identity at the built size).
  The official code crashes at any other size.
* Agent attention with a spatial reduction (``sr > 1``) is not supported: every published
  configuration uses ``sr = 1`` for ``'A'`` stages, as the maintainers recommend.
* ``no_weight_decay`` is empty, as in the official training (pos_embeds were decayed there).
* Keys: ``stages.{i}.{patch_embed,pos_embed,blocks.{j}}`` here for ``patch_embed{i+1}``,
  ``pos_embed{i+1}``, ``block{i+1}.{j}`` there; :func:`checkpoint_filter_fn` maps them.

Official checkpoints (Tsinghua Cloud, no license stated by the authors: all rights reserved) load
unchanged through ``timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=PATH))``.
"""

from __future__ import annotations

import re
from functools import partial

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import (
    DropPath,
    calculate_drop_path_rates,
    get_device_dtype,
    register_notrace_function,
    resample_abs_pos_embed,
    trunc_normal_,
)
from timm.models import register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint
from torch import nn

from zoo.hub import build_model_with_weights, unwrap_state_dict, zoo_default_cfgs
from zoo.layers.agent_attention import (
    POS_EMBED_RESIZE,
    AgentAttention,
    adapt_agent_bias,
    expand_attn_type,
    pos_embed_for_grid,
)
from zoo.layers.cpu_fusion import FusedMlp
from zoo.layers.weight_init import init_linear_layernorm

__all__ = ['AgentPyramidVisionTransformer', 'checkpoint_filter_fn']

_URL = 'https://cloud.tsinghua.edu.cn/f/{}/?dl=1'
_ORIGIN = 'https://github.com/LeapLabTHU/Agent-Attention'
_LN6 = partial(nn.LayerNorm, eps=1e-6)


@register_notrace_function  # FX: a size check on the traced input
@torch.fx.wrap
def check_input(x: torch.Tensor) -> torch.Tensor:
    if x.shape[-2] % 32 or x.shape[-1] % 32:
        raise ValueError(f'input height and width must be divisible by 32 (total stride), got {tuple(x.shape[-2:])}')
    return x


class SpatialReductionAttention(nn.Module):
    """PVT v1 attention (``'B'`` stages): keys / values from a ``sr x sr`` strided conv of the map."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        sr_ratio: int = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_drop = attn_drop
        self.q = nn.Linear(dim, dim, bias=qkv_bias, **dd)
        self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias, **dd)
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio, **dd)
            self.norm = nn.LayerNorm(dim, **dd)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """``(B, H*W, C)`` -> ``(B, H*W, C)``."""
        B, N, C = x.shape
        h, d = self.num_heads, self.head_dim
        q = self.q(x).reshape(B, N, h, d).transpose(1, 2)
        if self.sr_ratio > 1:
            x = self.sr(x.transpose(1, 2).reshape(B, C, *hw)).flatten(2).transpose(1, 2)
            x = self.norm(x)
        k, v = self.kv(x).reshape(B, -1, 2, h, d).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, N, C)))


class Block(nn.Module):
    """Pre-norm transformer block; ``attn_type`` 'A' (agent) or 'B' (spatial reduction)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        grid: tuple[int, int],
        mlp_ratio: float,
        attn_type: str,
        agent_num: int,
        sr_ratio: int,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_layer=_LN6,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.norm1 = norm_layer(dim, **dd)
        if attn_type == 'A':
            self.attn = AgentAttention(
                dim,
                num_heads,
                agent_num=agent_num,
                window_size=grid,
                qkv_bias=qkv_bias,
                separate_q=True,
                attn_drop=attn_drop,
                proj_drop=proj_drop,
                **dd,
            )
        else:
            self.attn = SpatialReductionAttention(dim, num_heads, qkv_bias, attn_drop, proj_drop, sr_ratio, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim, **dd)
        self.mlp = FusedMlp(dim, int(dim * mlp_ratio), drop=proj_drop, **dd)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        # the attention output (and drop_path's) is a fresh tensor: the residual is added into it in place
        x = self.drop_path(self.attn(self.norm1(x), hw)).add_(x)
        if self.training and not isinstance(self.drop_path, nn.Identity):
            return x + self.drop_path(self.mlp(self.norm2(x)))
        return self.mlp(self.norm2(x), shortcut=x)  # x + mlp(norm2(x)), the add fused on the fast path


class PatchEmbed(nn.Module):
    """Strided conv + LayerNorm: ``(B, C, H, W)`` -> tokens ``(B, H/s * W/s, D)`` and the grid."""

    def __init__(
        self,
        patch_size: int,
        in_chans: int,
        embed_dim: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, **dd)
        self.norm = nn.LayerNorm(embed_dim, **dd)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        # channels-last in (a no-op for the previous stage's output, a copy of the 3-channel image for the
        # first): the conv output is then token-major, and the flatten + transpose below is a view
        x = self.proj(x.contiguous(memory_format=torch.channels_last))
        hw = (x.shape[2], x.shape[3])
        return self.norm(x.flatten(2).transpose(1, 2)), hw


class Stage(nn.Module):
    """Patch embedding, position embedding (resized to the input grid) and blocks. ``(B, C, H, W)`` in and out
    (out: channels-last strides)."""

    def __init__(
        self,
        in_chans: int,
        dim: int,
        patch_size: int,
        grid: tuple[int, int],
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        attn_types: list[str],
        agent_num: int,
        sr_ratio: int,
        drop_path: list[float],
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **block_kwargs,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.grid = grid
        self.patch_embed = PatchEmbed(patch_size, in_chans, dim, **dd)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid[0] * grid[1], dim, **dd))
        self.blocks = nn.ModuleList(
            [
                Block(
                    dim,
                    num_heads,
                    grid,
                    mlp_ratio,
                    attn_types[j],
                    agent_num,
                    sr_ratio,
                    drop_path=drop_path[j],
                    **block_kwargs,
                    **dd,
                )
                for j in range(depth)
            ]
        )
        self.grad_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, hw = self.patch_embed(x)
        x = x + pos_embed_for_grid(self.pos_embed, hw, self.grid)
        for blk in self.blocks:
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint(blk, x, hw)
            else:
                x = blk(x, hw)
        # (B, H*W, C) -> (B, C, H, W) as a channels-last view (no copy)
        return x.reshape(x.shape[0], *hw, x.shape[-1]).permute(0, 3, 1, 2)


class AgentPyramidVisionTransformer(nn.Module):
    """Agent-PVT (PVT v1 layout).

    Args:
        img_size: the size the position embeddings and agent biases are built for (any size divisible
            by 32 runs).
        in_chans, num_classes: input channels, classes (0 = no head).
        embed_dims, num_heads, mlp_ratios, depths, sr_ratios: per stage.
        attn_type: one letter per stage, ``A`` agent / ``B`` spatial-reduction attention.
        agent_num: agent tokens per stage.
        drop_rate, proj_drop_rate, attn_drop_rate, drop_path_rate: dropout rates.
        global_pool: ``'avg'`` or ``''``.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dims: tuple[int, ...] = (64, 128, 320, 512),
        num_heads: tuple[int, ...] = (1, 2, 5, 8),
        mlp_ratios: tuple[float, ...] = (8, 8, 4, 4),
        depths: tuple[int, ...] = (2, 2, 2, 2),
        sr_ratios: tuple[int, ...] = (8, 4, 2, 1),
        attn_type: str = 'AAAA',
        agent_num: tuple[int, ...] = (9, 16, 49, 49),
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        global_pool: str = 'avg',
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = embed_dims[-1]
        kinds = expand_attn_type(attn_type, depths)
        dpr = calculate_drop_path_rates(drop_path_rate, sum(depths))
        self.stages = nn.ModuleList()
        self.feature_info = []
        prev, cur, stride = in_chans, 0, 1
        for i, depth in enumerate(depths):
            patch = 4 if i == 0 else 2
            stride *= patch
            grid = (img_size[0] // stride, img_size[1] // stride)
            self.stages.append(
                Stage(
                    prev,
                    embed_dims[i],
                    patch,
                    grid,
                    depth,
                    num_heads[i],
                    mlp_ratios[i],
                    kinds[i],
                    int(agent_num[i]),
                    sr_ratios[i],
                    dpr[cur : cur + depth],
                    qkv_bias=qkv_bias,
                    proj_drop=proj_drop_rate,
                    attn_drop=attn_drop_rate,
                    **dd,
                )
            )
            self.feature_info.append(dict(num_chs=embed_dims[i], reduction=stride, module=f'stages.{i}'))
            prev, cur = embed_dims[i], cur + depth
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.apply(init_linear_layernorm)
        for stage in self.stages:
            trunc_normal_(stage.pos_embed, std=0.02)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r'^stages\.0\.(?:patch_embed|pos_embed)',
            blocks=r'^stages\.(\d+)'
            if coarse
            else [
                (r'^stages\.(\d+)\.blocks\.(\d+)', None),
                (r'^stages\.(\d+)\.(?:patch_embed|pos_embed)', (0,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for s in self.stages:
            s.grad_checkpointing = enable

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

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = 'NCHW',
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs ``(B, C_i, H / 2^(i+2), W / 2^(i+2))``; ``norm`` is a no-op (no final norm)."""
        if output_fmt != 'NCHW':
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        x = check_input(x)
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        stages = self.stages[: max_index + 1] if stop_early else self.stages
        intermediates = []
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[: max_index + 1]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, C, H/32, W/32)``."""
        x = check_input(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == 'avg':
            x = x.mean(dim=(2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def checkpoint_filter_fn(state_dict: dict, model: AgentPyramidVisionTransformer) -> dict[str, torch.Tensor]:
    """Official Agent-PVT checkpoint (``{'model': ...}`` or a plain state dict) -> zoo keys.

    Position embeddings and agent biases trained at another resolution are resized to the model's.
    """
    state_dict = unwrap_state_dict(state_dict)
    target = model.state_dict()
    out = {}
    for k, v in state_dict.items():
        k = re.sub(r'^patch_embed(\d)\.', lambda m: f'stages.{int(m[1]) - 1}.patch_embed.', k)
        k = re.sub(r'^pos_embed(\d)$', lambda m: f'stages.{int(m[1]) - 1}.pos_embed', k)
        k = re.sub(r'^block(\d)\.', lambda m: f'stages.{int(m[1]) - 1}.blocks.', k)
        if k in target and v.shape != target[k].shape:
            if k.endswith('pos_embed'):
                grid = model.stages[int(k.split('.')[1])].grid
                v = resample_abs_pos_embed(v, grid, num_prefix_tokens=0, **POS_EMBED_RESIZE)
            else:
                v = adapt_agent_bias(k, v, target[k].shape)
        out[k] = v
    return out


def _create(variant: str, pretrained: bool = False, **kwargs) -> AgentPyramidVisionTransformer:
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    return build_model_with_weights(
        AgentPyramidVisionTransformer,
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
        'first_conv': 'stages.0.patch_embed.proj',
        'classifier': 'head',
        'license': 'unknown (no license in the official repository)',
        'paper_ids': 'arXiv:2312.08874',
        'paper_name': 'Agent Attention: On the Integration of Softmax and Linear Attention',
        'origin_url': _ORIGIN,
        **kwargs,
    }


# Agent Attention (arXiv 2312.08874), official repo LeapLabTHU/Agent-Attention. params_m: counted by
# instantiating agent_transformer/models/agent_pvt.py at each cfg resolution (the 256 row keeps the README's
# 36.1M, which the count confirms); gmacs: the 'FLOPs' column of agent_transformer/README.md, which (Swin
# convention) counts multiply-adds, at the cfg resolution; top1: ImageNet-1k from the same table; weights: the
# Tsinghua Cloud links in that table.
PAPER_FACTS: dict[str, dict] = {
    'agent_pvt_tiny': dict(params_m=11.57, gmacs=2.0, top1=78.4),
    'agent_pvt_small': dict(params_m=20.64, gmacs=4.0, top1=82.2),
    'agent_pvt_medium': dict(params_m=35.92, gmacs=7.0, top1=83.4),
    'agent_pvt_medium_256': dict(params_m=36.1, gmacs=9.2, top1=83.8, img_size=256),
    'agent_pvt_large': dict(params_m=48.74, gmacs=10.4, top1=83.7),
}

default_cfgs = zoo_default_cfgs(
    {
        'agent_pvt_tiny.in1k': _cfg('13fdf0e0a7c5498c934f'),
        'agent_pvt_small.in1k': _cfg('36b8be9a8863456685a3'),
        'agent_pvt_medium.in1k': _cfg('4d00ecacf18b45f9b88c'),
        'agent_pvt_medium_256.in1k': _cfg('654df734121643b19c52', input_size=(3, 256, 256), pool_size=(8, 8)),
        'agent_pvt_large.in1k': _cfg('040cfe0cfbbe4762ad09'),
    },
    paper=PAPER_FACTS,
)


_PVT = dict(
    embed_dims=(64, 128, 320, 512),
    num_heads=(1, 2, 5, 8),
    mlp_ratios=(8, 8, 4, 4),
    sr_ratios=(8, 4, 2, 1),
    attn_type='AAAA',
    agent_num=(9, 16, 49, 49),
)


@register_model
def agent_pvt_tiny(pretrained: bool = False, **kwargs) -> AgentPyramidVisionTransformer:
    """Agent-PVT-T: depths 2-2-2-2."""
    return _create('agent_pvt_tiny', pretrained, **{**_PVT, 'depths': (2, 2, 2, 2), **kwargs})


@register_model
def agent_pvt_small(pretrained: bool = False, **kwargs) -> AgentPyramidVisionTransformer:
    """Agent-PVT-S: depths 3-4-6-3."""
    return _create('agent_pvt_small', pretrained, **{**_PVT, 'depths': (3, 4, 6, 3), **kwargs})


@register_model
def agent_pvt_medium(pretrained: bool = False, **kwargs) -> AgentPyramidVisionTransformer:
    """Agent-PVT-M: depths 3-4-18-3."""
    return _create('agent_pvt_medium', pretrained, **{**_PVT, 'depths': (3, 4, 18, 3), **kwargs})


@register_model
def agent_pvt_medium_256(pretrained: bool = False, **kwargs) -> AgentPyramidVisionTransformer:
    """Agent-PVT-M built at 256x256 (position embeddings and agent biases sized for 256)."""
    return _create('agent_pvt_medium_256', pretrained, **{**_PVT, 'depths': (3, 4, 18, 3), 'img_size': 256, **kwargs})


@register_model
def agent_pvt_large(pretrained: bool = False, **kwargs) -> AgentPyramidVisionTransformer:
    """Agent-PVT-L (the official ``agent_pvt_b.yaml``): depths 3-8-27-3."""
    return _create('agent_pvt_large', pretrained, **{**_PVT, 'depths': (3, 8, 27, 3), **kwargs})
