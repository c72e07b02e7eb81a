"""Spiking layers (LSQ, multi-spike, LIF), QSD-Transformer / Meta-SpikeFormer behaviour and checkpoints.

References are written here in float64 from the official definitions (LSQ in ``classification/quan_w.py``
/ ``_quan_base_plus.py`` and ``Multispike`` in ``classification/models.py`` of bollossom/QSD-Transformer;
the spikingjelly 0.0.0.0.12 ``MultiStepLIFNode`` of the Spike-driven Transformer repos), independent of
``zoo.layers.spiking``. FGD has no official code; its test checks the zoo's own reconstruction.
"""

from __future__ import annotations

import math

import pytest
import timm
import torch
import torch.nn.functional as F

import zoo  # noqa: F401
from zoo.layers.spiking import (
    Conv1dLSQ,
    Conv2dLSQ,
    LinearLSQ,
    MultiSpike,
    MultiStepLIF,
    integrate,
    lsq_quantize,
)
from zoo.models.qsd_transformer import checkpoint_filter_fn

TINY = dict(embed_dim=(16, 32, 64, 64), depths=4, num_classes=10)


pytestmark = pytest.mark.usefixtures('one_thread')  # conftest.py


# ---------------------------------------------------------------------------------------- LSQ
def test_lsq_round_trip_grid_and_idempotence() -> None:
    torch.manual_seed(0)
    w = torch.randn(6, 3, 3, 3, dtype=torch.float64)
    alpha = torch.rand(6, dtype=torch.float64) * 0.3 + 0.05
    q = lsq_quantize(w, alpha, 4)
    codes = q / alpha.view(-1, 1, 1, 1)
    # every value is an integer code in [-8, 7] times its channel's step ...
    assert torch.allclose(codes, codes.round(), atol=1e-12)
    assert codes.min() >= -8 and codes.max() <= 7
    # ... equal to round(clamp(w / alpha)) (naive reference), and quantising again changes nothing
    ref = torch.clamp(w / alpha.view(-1, 1, 1, 1), -8, 7).round() * alpha.view(-1, 1, 1, 1)
    assert torch.equal(q, ref)
    assert torch.equal(lsq_quantize(q, alpha, 4), q)
    # 2-bit: codes in [-2, 1]
    c2 = lsq_quantize(w, alpha, 2) / alpha.view(-1, 1, 1, 1)
    assert set(c2.round().unique().tolist()) <= {-2.0, -1.0, 0.0, 1.0}


def test_lsq_gradient_scale_matches_naive_formula() -> None:
    torch.manual_seed(0)
    w = (torch.randn(4, 5, dtype=torch.float64) * 0.5).requires_grad_()
    alpha = torch.tensor([0.05, 0.1, 0.2, 0.4], dtype=torch.float64, requires_grad=True)
    up = torch.randn(4, 5, dtype=torch.float64)
    (lsq_quantize(w, alpha, 4) * up).sum().backward()
    qn, qp = -8, 7
    v = (w / alpha.view(-1, 1)).detach()
    inside = (v >= qn) & (v <= qp)
    # LSQ: dq/dalpha = round(v) - v inside, Qn / Qp when clipped; scaled by g = 1/sqrt(numel * Qp)
    clipped = torch.where(v < qn, torch.full_like(v, qn), torch.full_like(v, qp))
    dq = torch.where(inside, v.round() - v, clipped)
    g = 1.0 / math.sqrt(w.numel() * qp)
    assert torch.allclose(alpha.grad, (dq * up).sum(1) * g, atol=1e-12)
    # the weights get the straight-through gradient inside the range, zero where clipped
    assert torch.allclose(w.grad, up * inside, atol=1e-12)
    assert (~inside).any() and inside.any()


