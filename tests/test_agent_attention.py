"""Agent attention: the shared layer against a naive float64 reference, bias resizing, attn_type
parsing, parameter counts, and official-layout checkpoints loaded through timm's pretrained path."""

from __future__ import annotations

import math
import re

import pytest
import timm
import torch
import torch.nn.functional as F

import zoo  # noqa: F401  (registers the models)
from zoo.layers.agent_attention import AgentAttention, expand_attn_type, resize_agent_bias
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
            out = out + w[:, i, j, None, None] * vp[:, i:i + H, j:j + W]
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
        q, k, v = qkv[..., :C], qkv[..., C:2 * C], qkv[..., 2 * C:]
    wh, ww = m.window_size
    an = _resize(m.an_bias.double(), (H, W)).reshape(h, n, H * W)
    na = _resize(m.na_bias.double(), (H, W)).reshape(h, n, H * W).transpose(1, 2)
    a_map = (m.ah_bias.double() + m.aw_bias.double())[0]                              # (h, n, wh, ww)
    t_map = (m.ha_bias.double() + m.wa_bias.double())[0].permute(0, 3, 1, 2)          # (h, n, wh, ww)
    b1 = an + _resize(a_map, (H, W)).reshape(h, n, H * W)
    b2 = na + _resize(t_map, (H, W)).reshape(h, n, H * W).transpose(1, 2)
    if P:
        b1 = torch.cat([m.ac_bias.double()[0], b1], dim=2)
        b2 = torch.cat([m.ca_bias.double()[0], b2], dim=1)
    out = torch.zeros(B, N, C, dtype=torch.float64)
    for bi in range(B):
        grid = q[bi, P:].reshape(H, W, C)
        agents = torch.stack([grid[r0:r1, c0:c1].mean(dim=(0, 1))
                              for r0, r1 in _bins(H, p) for c0, c1 in _bins(W, p)])
        for hi in range(h):
            sl = slice(hi * d, (hi + 1) * d)
            A, Q, K, V = agents[:, sl], q[bi, :, sl], k[bi, :, sl], v[bi, :, sl]
            agg = torch.softmax(A @ K.T / math.sqrt(d) + b1[hi], dim=-1)               # (n, N)
            bc = torch.softmax(Q @ A.T / math.sqrt(d) + b2[hi], dim=-1)                # (N, n)
            out[bi, :, sl] = bc @ (agg @ V)
        div = _dwc(v[bi, P:].T.reshape(C, H, W), m.dwc).reshape(C, H * W).T
        out[bi, P:] += div
    return out @ m.proj.weight.double().T + m.proj.bias.double()


