"""Agent-CSwin: CSWin Transformer (Dong et al., CVPR 2022) with agent attention (Han et al., ECCV 2024,
arXiv:2312.08874).

Layout of the official ``agent_transformer/models/agent_cswin.py`` (LeapLabTHU/Agent-Attention):
a 7x7 stride-4 conv stem with LayerNorm (``stage1_conv_embed``), four stages of pre-norm blocks
separated by 3x3 stride-2 conv merges with LayerNorm (``merge1..3``), final norm, mean-pooled head.
Each block projects ``qkv`` once; its attention is split into branches (``attns``):

* two branches (half the channels and heads each) over cross-shaped stripes, vertical stripes of
  width ``split`` and horizontal stripes of height ``split``, when the stage map is larger than
  ``split``;
* one branch over the whole map when ``split`` equals the stage resolution, and in the last stage.

``attn_type`` per stage: ``B`` = CSWin's LePE attention (softmax in the stripes plus a 3x3
depthwise conv of V, ``get_v``), split sizes 1, 2, 7, 7 (12, 12 at 384); ``A`` = agent attention,
with its own split sizes (``agent_split`` 56-28-14-7 at 224, 96-48-24-12 at 384): the published
models use ``AABB``, so the agent stages are global. In agent branches ``get_v`` is the diversity
(DWC) term.

Choices we made (the official code leaves them open):

* Any input size divisible by 32. Global branches follow the actual map; agent biases are resized
  bilinearly (``align_corners=False``) from the built grid (identity at the built size). LePE
  stripes keep their width; a map that is not a multiple of it is zero-padded up and the padded
  keys are masked out, so padding does not change the attention over real tokens.
* Agent attention in stripes (``agent_split`` smaller than the stage) needs the map to be a multiple
  of the split; a clear error says so otherwise (no published model uses it).
* Official CSwin checkpoints store ``model`` and ``state_dict_ema``; :func:`checkpoint_filter_fn`
  prefers the EMA weights, as the official evaluation does.

Official checkpoints (Tsinghua Cloud, no license stated by the authors: all rights reserved) load
unchanged through ``timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=PATH))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import (
    DropPath,
    Mlp,
    calculate_drop_path_rates,
    get_device_dtype,
    register_notrace_function,
    register_notrace_module,
)
from timm.models import register_model
from timm.models._features import feature_take_indices
from timm.models._manipulate import checkpoint
from torch import nn

from zoo.hub import build_model_with_weights, unwrap_state_dict, zoo_default_cfgs
from zoo.layers.agent_attention import (
    AgentAttentionCore,
    adapt_agent_bias,
    expand_attn_type,
    init_agent_biases,
)
from zoo.layers.weight_init import init_linear_layernorm

__all__ = ['AgentCSWinTransformer', 'checkpoint_filter_fn']

_URL = 'https://cloud.tsinghua.edu.cn/f/{}/?dl=1'
_ORIGIN = 'https://github.com/LeapLabTHU/Agent-Attention'


def _window_shape(idx: int, hw: tuple[int, int], split: int) -> tuple[int, int]:
    """Stripe shape of branch ``idx``: -1 whole map, 0 vertical ``H x split``, 1 horizontal ``split x W``."""
    H, W = hw
    return (H, W) if idx == -1 else (H, split) if idx == 0 else (split, W)


def _to_windows(x: torch.Tensor, ws: tuple[int, int]) -> torch.Tensor:
    """``(B, H, W, C)`` -> ``(B * nW, ws0 * ws1, C)``."""
    B, H, W, C = x.shape
    x = x.reshape(B, H // ws[0], ws[0], W // ws[1], ws[1], C).transpose(2, 3)
    return x.reshape(-1, ws[0] * ws[1], C)


def _from_windows(x: torch.Tensor, ws: tuple[int, int], hw: tuple[int, int]) -> torch.Tensor:
    """``(B * nW, ws0 * ws1, C)`` -> ``(B, H, W, C)``."""
    H, W = hw
    C = x.shape[-1]
    x = x.reshape(-1, H // ws[0], W // ws[1], ws[0], ws[1], C).transpose(2, 3)
    return x.reshape(-1, H, W, C)


@register_notrace_function  # FX: a size check on the traced input
@torch.fx.wrap
def check_input(x: torch.Tensor) -> torch.Tensor:
    if x.shape[-2] % 32 or x.shape[-1] % 32:
        raise ValueError(f'input height and width must be divisible by 32 (total stride), got {tuple(x.shape[-2:])}')
    return x


@register_notrace_module  # FX: one leaf (stripe padding and its key mask depend on the map size)
class LePEBranch(nn.Module):
    """CSWin attention in one branch: softmax attention in stripes + ``get_v`` (3x3 depthwise conv of V,
    per stripe)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        idx: int,
        split: int,
        attn_drop: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.num_heads, self.idx, self.split, self.attn_drop = num_heads, idx, split, attn_drop
        self.get_v = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim, **dd)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """``q, k, v``: ``(B, H*W, C)`` -> ``(B, H*W, C)``."""
        B, _, C = q.shape
        H, W = hw
        # pad the striped axis up to a multiple of the stripe width; padded keys are masked below
        pad_h = (-H) % self.split if self.idx == 1 else 0
        pad_w = (-W) % self.split if self.idx == 0 else 0
        Hp, Wp = H + pad_h, W + pad_w
        ws = _window_shape(self.idx, (Hp, Wp), self.split)
        q, k, v = (F.pad(t.reshape(B, H, W, C), (0, 0, 0, pad_w, 0, pad_h)) for t in (q, k, v))
        q, k, v = (_to_windows(t, ws) for t in (q, k, v))
        b, n, _ = q.shape
        h, d = self.num_heads, C // self.num_heads
        lepe = self.get_v(v.transpose(1, 2).reshape(b, C, *ws)).flatten(2).transpose(1, 2)
        mask = None
        if pad_h or pad_w:
            valid = F.pad(q.new_ones(B, H, W, 1), (0, 0, 0, pad_w, 0, pad_h))
            mask = (_to_windows(valid, ws)[..., 0] > 0)[:, None, None, :]  # (b, 1, 1, n) keys
        q, k, v = (t.reshape(b, n, h, d).transpose(1, 2) for t in (q, k, v))
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.attn_drop if self.training else 0.0)
        x = x.transpose(1, 2).reshape(b, n, C) + lepe
        x = _from_windows(x, ws, (Hp, Wp))[:, :H, :W]
        return x.reshape(B, H * W, C)