def test_lsq_conv_initialises_step_on_first_training_batch() -> None:
    torch.manual_seed(0)
    conv = Conv2dLSQ(3, 4, 3, padding=1, nbits=4).double()
    with torch.no_grad():
        conv.weight.mul_(3.0)  # weights changed after construction (e.g. loaded): step must follow
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    conv.eval()
    conv(x)
    assert conv.init_state.item() == 0  # eval never freezes the step
    conv.train()
    y = conv(x)
    assert conv.init_state.item() == 1
    expected = 2 * conv.weight.abs().mean() / math.sqrt(7)
    assert torch.allclose(conv.alpha, expected.expand(4))
    wq = torch.clamp(conv.weight / expected, -8, 7).round() * expected
    assert torch.allclose(y, F.conv2d(x, wq, conv.bias, padding=1), atol=1e-12)
    with torch.no_grad():
        conv.weight.mul_(2.0)
    conv(x)  # later batches keep the learned step
    assert torch.allclose(conv.alpha, expected.expand(4))


def test_lsq_act_placeholders_are_unused_buffers() -> None:
    lin = LinearLSQ(8, 3)
    # persistent buffers (in the state dict under the official names), not parameters
    assert {'act.alpha', 'act.zero_point', 'act.init_state', 'act.signed'} <= set(lin.state_dict())
    assert sorted(n for n, _ in lin.named_parameters()) == ['alpha', 'bias', 'weight']
    x = torch.randn(2, 8)
    ref = lin(x)
    lin.act.alpha.fill_(123.0)
    lin.act.zero_point.fill_(-5.0)
    out = lin(x)
    assert torch.equal(out, ref)  # the forward never reads them
    out.sum().backward()
    assert lin.weight.grad is not None and lin.alpha.grad is not None