def _randomize(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for prm in module.parameters():
            prm.copy_(torch.randn_like(prm) * 0.3)


@pytest.mark.parametrize('separate_q,prefix,fused', [(False, 0, None), (True, 0, True), (False, 1, None),
                                                  (False, 1, True)])
@pytest.mark.parametrize('hw', [(8, 8), (10, 6)])
def test_agent_attention_matches_naive_reference(separate_q: bool, prefix: int, fused: bool | None,
                                                 hw: tuple[int, int]) -> None:
    """Built for an 8x8 grid; run at 8x8 (no resizing) and at 10x6 (biases resized, non-square,
    bins of unequal size); both the SDPA path (``fused``) and the CPU matmul path."""
    torch.manual_seed(0)
    m = AgentAttention(24, num_heads=3, agent_num=9, window_size=(8, 8), separate_q=separate_q,
                       num_prefix_tokens=prefix)
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
    for c0, c1 in ((0, 3), (3, 5)):   # stripes of width 3 and 2
        qs, ks, vs = (t[:, c0:c1] for t in grid)
        # LePE over a zero-padded 3-wide stripe (the padding is outside the image, as in a whole map)
        vpad = F.pad(vs.permute(2, 0, 1), (0, 3 - (c1 - c0)))
        lepe = _dwc(vpad, br.get_v)[:, :, :c1 - c0].permute(1, 2, 0).reshape(-1, C)
        ref = torch.zeros(H * (c1 - c0), C, dtype=torch.float64)
        for hi in range(2):
            sl = slice(hi * 4, hi * 4 + 4)
            Q, K, V = (t.reshape(-1, C)[:, sl] for t in (qs, ks, vs))
            ref[:, sl] = torch.softmax(Q @ K.T / 2.0, dim=-1) @ V
        torch.testing.assert_close(got[:, c0:c1].reshape(-1, C), ref + lepe, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------------------------
# the variants

BASE_VARIANTS = (
    'agent_deit_tiny', 'agent_deit_small', 'agent_deit_base',
    'agent_pvt_tiny', 'agent_pvt_small', 'agent_pvt_medium', 'agent_pvt_large',
    'agent_swin_tiny', 'agent_swin_small', 'agent_swin_base',
    'agent_cswin_tiny', 'agent_cswin_small', 'agent_cswin_base',
)
HIGH_RES = {'agent_deit_small_448': 448, 'agent_pvt_medium_256': 256, 'agent_swin_small_288': 288,
            'agent_swin_base_384': 384, 'agent_cswin_base_384': 384}
# the reference card's table (README params, and the card's re-counts where it has them)
CARD_PARAMS_M = {
    'agent_deit_tiny': 6.0, 'agent_deit_small': 22.7, 'agent_deit_base': 87.2,
    'agent_pvt_tiny': 11.57, 'agent_pvt_small': 20.64, 'agent_pvt_medium': 35.92, 'agent_pvt_large': 48.74,
    'agent_swin_tiny': 28.90, 'agent_swin_small': 49.67, 'agent_swin_base': 88.10,
    'agent_cswin_tiny': 20.46, 'agent_cswin_small': 32.81, 'agent_cswin_base': 73.25,
}


def _count(name: str, **kwargs) -> float:
    with torch.device('meta'):
        model = timm.create_model(name, **kwargs)
    return sum(p.numel() for p in model.parameters()) / 1e6


@pytest.mark.parametrize('name', BASE_VARIANTS)
def test_param_count_matches_card(name: str) -> None:
    got = _count(name)
    assert abs(got - CARD_PARAMS_M[name]) / CARD_PARAMS_M[name] <= 0.005, f'{name}: {got:.3f}M'
    assert paper_facts()[name]['params_m'] == CARD_PARAMS_M[name]


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
    assert swin.layers[3].blocks[0].attn.window_size == (9, 9)   # B blocks: max(7, 72 // 8)
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
# official-layout checkpoints through timm's pretrained path (strict), then another resolution

SMALL = {
    'agent_pvt_tiny': dict(embed_dims=(16, 32, 40, 64), depths=(1, 1, 1, 1), img_size=128),
    'agent_swin_tiny': dict(embed_dim=24, depths=(1, 1, 3, 2), img_size=128, window_size=32,
                            attn_type='AAMB2'),
    'agent_deit_tiny': dict(embed_dim=48, depth=4, num_heads=3, img_size=64, agent_num=(16, 9, 16, 9),
                            agent_layer=3),
    'agent_cswin_tiny': dict(embed_dim=16, depths=(1, 1, 2, 1), img_size=224),
}


def _to_official(name: str, sd: dict[str, torch.Tensor], model: torch.nn.Module) -> dict:
    """Write our state dict in the official key layout and wrapping (inverse of the filters)."""
    if name.startswith('agent_pvt'):
        out = {}
        for k, v in sd.items():
            k = re.sub(r'^stages\.(\d)\.patch_embed\.', lambda m: f'patch_embed{int(m[1]) + 1}.', k)
            k = re.sub(r'^stages\.(\d)\.pos_embed$', lambda m: f'pos_embed{int(m[1]) + 1}', k)
            k = re.sub(r'^stages\.(\d)\.blocks\.', lambda m: f'block{int(m[1]) + 1}.', k)
            out[k] = v
        return {'model': out, 'epoch': 299, 'max_accuracy': 78.4}
    if name.startswith('agent_swin'):
        out = {}
        for k, v in sd.items():
            k = re.sub(r'^layers\.(\d)\.downsample\.', lambda m: f'layers.{int(m[1]) - 1}.downsample.', k)
            out[k] = v
        # the official checkpoints also carry these buffers
        for name_, mod in model.named_modules():
            if hasattr(mod, 'relative_position_bias_table'):
                ws = mod.window_size
                out[f'{name_}.relative_position_index'] = torch.zeros(ws[0] * ws[1], ws[0] * ws[1]).long()
        out['layers.0.blocks.0.attn_mask'] = torch.zeros(1)
        return {'model': out, 'epoch': 299}
    if name.startswith('agent_cswin'):
        # 'model' holds other (non-EMA) weights: the filter must take state_dict_ema
        return {'model': {k: torch.zeros_like(v) for k, v in sd.items()}, 'state_dict_ema': dict(sd)}
    return {'model': dict(sd)}


@pytest.mark.parametrize('name', list(SMALL))
def test_official_checkpoint_loads_strict_then_runs_at_other_size(name: str, tmp_path) -> None:
    kwargs = SMALL[name]
    torch.manual_seed(0)
    src = timm.create_model(name, num_classes=10, **kwargs).eval()
    _randomize(src)
    path = tmp_path / f'{name}.pth'
    torch.save(_to_official(name, src.state_dict(), src), path)
    model = timm.create_model(name, pretrained=True, num_classes=10,
                              pretrained_cfg_overlay=dict(file=str(path), num_classes=10), **kwargs).eval()
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    size = kwargs['img_size']
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(model(x), src(x))
        other = model(torch.randn(2, 3, size + 32, size - 32 if name != 'agent_cswin_tiny' else size + 64))
    assert other.shape == (2, 10) and torch.isfinite(other).all()


def test_checkpoint_from_another_resolution_loads(tmp_path) -> None:
    """A checkpoint trained at 288 (agent biases 72 wide, Swin windows 9) loads into a model built at
    224 (56 wide, windows 7)."""
    kw = dict(embed_dim=24, depths=(1, 1, 2, 1), num_classes=5)
    torch.manual_seed(0)
    src = timm.create_model('agent_swin_small_288', **kw).eval()
    path = tmp_path / 'swin288.pth'
    torch.save(_to_official('agent_swin', src.state_dict(), src), path)
    model = timm.create_model('agent_swin_small', pretrained=True,
                              pretrained_cfg_overlay=dict(file=str(path)), **kw).eval()
    ah = model.layers[0].blocks[0].attn.ah_bias
    assert ah.shape == (1, 3, 9, 56, 1)
    torch.testing.assert_close(ah, resize_agent_bias(src.layers[0].blocks[0].attn.ah_bias[0], (56, 1))[None])
    assert model.layers[3].blocks[0].attn.relative_position_bias_table.shape == (13 * 13, 24)
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(1, 3, 288, 288))).all()


def test_bad_input_size_is_a_clear_error() -> None:
    model = timm.create_model('agent_pvt_tiny', embed_dims=(16, 32, 40, 64), depths=(1, 1, 1, 1))
    with pytest.raises(ValueError, match='divisible by 32'):
        model(torch.randn(1, 3, 100, 96))
    deit = timm.create_model('agent_deit_tiny', depth=1)
    with pytest.raises(ValueError, match='patch_size=16'):
        deit(torch.randn(1, 3, 100, 96))
