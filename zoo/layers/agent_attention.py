"""Agent attention (Han et al., *Agent Attention: On the Integration of Softmax and Linear Attention*,
ECCV 2024, arXiv:2312.08874), shared by the Agent-DeiT / PVT / Swin / CSwin backbones.

For one attention window (or the whole feature map) with queries Q, keys K, values V (per head,
``N`` tokens of ``head_dim`` d) on an ``H x W`` grid:

1. agent tokens ``A`` = adaptive average pool of Q to ``p x p`` (``agent_num = p * p``);
2. agent aggregation ``V_A = softmax(A K^T / sqrt(d) + B1) V``  (``n x N`` attention);
3. agent broadcast ``O = softmax(Q A^T / sqrt(d) + B2) V_A``   (``N x n`` attention);
4. diversity restoration ``O += DWC(V)`` (3x3 depthwise conv), then the output projection.

Both attentions go through :func:`torch.nn.functional.scaled_dot_product_attention` with the
position biases as an additive float mask on GPU (on CPU two plain GEMMs and a softmax, which are
faster there for the handful of agents), so the cost is ``O(N n d)``: linear in ``N``.

Position biases (parameter names and shapes as in the official checkpoints):

* ``B1 = resize(an_bias[h, n, 7, 7] -> H x W) + ah_bias[1, h, n, Wh, 1] + aw_bias[1, h, n, 1, Ww]``
* ``B2 = resize(na_bias)^T + ha_bias[1, h, Wh, 1, n] + wa_bias[1, h, 1, Ww, n]``
* with one class token (Agent-DeiT): ``ac_bias[1, h, n, 1]`` is the agents' bias towards the class
  key, ``ca_bias[1, h, 1, n]`` the class query's bias towards the agents; agents are pooled from
  the patch queries only and the DWC term is added to the patch tokens only.

Resolution (our choice, documented): ``Wh x Ww`` is the grid the model was built for. At any other
grid ``H x W`` the window-sized biases are resized with bilinear interpolation
(``align_corners=False``), the rule of the official downstream (mmseg/mmdet) code. Because
``ah + aw`` is separable, resizing ``ah`` along H and ``aw`` along W is exactly the bilinear resize
of their sum, at a fraction of the cost. At the built size nothing is resized (identity). The
agent grid stays ``p x p`` at every input size and aspect ratio.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import (
    register_notrace_function,
    register_notrace_module,
    resample_abs_pos_embed,
    trunc_normal_,
    use_fused_attn,
)
from torch import nn

from zoo.layers.amp_conv import SmallGridDepthwiseConv2d
from zoo.layers.cpu_fusion import linear_bias, linear_split

__all__ = [
    'AgentAttention',
    'AgentAttentionCore',
    'resize_agent_bias',
    'init_agent_biases',
    'expand_attn_type',
    'adapt_agent_bias',
    'pos_embed_for_grid',
    'tokens_to_grid',
    'adaptive_pool_matrix',
]

# How position embeddings follow the input grid: the same bilinear rule as the agent biases
# (keyword arguments for timm.layers.resample_abs_pos_embed).
POS_EMBED_RESIZE = dict(interpolation='bilinear', antialias=False, align_corners=False)


@register_notrace_function  # FX: compares the traced grid with the built one
@torch.fx.wrap
def pos_embed_for_grid(
    pos_embed: torch.Tensor, grid: tuple[int, int], built: tuple[int, int], num_prefix_tokens: int = 0
) -> torch.Tensor:
    """``pos_embed`` ``(1, P + h*w, C)`` built for the grid ``built``, resized to ``grid`` (itself when equal)."""
    if tuple(grid) == tuple(built):
        return pos_embed
    return resample_abs_pos_embed(pos_embed, grid, built, num_prefix_tokens=num_prefix_tokens, **POS_EMBED_RESIZE)


AGENT_BIAS_NAMES = ('an_bias', 'na_bias', 'ah_bias', 'aw_bias', 'ha_bias', 'wa_bias', 'ac_bias', 'ca_bias')


def resize_agent_bias(bias: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (``align_corners=False``) resize of the last two dims of a 4-D bias.

    Args:
        bias: ``(A, B, h, w)``.
        size: target ``(H, W)``.

    Returns:
        ``(A, B, H, W)``; ``bias`` itself when the size is unchanged.
    """
    if tuple(bias.shape[-2:]) == tuple(size):
        return bias
    return F.interpolate(bias, size=size, mode='bilinear', align_corners=False)