# --------------------------------------------------------------------------------- neurons
def test_multispike_levels_and_ste_gradient() -> None:
    u = torch.tensor(
        [-0.3, 0.0, 0.1, 0.124, 0.126, 0.37, 0.5, 0.9, 0.99, 1.0, 1.7], dtype=torch.float64, requires_grad=True
    )
    n = MultiSpike(levels=4)
    s = n(u)
    # round-half-up of 4u clamped to [0, 4], divided by 4
    expected = torch.tensor([0, 0, 0.0, 0, 0.25, 0.25, 0.5, 1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    assert torch.equal(s, expected)
    s.sum().backward()
    # straight-through inside 0 < 4u < 4 (slope d(k/4)/du = 1), zero when silent or saturated
    assert torch.equal(u.grad, ((u > 0) & (u < 1)).double())
    # attention neuron: counts shown as k / 2, gradient slope 2
    u2 = u.detach().clone().requires_grad_()
    att = MultiSpike(levels=4, norm=2)
    assert torch.equal(att(u2), expected * 2)
    att(u2).sum().backward()
    assert torch.equal(u2.grad, 2 * ((u2 > 0) & (u2 < 1)).double())


def test_multispike_binary_planes_sum_to_counts() -> None:
    torch.manual_seed(0)
    u = torch.rand(3, 5, dtype=torch.float64) * 1.4 - 0.2
    n = MultiSpike(levels=4)
    planes = n.spike_planes(u).view(4, 3, 5)
    assert set(planes.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(planes.sum(0), n.count(u))


def test_lif_matches_hand_computed_dynamics_and_surrogate() -> None:
    # tau = 2, threshold 1, hard reset to 0, T = 3 steps (dim 0 = T * B with B = 1)
    x = torch.tensor([[1.5, 0.6, 2.0], [1.5, 0.6, 0.0], [1.5, 0.6, 2.0]], dtype=torch.float64)
    out = MultiStepLIF(T=3)(x)
    # col 0: v = .75, 1.125 (spike, reset), .75 ; col 1: v = .3, .45, .525 ;
    # col 2: v = 1 (spike), 0, 1 (spike)
    assert torch.equal(out, torch.tensor([[0, 0, 1.0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64))
    # surrogate gradient at T = 1: d s / d x = a * sig(a (x/2 - 1)) * (1 - sig) / 2, a = 4
    x1 = torch.tensor([0.5, 1.9, 2.4], dtype=torch.float64, requires_grad=True)
    MultiStepLIF(T=1)(x1).sum().backward()
    sg = torch.sigmoid(4 * (x1.detach() / 2 - 1))
    assert torch.allclose(x1.grad, 4 * sg * (1 - sg) / 2)
    with pytest.raises(ValueError, match='T \\* B'):
        MultiStepLIF(T=2)(torch.zeros(3, 4))


# ---------------------------------------------------------------------------------- models
def _active_tiny(name: str, **kw) -> torch.nn.Module:
    """A tiny model with spread-out BN so neurons fire at all levels; BN stats from one batch.

    float32: CPU convolutions in float64 fall back to a slow per-group loop (depthwise 7x7).
    """
    torch.manual_seed(0)
    m = timm.create_model(name, **{**TINY, **kw})
    for mod in m.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(0.0, 0.6)
    for n, p in m.named_parameters():
        if 'layer_scale' in n:
            p.data.fill_(1.0)
    m.train()
    m(torch.randn(4, 3, 16, 16))
    return m.eval()


def test_spike_driven_inference_equals_integer_mode() -> None:
    m = _active_tiny('qsd_transformer_15m')
    x = torch.randn(3, 3, 16, 16)
    counts = []
    hooks = [
        mod.register_forward_hook(lambda mod, i, o: counts.append(o * mod.norm))
        for mod in m.modules()
        if isinstance(mod, MultiSpike)
    ]
    with torch.no_grad():
        ref = m(x)
    for h in hooks:
        h.remove()
    levels = torch.cat([c.flatten() for c in counts]).unique()
    assert set(levels.tolist()) == {0.0, 1.0, 2.0, 3.0, 4.0}  # multi-spike: every level used
    m.set_spike_driven(True)
    with torch.no_grad():
        out = m(x)
    assert torch.allclose(out, ref, rtol=0, atol=1e-5) and ref.abs().max() > 1e-2
    m.set_spike_driven(False)
    with torch.no_grad():
        assert torch.equal(m(x), ref)


def test_spike_driven_binary_planes_reach_synapses() -> None:
    m = _active_tiny('qsd_transformer_15m')
    m.set_spike_driven(True)
    seen: list[torch.Tensor] = []
    # the first 1x1 conv of every q/k/v RepConv is integrated plane by plane: watch its conv input
    orig = F.conv2d

    def spy(inp, weight, *a, **k):
        seen.append(inp)
        return orig(inp, weight, *a, **k)

    F.conv2d = spy
    try:
        with torch.no_grad():
            m.block3[0].attn(torch.randn(2, 64, 2, 2))
    finally:
        F.conv2d = orig
    binary = [t for t in seen if set(t.unique().tolist()) <= {0.0, 1.0}]
    assert len(binary) >= 4  # q/k/v/proj first convs saw {0,1} planes (4 planes x N folded in batch)
    assert all(t.shape[0] == 4 * 2 for t in binary)


# Exact integer synapses (--bf16 inference): spike counts x weight levels summed in int32.
_COUNT_LAYERS = {
    'conv3x3': lambda: Conv2dLSQ(16, 32, 3, 1, 1, bias=False),
    'conv3x3_stride2_bias': lambda: Conv2dLSQ(16, 24, 3, 2, 1, bias=True),
    'conv1x1': lambda: Conv2dLSQ(32, 48, 1, 1, 0, bias=False),
    'depthwise7x7': lambda: Conv2dLSQ(32, 32, 7, 1, 3, groups=32, bias=False),
    'conv1d_1x1_gemm': lambda: Conv1dLSQ(32, 64, 1, 1),
    'conv1d_k3': lambda: Conv1dLSQ(16, 24, 3, 1, 1),
    'linear': lambda: LinearLSQ(32, 10),
}


@pytest.mark.parametrize('kind', list(_COUNT_LAYERS))
def test_count_synapse_is_the_exact_integer_product(kind: str) -> None:
    """The int8 path equals the float64 layer on the same counts closer than float32 does (one rounding)."""
    torch.manual_seed(0)
    layer = _COUNT_LAYERS[kind]()
    c = layer.weight.shape[1] * getattr(layer, 'groups', 1)
    x = torch.randn({2: (5, c), 3: (2, c, 37), 4: (2, c, 11, 13)}[layer.weight.ndim])
    layer.train()
    layer(x)  # the first training batch sets the LSQ step
    layer.eval()
    counts = torch.randint(0, 5, x.shape).float()
    norm = 4.0
    with torch.no_grad():
        w64 = lsq_quantize(layer.weight.double(), layer.alpha.double(), layer.nbits)
        b64 = None if layer.bias is None else layer.bias.double()
        ref = layer.linear(counts.double() / norm, w64, b64)
        fp32 = layer(counts / norm)
        with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):
            exact = layer(counts / norm, spike_norm=norm)
    assert exact.dtype == torch.float32 and exact.shape == ref.shape
    err, err32 = (exact.double() - ref).abs().max().item(), (fp32.double() - ref).abs().max().item()
    assert err <= max(err32, 2 * torch.finfo(torch.float32).eps * ref.abs().max().item()), (err, err32)
    assert ref.abs().max() > 0.1


def test_count_synapse_follows_weight_changes_and_stays_out_of_training() -> None:
    torch.manual_seed(0)
    layer = Conv2dLSQ(8, 8, 3, 1, 1, bias=False)
    layer.train()
    layer(torch.randn(2, 8, 6, 6))
    counts = torch.randint(0, 5, (2, 8, 6, 6)).float()
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):
        layer.eval()
        first = layer(counts / 4, spike_norm=4.0)
        with torch.no_grad():
            layer.weight.mul_(-1)  # in place, as load_state_dict writes: the packed int8 weight must follow
        flipped = layer(counts / 4, spike_norm=4.0)
    assert torch.allclose(flipped, -first, atol=1e-6) and first.abs().max() > 0.1
    # training under --amp follows autocast (the official recipe trains under CUDA AMP): bfloat16, with autograd
    layer.train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = layer(counts / 4, spike_norm=4.0)
    assert y.dtype == torch.bfloat16 and y.requires_grad


class _CountChain(torch.nn.Module):
    """spike -> 3x3 conv -> spike -> 1x1 conv1d (GEMM form) -> spike -> linear: one of each int8 op."""

    def __init__(self) -> None:
        super().__init__()
        self.lif1, self.lif2, self.lif3 = MultiSpike(4), MultiSpike(4), MultiSpike(4, norm=2)
        self.conv = Conv2dLSQ(8, 16, 3, 1, 1, bias=False)
        self.fc = Conv1dLSQ(16, 16, 1, 1)
        self.head = LinearLSQ(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = integrate(self.lif1, x, self.conv).flatten(2)
        y = integrate(self.lif2, y, self.fc).mean(-1)
        return integrate(self.lif3, y, self.head)


@pytest.mark.slow  # Inductor compiles for ~15 s
def test_count_synapse_compiles_whole() -> None:
    """torch.compile keeps the int8 custom op as one node (its fake layout matches the real one) and fuses the
    neurons around it: compiled bf16 equals eager bf16."""
    torch.manual_seed(0)
    chain = _CountChain()
    chain.train()
    chain(torch.rand(2, 8, 6, 6))
    chain.eval()
    x = torch.rand(2, 8, 6, 6) * 1.2
    with torch.inference_mode(), torch.autocast('cpu', dtype=torch.bfloat16):
        ref = chain(x)
        compiled = torch.compile(chain, backend='inductor', fullgraph=True)
        out = compiled(x)
    assert ref.dtype == out.dtype == torch.float32 and ref.abs().max() > 0.05
    assert torch.allclose(out, ref, rtol=0, atol=1e-6)


def test_bf16_inference_multiplies_spike_counts_exactly() -> None:
    """Under bf16 autocast every quantised synapse that follows a multi-spike neuron runs the exact integer
    product, and the model's output equals float32 (no spike count flips on this input)."""
    from zoo.layers.spiking import _count_conv

    m = _active_tiny('qsd_transformer_15m')
    x = torch.randn(3, 3, 16, 16)
    calls = []
    import zoo.layers.spiking as spiking

    def spy(*a, **k):
        calls.append(a[1].shape)
        return _count_conv(*a, **k)

    with torch.inference_mode():
        ref = m.forward_features(x)
        spiking._count_conv, original = spy, spiking._count_conv
        try:
            with torch.autocast('cpu', dtype=torch.bfloat16):
                out = m.forward_features(x)
        finally:
            spiking._count_conv = original
    # the synapses right after a multi-spike neuron; not the stem (image input), nor the RepConv / SepConv convs
    # that follow a depthwise conv or a BN (real-valued inputs: those stay float32)
    after_spikes = ('body.0', 'pwconv1', 'dwconv', '.conv1', '.conv2', 'fc1_conv', 'fc2_conv', 'encode_conv')
    expected = [
        n
        for n, mod in m.named_modules()
        if isinstance(mod, (Conv2dLSQ, Conv1dLSQ)) and n.endswith(after_spikes) and not n.startswith('downsample1_1')
    ]
    assert len(calls) == len(expected) == 44, (len(calls), expected)
    assert out.dtype == torch.float32
    assert torch.allclose(out, ref, rtol=0, atol=1e-5 * ref.abs().max().item())


@pytest.mark.parametrize('T, v_threshold, v_reset', [(1, 1.0, 0.0), (4, 0.5, 0.0), (3, 1.0, -0.2)])
def test_lif_inference_path_equals_the_autograd_one(T: int, v_threshold: float, v_reset: float) -> None:
    """Without autograd the LIF takes fewer passes a step; its spikes are the autograd path's, bit for bit
    (values on and around the threshold included)."""
    lif = MultiStepLIF(T=T, v_threshold=v_threshold, v_reset=v_reset)
    x = torch.randn(T * 4, 8, 5, 5, generator=torch.Generator().manual_seed(0)) * 2
    x.view(-1)[:6] = torch.tensor([2 * v_threshold, v_threshold, 0.0, -0.0, 1e-8, -1e-8])
    ref = lif(x.clone().requires_grad_()).detach()
    with torch.no_grad():
        out = lif(x)
    assert torch.equal(out, ref) and 0.05 < ref.mean() < 0.95


def test_meta_spikeformer_lif_time_steps_and_binary_spikes() -> None:
    m = _active_tiny('meta_spikeformer_15m', T=3)
    spikes = []
    hooks = [
        mod.register_forward_hook(lambda mod, i, o: spikes.append(o))
        for mod in m.modules()
        if isinstance(mod, MultiStepLIF)
    ]
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        out = m(x)
    for h in hooks:
        h.remove()
    assert out.shape == (2, 10)
    allv = torch.cat([s.flatten() for s in spikes])
    assert set(allv.unique().tolist()) == {0.0, 1.0}
    assert all(s.shape[0] == 3 * 2 for s in spikes)
    # T changes the function (membrane dynamics over time), set_T propagates to the neurons
    m.set_T(1)
    with torch.no_grad():
        assert not torch.allclose(m(x), out)


def test_input_size_error_names_divisibility() -> None:
    m = timm.create_model('qsd_transformer_15m', **TINY)
    with pytest.raises(ValueError, match='divisible by 16'):
        m(torch.randn(1, 3, 30, 32))


def test_features_only_strides() -> None:
    m = timm.create_model('qsd_transformer_15m', features_only=True, embed_dim=(16, 32, 64, 64), depths=4)
    assert m.feature_info.reduction() == [4, 8, 16, 16]
    with torch.no_grad():
        feats = m(torch.randn(2, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(2, 16, 16, 24), (2, 32, 8, 12), (2, 64, 4, 6), (2, 64, 4, 6)]


# ------------------------------------------------------------------------------ checkpoints
def _official_qsd_keys(n3: int, n4: int) -> list[str]:
    """QSD ``Spiking_vit_MetaFormer`` state-dict keys, as the official classification/models.py names them."""

    def lsq(n: str, bias: bool) -> list[str]:
        return (
            [f'{n}.weight']
            + ([f'{n}.bias'] if bias else [])
            + [
                f'{n}.alpha',
                f'{n}.init_state',
                f'{n}.act.alpha',
                f'{n}.act.zero_point',
                f'{n}.act.init_state',
                f'{n}.act.signed',
            ]
        )

    def bn(n: str) -> list[str]:
        return [f'{n}.{p}' for p in ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')]

    keys: list[str] = []
    for d in ('downsample1_1', 'downsample1_2', 'downsample2', 'downsample3', 'downsample4'):
        keys += lsq(f'{d}.encode_conv', True) + bn(f'{d}.encode_bn')
    for c in ('ConvBlock1_1', 'ConvBlock1_2', 'ConvBlock2_1', 'ConvBlock2_2'):
        p = f'{c}.0'
        keys += lsq(f'{p}.Conv.pwconv1', False) + bn(f'{p}.Conv.bn1') + lsq(f'{p}.Conv.dwconv', False)
        keys += lsq(f'{p}.Conv.pwconv2', False) + bn(f'{p}.Conv.bn2')
        keys += lsq(f'{p}.conv1', False) + bn(f'{p}.bn1') + lsq(f'{p}.conv2', False) + bn(f'{p}.bn2')
    for stage, n in (('block3', n3), ('block4', n4)):
        for j in range(n):
            p = f'{stage}.{j}'
            keys += [f'{p}.layer_scale1', f'{p}.layer_scale2']
            for a in ('q_conv', 'k_conv', 'v_conv', 'proj_conv'):
                r = f'{p}.attn.{a}'
                keys += lsq(f'{r}.0.body.0', False) + bn(f'{r}.0.body.1.bn') + lsq(f'{r}.0.body.2.0', False)
                keys += lsq(f'{r}.0.body.2.1', False) + bn(f'{r}.0.body.2.2') + bn(f'{r}.1')
            keys += lsq(f'{p}.mlp.fc1_conv', True) + bn(f'{p}.mlp.fc1_bn')
            keys += lsq(f'{p}.mlp.fc2_conv', True) + bn(f'{p}.mlp.fc2_bn')
    return keys + lsq('head', True)


def test_official_key_layout_is_ours() -> None:
    with torch.device('meta'):
        m = timm.create_model('qsd_transformer_15m')
    official = _official_qsd_keys(6, 2)
    assert len(official) == 1669  # official spikformer_8_15M_CAFormer state dict, counted
    assert sorted(m.state_dict()) == sorted(official)


def _official_state(model: torch.nn.Module, keys: list[str], seed: int) -> dict[str, torch.Tensor]:
    """Random tensors under the official names, with the official shapes (ours, checked above)."""
    g = torch.Generator().manual_seed(seed)
    own = model.state_dict()
    sd = {}
    for k in keys:
        t = own[k]
        if k.endswith('num_batches_tracked') or k.endswith('init_state') or k.endswith('signed'):
            sd[k] = torch.ones_like(t)
        elif k.endswith('alpha') or k.endswith('running_var'):
            sd[k] = torch.rand(t.shape, generator=g, dtype=t.dtype) * 0.1 + 0.02
        else:
            sd[k] = torch.randn(t.shape, generator=g, dtype=t.dtype) * 0.2
    return sd


def test_official_qsd_checkpoint_loads_strictly(tmp_path) -> None:
    kw = dict(embed_dim=(16, 32, 64, 64), depths=4)
    ref = timm.create_model('qsd_transformer_15m', **kw)
    sd = _official_state(ref, _official_qsd_keys(3, 1), seed=1)
    path = tmp_path / 'qsd_official.pth'
    torch.save({'model': sd, 'epoch': 299}, path)  # main_finetune's misc.save_model layout
    m = timm.create_model('qsd_transformer_15m', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **kw)
    for k, v in m.state_dict().items():
        assert torch.equal(v, sd[k]), k
    m.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        y_qsd = m(x)
    # the same file into a full-precision model: weights become their 4-bit values, same function
    fp = timm.create_model(
        'qsd_transformer_15m', pretrained=True, wbits=32, pretrained_cfg_overlay=dict(file=str(path)), **kw
    ).eval()
    assert not any(k.endswith('alpha') for k in fp.state_dict())
    with torch.no_grad():
        assert torch.allclose(fp(x), y_qsd, atol=1e-5)
    # act placeholders dropped on request; other class count drops the head
    slim = timm.create_model(
        'qsd_transformer_15m',
        pretrained=True,
        act_placeholders=False,
        num_classes=7,
        pretrained_cfg_overlay=dict(file=str(path)),
        **kw,
    )
    assert not any('.act.' in k for k in slim.state_dict())
    assert torch.equal(slim.downsample2.encode_conv.weight, sd['downsample2.encode_conv.weight'])


def test_official_sdt_v2_kd_checkpoint_merges_heads(tmp_path) -> None:
    kw = dict(embed_dim=(16, 32, 64, 64), depths=4)
    ref = timm.create_model('meta_spikeformer_15m', kd_head=True, **kw)
    keys = list(ref.state_dict())
    assert not any(k.endswith('alpha') or 'layer_scale' in k for k in keys)
    sd = _official_state(ref, keys, seed=2)
    path = tmp_path / 'sdt2_kd.pth'
    torch.save({'model': sd}, path)
    kd = timm.create_model(
        'meta_spikeformer_15m', pretrained=True, kd_head=True, pretrained_cfg_overlay=dict(file=str(path)), **kw
    ).eval()
    single = timm.create_model(
        'meta_spikeformer_15m', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **kw
    ).eval()
    assert torch.equal(single.head.weight, (sd['head.weight'] + sd['head_kd.weight']) / 2)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(single(x), kd(x), atol=1e-5)  # official eval output (head + head_kd) / 2


def test_filter_unwraps_and_strips_module_prefix() -> None:
    m = timm.create_model('meta_spikeformer_15m', embed_dim=(16, 32, 64, 64), depths=4)
    sd = {f'module.{k}': v.clone() for k, v in m.state_dict().items()}
    for wrap in ('state_dict', 'state_dict_ema', 'model'):
        out = checkpoint_filter_fn({wrap: sd, 'epoch': 1}, m)
        assert sorted(out) == sorted(m.state_dict())


# -------------------------------------------------------------------------------------- FGD
def test_fgd_token_gram_and_distiller_loss() -> None:
    from zoo.distill.fgd import FGDDistiller, token_gram

    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    naive = torch.empty(2, 5, 5, dtype=torch.float64)
    for b in range(2):
        for i in range(5):
            for j in range(5):
                naive[b, i, j] = x[b, i] @ x[b, j] / (x[b, i].norm() * x[b, j].norm())
    assert torch.allclose(token_gram(x).double(), naive, atol=1e-6)

    m = FGDDistiller(
        student=dict(model_name='qsd_transformer_15m', model_kwargs=TINY),
        teacher=dict(
            model_name='vit_tiny_patch16_224',
            model_kwargs=dict(num_classes=10, img_size=32, patch_size=8, depth=2, embed_dim=48, num_heads=2),
        ),
        kd_weight=0.5,
        tau=2.0,
    )
    assert m.teacher_layers == [0, 0, 1, 1]  # 4 student attention blocks spread over 2 teacher blocks
    m.train()
    # record what the loss is made of in the same forward: student logits and q / k spikes of every
    # Q-SDSA block, teacher logits and the qkv output of the mapped teacher blocks
    from zoo.models.qsd_transformer import SpikeDrivenSelfAttention

    seen: dict = {}

    def keep(key):
        return lambda mod, inp, out: seen.__setitem__(key, out.detach())

    attns = [a for a in m.backbone.modules() if isinstance(a, SpikeDrivenSelfAttention)]
    hooks = [m.backbone.register_forward_hook(keep('student')), m.teacher.register_forward_hook(keep('teacher'))]
    for i, a in enumerate(attns):
        hooks += [a.q_lif.register_forward_hook(keep(('q', i))), a.k_lif.register_forward_hook(keep(('k', i)))]
    for j in set(m.teacher_layers):
        hooks.append(m.teacher.blocks[j].attn.qkv.register_forward_hook(keep(('qkv', j))))
    labels = torch.tensor([0, 1, 2, 3])
    losses = m(torch.randn(4, 3, 32, 32), dict(gt_label=labels), mode='loss')
    for h in hooks:
        h.remove()
    assert set(losses) == {'loss_ce', 'loss_fgd', 'loss_kd'}

    # the loss by hand (docs/qsd_transformer.md): per block, MSE between the token cosine-similarity matrices
    # of the student's q / k spikes (averaged over T) and the teacher's q / k tokens (class token dropped,
    # 4x4 grid average-pooled to the student's grid), averaged over blocks and q / k
    def gram(t):  # (B, N, C) -> (B, N, N)
        t = t.double()
        t = t / t.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        return t @ t.transpose(1, 2)

    T = m.backbone.T
    want = 0.0
    for i, j in enumerate(m.teacher_layers):
        qkv = seen[('qkv', j)][:, 1:]  # (B, 16, 3 * 48): drop the class token
        for s, t in ((seen[('q', i)], qkv[..., :48]), (seen[('k', i)], qkv[..., 48:96])):
            h, w = s.shape[-2:]
            s_tok = s.unflatten(0, (T, -1)).mean(0).flatten(2).transpose(1, 2)
            t_grid = F.adaptive_avg_pool2d(t.transpose(1, 2).reshape(4, 48, 4, 4), (h, w))
            want += ((gram(s_tok) - gram(t_grid.flatten(2).transpose(1, 2))) ** 2).mean().item()
    assert losses['loss_fgd'].item() == pytest.approx(want / (2 * len(attns)), rel=1e-4)
    s_logits, t_logits = seen['student'].double(), seen['teacher'].double()
    p_t = (t_logits / 2.0).softmax(1)
    kl = (p_t * (p_t.log() - (s_logits / 2.0).log_softmax(1))).sum(1).mean() * 2.0**2
    assert losses['loss_kd'].item() == pytest.approx(0.5 * kl.item(), rel=1e-4)
    assert losses['loss_ce'].item() == pytest.approx(F.cross_entropy(s_logits, labels).item(), rel=1e-5)
    losses['loss_fgd'].backward()  # the FGD term alone trains the Q-SDSA convs through the spike STE
    q_conv = m.backbone.block3[0].attn.q_conv[0].body[0].weight
    assert q_conv.grad is not None and q_conv.grad.abs().sum() > 0
    assert all(p.grad is None for p in m.teacher.parameters())  # frozen teacher


# ----------------------------------------------------------------------------------- energy
def test_energy_tool_attribution_and_outputs(tmp_path) -> None:
    import csv

    from zoo.cli import energy

    m = _active_tiny('qsd_transformer_15m')
    rec = energy.Recorder(m, T=1)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        m(x)
    rec.remove()
    layers = rec.layers
    # encoding conv: real-valued input (MAC), 7x7 s2 3->8 channels at 16x16 output
    assert layers['downsample1_1.encode_conv'][:2] == [16 * 16 * 8 * 3 * 49, None]
    # every other synaptic layer is charged to the neuron feeding its chain (data-flow order)
    assert layers['downsample1_2.encode_conv'][1] == 'downsample1_2.encode_lif'
    assert layers['ConvBlock1_1.0.Conv.pwconv2'][1] == 'ConvBlock1_1.0.Conv.lif2'
    assert layers['block3.0.attn.k_conv.0.body.2.1'][1] == 'block3.0.attn.head_lif'
    assert layers['block3.0.attn.proj_conv.0.body.0'][1] == 'block3.0.attn.attn_lif'
    assert layers['block3.0.attn.kTv'][1] == 'block3.0.attn.k_lif'
    assert layers['head'][1] == 'lif'
    # k^T v per image-step: heads * tokens * d^2 = 8 * (2*2) * 8^2
    assert layers['block3.0.attn.kTv'][0] == 8 * 4 * 8 * 8
    rates = rec.firing_rates()
    # firing rate = spikes emitted / (neuron outputs x D), counted from each neuron's input with the
    # IE-LIF rule k = round(clamp(D x, 0, D)) (seen in a second, identical eval forward)
    inputs = {}
    hooks = [
        mod.register_forward_hook(lambda mod, inp, out, n=n: inputs.__setitem__(n, (inp[0], mod.levels)))
        for n, mod in m.named_modules()
        if isinstance(mod, MultiSpike)
    ]
    with torch.no_grad():
        m(x)
    for h in hooks:
        h.remove()
    assert set(inputs) == set(rates)
    for n, (inp, D) in inputs.items():
        k = torch.floor((inp.double() * D).clamp(0, D) + 0.5)
        assert rates[n] == pytest.approx(k.mean().item() / D, rel=1e-6, abs=1e-9), n
    assert len({round(r, 6) for r in rates.values()}) > 1  # not a constant

    out = tmp_path / 'e'
    assert (
        energy.main(
            ['qsd_transformer_15m', '--num-images', '2', '--img-size', '16', '--batch-size', '2', '--out', str(out)]
        )
        == 0
    )
    row = next(csv.DictReader(open(f'{out}.csv')))
    first, sops = float(row['first_layer_gmacs']), float(row['gsops'])
    assert float(row['energy_mj']) == pytest.approx(4.6 * first + 0.9 * sops, abs=2e-3)  # G x pJ = mJ
    assert (tmp_path / 'e_firing.png').stat().st_size > 1000
