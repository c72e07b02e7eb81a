"""DCAL's two cross-attentions (Zhu et al., CVPR 2022, arXiv:2205.02151), on timm ViT blocks.

* **GLCA** (global-local cross-attention, Eq. 4): ``softmax(Q^l K^gᵀ / √d) V^g``. Only the selected local
  tokens (class token + top-R patches by attention rollout) are queries; keys and values come from all tokens.
  The selected tokens alone go through the query projection, the attention rows, the output projection, the
  residuals and the MLP, so a GLCA block costs ``(1 + R) / N`` of a block plus the K/V projections.
  GLCA has its own weights (:class:`GLCABlock`, the layout of timm's ``Block``).
* **PWCA** (pair-wise cross-attention, Eq. 5): the queries of image 1 attend over the keys and values of
  both images under one softmax, ``softmax(Q_1 [K_1; K_2]ᵀ / √d) [V_1; V_2]``, with the block's own (SA)
  weights. Training only, so it adds no parameters and no inference cost.

Both run on timm's ``vision_transformer.Block`` with ``timm.layers.Attention`` (fused ``qkv``, optional
``q_norm`` / ``k_norm`` / ``norm`` / ``gate``, layer scale, drop path): :func:`block_forward` is that block's
forward with the per-block attention map for rollout and the partner keys / values for PWCA. Blocks with the
zoo's :class:`~zoo.layers.agent_attention.AgentAttention` (Agent-DeiT) work too: their token-to-token map is
the product of the two agent softmaxes (the depthwise-conv term is not attention and stays out of rollout),
and PWCA lets the agents aggregate over both images' keys / values under one softmax.
"""

from __future__ import annotations

import copy
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_function
from timm.models.vision_transformer import Block
from torch import nn

from zoo.layers.agent_attention import AgentAttention
from zoo.layers.rollout import fuse_heads

__all__ = [
    'GLCABlock',
    'agent_attention_forward',
    'attention_with_head_mean',
    'block_forward',
    'check_dcal_block',
    'glca_forward',
    'multi_head_attention',
    'project_output',
    'project_qkv',
]


def check_dcal_block(block: nn.Module, where: str = 'block') -> None:
    """Raise a one-line ``TypeError`` unless ``block`` has timm's pre-norm Block layout with a fused-qkv attention."""
    attn = getattr(block, 'attn', None)
    needed = ('norm1', 'norm2', 'mlp')
    if (
        attn is None
        or any(not hasattr(block, n) for n in needed)
        or not isinstance(getattr(attn, 'qkv', None), nn.Linear)
    ):
        raise TypeError(
            f'{where} ({type(block).__name__}) is not a timm ViT Block (norm1 -> attn with a fused qkv Linear -> '
            f'norm2 -> mlp); DCAL needs that layout for rollout, GLCA and PWCA'
        )
    if not hasattr(attn, 'num_heads'):
        raise TypeError(f'{where}.attn ({type(attn).__name__}) has no num_heads attribute')
    if isinstance(attn, AgentAttention) and not hasattr(block, 'grid'):
        raise TypeError(f'{where} ({type(block).__name__}) has agent attention but no grid attribute')


def _heads(attn: nn.Module) -> tuple[int, int]:
    h = attn.num_heads
    d = getattr(attn, 'head_dim', None) or attn.qkv.out_features // (3 * h)
    return h, d