@register_notrace_module  # FX: one leaf (stripe shape check, grid-dependent agent biases)
class AgentBranch(AgentAttentionCore):
    """Agent attention in one branch (whole map or stripes), ``get_v`` as the diversity term."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        idx: int,
        split: int,
        grid: tuple[int, int],
        agent_num: int = 49,
        attn_drop: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__(num_heads, agent_num, _window_shape(idx, grid, split), attn_drop=attn_drop, **dd)
        self.idx, self.split = idx, split
        self.get_v = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim, **dd)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """``q, k, v``: ``(B, H*W, C)`` -> ``(B, H*W, C)``."""
        B, _, C = q.shape
        ws = _window_shape(self.idx, hw, self.split)
        if hw[0] % ws[0] or hw[1] % ws[1]:
            raise ValueError(
                f'agent stripes of width {self.split} need a feature map that is a multiple of it, '
                f'got {tuple(hw)}: use an input size whose stage maps divide by the agent split'
            )
        q, k, v = (_to_windows(t.reshape(B, *hw, C), ws) for t in (q, k, v))
        b, n, _ = q.shape
        h, d = self.num_heads, C // self.num_heads
        lepe = self.get_v(v.transpose(1, 2).reshape(b, C, *ws)).flatten(2).transpose(1, 2)
        q, k, v = (t.reshape(b, n, h, d).transpose(1, 2) for t in (q, k, v))
        x = self.attend(q, k, v, ws).transpose(1, 2).reshape(b, n, C) + lepe
        return _from_windows(x, ws, hw).reshape(B, -1, C)


class CSWinBlock(nn.Module):
    """Pre-norm CSWin block: shared ``qkv``, one or two attention branches, ``proj``, MLP."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        grid: tuple[int, int],
        split: int,
        kind: str,
        agent_num: int,
        last_stage: bool = False,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias, **dd)
        self.norm1 = nn.LayerNorm(dim, **dd)
        one = last_stage or grid[0] == split
        self.branch_num = 1 if one else 2
        bdim, bheads = (dim, num_heads) if one else (dim // 2, num_heads // 2)
        idxs = [-1] if one else [0, 1]
        if kind == 'A':
            self.attns = nn.ModuleList(
                [AgentBranch(bdim, bheads, i, split, grid, agent_num, attn_drop, **dd) for i in idxs]
            )
        else:
            self.attns = nn.ModuleList([LePEBranch(bdim, bheads, i, split, attn_drop, **dd) for i in idxs])
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop, **dd)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """``(B, H*W, C)`` -> ``(B, H*W, C)``."""
        B, N, C = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(B, N, 3, C).unbind(2)
        if self.branch_num == 1:
            y = self.attns[0](q, k, v, hw)
        else:
            c = C // 2
            y = torch.cat(
                [
                    self.attns[0](q[..., :c], k[..., :c], v[..., :c], hw),
                    self.attns[1](q[..., c:], k[..., c:], v[..., c:], hw),
                ],
                dim=-1,
            )
        x = x + self.drop_path(self.proj_drop(self.proj(y)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ConvStem(nn.Sequential):
    """``stage1_conv_embed``: conv 7x7 s4 (index 0), flatten to tokens (1), LayerNorm (2)."""

    class _Tokens(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(2).transpose(1, 2)

    def __init__(
        self, in_chans: int, dim: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__(nn.Conv2d(in_chans, dim, 7, 4, 2, **dd), self._Tokens(), nn.LayerNorm(dim, **dd))


class MergeBlock(nn.Module):
    """Conv 3x3 stride 2 + LayerNorm, on tokens: ``(B, H*W, C)`` -> ``(B, H/2 * W/2, C')``."""

    def __init__(
        self, dim: int, dim_out: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.conv = nn.Conv2d(dim, dim_out, 3, 2, 1, **dd)
        self.norm = nn.LayerNorm(dim_out, **dd)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.conv(x.transpose(1, 2).reshape(x.shape[0], -1, *hw))
        hw = (x.shape[2], x.shape[3])
        return self.norm(x.flatten(2).transpose(1, 2)), hw


class AgentCSWinTransformer(nn.Module):
    """Agent-CSwin.

    Args:
        img_size: the size the agent biases are built for (any size divisible by 32 runs).
        in_chans, num_classes: input channels, classes.
        embed_dim, depths, num_heads, mlp_ratio, qkv_bias: as CSWin.
        split_size: CSWin stripe widths per stage (``B`` blocks).
        agent_split: agent branch split per stage (``A`` blocks); equal to the stage map = global.
        attn_type: per-stage ``A`` / ``B`` / ``M`` string.
        agent_num: agent tokens per stage.
        drop_rate, proj_drop_rate, attn_drop_rate, drop_path_rate: dropout rates.
        global_pool: ``'avg'`` or ``''``.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 64,
        depths: tuple[int, ...] = (2, 4, 18, 1),
        num_heads: tuple[int, ...] = (2, 4, 8, 16),
        split_size: tuple[int, ...] = (1, 2, 7, 7),
        agent_split: tuple[int, ...] = (56, 28, 14, 7),
        attn_type: str = 'AABB',
        agent_num: tuple[int, ...] = (9, 16, 49, 49),
        mlp_ratio: float = 4.0,
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
        self.num_stages = len(depths)
        kinds = expand_attn_type(attn_type, depths)
        n = sum(depths)
        dpr = calculate_drop_path_rates(drop_path_rate, n)
        self.stage1_conv_embed = ConvStem(in_chans, embed_dim, **dd)
        self.feature_info = []
        dim, cur = embed_dim, 0
        for i, depth in enumerate(depths):
            if i > 0:
                setattr(self, f'merge{i}', MergeBlock(dim, dim * 2, **dd))
                dim *= 2
            stride = 4 * 2**i
            grid = (img_size[0] // stride, img_size[1] // stride)
            blocks = nn.ModuleList(
                [
                    CSWinBlock(
                        dim,
                        num_heads[i],
                        grid,
                        agent_split[i] if kinds[i][j] == 'A' else split_size[i],
                        kinds[i][j],
                        int(agent_num[i]),
                        last_stage=i == len(depths) - 1,
                        mlp_ratio=mlp_ratio,
                        qkv_bias=qkv_bias,
                        proj_drop=proj_drop_rate,
                        attn_drop=attn_drop_rate,
                        drop_path=dpr[cur + j],
                        **dd,
                    )
                    for j in range(depth)
                ]
            )
            setattr(self, f'stage{i + 1}', blocks)
            self.feature_info.append(dict(num_chs=dim, reduction=stride, module=f'stage{i + 1}'))
            cur += depth
        self.num_features = self.head_hidden_size = dim
        self.norm = nn.LayerNorm(dim, **dd)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(dim, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self.grad_checkpointing = False
        self.apply(init_linear_layernorm)
        init_agent_biases(self)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        # merge{i} runs before stage{i + 1} (it makes that stage's input), so it groups with it.
        merges = [(rf'^merge{i}\.', (i + 1,) if coarse else (i + 1, -1)) for i in range(1, 4)]
        stages = [(r'^stage(\d+)', None)] if coarse else [(r'^stage(\d+)\.(\d+)', None), (r'^norm', (99999,))]
        return dict(stem=r'^stage1_conv_embed', blocks=merges + stages)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

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

    def _run_stage(self, i: int, x: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        if i > 0:
            x, hw = getattr(self, f'merge{i}')(x, hw)
        for blk in getattr(self, f'stage{i + 1}'):
            x = checkpoint(blk, x, hw) if self.grad_checkpointing and not torch.jit.is_scripting() else blk(x, hw)
        return x, hw

    def _stem(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = check_input(x)
        return self.stage1_conv_embed(x), (x.shape[-2] // 4, x.shape[-1] // 4)

    @staticmethod
    def _nchw(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        return x.transpose(1, 2).reshape(x.shape[0], -1, *hw)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = 'NCHW',
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs ``(B, C_i, H / 2^(i+2), W / 2^(i+2))``; ``norm`` normalizes the last stage's."""
        if output_fmt != 'NCHW':
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(self.num_stages, indices)
        x, hw = self._stem(x)
        last = self.num_stages - 1
        intermediates = []
        for i in range(max_index + 1 if stop_early else self.num_stages):
            x, hw = self._run_stage(i, x, hw)
            if i in take_indices:
                intermediates.append(self._nchw(self.norm(x) if norm and i == last else x, hw))
        if intermediates_only:
            return intermediates
        return self._nchw(self.norm(x), hw), intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        take_indices, max_index = feature_take_indices(self.num_stages, indices)
        for i in range(max_index + 1, self.num_stages):
            delattr(self, f'stage{i + 1}')
            delattr(self, f'merge{i}')
        if max_index < self.num_stages - 1:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
            self.norm = nn.Identity()
            prune_head = True
        self.num_stages = max_index + 1
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> normed ``(B, C, H/32, W/32)``."""
        x, hw = self._stem(x)
        for i in range(self.num_stages):
            x, hw = self._run_stage(i, x, hw)
        return self._nchw(self.norm(x), hw)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == 'avg':
            x = x.mean(dim=(2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def checkpoint_filter_fn(state_dict: dict, model: AgentCSWinTransformer) -> dict[str, torch.Tensor]:
    """Official Agent-CSwin checkpoint (``state_dict_ema`` preferred over ``model``, or a plain state
    dict) -> zoo keys (the same); agent biases trained at another resolution are resized."""
    state_dict = unwrap_state_dict(state_dict)
    target = model.state_dict()
    out = {}
    for k, v in state_dict.items():
        if k in target and v.shape != target[k].shape:
            v = adapt_agent_bias(k, v, target[k].shape)
        out[k] = v
    return out


def _create(variant: str, pretrained: bool = False, **kwargs) -> AgentCSWinTransformer:
    out_indices = kwargs.pop('out_indices', (0, 1, 2, 3))
    return build_model_with_weights(
        AgentCSWinTransformer,
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
        'crop_pct': 0.9,
        'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN,
        'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stage1_conv_embed.0',
        'classifier': 'head',
        'license': 'unknown (no license in the official repository)',
        'paper_ids': 'arXiv:2312.08874',
        'paper_name': 'Agent Attention: On the Integration of Softmax and Linear Attention',
        'origin_url': _ORIGIN,
        **kwargs,
    }


# Agent Attention (arXiv 2312.08874), official repo LeapLabTHU/Agent-Attention. params_m: counted by
# instantiating agent_transformer/models/agent_cswin.py at each cfg resolution (the README rounds them to whole
# millions); gmacs: the 'FLOPs' column of agent_transformer/README.md, which (Swin convention) counts
# multiply-adds, at the cfg resolution; top1: ImageNet-1k from the same table; weights: the Tsinghua Cloud links
# in that table.
PAPER_FACTS: dict[str, dict] = {
    'agent_cswin_tiny': dict(params_m=20.46, gmacs=4.3, top1=83.1),
    'agent_cswin_small': dict(params_m=32.81, gmacs=6.8, top1=83.9),
    'agent_cswin_base': dict(params_m=73.25, gmacs=14.9, top1=84.7),
    'agent_cswin_base_384': dict(params_m=73.33, gmacs=46.3, top1=85.8, img_size=384),
}

default_cfgs = zoo_default_cfgs(
    {
        'agent_cswin_tiny.in1k': _cfg('8c562a74441e46d5902b'),
        'agent_cswin_small.in1k': _cfg('30eb8af675bc4b7a8747'),
        'agent_cswin_base.in1k': _cfg('c8035b0839b2410c8c9f'),
        'agent_cswin_base_384.in1k': _cfg(
            '1239be0df44b47719432', input_size=(3, 384, 384), pool_size=(12, 12), crop_pct=1.0
        ),
    },
    paper=PAPER_FACTS,
)


_T = dict(embed_dim=64, depths=(2, 4, 18, 1), num_heads=(2, 4, 8, 16), attn_type='AABB')
_S = dict(embed_dim=64, depths=(3, 6, 29, 2), num_heads=(2, 4, 8, 16), attn_type='AABB')
_B = dict(embed_dim=96, depths=(3, 6, 29, 2), num_heads=(4, 8, 16, 32), attn_type='AABB')


@register_model
def agent_cswin_tiny(pretrained: bool = False, **kwargs) -> AgentCSWinTransformer:
    """Agent-CSwin-T (official ``Agent_CSWin_64_24181_tiny_224``): 2-4-18-1, C=64, AABB."""
    return _create('agent_cswin_tiny', pretrained, **{**_T, **kwargs})


@register_model
def agent_cswin_small(pretrained: bool = False, **kwargs) -> AgentCSWinTransformer:
    """Agent-CSwin-S (official ``Agent_CSWin_64_36292_small_224``): 3-6-29-2, C=64, AABB."""
    return _create('agent_cswin_small', pretrained, **{**_S, **kwargs})


@register_model
def agent_cswin_base(pretrained: bool = False, **kwargs) -> AgentCSWinTransformer:
    """Agent-CSwin-B (official ``Agent_CSWin_96_36292_base_224``): 3-6-29-2, C=96, AABB."""
    return _create('agent_cswin_base', pretrained, **{**_B, **kwargs})


@register_model
def agent_cswin_base_384(pretrained: bool = False, **kwargs) -> AgentCSWinTransformer:
    """Agent-CSwin-B built at 384x384: CSWin splits 1-2-12-12, agent splits 96-48-24-12."""
    return _create(
        'agent_cswin_base_384',
        pretrained,
        **{**_B, 'img_size': 384, 'split_size': (1, 2, 12, 12), 'agent_split': (96, 48, 24, 12), **kwargs},
    )
