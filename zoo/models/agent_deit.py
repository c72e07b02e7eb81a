"""Agent-DeiT: DeiT (Touvron et al., ICML 2021) with agent attention (Han et al., ECCV 2024,
arXiv:2312.08874).

Layout of the official ``agent_transformer/models/agent_deit.py`` (LeapLabTHU/Agent-Attention), the
timm-0.4.12 ``VisionTransformer``: 16x16 patch embedding, class token, learned position embedding,
pre-norm blocks (LayerNorm eps 1e-6, qkv_bias, MLP ratio 4), final norm, class-token head. Blocks
``i < agent_layer`` use agent attention (all blocks, except Agent-DeiT-B: the first 4, the other 8
plain softmax attention). Block ``i`` takes its agent count from ``agent_num[{0:0, 1:1, 2:2, 3:2,
4:2, 5:3}[i // 2]]``. Agents are pooled from the patch queries only; the class token has its own
agent biases (``ac_bias`` / ``ca_bias``) and gets no depthwise-conv term.

Choices we made (the official code leaves them open):

* Any input size divisible by 16 (also non-square): the position embedding and the agent biases are
  resized bilinearly (``align_corners=False``) from the built grid (identity at the built size).
  The official code crashes at any other size.
* No distillation token: the published checkpoints are plain (``distilled=False``).
* Plain blocks are timm's ``vision_transformer.Block`` (same keys as the official ``Block``).

Official checkpoints (Tsinghua Cloud, no license stated by the authors: all rights reserved) load
unchanged through ``timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=PATH))``.
"""

from __future__ import annotations

from functools import partial

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import (
    DropPath,
    Mlp,
    PatchEmbed,
    calculate_drop_path_rates,
    get_device_dtype,
    register_notrace_function,
    resample_abs_pos_embed,
    trunc_normal_,
)
from timm.models import register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint
from timm.models.vision_transformer import Block
from torch import nn
from torch.fx._symbolic_trace import is_fx_symbolic_tracing

from zoo.hub import build_model_with_weights, unwrap_state_dict, zoo_default_cfgs
from zoo.layers.agent_attention import (
    POS_EMBED_RESIZE,
    AgentAttention,
    adapt_agent_bias,
    init_agent_biases,
    pos_embed_for_grid,
)
from zoo.layers.weight_init import init_linear_layernorm

__all__ = ['AgentVisionTransformer', 'checkpoint_filter_fn']

_URL = 'https://cloud.tsinghua.edu.cn/f/{}/?dl=1'
_ORIGIN = 'https://github.com/LeapLabTHU/Agent-Attention'
_LN6 = partial(nn.LayerNorm, eps=1e-6)
_STAGE_OF_PAIR = {0: 0, 1: 1, 2: 2, 3: 2, 4: 2, 5: 3}  # official block -> agent_num entry (by i // 2)