def project_qkv(attn: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(B, N, C)`` -> ``q, k, v`` each ``(B, h, N, d)`` through ``attn.qkv`` and its q / k norms."""
    B, N, _ = x.shape
    h, d = _heads(attn)
    q, k, v = attn.qkv(x).reshape(B, N, 3, h, d).permute(2, 0, 3, 1, 4).unbind(0)
    return getattr(attn, 'q_norm', nn.Identity())(q), getattr(attn, 'k_norm', nn.Identity())(k), v


def project_output(attn: nn.Module, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``(B, h, n, d)`` attention output -> ``(B, n, C)``: head merge, ``norm``, ``gate(x)``, ``proj``, dropout.

    ``x`` is the attention input of the same ``n`` query tokens (for timm's optional output gate).
    """
    B, h, n, d = out.shape
    out = out.transpose(1, 2).reshape(B, n, h * d)
    out = getattr(attn, 'norm', nn.Identity())(out)
    gate = getattr(attn, 'gate', None)
    if gate is not None:
        out = out * gate(x).sigmoid()
    out = attn.proj(out)
    return attn.proj_drop(out) if hasattr(attn, 'proj_drop') else out


# Keys up to which a CPU training step (autograd on) takes the explicit products instead of fused SDPA: SDPA's CPU
# backward costs more there and the (B, h, n, m) probabilities it saves are small. Measured forward + backward, batch
# 64, 2 heads of 32, 1 thread, SDPA vs explicit: 10 tokens 4.0 vs 1.5 ms float32, 9.6 vs 1.6 ms bfloat16 (the bf16
# flash backward, 2.4x its float32, made the DCAL digits step slower under --amp); 50 tokens 30 vs 20 ms, 59 vs 23 ms;
# at 197 tokens float32 SDPA is the faster (161 vs 325 ms), so long sequences keep it.
CPU_TRAIN_EXPLICIT_KEYS = 64


@register_notrace_function  # FX: fused / explicit / per-image paths picked from grad mode and shapes
@torch.fx.wrap
def multi_head_attention(
    attn: nn.Module,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    need_map: bool = False,
    map_rows: int | None = None,
    map_out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``softmax(q kᵀ · scale) v`` with the dropout of ``attn``; optionally the head-mean map too.

    Fused SDPA whenever ``attn.fused_attn`` allows it, except in a CPU training step on short sequences
    (:data:`CPU_TRAIN_EXPLICIT_KEYS` keys or fewer), where the explicit products are faster. A map for rollout is
    then computed on the side without gradient (rollout only ranks tokens), which keeps training memory at SDPA's
    level. Without gradient (eval) the attention is computed once explicitly and gives both the output and the map.

    Args:
        q: ``(B, h, n, d)``; k, v: ``(B, h, m, d)``.
        need_map: also return the head-mean attention ``(B, n, m)`` (detached).
        map_rows: return only the first ``map_rows`` query rows of the map, ``(B, map_rows, m)``. The last block
            of a class-token rollout needs only its class-token row, so its output keeps the fused kernel.
        map_out: a ``(B, n, m)`` buffer for the map of the explicit eval path (it is then the returned map);
            other paths allocate their own.
    """
    scale = getattr(attn, 'scale', q.shape[-1] ** -0.5)
    drop = attn.attn_drop.p if attn.training and isinstance(getattr(attn, 'attn_drop', None), nn.Dropout) else 0.0
    fused = getattr(attn, 'fused_attn', True)
    if fused and q.device.type == 'cpu' and torch.is_grad_enabled() and k.shape[2] <= CPU_TRAIN_EXPLICIT_KEYS:
        fused = False  # SDPA's CPU backward is slower than the explicit products on short sequences (see the constant)
    if need_map and map_rows is not None:
        if fused:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, scale=scale)
        else:
            probs = _probs(q, k, scale)
            out = (F.dropout(probs, drop) if drop else probs) @ v
        with torch.no_grad():
            return out, fuse_heads(_probs(q[:, :, :map_rows], k, scale))
    if fused and not (need_map and not torch.is_grad_enabled()):
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, scale=scale)
        if not need_map:
            return out, None
        with torch.no_grad():
            return out, fuse_heads(_probs(q, k, scale))
    if need_map and not drop and not torch.is_grad_enabled() and not torch.compiler.is_compiling():
        # eager: the per-image row blocks (a Python loop over the batch, which torch.export / compile would
        # specialise, so traced graphs take the one-shot products below: the same values)
        return attention_with_head_mean(q, k, v, scale, map_out=map_out)
    probs = _probs(q, k, scale)
    out = (F.dropout(probs, drop) if drop else probs) @ v
    return out, (fuse_heads(probs.detach()) if need_map else None)


def _probs(q: torch.Tensor, k: torch.Tensor, scale: float) -> torch.Tensor:
    """``softmax(q kᵀ · scale)``: ``(B, h, n, d)``, ``(B, h, m, d)`` -> ``(B, h, n, m)``."""
    return ((q * scale) @ k.transpose(-2, -1)).softmax(dim=-1)


def attention_with_head_mean(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    rows: int = 128,
    map_out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Explicit ``softmax(q kᵀ · scale) v`` and its head mean ``(B, n, m)``, one image and ``rows`` query rows at a
    time.

    The same products as the one-shot ``probs = softmax(q kᵀ · scale)``, ``probs @ v``, ``probs.mean(1)``, but
    the ``(h, rows, m)`` scores, then (in place) probabilities, of one row block live in one scratch buffer that
    every row block reuses. It stays in cache for the output and the map, and no full ``(B, h, n, m)`` tensor is
    allocated: on CPU the page faults of those fresh allocations cost more than the softmax itself (one DeiT-T block at
    448², batch 8, one thread: softmax into a new tensor 41.5 ms, into a reused one 10.0 ms). No dropout, no
    autograd (eval / rollout).

    Args:
        q: ``(B, h, n, d)``; k, v: ``(B, h, m, d)``; scale: the logit scale.
        map_out: ``(B, n, m)`` buffer to write the map into (e.g. one slice of a buffer holding every block's
            map, allocated once per forward); default a new tensor.

    Returns:
        ``(out (B, h, n, d), head-mean map (B, n, m))``; ``out`` is a view of ``(B, n, h, d)`` storage.
    """
    B, h, n, d = q.shape
    m = k.shape[2]
    kt = k.transpose(-2, -1)
    # (B, n, h, d) storage: the caller's head merge (transpose(1, 2).reshape) is then a view, not a copy
    out = q.new_empty(B, n, h, v.shape[-1])
    amap = q.new_empty(B, n, m) if map_out is None else map_out
    if amap.shape != (B, n, m):
        raise ValueError(f'map_out has shape {tuple(amap.shape)}, expected {(B, n, m)}')
    rows = min(rows, n)
    probs = q.new_empty(h, rows, m)
    rows_out = q.new_empty(h, rows, v.shape[-1])
    for b in range(B):
        kb, vb = kt[b], v[b]
        for i in range(0, n, rows):
            j = min(i + rows, n)
            p, o, a = probs[:, : j - i], rows_out[:, : j - i], amap[b, i:j]
            torch.baddbmm(p, q[b, :, i:j], kb, beta=0.0, alpha=scale, out=p)  # scale inside: no scaled copy of q
            torch.softmax(p, dim=-1, out=p)  # in place: one scratch block stays in cache
            torch.matmul(p, vb, out=o)
            out[b, i:j] = o.transpose(0, 1)
            # head mean as h - 1 adds and a scale: torch.mean(dim=0, out=...) zero-fills, sums, then divides
            if h == 1:
                a.copy_(p[0])
            else:
                torch.add(p[0], p[1], out=a)
                for t in range(2, h):
                    a.add_(p[t])
                a.mul_(1.0 / h)
    return out.transpose(1, 2), amap


def block_forward(
    block: nn.Module,
    x: torch.Tensor,
    partner_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    need_map: bool = False,
    map_rows: int | None = None,
    map_out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, torch.Tensor]]:
    """timm ``Block.forward`` that also returns what DCAL needs; the output equals ``block(x)`` when
    ``partner_kv`` is None.

    Args:
        block: a timm ViT ``Block`` (see :func:`check_dcal_block`).
        x: ``(B, N, C)`` block input.
        partner_kv: PWCA: keys and values ``(B, h, M, d)`` of the partner images (row ``b`` is image ``b``'s
            partner), appended to this block's own keys and values under one softmax.
        need_map: return the head-mean self-attention map ``(B, N, N)`` for rollout (not with ``partner_kv``).
        map_rows: only the first ``map_rows`` rows of that map, ``(B, map_rows, N)``.
        map_out: ``(B, N, N)`` buffer for the map (see :func:`multi_head_attention`).

    Returns:
        ``(out (B, N, C), map or None, (k, v))``, ``k`` / ``v`` this block's own ``(B, h, N, d)`` keys and
        values (what a PWCA partner attends to).
    """
    if partner_kv is not None and need_map:
        raise ValueError('need_map is for the self-attention branch; PWCA (partner_kv) has no rollout')
    y = block.norm1(x)
    if isinstance(block.attn, AgentAttention):
        a, amap, kv = agent_attention_forward(block.attn, y, block.grid, partner_kv, need_map, map_rows)
        x = x + _residual(block, 1, a)
        x = x + _residual(block, 2, block.mlp(block.norm2(x)))
        return x, amap, kv
    q, k, v = project_qkv(block.attn, y)
    if partner_kv is not None:
        k2, v2 = partner_kv
        if k2.shape[:2] != k.shape[:2] or k2.shape[-1] != k.shape[-1]:
            raise ValueError(f'partner keys {tuple(k2.shape)} do not match the block keys {tuple(k.shape)}')
        out, amap = multi_head_attention(block.attn, q, torch.cat([k, k2], dim=2), torch.cat([v, v2], dim=2))
    else:
        out, amap = multi_head_attention(block.attn, q, k, v, need_map, map_rows, map_out)
    x = x + _residual(block, 1, project_output(block.attn, out, y))
    x = x + _residual(block, 2, block.mlp(block.norm2(x)))
    return x, amap, (k, v)


def agent_attention_forward(
    attn: AgentAttention,
    x: torch.Tensor,
    hw: tuple[int, int],
    partner_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    need_map: bool = False,
    map_rows: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, tuple[torch.Tensor, torch.Tensor]]:
    """``AgentAttention.forward`` with DCAL's extras (same output when ``partner_kv`` is None).

    Args:
        attn: the agent attention of an Agent-DeiT block.
        x: ``(B, P + H*W, C)`` normed block input; hw: the grid ``(H, W)``.
        partner_kv: PWCA keys / values ``(B, h, P + H*W, d)`` of the partner images: the agents (pooled from
            image 1's queries) aggregate over both images under one softmax, the partner's tokens carrying the
            position biases of their grid cells; the depthwise-conv term uses image 1's values only.
        need_map: also return the head-mean token-to-token map ``softmax(Q A^T + b2) softmax(A K^T + b1)``
            ``(B, N, N)`` (rows sum to 1; detached).
        map_rows: only the first ``map_rows`` rows of that map, ``(B, map_rows, N)``.

    Returns:
        ``(out (B, N, C), map or None, (k, v))``.
    """
    B, N, C = x.shape
    h, d = attn.num_heads, attn.head_dim
    if attn.separate_q:
        q = attn.q(x).reshape(B, N, h, d).transpose(1, 2)
        k, v = attn.kv(x).reshape(B, N, 2, h, d).permute(2, 0, 3, 1, 4).unbind(0)
    else:
        q, k, v = attn.qkv(x).reshape(B, N, 3, h, d).permute(2, 0, 3, 1, 4).unbind(0)
    agents = attn.pool_agents(q, hw)
    bias1, bias2 = attn.agent_biases(hw)
    bias1, bias2 = bias1.to(q.dtype), bias2.to(q.dtype)
    k_all, v_all, bias1_all = k, v, bias1
    if partner_kv is not None:
        k2, v2 = partner_kv
        if k2.shape != k.shape:
            raise ValueError(f'partner keys {tuple(k2.shape)} do not match the block keys {tuple(k.shape)}')
        k_all, v_all = torch.cat([k, k2], dim=2), torch.cat([v, v2], dim=2)
        bias1_all = torch.cat([bias1, bias1], dim=-1)
    agent_v = attn._softmax_attention(agents, k_all, v_all, bias1_all)
    out = attn._softmax_attention(q, agents, agent_v, bias2).transpose(1, 2).reshape(B, N, C)
    P = attn.num_prefix_tokens
    H, W = hw
    div = attn.dwc(v[:, :, P:].transpose(-1, -2).reshape(B, C, H, W)).flatten(2).transpose(1, 2)
    out = attn.proj_drop(attn.proj(out + (F.pad(div, (0, 0, P, 0)) if P else div)))
    amap = None
    if need_map:
        with torch.no_grad():
            scale = d**-0.5
            a1 = ((agents * scale) @ k.transpose(-1, -2) + bias1).softmax(-1)  # agents <- tokens (B, h, n, N)
            rows = slice(None, map_rows)  # all rows, or the first map_rows
            a2 = ((q[:, :, rows] * scale) @ agents.transpose(-1, -2) + bias2[..., rows, :]).softmax(-1)  # (B,h,N,n)
            amap = fuse_heads(a2 @ a1)
    return out, amap, (k, v)


def _residual(block: nn.Module, i: int, t: torch.Tensor) -> torch.Tensor:
    """Layer scale then drop path of branch ``i`` (1 = attention, 2 = MLP), where the block has them."""
    ls = getattr(block, f'ls{i}', None)
    dp = getattr(block, f'drop_path{i}', None) or getattr(block, 'drop_path', None)
    t = ls(t) if ls is not None else t
    return dp(t) if dp is not None else t


def glca_forward(block: nn.Module, x: torch.Tensor, query_idx: torch.Tensor | None = None) -> torch.Tensor:
    """Global-local cross-attention block: only the tokens ``query_idx`` are queries, all tokens are keys/values.

    Args:
        block: a timm ViT ``Block`` holding the GLCA weights.
        x: ``(B, N, C)`` block input (all tokens).
        query_idx: ``(B, n)`` indices of the query tokens (e.g. :func:`zoo.layers.rollout.select_local_queries`);
            None = all tokens (then this is exactly ``block(x)``).

    Returns:
        ``(B, n, C)``: the block output of the selected tokens, in ``query_idx`` order.
    """
    attn = block.attn
    B, N, C = x.shape
    y = block.norm1(x)
    if query_idx is None:
        x_q, y_q = x, y
    else:
        gather = query_idx.unsqueeze(-1).expand(-1, -1, C)
        x_q, y_q = x.gather(1, gather), y.gather(1, gather)
    h, d = _heads(attn)
    dim = h * d
    w, b = attn.qkv.weight, attn.qkv.bias
    # Q for the n selected tokens, K and V for all N: the fused qkv weight split by rows.
    q = F.linear(y_q, w[:dim], None if b is None else b[:dim]).reshape(B, -1, h, d).transpose(1, 2)
    kv = F.linear(y, w[dim:], None if b is None else b[dim:]).reshape(B, N, 2, h, d).permute(2, 0, 3, 1, 4)
    q = getattr(attn, 'q_norm', nn.Identity())(q)
    k, v = getattr(attn, 'k_norm', nn.Identity())(kv[0]), kv[1]
    out, _ = multi_head_attention(attn, q, k, v)
    x_q = x_q + _residual(block, 1, project_output(attn, out, y_q))
    return x_q + _residual(block, 2, block.mlp(block.norm2(x_q)))


class GLCABlock(Block):
    """timm's ``Block`` (same parameters and keys) run as a global-local cross-attention block.

    ``forward(x, query_idx)`` is :func:`glca_forward`; without ``query_idx`` it is the plain block.
    Build it like ``Block`` or copy an existing block with :meth:`from_block` (DCAL initialises its GLCA block
    from the last SA block).
    """

    def forward(self, x: torch.Tensor, query_idx: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        return glca_forward(self, x, query_idx)

    @classmethod
    def from_block(cls, block: nn.Module) -> GLCABlock:
        """A GLCA block initialised from ``block``.

        A timm ``Block`` is deep-copied (weights, layer scale, drop path). Another pre-norm block with a fused
        ``qkv`` (e.g. an Agent-DeiT block) gives a plain softmax-attention ``GLCABlock`` of the same width,
        heads and MLP, whose norms, ``qkv``, ``proj`` and MLP weights are copied (agent biases and the
        depthwise conv have no counterpart and are dropped).
        """
        check_dcal_block(block)
        if isinstance(block, Block):
            new = copy.deepcopy(block)
            new.__class__ = cls  # same attributes, only forward differs
            return new
        attn = block.attn
        dim = attn.qkv.in_features
        dp = getattr(block, 'drop_path', None)
        new = cls(
            dim,
            attn.num_heads,
            mlp_ratio=block.mlp.fc1.out_features / dim,
            qkv_bias=attn.qkv.bias is not None,
            drop_path=getattr(dp, 'drop_prob', 0.0) or 0.0,
            norm_layer=partial(nn.LayerNorm, eps=block.norm1.eps),
            device=attn.qkv.weight.device,
            dtype=attn.qkv.weight.dtype,
        )
        src = block.state_dict()
        missing = [k for k, v in new.state_dict().items() if k not in src or src[k].shape != v.shape]
        if missing:
            raise TypeError(f'cannot initialise a GLCA block from {type(block).__name__}: no matching {missing}')
        new.load_state_dict({k: src[k] for k in new.state_dict()})
        return new
