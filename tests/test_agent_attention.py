"""Agent attention: the shared layer against a naive float64 reference, bias resizing, attn_type
parsing, parameter counts, and official-layout checkpoints loaded through timm's pretrained path."""

from __future__ import annotations

import importlib
import math
import re

import pytest
import timm
import torch
import torch.nn.functional as F

import zoo  # noqa: F401  (registers the models)
from zoo.layers.agent_attention import (
    AgentAttention,
    AgentAttentionCore,
    adaptive_pool_matrix,
    expand_attn_type,
    resize_agent_bias,
    tokens_to_grid,
)
from zoo.models import paper_facts
from zoo.models.agent_cswin import LePEBranch

# --------------------------------------------------------------------------------------------
# naive reference: explicit agents, explicit n x N and N x n attention matrices, biases resized
# as whole (Wh x Ww) maps (the official downstream rule), 3x3 depthwise conv as 9 shifted sums.


def _bins(size: int, out: int) -> list[tuple[int, int]]:
    return [(math.floor(i * size / out), math.ceil((i + 1) * size / out)) for i in range(out)]


def _resize(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(t, size=size, mode='bilinear', align_corners=False)


def _dwc(v: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    """(C, H, W) -> (C, H, W), depthwise 3x3 with zero padding, written out."""
    C, H, W = v.shape
    vp = F.pad(v, (1, 1, 1, 1))
    w = conv.weight.double()[:, 0]
    out = conv.bias.double()[:, None, None].expand(C, H, W).clone()
    for i in range(3):
        for j in range(3):
            out = out + w[:, i, j, None, None] * vp[:, i : i + H, j : j + W]
    return out


def naive_agent_attention(m: AgentAttention, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    x = x.double()
    B, N, C = x.shape
    H, W = hw
    P = m.num_prefix_tokens
    h, n, p = m.num_heads, m.agent_num, m.pool_size
    d = C // h
    if m.separate_q:
        q = x @ m.q.weight.double().T + m.q.bias.double()
        kv = x @ m.kv.weight.double().T + m.kv.bias.double()
        k, v = kv[..., :C], kv[..., C:]
    else:
        qkv = x @ m.qkv.weight.double().T + m.qkv.bias.double()
        q, k, v = qkv[..., :C], qkv[..., C : 2 * C], qkv[..., 2 * C :]
    wh, ww = m.window_size
    an = _resize(m.an_bias.double(), (H, W)).reshape(h, n, H * W)
    na = _resize(m.na_bias.double(), (H, W)).reshape(h, n, H * W).transpose(1, 2)
    a_map = (m.ah_bias.double() + m.aw_bias.double())[0]  # (h, n, wh, ww)
    t_map = (m.ha_bias.double() + m.wa_bias.double())[0].permute(0, 3, 1, 2)  # (h, n, wh, ww)
    b1 = an + _resize(a_map, (H, W)).reshape(h, n, H * W)
    b2 = na + _resize(t_map, (H, W)).reshape(h, n, H * W).transpose(1, 2)
    if P:
        b1 = torch.cat([m.ac_bias.double()[0], b1], dim=2)
        b2 = torch.cat([m.ca_bias.double()[0], b2], dim=1)
    out = torch.zeros(B, N, C, dtype=torch.float64)
    for bi in range(B):
        grid = q[bi, P:].reshape(H, W, C)
        agents = torch.stack([grid[r0:r1, c0:c1].mean(dim=(0, 1)) for r0, r1 in _bins(H, p) for c0, c1 in _bins(W, p)])
        for hi in range(h):
            sl = slice(hi * d, (hi + 1) * d)
            A, Q, K, V = agents[:, sl], q[bi, :, sl], k[bi, :, sl], v[bi, :, sl]
            agg = torch.softmax(A @ K.T / math.sqrt(d) + b1[hi], dim=-1)  # (n, N)
            bc = torch.softmax(Q @ A.T / math.sqrt(d) + b2[hi], dim=-1)  # (N, n)
            out[bi, :, sl] = bc @ (agg @ V)
        div = _dwc(v[bi, P:].T.reshape(C, H, W), m.dwc).reshape(C, H * W).T
        out[bi, P:] += div
    return out @ m.proj.weight.double().T + m.proj.bias.double()


def _randomize(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for prm in module.parameters():
            prm.copy_(torch.randn_like(prm) * 0.3)


@pytest.mark.parametrize(
    'separate_q,prefix,fused', [(False, 0, None), (True, 0, True), (False, 1, None), (False, 1, True)]
)
@pytest.mark.parametrize('hw', [(8, 8), (10, 6)])
def test_agent_attention_matches_naive_reference(
    separate_q: bool, prefix: int, fused: bool | None, hw: tuple[int, int]
) -> None:
    """Built for an 8x8 grid; run at 8x8 (no resizing) and at 10x6 (biases resized, non-square,
    bins of unequal size); both the SDPA path (``fused``) and the CPU matmul path."""
    torch.manual_seed(0)
    m = AgentAttention(
        24, num_heads=3, agent_num=9, window_size=(8, 8), separate_q=separate_q, num_prefix_tokens=prefix
    )
    m.fused_attn = fused
    _randomize(m)
    m = m.double().eval()
    x = torch.randn(2, prefix + hw[0] * hw[1], 24, dtype=torch.float64)
    with torch.no_grad():
        got = m(x, hw)
    ref = naive_agent_attention(m, x, hw)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


def test_agent_attention_float32_close_to_reference() -> None:
    torch.manual_seed(1)
    m = AgentAttention(32, num_heads=4, agent_num=16, window_size=(8, 8)).eval()
    _randomize(m)
    x = torch.randn(1, 96, 32)
    with torch.no_grad():
        got = m(x, (12, 8))
    torch.testing.assert_close(got.double(), naive_agent_attention(m, x, (12, 8)), rtol=1e-4, atol=1e-4)


# upsampling (both sides, one side), equal, downsampling, non-square grids; agent side 7, 3 or 2
POOL_CASES = [((1, 1), 7), ((2, 2), 7), ((2, 3), 7), ((4, 4), 7), ((7, 7), 7), ((5, 7), 7), ((8, 8), 7), ((3, 1), 2)]
POOL_CASES += [((14, 10), 7), ((9, 4), 3)]


@pytest.mark.parametrize('hw, side', POOL_CASES)
def test_adaptive_pool_matrix_is_adaptive_avg_pool2d(hw: tuple[int, int], side: int) -> None:
    """``P @ x`` equals ``adaptive_avg_pool2d`` on every kind of grid (within float32 rounding: 1e-6)."""
    torch.manual_seed(0)
    H, W = hw
    x = torch.randn(2, 5, H, W)
    ref = F.adaptive_avg_pool2d(x, side).flatten(2)
    got = (adaptive_pool_matrix(hw, side) @ x.flatten(2).transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
    if H <= side and W <= side:  # upsampling bins hold 1 or 2 cells: entries 1, 1/2, 1/4, exact
        assert set(adaptive_pool_matrix(hw, side).unique().tolist()) <= {0.0, 0.25, 0.5, 1.0}


@pytest.mark.parametrize('prefix', [0, 1])
@pytest.mark.parametrize('hw, side', POOL_CASES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_pool_agents_values_and_gradients_equal_the_adaptive_pool(
    hw: tuple[int, int], side: int, prefix: int, dtype: torch.dtype
) -> None:
    """``pool_agents`` (the averaging-matrix product where a backward follows on a grid no larger than the agents,
    the pool elsewhere) gives ``adaptive_avg_pool2d``'s agents and query gradients, prefix tokens included
    (they get no gradient from the agents)."""
    torch.manual_seed(0)
    H, W = hw
    core = AgentAttentionCore(num_heads=3, agent_num=side * side, window_size=hw, num_prefix_tokens=prefix)
    B, h, d = 2, 3, 4
    # queries as the projections give them: (B, P + H*W, h, d) transposed to (B, h, P + H*W, d)
    q0 = torch.randn(B, prefix + H * W, h, d).to(dtype).transpose(1, 2)
    g = torch.randn(B, h, side * side, d).to(dtype)
    q_ref, q_new = q0.clone().requires_grad_(True), q0.clone().requires_grad_(True)
    grid = tokens_to_grid(q_ref[:, :, prefix:], hw)
    ref = F.adaptive_avg_pool2d(grid, side).reshape(B, h, d, side * side).transpose(-1, -2)
    got = core.pool_agents(q_new, hw)
    assert got.shape == ref.shape == (B, h, side * side, d) and got.dtype == dtype
    ref.backward(g)
    got.backward(g)
    if dtype == torch.float32:
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
        torch.testing.assert_close(q_new.grad, q_ref.grad, rtol=0, atol=1e-6)
    else:  # the bf16 pool's backward rounds as it sums (up to 49 terms at 1 x 1): both against float64
        q64 = q0.double().requires_grad_(True)
        ref64 = F.adaptive_avg_pool2d(tokens_to_grid(q64[:, :, prefix:], hw), side)
        ref64.reshape(B, h, d, side * side).transpose(-1, -2).backward(g.double())
        torch.testing.assert_close(got.double(), ref.double(), rtol=0, atol=1e-6)
        torch.testing.assert_close(q_new.grad.double(), q64.grad, rtol=2**-7, atol=1e-2)
    if prefix:
        assert not q_new.grad[:, :, :prefix].any()
    with torch.no_grad():  # no backward follows: the pool itself
        assert torch.equal(core.pool_agents(q0, hw), ref.detach())


def test_bias_resize_is_identity_at_the_built_size() -> None:
    torch.manual_seed(0)
    b = torch.randn(3, 9, 14, 14)
    assert resize_agent_bias(b, (14, 14)) is b
    # and torch's bilinear resize to the same size, which the official code applies, is exact too
    assert torch.equal(F.interpolate(b, size=(14, 14), mode='bilinear', align_corners=False), b)
    m = AgentAttention(24, num_heads=3, agent_num=9, window_size=(14, 10)).double()
    _randomize(m)
    b1, b2 = m.agent_biases((14, 10))
    an = F.interpolate(m.an_bias, size=(14, 10), mode='bilinear').reshape(3, 9, 140)
    na = F.interpolate(m.na_bias, size=(14, 10), mode='bilinear').reshape(3, 9, 140).transpose(1, 2)
    # no resizing of the row / column biases at the built size (only float64 rounding)
    torch.testing.assert_close(b1, an + (m.ah_bias + m.aw_bias).reshape(3, 9, 140), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(b2, na + (m.ha_bias + m.wa_bias).reshape(3, 140, 9), rtol=1e-14, atol=1e-14)


def test_bias_resize_follows_downstream_rule() -> None:
    """Separable resize of ah / aw equals the bilinear resize of their (Wh x Ww) sum."""
    torch.manual_seed(0)
    m = AgentAttention(16, num_heads=2, agent_num=4, window_size=(7, 9)).double()
    _randomize(m)
    b1, _ = m.agent_biases((12, 5))
    ref = _resize(m.an_bias, (12, 5)) + _resize((m.ah_bias + m.aw_bias)[0], (12, 5))
    torch.testing.assert_close(b1, ref.reshape(2, 4, 60), rtol=1e-12, atol=1e-12)


def test_expand_attn_type() -> None:
    assert expand_attn_type('AAAB', (2, 2, 6, 2)) == [['A'] * 2, ['A'] * 2, ['A'] * 6, ['B'] * 2]
    assert expand_attn_type('AAMB2', (2, 2, 18, 2))[2] == ['A', 'A'] + ['B'] * 16
    for bad in ('AAA', 'AAMB', 'AXBB', 'AABB2'):
        with pytest.raises(ValueError, match='attn_type'):
            expand_attn_type(bad, (2, 2, 6, 2))
    with pytest.raises(ValueError, match='perfect square'):
        AgentAttention(16, num_heads=2, agent_num=10)


def test_lepe_padding_is_masked() -> None:
    """A LePE branch on a map that is not a multiple of the stripe width: the padded keys must not
    take part, i.e. equal to attention in the narrower last stripe computed on its own."""
    torch.manual_seed(0)
    br = LePEBranch(8, num_heads=2, idx=0, split=3).double().eval()
    _randomize(br)
    H, W, C = 4, 5, 8
    q, k, v = (torch.randn(1, H * W, C, dtype=torch.float64) for _ in range(3))
    with torch.no_grad():
        got = br(q, k, v, (H, W)).reshape(H, W, C)
    grid = [t.reshape(H, W, C) for t in (q, k, v)]
    for c0, c1 in ((0, 3), (3, 5)):  # stripes of width 3 and 2
        qs, ks, vs = (t[:, c0:c1] for t in grid)
        # LePE over a zero-padded 3-wide stripe (the padding is outside the image, as in a whole map)
        vpad = F.pad(vs.permute(2, 0, 1), (0, 3 - (c1 - c0)))
        lepe = _dwc(vpad, br.get_v)[:, :, : c1 - c0].permute(1, 2, 0).reshape(-1, C)
        ref = torch.zeros(H * (c1 - c0), C, dtype=torch.float64)
        for hi in range(2):
            sl = slice(hi * 4, hi * 4 + 4)
            Q, K, V = (t.reshape(-1, C)[:, sl] for t in (qs, ks, vs))
            ref[:, sl] = torch.softmax(Q @ K.T / 2.0, dim=-1) @ V
        torch.testing.assert_close(got[:, c0:c1].reshape(-1, C), ref + lepe, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------------------------
# the variants

BASE_VARIANTS = (
    'agent_deit_tiny',
    'agent_deit_small',
    'agent_deit_base',
    'agent_pvt_tiny',
    'agent_pvt_small',
    'agent_pvt_medium',
    'agent_pvt_large',
    'agent_swin_tiny',
    'agent_swin_small',
    'agent_swin_base',
    'agent_cswin_tiny',
    'agent_cswin_small',
    'agent_cswin_base',
)
HIGH_RES = {
    'agent_deit_small_448': 448,
    'agent_pvt_medium_256': 256,
    'agent_swin_small_288': 288,
    'agent_swin_base_384': 384,
    'agent_cswin_base_384': 384,
}
# DeiT: the Params column of LeapLabTHU/Agent-Attention agent_transformer/README.md; PVT / Swin / CSwin:
# counted by instantiating the official agent_transformer/models/agent_*.py (finer than the README's rounding)
PUBLISHED_PARAMS_M = {
    'agent_deit_tiny': 6.0,
    'agent_deit_small': 22.7,
    'agent_deit_base': 87.2,
    'agent_pvt_tiny': 11.57,
    'agent_pvt_small': 20.64,
    'agent_pvt_medium': 35.92,
    'agent_pvt_large': 48.74,
    'agent_swin_tiny': 28.90,
    'agent_swin_small': 49.67,
    'agent_swin_base': 88.10,
    'agent_cswin_tiny': 20.46,
    'agent_cswin_small': 32.81,
    'agent_cswin_base': 73.25,
}


def _count(name: str, **kwargs) -> float:
    with torch.device('meta'):
        model = timm.create_model(name, **kwargs)
    return sum(p.numel() for p in model.parameters()) / 1e6


@pytest.mark.parametrize('name', BASE_VARIANTS)
def test_param_count_matches_paper_facts(name: str) -> None:
    got = _count(name)
    assert abs(got - PUBLISHED_PARAMS_M[name]) / PUBLISHED_PARAMS_M[name] <= 0.005, f'{name}: {got:.3f}M'
    assert paper_facts()[name]['params_m'] == PUBLISHED_PARAMS_M[name]


def test_high_resolution_variants() -> None:
    for name, size in HIGH_RES.items():
        with torch.device('meta'):
            model = timm.create_model(name)
        assert model.pretrained_cfg['input_size'] == (3, size, size), name
        assert paper_facts()[name]['img_size'] == size
    # the window-sized biases follow the build size: Swin-S 288 stage 0 is 72x72, DeiT-S 448 is 28x28
    with torch.device('meta'):
        swin = timm.create_model('agent_swin_small_288')
        deit = timm.create_model('agent_deit_small_448')
    assert swin.layers[0].blocks[0].attn.ah_bias.shape == (1, 3, 9, 72, 1)
    assert swin.layers[3].blocks[0].attn.window_size == (9, 9)  # B blocks: max(7, 72 // 8)
    assert deit.blocks[0].attn.wa_bias.shape == (1, 6, 1, 28, 49)


def test_official_hyper_parameters() -> None:
    with torch.device('meta'):
        base = timm.create_model('agent_deit_base')
        swin_b = timm.create_model('agent_swin_base')
        cswin = timm.create_model('agent_cswin_tiny')
    kinds = [type(b.attn).__name__ for b in base.blocks]
    assert kinds == ['AgentAttention'] * 4 + ['Attention'] * 8
    assert base.blocks[0].attn.agent_num == 81
    stage3 = [type(b).__name__ for b in swin_b.layers[2].blocks]
    assert stage3 == ['AgentSwinBlock'] * 2 + ['SwinTransformerBlock'] * 16
    assert [len(b.attns) for b in cswin.stage3] == [2] * 18 and len(cswin.stage1[0].attns) == 1
    assert type(cswin.stage1[0].attns[0]).__name__ == 'AgentBranch'
    assert type(cswin.stage4[0].attns[0]).__name__ == 'LePEBranch'


# --------------------------------------------------------------------------------------------
# Official state-dict layouts, written down from the official model definitions, never from our
# models: LeapLabTHU/Agent-Attention (commit 36cf0da), agent_transformer/models/agent_deit.py (with
# the timm-0.4.12 VisionTransformer pieces it uses: PatchEmbed, Mlp and deit.py's Block),
# agent_pvt.py, agent_swin.py and agent_cswin.py; hyper-parameters from agent_transformer/cfgs/*.yaml
# and config.py. Each helper lists ``(name, shape)`` for one official module; the builders repeat them
# per block with the official constructors' rules. Buffers (Swin's ``relative_position_index`` and
# ``attn_mask``, registered persistent there) are marked so the values can be made like the official.

Spec = list[tuple[str, tuple[int, ...]]]
_INDEX, _MASK = 'relative_position_index', 'attn_mask'


def _linear(name: str, fan_in: int, fan_out: int, bias: bool = True) -> Spec:
    return [(f'{name}.weight', (fan_out, fan_in))] + ([(f'{name}.bias', (fan_out,))] if bias else [])


def _layer_norm(name: str, dim: int) -> Spec:
    return [(f'{name}.weight', (dim,)), (f'{name}.bias', (dim,))]


def _conv(name: str, cin: int, cout: int, k: int, groups: int = 1) -> Spec:
    return [(f'{name}.weight', (cout, cin // groups, k, k)), (f'{name}.bias', (cout,))]


def _mlp(name: str, dim: int, hidden: int) -> Spec:
    return _linear(f'{name}.fc1', dim, hidden) + _linear(f'{name}.fc2', hidden, dim)


def _agent_biases(name: str, h: int, n: int, wh: int, ww: int) -> Spec:
    """The six position-bias parameters of every official ``AgentAttention``."""
    return [
        (f'{name}.an_bias', (h, n, 7, 7)),
        (f'{name}.na_bias', (h, n, 7, 7)),
        (f'{name}.ah_bias', (1, h, n, wh, 1)),
        (f'{name}.aw_bias', (1, h, n, 1, ww)),
        (f'{name}.ha_bias', (1, h, wh, 1, n)),
        (f'{name}.wa_bias', (1, h, 1, ww, n)),
    ]


def _stage_kinds(attn_type: str, i: int, depth: int, m_from: int) -> list[str]:
    """Official per-block A/B letters of stage ``i`` ('M' = the first k blocks A, k after the letters)."""
    c = attn_type[i]
    return [c if c != 'M' else ('A' if j < int(attn_type[m_from:]) else 'B') for j in range(depth)]


def official_agent_deit(
    embed_dim: int,
    depth: int,
    num_heads: int,
    img_size: int = 224,
    agent_num: tuple[int, ...] = (49,) * 4,
    agent_layer: int = -1,
    num_classes: int = 1000,
    patch_size: int = 16,
    mlp_ratio: float = 4.0,
) -> Spec:
    """agent_deit.VisionTransformer (distilled=False): AgentBlock for i < agent_layer, deit.Block after."""
    D, window = embed_dim, img_size // patch_size
    agent_layer = agent_layer if agent_layer > 0 else depth
    stage_of = {0: 0, 1: 1, 2: 2, 3: 2, 4: 2, 5: 3}
    spec: Spec = [('cls_token', (1, 1, D)), ('pos_embed', (1, window * window + 1, D))]
    spec += _conv('patch_embed.proj', 3, D, patch_size)
    for i in range(depth):
        p = f'blocks.{i}'
        spec += _layer_norm(f'{p}.norm1', D) + _linear(f'{p}.attn.qkv', D, 3 * D) + _linear(f'{p}.attn.proj', D, D)
        if i < agent_layer:
            n = agent_num[stage_of[i // 2]]
            spec += _conv(f'{p}.attn.dwc', D, D, 3, groups=D) + _agent_biases(f'{p}.attn', num_heads, n, window, window)
            spec += [(f'{p}.attn.ac_bias', (1, num_heads, n, 1)), (f'{p}.attn.ca_bias', (1, num_heads, 1, n))]
        spec += _layer_norm(f'{p}.norm2', D) + _mlp(f'{p}.mlp', D, int(D * mlp_ratio))
    return spec + _layer_norm('norm', D) + _linear('head', D, num_classes)


def official_agent_pvt(
    embed_dims: tuple[int, ...],
    depths: tuple[int, ...],
    img_size: int = 224,
    num_heads: tuple[int, ...] = (1, 2, 5, 8),
    mlp_ratios: tuple[int, ...] = (8, 8, 4, 4),
    sr_ratios: tuple[int, ...] = (8, 4, 2, 1),
    attn_type: str = 'AAAA',
    agent_num: tuple[int, ...] = (9, 16, 49, 49),
    agent_sr_ratios: str = '1111',
    num_classes: int = 1000,
) -> Spec:
    """agent_pvt.PyramidVisionTransformer (patch 4, then 2; no final norm)."""
    spec: Spec = []
    for i, D in enumerate(embed_dims):
        size = img_size if i == 0 else img_size // (2 ** (i - 1) * 4)
        patch = 4 if i == 0 else 2
        grid = size // patch
        spec += _conv(f'patch_embed{i + 1}.proj', 3 if i == 0 else embed_dims[i - 1], D, patch)
        spec += _layer_norm(f'patch_embed{i + 1}.norm', D) + [(f'pos_embed{i + 1}', (1, grid * grid, D))]
        sr = sr_ratios[i] if attn_type[i] == 'B' else int(agent_sr_ratios[i])
        for j in range(depths[i]):
            p = f'block{i + 1}.{j}'
            spec += _layer_norm(f'{p}.norm1', D) + _linear(f'{p}.attn.q', D, D) + _linear(f'{p}.attn.kv', D, 2 * D)
            spec += _linear(f'{p}.attn.proj', D, D)
            if sr > 1:
                spec += _conv(f'{p}.attn.sr', D, D, sr) + _layer_norm(f'{p}.attn.norm', D)
            if attn_type[i] == 'A':
                h, n = num_heads[i], agent_num[i]
                spec += _conv(f'{p}.attn.dwc', D, D, 3, groups=D)
                # keys / values come at the reduced grid (sr), queries at the full one
                spec += [
                    (f'{p}.attn.an_bias', (h, n, 7, 7)),
                    (f'{p}.attn.na_bias', (h, n, 7, 7)),
                    (f'{p}.attn.ah_bias', (1, h, n, grid // sr, 1)),
                    (f'{p}.attn.aw_bias', (1, h, n, 1, grid // sr)),
                    (f'{p}.attn.ha_bias', (1, h, grid, 1, n)),
                    (f'{p}.attn.wa_bias', (1, h, 1, grid, n)),
                ]
            spec += _layer_norm(f'{p}.norm2', D) + _mlp(f'{p}.mlp', D, D * mlp_ratios[i])
    return spec + _linear('head', embed_dims[-1], num_classes)


def official_agent_swin(
    embed_dim: int,
    depths: tuple[int, ...],
    num_heads: tuple[int, ...],
    window_size: int,
    attn_type: str,
    img_size: int = 224,
    agent_num: tuple[int, ...] = (9, 16, 49, 49),
    num_classes: int = 1000,
    patch_size: int = 4,
    mlp_ratio: float = 4.0,
) -> Spec:
    """agent_swin.AgentSwinTransformer (ape=False, patch_norm=True): PatchMerging at the END of stages 0-2.
    A blocks: window ``window_size``; B blocks: ``max(7, window_size // 8)``, shifted on odd blocks; a
    window that covers the stage map becomes the map, unshifted."""
    spec: Spec = _conv('patch_embed.proj', 3, embed_dim, patch_size) + _layer_norm('patch_embed.norm', embed_dim)
    for i, depth in enumerate(depths):
        dim, res, h = embed_dim * 2**i, img_size // patch_size // 2**i, num_heads[i]
        for j, kind in enumerate(_stage_kinds(attn_type, i, depth, len(depths))):
            ws = window_size if kind == 'A' else max(7, window_size // 8)
            shift = 0 if j % 2 == 0 else ws // 2
            if res <= ws:
                ws, shift = res, 0
            p = f'layers.{i}.blocks.{j}'
            spec += _layer_norm(f'{p}.norm1', dim)
            if kind == 'A':
                spec += _linear(f'{p}.attn.qkv', dim, 3 * dim) + _linear(f'{p}.attn.proj', dim, dim)
                spec += _conv(f'{p}.attn.dwc', dim, dim, 3, groups=dim)
                spec += _agent_biases(f'{p}.attn', h, agent_num[i], ws, ws)
            else:
                spec += [
                    (f'{p}.attn.relative_position_bias_table', ((2 * ws - 1) ** 2, h)),
                    (f'{p}.attn.{_INDEX}', (ws * ws, ws * ws)),
                ]
                spec += _linear(f'{p}.attn.qkv', dim, 3 * dim) + _linear(f'{p}.attn.proj', dim, dim)
            spec += _layer_norm(f'{p}.norm2', dim) + _mlp(f'{p}.mlp', dim, int(dim * mlp_ratio))
            if shift:
                spec += [(f'{p}.{_MASK}', ((res // ws) ** 2, ws * ws, ws * ws))]
        if i < len(depths) - 1:
            spec += _linear(f'layers.{i}.downsample.reduction', 4 * dim, 2 * dim, bias=False)
            spec += _layer_norm(f'layers.{i}.downsample.norm', 4 * dim)
    last = embed_dim * 2 ** (len(depths) - 1)
    return spec + _layer_norm('norm', last) + _linear('head', last, num_classes)


def official_agent_cswin(
    embed_dim: int,
    depths: tuple[int, ...],
    num_heads: tuple[int, ...],
    img_size: int = 224,
    split_size: tuple[int, ...] = (1, 2, 7, 7),
    la_split_size: str = '56-28-14-7',
    attn_type: str = 'AABB',
    agent_num: tuple[int, ...] = (9, 16, 49, 49),
    num_classes: int = 1000,
    mlp_ratio: float = 4.0,
) -> Spec:
    """agent_cswin.CSWinTransformer: one global branch when the split equals the stage map or in the last
    stage, else two half-width branches (idx 0: H x split stripes, idx 1: split x W)."""
    la_split = [int(s) for s in la_split_size.split('-')]
    spec: Spec = _conv('stage1_conv_embed.0', 3, embed_dim, 7) + _layer_norm('stage1_conv_embed.2', embed_dim)
    dim = embed_dim
    for i, depth in enumerate(depths):
        if i > 0:
            spec += _conv(f'merge{i}.conv', dim, 2 * dim, 3) + _layer_norm(f'merge{i}.norm', 2 * dim)
            dim *= 2
        reso, h = img_size // 4 // 2**i, num_heads[i]
        for j, kind in enumerate(_stage_kinds(attn_type, i, depth, 4)):
            split = la_split[i] if kind == 'A' else split_size[i]
            p = f'stage{i + 1}.{j}'
            spec += _linear(f'{p}.qkv', dim, 3 * dim) + _layer_norm(f'{p}.norm1', dim) + _linear(f'{p}.proj', dim, dim)
            if i == len(depths) - 1 or reso == split:
                branches = [(dim, h, reso, reso)]
            else:
                branches = [(dim // 2, h // 2, reso, split), (dim // 2, h // 2, split, reso)]
            for b, (bdim, bh, hsp, wsp) in enumerate(branches):
                spec += _conv(f'{p}.attns.{b}.get_v', bdim, bdim, 3, groups=bdim)
                if kind == 'A':
                    spec += _agent_biases(f'{p}.attns.{b}', bh, agent_num[i], hsp, wsp)
            spec += _mlp(f'{p}.mlp', dim, int(dim * mlp_ratio)) + _layer_norm(f'{p}.norm2', dim)
    return spec + _layer_norm('norm', dim) + _linear('head', dim, num_classes)


# the published models as the official builders and cfgs/*.yaml define them
_DEIT = {
    'agent_deit_tiny': dict(embed_dim=192, depth=12, num_heads=3),
    'agent_deit_small': dict(embed_dim=384, depth=12, num_heads=6),
    'agent_deit_small_448': dict(embed_dim=384, depth=12, num_heads=6, img_size=448),
    'agent_deit_base': dict(embed_dim=768, depth=12, num_heads=12, agent_num=(81,) * 4, agent_layer=4),
}
_PVT = {
    'agent_pvt_tiny': (2, 2, 2, 2),
    'agent_pvt_small': (3, 4, 6, 3),
    'agent_pvt_medium': (3, 4, 18, 3),
    'agent_pvt_large': (3, 8, 27, 3),
}
_SWIN_T, _SWIN_S = (
    dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
)
_SWIN_B = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))
_CSWIN_S = dict(embed_dim=64, depths=(3, 6, 29, 2), num_heads=(2, 4, 8, 16))
_CSWIN_B = dict(embed_dim=96, depths=(3, 6, 29, 2), num_heads=(4, 8, 16, 32))
OFFICIAL = {
    **{n: (official_agent_deit, kw) for n, kw in _DEIT.items()},
    **{n: (official_agent_pvt, dict(embed_dims=(64, 128, 320, 512), depths=d)) for n, d in _PVT.items()},
    'agent_pvt_medium_256': (
        official_agent_pvt,
        dict(embed_dims=(64, 128, 320, 512), depths=(3, 4, 18, 3), img_size=256),
    ),
    'agent_swin_tiny': (official_agent_swin, dict(**_SWIN_T, window_size=56, attn_type='AAAB')),
    'agent_swin_small': (official_agent_swin, dict(**_SWIN_S, window_size=56, attn_type='AABB')),
    'agent_swin_small_288': (official_agent_swin, dict(**_SWIN_S, window_size=72, attn_type='AABB', img_size=288)),
    'agent_swin_base': (official_agent_swin, dict(**_SWIN_B, window_size=56, attn_type='AAMB2')),
    'agent_swin_base_384': (official_agent_swin, dict(**_SWIN_B, window_size=96, attn_type='AAMB2', img_size=384)),
    'agent_cswin_tiny': (official_agent_cswin, dict(embed_dim=64, depths=(2, 4, 18, 1), num_heads=(2, 4, 8, 16))),
    'agent_cswin_small': (official_agent_cswin, _CSWIN_S),
    'agent_cswin_base': (official_agent_cswin, _CSWIN_B),
    'agent_cswin_base_384': (
        official_agent_cswin,
        dict(**_CSWIN_B, img_size=384, split_size=(1, 2, 12, 12), la_split_size='96-48-24-12'),
    ),
}


def _is_buffer(name: str) -> bool:
    return name.endswith((_INDEX, _MASK))


def test_official_layouts_reproduce_the_published_parameter_counts() -> None:
    """The written-down layouts are the official models: their parameter counts are the official
    README's / those of the instantiated official definitions (PUBLISHED_PARAMS_M), independently of our code."""
    for name, want in PUBLISHED_PARAMS_M.items():
        build, kw = OFFICIAL[name]
        got = sum(math.prod(s) for k, s in build(**kw) if not _is_buffer(k)) / 1e6
        assert abs(got - want) / want <= 0.005, f'{name}: official layout {got:.3f}M, published {want}M'
    # spot checks against the state-dict shapes of the official agent_swin.py (Agent-Swin-T, stage 0)
    swin_t = dict(official_agent_swin(**OFFICIAL['agent_swin_tiny'][1]))
    assert swin_t['layers.0.blocks.0.attn.ah_bias'] == (1, 3, 9, 56, 1)
    assert swin_t['layers.0.blocks.0.attn.dwc.weight'] == (96, 1, 3, 3)
    assert swin_t['layers.3.blocks.1.attn.relative_position_bias_table'] == (169, 24)
    assert 'layers.3.downsample.reduction.weight' not in swin_t and 'layers.0.downsample.reduction.weight' in swin_t


def _meta_state(spec: Spec) -> dict[str, torch.Tensor]:
    return {
        k: torch.empty(s, device='meta', dtype=torch.long if k.endswith(_INDEX) else torch.float32) for k, s in spec
    }


def _wrap_as_published(name: str, sd: dict[str, torch.Tensor], other: dict | None = None) -> dict:
    """The published file layout (official agent_transformer/utils.py save_checkpoint, called by main.py):
    ``{'model': ..., 'epoch', 'max_accuracy', ...}``; CSwin's main_ema.py adds ``state_dict_ema``, which
    evaluation prefers (``other`` = the non-EMA weights under ``model``)."""
    if name.startswith('agent_cswin'):
        return {
            'model': other if other is not None else sd,
            'state_dict_ema': sd,
            'epoch': 299,
            'max_accuracy': 83.1,
            'max_accuracy_e': 83.2,
        }
    return {'model': sd, 'epoch': 299, 'max_accuracy': 82.6}


@pytest.mark.parametrize('name', list(OFFICIAL))
def test_official_full_size_layout_maps_onto_our_keys(name: str) -> None:
    """Every published model: the official keys and shapes (meta tensors) pass our checkpoint filter onto
    exactly our state dict, nothing missing, nothing left over, every shape equal."""
    build, kw = OFFICIAL[name]
    with torch.device('meta'):
        model = timm.create_model(name)
    mod = importlib.import_module(type(model).__module__)
    sd = _meta_state(build(**kw))
    out = mod.checkpoint_filter_fn(_wrap_as_published(name, sd), model)
    ours = model.state_dict()
    assert sorted(out) == sorted(ours), (sorted(set(ours) - set(out))[:5], sorted(set(out) - set(ours))[:5])
    bad = [(k, tuple(v.shape), tuple(ours[k].shape)) for k, v in out.items() if v.shape != ours[k].shape]
    assert not bad, bad[:5]


# small configurations the official constructors accept (maps divide by their windows / splits)
SMALL = {
    'agent_deit_tiny': dict(embed_dim=48, depth=4, num_heads=3, img_size=64, agent_num=(16, 9, 16, 9), agent_layer=3),
    'agent_pvt_tiny': dict(embed_dims=(16, 32, 40, 64), depths=(1, 1, 1, 1), img_size=128),
    # stage 2: two agent blocks, then two Swin blocks (the second shifted, with an attn_mask buffer)
    'agent_swin_tiny': dict(embed_dim=24, depths=(1, 1, 4, 2), img_size=224, window_size=56, attn_type='AAMB2'),
    # stage 3: two-branch LePE stripes; stage 4: one branch
    'agent_cswin_tiny': dict(embed_dim=16, depths=(1, 1, 2, 1), img_size=224),
}
_OFFICIAL_SMALL = {
    'agent_deit_tiny': lambda kw: official_agent_deit(**kw, num_classes=10),
    'agent_pvt_tiny': lambda kw: official_agent_pvt(**kw, num_classes=10),
    'agent_swin_tiny': lambda kw: official_agent_swin(**kw, num_heads=(3, 6, 12, 24), num_classes=10),
    'agent_cswin_tiny': lambda kw: official_agent_cswin(**kw, num_heads=(2, 4, 8, 16), num_classes=10),
}


def _official_state(spec: Spec, seed: int) -> dict[str, torch.Tensor]:
    """Random values under the official names and shapes; buffers like the official ones."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, s in spec:
        if k.endswith(_INDEX):
            sd[k] = torch.randint(0, 100, s, generator=g)
        elif k.endswith(_MASK):
            sd[k] = torch.where(torch.rand(s, generator=g) > 0.5, 0.0, -100.0)
        else:
            sd[k] = torch.randn(s, generator=g) * 0.3
    return sd


def _zoo_name(name: str, key: str) -> str | None:
    """Where an official key lives in our model (the layout differences documented in the model files:
    PVT stages as a ModuleList, Swin patch merging at the start of the next stage, Swin buffers
    rebuilt rather than loaded); None = not loaded."""
    if name.startswith('agent_pvt'):
        key = re.sub(r'^patch_embed(\d)\.', lambda m: f'stages.{int(m[1]) - 1}.patch_embed.', key)
        key = re.sub(r'^pos_embed(\d)$', lambda m: f'stages.{int(m[1]) - 1}.pos_embed', key)
        return re.sub(r'^block(\d)\.', lambda m: f'stages.{int(m[1]) - 1}.blocks.', key)
    if name.startswith('agent_swin'):
        if _is_buffer(key):
            return None
        return re.sub(r'^layers\.(\d)\.downsample\.', lambda m: f'layers.{int(m[1]) + 1}.downsample.', key)
    return key


@pytest.mark.parametrize('name', list(SMALL))
def test_official_checkpoint_loads_strict_then_runs_at_other_size(name: str, tmp_path) -> None:
    """The user's route: an official-layout file, as published, through timm's pretrained path
    (strict); every official tensor lands where it belongs; the model then runs at another size."""
    kwargs = SMALL[name]
    official = _official_state(_OFFICIAL_SMALL[name](kwargs), seed=0)
    path = tmp_path / f'{name}.pth'
    # CSwin: the non-EMA weights under 'model' differ; the EMA ones must be loaded
    other = {k: torch.zeros_like(v) for k, v in official.items()} if name.startswith('agent_cswin') else None
    torch.save(_wrap_as_published(name, official, other), path)
    model = timm.create_model(
        name, pretrained=True, num_classes=10, pretrained_cfg_overlay=dict(file=str(path), num_classes=10), **kwargs
    ).eval()
    ours = model.state_dict()
    placed = {_zoo_name(name, k): k for k in official if _zoo_name(name, k) is not None}
    assert sorted(placed) == sorted(ours)
    for zk, ok in placed.items():
        assert torch.equal(ours[zk], official[ok]), f'{ok} -> {zk}'
    size = kwargs['img_size']
    with torch.no_grad():
        y = model(torch.randn(1, 3, size, size))
        other_size = (size + 32, size - 32) if name != 'agent_cswin_tiny' else (size + 32, size + 64)
        y2 = model(torch.randn(2, 3, *other_size))
    assert y.shape == (1, 10) and torch.isfinite(y).all()
    assert y2.shape == (2, 10) and torch.isfinite(y2).all()


def test_checkpoint_from_another_resolution_loads(tmp_path) -> None:
    """An official Agent-Swin-S 288 layout (agent biases 72 wide, Swin windows 9) loads into a model
    built at 224 (56 wide, windows 7): agent biases and relative position tables are resized."""
    kw = dict(embed_dim=24, depths=(1, 1, 2, 1), num_heads=(3, 6, 12, 24))
    official = _official_state(
        official_agent_swin(**kw, window_size=72, attn_type='AABB', img_size=288, num_classes=5), seed=1
    )
    assert official['layers.0.blocks.0.attn.ah_bias'].shape == (1, 3, 9, 72, 1)
    assert official['layers.3.blocks.0.attn.relative_position_bias_table'].shape == (17 * 17, 24)
    path = tmp_path / 'swin288.pth'
    torch.save(_wrap_as_published('agent_swin_small_288', official), path)
    model = timm.create_model(
        'agent_swin_small', pretrained=True, num_classes=5, pretrained_cfg_overlay=dict(file=str(path)), **kw
    ).eval()
    ah = model.layers[0].blocks[0].attn.ah_bias
    assert ah.shape == (1, 3, 9, 56, 1)
    torch.testing.assert_close(ah, resize_agent_bias(official['layers.0.blocks.0.attn.ah_bias'][0], (56, 1))[None])
    assert model.layers[3].blocks[0].attn.relative_position_bias_table.shape == (13 * 13, 24)
    assert torch.equal(model.layers[1].downsample.reduction.weight, official['layers.0.downsample.reduction.weight'])
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(1, 3, 288, 288))).all()


def test_bad_input_size_is_a_clear_error() -> None:
    model = timm.create_model('agent_pvt_tiny', embed_dims=(16, 32, 40, 64), depths=(1, 1, 1, 1))
    with pytest.raises(ValueError, match='divisible by 32'):
        model(torch.randn(1, 3, 100, 96))
    deit = timm.create_model('agent_deit_tiny', depth=1)
    with pytest.raises(ValueError, match='patch_size=16'):
        deit(torch.randn(1, 3, 100, 96))