@register_notrace_function  # FX: a size check on the traced input
@torch.fx.wrap
def check_input(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    if x.shape[-2] % patch_size or x.shape[-1] % patch_size:
        raise ValueError(
            f'input height and width must be divisible by patch_size={patch_size}, got {tuple(x.shape[-2:])}'
        )
    return x


class AgentBlock(nn.Module):
    """Pre-norm block with agent attention over ``(B, 1 + H*W, C)`` tokens (class token first)."""

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
        norm_layer=_LN6,
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
            num_prefix_tokens=1,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            **dd,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop, **dd)
        self.grid = grid  # set per forward by the model (blocks are called with x only)

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        """``hw``: the token grid; ``None`` reads ``self.grid``, which the model sets per forward."""
        x = x + self.drop_path(self.attn(self.norm1(x), self.grid if hw is None else hw))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class AgentVisionTransformer(nn.Module):
    """Agent-DeiT.

    Args:
        img_size: the size the position embedding and agent biases are built for (any size divisible by
            ``patch_size`` runs).
        patch_size, in_chans, num_classes, embed_dim, depth, num_heads, mlp_ratio, qkv_bias: as DeiT.
        agent_num: agent tokens per official "stage" (4 entries, see module docstring).
        agent_layer: blocks ``i < agent_layer`` use agent attention (``-1`` = all).
        drop_rate, pos_drop_rate, proj_drop_rate, attn_drop_rate, drop_path_rate: dropout rates.
        global_pool: ``'token'`` (class token), ``'avg'`` (patch mean) or ``''``.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        agent_num: tuple[int, ...] = (49, 49, 49, 49),
        agent_layer: int = -1,
        drop_rate: float = 0.0,
        pos_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        global_pool: str = 'token',
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        self.num_prefix_tokens = 1
        self.patch_size = patch_size
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        agent_layer = agent_layer if agent_layer > 0 else depth
        self.patch_embed = PatchEmbed(
            img_size, patch_size, in_chans, embed_dim, output_fmt='NHWC', strict_img_size=False, **dd
        )
        self.grid = tuple(self.patch_embed.grid_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim, **dd))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid[0] * self.grid[1], embed_dim, **dd))
        self.pos_drop = nn.Dropout(pos_drop_rate)
        dpr = calculate_drop_path_rates(drop_path_rate, depth)
        common = dict(
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            proj_drop=proj_drop_rate,
            attn_drop=attn_drop_rate,
            norm_layer=norm_layer,
            **dd,
        )
        self.blocks = nn.Sequential(
            *[
                AgentBlock(
                    embed_dim,
                    num_heads,
                    self.grid,
                    int(agent_num[_STAGE_OF_PAIR.get(i // 2, 3)]),
                    drop_path=dpr[i],
                    **common,
                )
                if i < agent_layer
                else Block(embed_dim, num_heads, drop_path=dpr[i], **common)
                for i in range(depth)
            ]
        )
        self.feature_info = [dict(num_chs=embed_dim, reduction=patch_size, module=f'blocks.{i}') for i in range(depth)]
        self.norm = norm_layer(embed_dim, **dd)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.grad_checkpointing = False
        self.apply(init_linear_layernorm)
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        init_agent_biases(self)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {'pos_embed', 'cls_token'}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r'^(?:cls_token|pos_embed|patch_embed)',
            blocks=[(r'^blocks\.(\d+)', None), (r'^norm', (99999,))],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            if global_pool not in ('token', 'avg', ''):
                raise ValueError(f"global_pool must be 'token', 'avg' or '', got {global_pool!r}")
            self.global_pool = global_pool
        dd = get_device_dtype(self)
        self.head = nn.Linear(self.embed_dim, num_classes, **dd) if num_classes > 0 else nn.Identity()

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Image -> ``(B, 1 + H*W, C)`` tokens with position embedding, and the grid ``(H, W)``. Also tells
        the agent blocks the grid, for callers that run them on tokens alone (DCAL's ``wrap_dcal``); not
        while FX traces, where ``(H, W)`` are graph values (the model passes them to its blocks)."""
        x = self.patch_embed(check_input(x, self.patch_size))
        B, H, W, C = x.shape
        pos = pos_embed_for_grid(self.pos_embed, (H, W), self.grid, num_prefix_tokens=1)
        x = torch.cat([self.cls_token.expand(B, -1, -1), x.reshape(B, H * W, C)], dim=1)
        if not is_fx_symbolic_tracing():
            for blk in self.blocks:
                if isinstance(blk, AgentBlock):
                    blk.grid = (H, W)
        return self.pos_drop(x + pos), (H, W)

    def _apply_block(self, blk: nn.Module, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        args = (x, hw) if isinstance(blk, AgentBlock) else (x,)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint(blk, *args)
        return blk(*args)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        return_prefix_tokens: bool = False,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = 'NCHW',
        intermediates_only: bool = False,
    ) -> list | tuple[torch.Tensor, list]:
        """Block outputs as ``(B, C, H/16, W/16)`` maps (``'NLC'``: token sequences without the class
        token); with ``return_prefix_tokens`` each is ``(map, cls_token)``; ``norm`` applies the final
        norm."""
        if output_fmt not in ('NCHW', 'NLC'):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        x, (H, W) = self._embed(x)
        blocks = self.blocks[: max_index + 1] if stop_early else self.blocks
        intermediates = []
        for i, blk in enumerate(blocks):
            x = self._apply_block(blk, x, (H, W))
            if i in take_indices:
                y = self.norm(x) if norm else x
                prefix, patches = y[:, :1], y[:, 1:]
                if output_fmt == 'NCHW':
                    patches = patches.transpose(1, 2).reshape(y.shape[0], -1, H, W)
                intermediates.append((patches, prefix) if return_prefix_tokens else patches)
        if intermediates_only:
            return intermediates
        return self.norm(x), intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        self.blocks = self.blocks[: max_index + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> normed tokens ``(B, 1 + H/16 * W/16, C)``."""
        x, hw = self._embed(x)
        for blk in self.blocks:
            x = self._apply_block(blk, x, hw)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == 'token':
            x = x[:, 0]
        elif self.global_pool == 'avg':
            x = x[:, 1:].mean(dim=1)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def checkpoint_filter_fn(state_dict: dict, model: AgentVisionTransformer) -> dict[str, torch.Tensor]:
    """Official Agent-DeiT checkpoint (``{'model': ...}`` or a plain state dict) -> zoo keys (the same);
    the position embedding and agent biases trained at another resolution are resized to the model's."""
    state_dict = unwrap_state_dict(state_dict)
    target = model.state_dict()
    out = {}
    for k, v in state_dict.items():
        if k in ('dist_token',) or k.startswith('head_dist'):
            continue
        if k in target and v.shape != target[k].shape:
            if k == 'pos_embed':
                v = resample_abs_pos_embed(v, model.grid, num_prefix_tokens=1, **POS_EMBED_RESIZE)
            else:
                v = adapt_agent_bias(k, v, target[k].shape)
        out[k] = v
    return out


def _create(variant: str, pretrained: bool = False, **kwargs) -> AgentVisionTransformer:
    out_indices = kwargs.pop('out_indices', 3)
    return build_model_with_weights(
        AgentVisionTransformer,
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
        'pool_size': None,
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


# Agent Attention (arXiv 2312.08874), official repo LeapLabTHU/Agent-Attention. params_m: the Params column of
# agent_transformer/README.md, confirmed to within 0.3% by instantiating agent_transformer/models/agent_deit.py
# at each cfg resolution; gmacs: the same table's 'FLOPs' column, which (Swin convention) counts multiply-adds,
# at the cfg resolution; top1: ImageNet-1k from the same table; weights: the Tsinghua Cloud links in that table.
PAPER_FACTS: dict[str, dict] = {
    'agent_deit_tiny': dict(params_m=6.0, gmacs=1.2, top1=74.9),
    'agent_deit_small': dict(params_m=22.7, gmacs=4.4, top1=80.5),
    'agent_deit_small_448': dict(params_m=23.1, gmacs=17.7, top1=83.1, img_size=448),
    'agent_deit_base': dict(params_m=87.2, gmacs=17.6, top1=82.0),
}

default_cfgs = zoo_default_cfgs(
    {
        'agent_deit_tiny.in1k': _cfg('57e0904221824ee7b7af'),
        'agent_deit_small.in1k': _cfg('fdd43304372541db8ea7'),
        'agent_deit_small_448.in1k': _cfg('a228f86241c445f1969b', input_size=(3, 448, 448), crop_pct=1.0),
        'agent_deit_base.in1k': _cfg('5115f15fdd7e4ab58fbc'),
    },
    paper=PAPER_FACTS,
)


@register_model
def agent_deit_tiny(pretrained: bool = False, **kwargs) -> AgentVisionTransformer:
    """Agent-DeiT-T: 12 x 192, 3 heads, 49 agents, all blocks agent attention."""
    kwargs = {**dict(embed_dim=192, depth=12, num_heads=3, agent_num=(49, 49, 49, 49)), **kwargs}
    return _create('agent_deit_tiny', pretrained, **kwargs)


@register_model
def agent_deit_small(pretrained: bool = False, **kwargs) -> AgentVisionTransformer:
    """Agent-DeiT-S: 12 x 384, 6 heads, 49 agents, all blocks agent attention."""
    kwargs = {**dict(embed_dim=384, depth=12, num_heads=6, agent_num=(49, 49, 49, 49)), **kwargs}
    return _create('agent_deit_small', pretrained, **kwargs)


@register_model
def agent_deit_small_448(pretrained: bool = False, **kwargs) -> AgentVisionTransformer:
    """Agent-DeiT-S built at 448x448 (28x28 grid)."""
    kwargs = {
        **dict(img_size=448, embed_dim=384, depth=12, num_heads=6, agent_num=(49, 49, 49, 49)),
        **kwargs,
    }
    return _create('agent_deit_small_448', pretrained, **kwargs)


@register_model
def agent_deit_base(pretrained: bool = False, **kwargs) -> AgentVisionTransformer:
    """Agent-DeiT-B: 12 x 768, 12 heads, 81 agents in the first 4 blocks, plain softmax in the last 8."""
    kwargs = {
        **dict(embed_dim=768, depth=12, num_heads=12, agent_num=(81, 81, 81, 81), agent_layer=4),
        **kwargs,
    }
    return _create('agent_deit_base', pretrained, **kwargs)