def tokens_to_grid(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Per-head tokens ``(B, h, H*W, d)`` -> map ``(B, h*d, H, W)``.

    A view when the heads are channel slices of a token-major tensor (``(B, H*W, h, d)`` transposed, as the
    projections give them): then the map has channels-last strides, which convolution and pooling use without
    a layout copy (its batch stride, too, is set from the tokens: a transpose-then-reshape of a batch of one
    gives it another, and PyTorch then falls back to contiguous NCHW).
    """
    B, h, _, d = x.shape
    H, W = hw
    return x.permute(0, 2, 1, 3).reshape(B, H, W, h * d).permute(0, 3, 1, 2)


def _pool_bins(size_in: int, size_out: int, device: torch.device) -> torch.Tensor:
    """``(size_out, size_in)`` 0 / 1 membership of adaptive-pooling bins: output ``i`` averages the inputs
    ``[floor(i * size_in / size_out), ceil((i + 1) * size_in / size_out))``, the bins of ``adaptive_avg_pool2d``."""
    i = torch.arange(size_out, device=device)
    start = torch.div(i * size_in, size_out, rounding_mode='floor')
    end = torch.div((i + 1) * size_in + size_out - 1, size_out, rounding_mode='floor')
    j = torch.arange(size_in, device=device)
    return (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])


def adaptive_pool_matrix(
    hw: tuple[int, int], size: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """The averaging matrix of ``adaptive_avg_pool2d`` from an ``H x W`` grid to ``size x size``.

    ``P @ x`` with ``x`` ``(..., H*W, d)`` (row-major grid) is the adaptive average pool, ``(..., size*size, d)``.
    ``P`` is the Kronecker product of the row and column averaging matrices; each row holds ``1 / bin size``.

    Args:
        hw: the input grid ``(H, W)``.
        size: the output side ``p`` (the output is ``p x p``).

    Returns:
        ``(size * size, H * W)``.
    """
    H, W = hw
    dev = torch.device('cpu') if device is None else torch.device(device)
    ph = _pool_bins(H, size, dev).to(dtype)
    pw = _pool_bins(W, size, dev).to(dtype)
    ph = ph / ph.sum(1, keepdim=True)
    pw = pw / pw.sum(1, keepdim=True)
    return (ph[:, None, :, None] * pw[None, :, None, :]).reshape(size * size, H * W)


def _agent_side(agent_num: int) -> int:
    side = math.isqrt(agent_num)
    if side * side != agent_num:
        raise ValueError(f'agent_num must be a perfect square (agents form a p x p grid), got {agent_num}')
    return side


class AgentAttentionCore(nn.Module):
    """The agent attention itself, on projected q / k / v: agent pooling, the two softmax attentions
    and the position biases. Holds only the bias parameters (``an_bias``, ``na_bias``, ``ah_bias``,
    ``aw_bias``, ``ha_bias``, ``wa_bias`` and, with a class token, ``ac_bias`` / ``ca_bias``).

    Args:
        num_heads: attention heads ``h``.
        agent_num: number of agent tokens ``n`` (a perfect square).
        window_size: the grid ``(Wh, Ww)`` the row / column biases are sized for (the built size).
        num_prefix_tokens: 0, or 1 for a class token in front of the patch tokens (Agent-DeiT).
        attn_drop: dropout on both attention maps (training only).
    """

    def __init__(
        self,
        num_heads: int,
        agent_num: int = 49,
        window_size: tuple[int, int] = (14, 14),
        num_prefix_tokens: int = 0,
        attn_drop: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        if num_prefix_tokens not in (0, 1):
            raise ValueError(f'num_prefix_tokens must be 0 or 1, got {num_prefix_tokens}')
        self.num_heads = num_heads
        self.agent_num = agent_num
        self.pool_size = _agent_side(agent_num)
        self.window_size = tuple(int(s) for s in window_size)
        self.num_prefix_tokens = num_prefix_tokens
        self.attn_drop = attn_drop
        # None: timm's switch (``use_fused_attn``, e.g. TIMM_FUSED_ATTN=0 or export mode turn SDPA off), and
        # then SDPA on accelerators but explicit matmuls on CPU (faster there); True / False force one path
        self.fused_attn: bool | None = None
        wh, ww = self.window_size
        h, n = num_heads, agent_num
        self.an_bias = nn.Parameter(torch.zeros(h, n, 7, 7, **dd))
        self.na_bias = nn.Parameter(torch.zeros(h, n, 7, 7, **dd))
        self.ah_bias = nn.Parameter(torch.zeros(1, h, n, wh, 1, **dd))
        self.aw_bias = nn.Parameter(torch.zeros(1, h, n, 1, ww, **dd))
        self.ha_bias = nn.Parameter(torch.zeros(1, h, wh, 1, n, **dd))
        self.wa_bias = nn.Parameter(torch.zeros(1, h, 1, ww, n, **dd))
        if num_prefix_tokens:
            self.ac_bias = nn.Parameter(torch.zeros(1, h, n, 1, **dd))
            self.ca_bias = nn.Parameter(torch.zeros(1, h, 1, n, **dd))
        self.init_agent_biases()

    def init_agent_biases(self) -> None:
        for name in AGENT_BIAS_NAMES:
            p = getattr(self, name, None)
            if p is not None:
                trunc_normal_(p, std=0.02)

    def agent_biases(self, hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Position biases for an ``H x W`` grid.

        Returns:
            ``bias1`` ``(h, n, P + H*W)`` (agents attending tokens) and ``bias2`` ``(h, P + H*W, n)``
            (tokens attending agents), ``P`` = number of prefix tokens.
        """
        H, W = hw
        h, n = self.num_heads, self.agent_num
        wh, ww = self.window_size
        ah, aw = self.ah_bias[0], self.aw_bias[0]  # (h, n, wh, 1), (h, n, 1, ww)
        ha = self.ha_bias[0].permute(0, 3, 1, 2)  # (h, n, wh, 1)
        wa = self.wa_bias[0].permute(0, 3, 1, 2)  # (h, n, 1, ww)
        if H != wh:
            ah, ha = resize_agent_bias(ah, (H, 1)), resize_agent_bias(ha, (H, 1))
        if W != ww:
            aw, wa = resize_agent_bias(aw, (1, W)), resize_agent_bias(wa, (1, W))
        bias1 = (resize_agent_bias(self.an_bias, (H, W)) + ah + aw).reshape(h, n, H * W)
        bias2_t = (resize_agent_bias(self.na_bias, (H, W)) + ha + wa).reshape(h, n, H * W)
        if self.num_prefix_tokens:
            bias1 = torch.cat([self.ac_bias[0], bias1], dim=2)
            bias2_t = torch.cat([self.ca_bias[0].transpose(1, 2), bias2_t], dim=2)
        # bias2 is a transposed view: contiguous along the tokens, the layout the CPU broadcast step adds it in
        return bias1, bias2_t.transpose(1, 2)

    def pool_agents(self, q: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """Agent tokens: ``(B, h, P + H*W, d)`` queries -> ``(B, h, n, d)``, pooled from the patch queries.

        The adaptive average pool, or the same average as a product with its averaging matrix
        (:func:`adaptive_pool_matrix`) when a backward pass follows and the grid is no larger than the agent grid
        (``H, W <= p``: the late stages of small inputs, 2 x 2 or 1 x 1 grids pooled *up* to 7 x 7 at 32 px).
        There ``adaptive_avg_pool2d``'s backward is pathologically slow on CPU (measured, 1 thread, fp32 fwd+bwd:
        59 ms vs 8 ms at (64, 320, 2 x 2), 97 vs 16 ms at (64, 512, 1 x 1), 10 vs 2 ms at (8, 512, 7 x 7); a quarter
        of an Agent-PVT-T bf16 training step at 32 px), while the pool's forward is the faster one everywhere, so
        inference keeps it. Upsampling bins hold 1 or 2 cells, so the matrix entries (1, 1/2, 1/4) are exact in any
        dtype and the product differs from the pool only in the summation order of at most 4 terms.
        """
        B, h, _, d = q.shape
        H, W = hw
        p = self.pool_size
        patches = q[:, :, self.num_prefix_tokens :]
        if q.requires_grad and H <= p and W <= p:
            return torch.matmul(adaptive_pool_matrix(hw, p, q.dtype, q.device), patches)
        agents = F.adaptive_avg_pool2d(tokens_to_grid(patches, hw), p)
        return agents.reshape(B, h, d, self.agent_num).transpose(-1, -2)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """Agent aggregation then agent broadcast (no DWC, no projection).

        Args:
            q, k, v: ``(B, h, P + H*W, d)``, tokens in row-major grid order after the prefix tokens.
            hw: the grid ``(H, W)``.

        Returns:
            ``(B, h, P + H*W, d)``.
        """
        H, W = hw
        if q.shape[2] != self.num_prefix_tokens + H * W:
            raise ValueError(
                f'hw={hw} does not match {q.shape[2]} tokens ({self.num_prefix_tokens} prefix + H*W expected)'
            )
        agents = self.pool_agents(q, hw)
        bias1, bias2 = self.agent_biases(hw)
        agent_v = self._softmax_attention(agents, k, v, bias1.to(q.dtype))
        if self._use_sdpa(q):
            return self._softmax_attention(q, agents, agent_v, bias2.to(q.dtype))
        # agent broadcast on CPU, computed transposed: logits (B, h, n, N) and the softmax over the n agents
        # along dim -2, so each step runs over the long, contiguous token axis (a softmax over rows of 9-49
        # elements vectorises poorly); bias2 is contiguous in this layout
        logits = torch.matmul(agents * agents.shape[-1] ** -0.5, q.transpose(-1, -2))
        attn = torch.softmax(logits + bias2.to(q.dtype).transpose(-1, -2), dim=-2)
        if self.training and self.attn_drop:
            attn = F.dropout(attn, self.attn_drop)
        return torch.matmul(attn.transpose(-1, -2), agent_v)

    def _use_sdpa(self, q: torch.Tensor) -> bool:
        return self.fused_attn is True or (self.fused_attn is None and q.device.type != 'cpu' and use_fused_attn())

    def _softmax_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``softmax(q k^T / sqrt(d) + bias) v``. Fused SDPA on accelerators; on CPU, where SDPA's
        flash kernel is slower than plain GEMMs for the few agent keys / queries here, explicit matmuls."""
        drop = self.attn_drop if self.training else 0.0
        if self._use_sdpa(q):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop)
        scale = q.shape[-1] ** -0.5
        # fold the scale into the operand with fewer rows (the agents), not the N queries
        if q.shape[-2] <= k.shape[-2]:
            logits = torch.matmul(q * scale, k.transpose(-1, -2))
        else:
            logits = torch.matmul(q, (k * scale).transpose(-1, -2))
        attn = torch.softmax(logits + bias, dim=-1)
        if drop:
            attn = F.dropout(attn, drop)
        return torch.matmul(attn, v)


@register_notrace_module  # FX: one leaf (grid-dependent bias resizing and the SDPA / CPU-matmul choice inside)
class AgentAttention(AgentAttentionCore):
    """Agent attention on a token sequence ``(B, P + H*W, C)``: projections, agent attention, the
    3x3 depthwise-conv diversity term ``dwc`` on V and the output projection ``proj``.

    Args:
        dim: channels ``C``.
        num_heads: attention heads.
        agent_num: agent tokens (a perfect square).
        window_size: the grid the row / column biases are sized for.
        qkv_bias: bias in the q / k / v projections.
        separate_q: ``q`` and ``kv`` projections (Agent-PVT's layout) instead of one fused ``qkv``.
        num_prefix_tokens: 0, or 1 for a class token (Agent-DeiT).
        attn_drop: dropout on the attention maps.
        proj_drop: dropout after the output projection.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        agent_num: int = 49,
        window_size: tuple[int, int] = (14, 14),
        qkv_bias: bool = True,
        separate_q: bool = False,
        num_prefix_tokens: int = 0,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if dim % num_heads:
            raise ValueError(f'dim ({dim}) must be divisible by num_heads ({num_heads})')
        dd = {'device': device, 'dtype': dtype}
        super().__init__(num_heads, agent_num, window_size, num_prefix_tokens, attn_drop, **dd)
        self.dim = dim
        self.head_dim = dim // num_heads
        self.separate_q = separate_q
        if separate_q:
            self.q = nn.Linear(dim, dim, bias=qkv_bias, **dd)
            self.kv = nn.Linear(dim, dim * 2, bias=qkv_bias, **dd)
        else:
            self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias, **dd)
        self.proj = nn.Linear(dim, dim, **dd)
        self.proj_drop = nn.Dropout(proj_drop)
        # an nn.Conv2d; on the 2 x 2 / 1 x 1 maps of small inputs it drops the taps that only meet the padding; under
        # bf16 autocast it trains on 4 x 4 / 2 x 2 maps as a bf16 product with its conv matrix and on 1 x 1 in float32
        # (oneDNN's bf16 depthwise backward: 5.8 vs 1.6 ms float32 at (64, 320, 2 x 2); zoo.layers.amp_conv)
        self.dwc = SmallGridDepthwiseConv2d(dim, dim, kernel_size=3, padding=1, groups=dim, **dd)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """
        Args:
            x: ``(B, P + H*W, C)``.
            hw: the token grid ``(H, W)``.

        Returns:
            ``(B, P + H*W, C)``.
        """
        B, N, C = x.shape
        h, d = self.num_heads, self.head_dim
        # linear_bias(m, x) is m(x) and linear_split(m, x, sizes) m(x).split(sizes, -1); in float32 CPU
        # inference the bias is added inside the GEMM and each split is its own dense output (cpu_fusion)
        if self.separate_q:
            q = linear_bias(self.q, x)
            k, v = linear_split(self.kv, x, [C, C])
        else:
            q, k, v = linear_split(self.qkv, x, [C, C, C])
        q, k, v = (t.reshape(B, N, h, d).transpose(1, 2) for t in (q, k, v))
        out = self.attend(q, k, v, hw).transpose(1, 2).reshape(B, N, C)
        P = self.num_prefix_tokens
        # v's grid is a channels-last view of the projection output (dense on the fused CPU path), so the
        # conv runs channels-last and its output, flattened, is already in token-major (B, H*W, C) order
        div = self.dwc(tokens_to_grid(v[:, :, P:], hw)).flatten(2).transpose(1, 2)
        # prefix tokens get no DWC term (out may alias the SDPA output, so no in-place add)
        out = out + (F.pad(div, (0, 0, P, 0)) if P else div)
        return self.proj_drop(linear_bias(self.proj, out))

    def extra_repr(self) -> str:
        return f'dim={self.dim}, num_heads={self.num_heads}, agent_num={self.agent_num}, window={self.window_size}'


def init_agent_biases(model: nn.Module) -> None:
    """Truncated-normal (std 0.02) init of the agent position biases of every agent-attention module
    in ``model`` (after ``model.apply`` of the Linear/LayerNorm rule, as the official models do)."""
    for m in model.modules():
        if isinstance(m, AgentAttentionCore):
            m.init_agent_biases()


def expand_attn_type(attn_type: str, depths: list[int] | tuple[int, ...]) -> list[list[str]]:
    """Per-block attention kinds from the official ``attn_type`` string.

    One letter per stage: ``A`` = agent attention, ``B`` = the backbone's own attention. A stage
    letter ``M`` takes the number after the stage letters: its first ``k`` blocks are ``A``, the rest
    ``B`` (``'AAMB2'`` = stages A, A, 2xA then B, B).

    Returns:
        ``[[kind per block] per stage]``.
    """
    num_stages = len(depths)
    head, tail = attn_type[:num_stages], attn_type[num_stages:]
    if len(head) != num_stages or any(c not in 'ABM' for c in head) or ('M' in head) != bool(tail):
        raise ValueError(
            f'attn_type must be one of A/B/M per stage (+ the count k after them when M is used), '
            f'got {attn_type!r} for {num_stages} stages'
        )
    k = int(tail) if tail else 0
    return [[('A' if j < k else 'B') if c == 'M' else c for j in range(d)] for c, d in zip(head, depths)]


def adapt_agent_bias(name: str, value: torch.Tensor, target_shape: torch.Size) -> torch.Tensor:
    """Resize a checkpoint's window-sized agent bias (``ah/aw/ha/wa_bias``) to the model's window, so a
    checkpoint trained at one resolution loads into a model built at another (bilinear, the rule of
    :func:`resize_agent_bias`). Other tensors, and biases already of the target shape, pass unchanged."""
    if value.shape == target_shape:
        return value
    base = name.rsplit('.', 1)[-1]
    if base in ('ah_bias', 'aw_bias'):  # (1, h, n, Wh, 1) / (1, h, n, 1, Ww)
        return resize_agent_bias(value[0], tuple(target_shape[-2:]))[None]
    if base in ('ha_bias', 'wa_bias'):  # (1, h, Wh, 1, n) / (1, h, 1, Ww, n)
        v = resize_agent_bias(value[0].permute(0, 3, 1, 2), tuple(target_shape[2:4]))
        return v.permute(0, 2, 3, 1)[None]
    return value
