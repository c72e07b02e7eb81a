"""Attention rollout (Abnar & Zuidema, ACL 2020, arXiv:2005.00928), class-token row only.

Rollout follows how much each input token feeds a token of block ``L`` through the residual stream: every
block's attention ``S_l`` (rows sum to 1) is mixed with the identity for the residual connection,
``S̄_l = (1 - a) S_l + a I`` (``a = 0.5``), and the blocks are chained, ``Ŝ_L = S̄_L S̄_{L-1} ... S̄_1``.
DCAL (Zhu et al., CVPR 2022, arXiv:2205.02151, Sec. 3.2, Eq. 3) ranks patches by the class-token row of
``Ŝ_L`` to pick the local queries of its global-local cross-attention.

Only that one row is needed, so it is computed right to left as vector-matrix products,
``r ← e_0ᵀ S̄_L``, ``r ← r S̄_{L-1}``, ..., ``O(L·N²)`` per image, instead of the chain of ``N x N`` matrix
products (``O(L·N³)``). ``r S̄ = (1 - a) (r S) + a r``, so the identity is never built. The price is that
the maps of all blocks are kept until the last one is known (``L·N²`` numbers per image).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.layers import register_notrace_function

__all__ = ['fuse_heads', 'rollout_cls_row', 'select_local_queries', 'num_local_queries']


@register_notrace_function  # FX: branches on the map's rank
@torch.fx.wrap
def fuse_heads(attn: torch.Tensor, head_fusion: str = 'mean') -> torch.Tensor:
    """``(B, H, N, N)`` per-head attention -> ``(B, N, N)``; ``(B, N, N)`` passes through.

    ``'mean'`` keeps rows stochastic (Abnar & Zuidema's default); ``'max'`` / ``'min'`` are renormalised.
    """
    if attn.ndim == 3:
        return attn
    if attn.ndim != 4:
        raise ValueError(f'attention maps must be (B, H, N, N) or (B, N, N), got shape {tuple(attn.shape)}')
    if head_fusion == 'mean':
        return attn.mean(dim=1)
    if head_fusion in ('max', 'min'):
        fused = attn.amax(dim=1) if head_fusion == 'max' else attn.amin(dim=1)
        return fused / fused.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(fused.dtype).tiny)
    raise ValueError(f"head_fusion must be 'mean', 'max' or 'min', got {head_fusion!r}")


@register_notrace_function  # FX: in-place update of the rollout row
@torch.fx.wrap
def rollout_cls_row(
    attn_maps: Sequence[torch.Tensor],
    residual: float = 0.5,
    head_fusion: str = 'mean',
    index: int = 0,
) -> torch.Tensor:
    """Row ``index`` (the class token) of the rollout ``Ŝ = S̄_L ⋯ S̄_1``, ``S̄_l = (1 - residual) S_l + residual I``.

    Args:
        attn_maps: the softmax attention of blocks ``1..L`` in forward order, each ``(B, N, N)`` or
            ``(B, H, N, N)`` (heads fused with ``head_fusion``). Only row ``index`` of block ``L`` is used, so its
            map may hold just the first rows, ``(B, r, N)`` with ``r > index``.
        residual: weight of the identity (0.5 in DCAL's Eq. 3).
        head_fusion: ``'mean'``, ``'max'`` or ``'min'`` over heads.
        index: the row to return (0 = class token).

    Returns:
        ``(B, N)``: how much each input token contributes to token ``index`` of block ``L`` (sums to 1
        when the maps are row-stochastic).
    """
    if len(attn_maps) == 0:
        raise ValueError('attn_maps is empty: rollout needs the attention of at least one block')
    last = fuse_heads(attn_maps[-1], head_fusion)
    # e_index^T S̄_L = (1 - a) S_L[index] + a e_index: one row, no product needed
    row = (1.0 - residual) * last[:, index]  # a new tensor: the in-place add below leaves the map alone
    row[:, index] += residual
    for attn in reversed(attn_maps[:-1]):
        s = fuse_heads(attn, head_fusion)
        if s.shape[-1] != row.shape[-1]:
            raise ValueError(f'attention maps disagree on the token count: {tuple(s.shape)} vs {row.shape[-1]} tokens')
        row = (1.0 - residual) * torch.bmm(row.unsqueeze(1).to(s.dtype), s).squeeze(1) + residual * row
    return row


def num_local_queries(num_patches: int, ratio: float) -> int:
    """``R``: ``round(ratio * num_patches)``, at least 1 and at most ``num_patches``."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f'local query ratio must be in (0, 1], got {ratio}')
    return max(1, min(num_patches, int(round(ratio * num_patches))))


@register_notrace_function  # FX: R from the traced token count
@torch.fx.wrap
def select_local_queries(scores: torch.Tensor, ratio: float, num_prefix_tokens: int = 1) -> torch.Tensor:
    """Token indices of the GLCA queries: the class token plus the top ``R = ratio * N_patches`` patches.

    Args:
        scores: ``(B, P + N_patches)`` rollout class-token row (prefix tokens first).
        ratio: share of patch tokens taken as local queries (DCAL: 0.1 FGVC, 0.3 Re-ID).
        num_prefix_tokens: ``P``; only the class token (index 0) of the prefix tokens becomes a query.

    Returns:
        ``(B, 1 + R)`` long indices, ascending (token order kept, so ``ratio = 1`` selects every token of a
        one-prefix-token model in its original order).
    """
    if num_prefix_tokens < 1:
        raise ValueError('GLCA needs a class token (num_prefix_tokens >= 1)')
    patches = scores[:, num_prefix_tokens:]
    r = num_local_queries(patches.shape[1], ratio)
    top = patches.topk(r, dim=1, sorted=False).indices + num_prefix_tokens
    cls = torch.zeros_like(top[:, :1])
    return torch.cat([cls, top.sort(dim=1).values], dim=1)
