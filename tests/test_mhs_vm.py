"""MHS-VM: selective scan vs a sequential float64 reference, scan routes, Scan Route Attention, the
VM-UNet (parameter counts, official checkpoint layout, any input size), and the segmentation
training pieces (loss, metric, dataset, a tiny synthetic-lesion run through mmengine's Runner)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

import zoo  # noqa: F401
import zoo.layers.selective_scan as ss
from zoo.layers.multi_head_scan import (
    MultiHeadScan,
    ScanRouteAttention,
    ScanRoutes,
    pattern_routes,
    route_order,
)
from zoo.layers.selective_scan import selective_scan
from zoo.models.mhs_vm import (
    UNET_FACTS,
    MHSVMUNet,
    checkpoint_filter_fn,
    create_mhs_vm_unet,
)

TINY = dict(
    dims=(16, 32, 64, 128), depths=(1, 1, 1, 1), depths_decoder=(1, 1, 1, 1), d_state=4, drop_path_rate=0.0, img_size=32
)
CONFIG = os.path.join(os.path.dirname(__file__), '..', 'configs', 'segmentation', 'mhs_vm', 'mhs_vm_tiny_synthetic.py')


# --------------------------------------------------------------------------- selective scan


def reference_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Token-by-token recurrence, written independently of the implementation (float64)."""
    b, d, L = u.shape
    n = A.shape[1]
    if delta_bias is not None:
        delta = delta + delta_bias[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)

    def per_channel(M):  # -> (b, d, n, L)
        if M.ndim == 2:
            return M[None, :, :, None].expand(b, d, n, L)
        if M.ndim == 3:
            return M[:, None].expand(b, d, n, L)
        return M.repeat_interleave(d // M.shape[1], dim=1)

    Bc, Cc = per_channel(B), per_channel(C)
    h = torch.zeros(b, d, n, dtype=u.dtype)
    ys = []
    for t in range(L):
        h = torch.exp(delta[:, :, t, None] * A) * h + delta[:, :, t, None] * Bc[..., t] * u[:, :, t, None]
        ys.append((h * Cc[..., t]).sum(-1))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + u * D[None, :, None]
    if z is not None:
        y = y * F.silu(z)
    return y, h


def _inputs(b=2, k=4, dk=3, n=5, L=70, bc_form='grouped', scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = k * dk

    def r(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    A = -torch.exp(r(d, n) * 0.5)
    if bc_form == 'grouped':
        B, C = r(b, k, n, L), r(b, k, n, L)
    elif bc_form == 'shared':
        B, C = r(b, n, L), r(b, n, L)
    else:  # constant
        B, C = r(d, n), r(d, n)
    return dict(u=r(b, d, L), delta=r(b, d, L) * scale, A=A, B=B, C=C, D=r(d), z=r(b, d, L), delta_bias=r(d) * 0.5)


@pytest.mark.parametrize('bc_form', ['grouped', 'shared', 'constant'])
@pytest.mark.parametrize('chunk', [None, 1, 8])
def test_selective_scan_matches_sequential_reference(bc_form, chunk):
    x = _inputs(bc_form=bc_form)
    y, last = selective_scan(**x, delta_softplus=True, return_last_state=True, chunk_size=chunk)
    y_ref, last_ref = reference_scan(**x, delta_softplus=True)
    assert y.dtype == torch.float64 and y.shape == x['u'].shape
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(last, last_ref, rtol=1e-9, atol=1e-10)
    # optional pieces off: no D, no z, no bias, no softplus (delta must then be positive)
    x2 = dict(x, D=None, z=None, delta_bias=None, delta=x['delta'].abs())
    torch.testing.assert_close(selective_scan(**x2, chunk_size=chunk), reference_scan(**x2)[0], rtol=1e-9, atol=1e-10)


def test_selective_scan_multiple_blocks(monkeypatch):
    # Tiny work blocks: the carried state must cross many block boundaries unchanged.
    monkeypatch.setattr(ss, '_BLOCK_ELEMS', 64)
    x = _inputs(L=133)
    torch.testing.assert_close(
        selective_scan(**x, delta_softplus=True, chunk_size=4),
        reference_scan(**x, delta_softplus=True)[0],
        rtol=1e-9,
        atol=1e-10,
    )


def test_selective_scan_gradients_match_reference():
    x = _inputs(b=1, k=2, dk=2, n=3, L=37)
    names = ['u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias']
    grads = []
    for fn in (
        lambda **a: selective_scan(**a, delta_softplus=True, chunk_size=8),
        lambda **a: reference_scan(**a, delta_softplus=True)[0],
    ):
        leaves = {k: x[k].clone().requires_grad_(True) for k in names}
        w = torch.linspace(-1, 1, x['u'].numel(), dtype=torch.float64).view_as(x['u'])
        (fn(**leaves) * w).sum().backward()
        grads.append({k: leaves[k].grad for k in names})
    for k in names:
        torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-8, atol=1e-9, msg=f'gradient of {k}')


def test_selective_scan_float32_extreme_steps_stay_accurate():
    # Huge steps (decays far below float32 eps) force the clamp and the small-chunk fallback.
    x = _inputs(L=64, scale=30.0, seed=3)
    y_ref, _ = reference_scan(**x, delta_softplus=True)
    y = selective_scan(**{k: v.float() for k, v in x.items()}, delta_softplus=True)
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize('bc_form', ['grouped', 'shared', 'constant'])
def test_fused_backend_matches_sequential_reference(bc_form):
    # L = 70: 5 chunks of 16 with a padded tail; two recurrence levels need L > 256 (below).
    x = _inputs(bc_form=bc_form)
    y, last = selective_scan(**x, delta_softplus=True, return_last_state=True, backend='fused')
    y_ref, last_ref = reference_scan(**x, delta_softplus=True)
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(last, last_ref, rtol=1e-9, atol=1e-10)
    if bc_form == 'grouped':  # the optional inputs absent (no D, z, bias, softplus): one more kernel to compile
        x2 = dict(x, D=None, z=None, delta_bias=None, delta=x['delta'].abs())
        torch.testing.assert_close(
            selective_scan(**x2, backend='fused'), reference_scan(**x2)[0], rtol=1e-9, atol=1e-10
        )


@pytest.mark.slow
def test_fused_backend_long_sequence_float32_and_autograd_fallback():
    # 300 steps = 19 chunks: the chunk recurrence runs on two levels (16 chunks per group).
    x = _inputs(b=1, k=2, dk=2, n=3, L=300, seed=4)
    y_ref, last_ref = reference_scan(**x, delta_softplus=True)
    y32, last32 = selective_scan(
        **{k: v.float() for k, v in x.items()}, delta_softplus=True, return_last_state=True, backend='fused'
    )
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), y_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(last32.double(), last_ref, rtol=1e-4, atol=1e-5)
    # autograd needs the graph: the fused backward (float64 here), gradients are exact
    u = x['u'].clone().requires_grad_(True)
    selective_scan(**dict(x, u=u), delta_softplus=True, backend='fused').sum().backward()
    u_ref = x['u'].clone().requires_grad_(True)
    reference_scan(**dict(x, u=u_ref), delta_softplus=True)[0].sum().backward()
    torch.testing.assert_close(u.grad, u_ref.grad, rtol=1e-8, atol=1e-9)


def test_scan_backend_selection_and_bad_name(monkeypatch):
    x = _inputs()  # the shapes of the grouped test above: Inductor's cache already holds its kernels
    with pytest.raises(ValueError, match='backend'):
        selective_scan(**x, backend='cuda')
    with pytest.raises(ValueError, match='backend'):
        ss.set_scan_backend('nope')
    monkeypatch.setattr(ss, '_BACKEND', 'fused')
    assert ss.get_scan_backend() == 'fused'
    torch.testing.assert_close(selective_scan(**x), reference_scan(**x)[0], rtol=1e-9, atol=1e-10)


GRAD_NAMES = ['u', 'delta', 'A', 'B', 'C', 'D', 'z', 'delta_bias']


def _grads(fn, x, names=GRAD_NAMES):
    """Gradients of sum(w * fn(**x)) for the inputs ``names`` (a fixed, sign-changing weight w)."""
    leaves = {k: v.clone().requires_grad_(k in names) if torch.is_tensor(v) else v for k, v in x.items()}
    w = torch.linspace(-1, 1, x['u'].numel(), dtype=x['u'].dtype).view_as(x['u'])
    (fn(**leaves) * w).sum().backward()
    return {k: leaves[k].grad for k in names}


@pytest.mark.slow
@pytest.mark.parametrize('bc_form', ['grouped', 'shared', 'constant'])
def test_fused_backward_matches_sequential_reference(bc_form):
    # L = 300: 19 chunks of 16 with a padded tail, so both the forward's and the backward's chunk recurrences
    # run on two levels. Compiling the backward kernels took 100-130 s per B / C form at load average 5 (once:
    # Inductor's disk cache keeps them); the checks then take about a second.
    x = _inputs(b=2, k=2, dk=2, n=3, L=300, bc_form=bc_form, seed=6)
    for softplus in (True, False):
        if not softplus:  # delta + bias must then be positive
            x = dict(x, delta=x['delta'].abs(), delta_bias=x['delta_bias'].abs())
        fused = _grads(lambda s=softplus, **a: selective_scan(**a, delta_softplus=s, backend='fused'), x)
        ref = _grads(lambda s=softplus, **a: reference_scan(**a, delta_softplus=s)[0], x)
        for k in GRAD_NAMES:
            torch.testing.assert_close(fused[k], ref[k], rtol=1e-8, atol=1e-9, msg=f'{bc_form}: gradient of {k}')
    # optional inputs absent, only some inputs needing gradients
    x2 = dict(x, D=None, z=None, delta_bias=None)
    names = ['delta', 'B']
    fused = _grads(lambda **a: selective_scan(**a, backend='fused'), x2, names)
    ref = _grads(lambda **a: reference_scan(**a)[0], x2, names)
    for k in names:
        torch.testing.assert_close(fused[k], ref[k], rtol=1e-8, atol=1e-9, msg=f'{bc_form}: gradient of {k}')


@pytest.mark.slow
def test_fused_backward_compile_failure_falls_back_to_eager(monkeypatch):
    import zoo.layers.fast_inference as fi

    x = _inputs(b=2, k=2, dk=2, n=3, L=300, seed=6)  # the grouped shapes above: forward kernels cached
    assert ss._fused_available()
    kernels = dict(ss._fused_state['kernels'])

    def broken(*args):
        raise RuntimeError('no C++ compiler (simulated)')

    kernels['_local_scan_bwd'] = broken
    monkeypatch.setattr(ss, '_fused_state', {'kernels': kernels})
    monkeypatch.setattr(fi, '_warned', set())
    with pytest.warns(RuntimeWarning, match='fused backend: torch.compile failed .*no C\\+\\+ compiler'):
        fused = _grads(lambda **a: selective_scan(**a, delta_softplus=True, backend='fused'), x)
    assert 'error' in ss._fused_state and 'kernels' not in ss._fused_state  # off for the rest of the process
    ref = _grads(lambda **a: reference_scan(**a, delta_softplus=True)[0], x)
    for k in GRAD_NAMES:
        torch.testing.assert_close(fused[k], ref[k], rtol=1e-8, atol=1e-9, msg=f'gradient of {k}')
    # later calls run the eager scan (no second warning)
    again = _grads(lambda **a: selective_scan(**a, delta_softplus=True, backend='fused'), x)
    torch.testing.assert_close(again['u'], ref['u'], rtol=1e-8, atol=1e-9)


@pytest.mark.slow
def test_fused_backward_unet_training_step_matches_eager(one_thread):
    # A tiny VM-UNet (4 heads, 64x64: scans of 256, 64, 16 and 4 tokens): one float32 training step's gradients
    # through the fused backward equal the eager scan's. Compiling: 287 s here (load average 5), then seconds.
    torch.manual_seed(0)
    net = create_mhs_vm_unet('mhs_vm_unet_4h', **dict(TINY, img_size=64)).train()
    x, target = torch.randn(2, 3, 64, 64), (torch.rand(2, 1, 64, 64) > 0.5).float()
    grads = {}
    for backend in ('eager', 'fused'):
        ss.set_scan_backend(backend)
        try:
            net.zero_grad(set_to_none=True)
            F.binary_cross_entropy_with_logits(net(x), target).backward()
        finally:
            ss.set_scan_backend('eager')
        grads[backend] = {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}
    assert grads['eager'].keys() == grads['fused'].keys() and len(grads['eager']) > 50
    for k, g in grads['eager'].items():
        scale = g.abs().max().item()
        torch.testing.assert_close(grads['fused'][k], g, rtol=1e-3, atol=1e-4 * max(scale, 1e-3), msg=k)


def test_selective_scan_float32_backward_finite_at_the_range_cap():
    # One 64-step chunk with a decay range of 57.6 (just under float32's cap of 60): dividing by the
    # decay in the forward made the backward divide by its square, inf in float32, and MHS-VM trained
    # on NaN. The rescaling is its own exp now.
    x = _inputs(b=1, k=1, dk=2, n=3, L=64, seed=5)
    x.update(delta=torch.full_like(x['u'], 0.9), A=-torch.ones(2, 3, dtype=torch.float64), delta_bias=None)
    grads = []
    for dtype in (torch.float32, torch.float64):
        leaves = {k: v.to(dtype).requires_grad_(True) for k, v in x.items() if torch.is_tensor(v)}
        fn = selective_scan if dtype == torch.float32 else (lambda **a: reference_scan(**a)[0])
        fn(**leaves).sum().backward()
        grads.append({k: t.grad for k, t in leaves.items()})
    for k, g in grads[0].items():
        assert torch.isfinite(g).all(), k
        torch.testing.assert_close(g.double(), grads[1][k], rtol=1e-3, atol=1e-3, msg=f'gradient of {k}')


def test_selective_scan_bad_shapes_name_the_argument():
    x = _inputs()
    with pytest.raises(ValueError, match='delta'):
        selective_scan(**dict(x, delta=x['delta'][..., :-1]))
    with pytest.raises(ValueError, match='^B'):
        selective_scan(**dict(x, B=x['B'][:, :, :, :-1]))


# --------------------------------------------------------------------------- routes + SRA


def test_routes_known_orders():
    # 3x4 grid, pixels numbered row-major.
    assert route_order('C0', 3, 4).tolist() == [0, 1, 2, 3, 7, 6, 5, 4, 8, 9, 10, 11]
    assert route_order('C1', 3, 4).tolist() == [0, 4, 8, 9, 5, 1, 2, 6, 10, 11, 7, 3]
    assert route_order('S0', 3, 4).tolist() == [0, 1, 2, 3, 7, 11, 10, 9, 8, 4, 5, 6]
    assert route_order('Z1', 3, 4).tolist() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    # anti-diagonals: k=0 (0); k=1 down-left (1, 4); k=2 up-right (8, 5, 2); ...
    assert route_order('X0', 3, 4).tolist() == [0, 1, 4, 8, 5, 2, 3, 6, 9, 10, 7, 11]
    # mirrors: X1 flips left-right, S1 flips top-bottom
    assert route_order('X1', 3, 4).tolist() == [3, 2, 7, 11, 6, 1, 0, 5, 10, 9, 4, 8]
    assert route_order('S1', 3, 4).tolist() == [8, 9, 10, 11, 7, 3, 2, 1, 0, 4, 5, 6]


@pytest.mark.parametrize('hw', [(1, 1), (1, 5), (5, 1), (2, 7), (7, 3), (8, 8), (9, 6)])
def test_routes_are_permutations_with_inverses(hw):
    for p in 'CXSZ':
        fwd, inv = pattern_routes(p, *hw)
        for r in range(2):
            assert sorted(fwd[r].tolist()) == list(range(hw[0] * hw[1]))
            assert torch.equal(fwd[r][inv[r]], torch.arange(hw[0] * hw[1]))


def test_scan_routes_gather_scatter_roundtrip_and_buffers():
    routes = ScanRoutes('S', (4, 6))
    assert 'seq_index' not in routes.state_dict()  # non-persistent: not in checkpoints
    x = torch.randn(2, 3, 4, 6)
    seqs = routes.gather(x)
    assert seqs.shape == (2, 4, 3, 24)
    # sequence 1 is sequence 0 reversed; scattering back restores the map for every sequence
    assert torch.equal(seqs[:, 1], seqs[:, 0].flip(-1))
    back = routes.scatter(seqs, 4, 6)
    for k in range(4):
        assert torch.equal(back[:, k], x.flatten(2))
    # another grid size works on the fly
    assert torch.equal(routes.scatter(routes.gather(torch.ones(1, 1, 8, 2)), 8, 2)[:, 0], torch.ones(1, 1, 16))
    # multi-scale inputs: the cache keeps the most recently used grids only, and stays correct
    for side in range(2, 40):
        y = torch.randn(1, 2, side, 3)
        assert torch.equal(routes.scatter(routes.gather(y), side, 3)[:, 2], y.flatten(2))
    assert len(routes._cache) == 16 and (39, 3, 'cpu') in routes._cache and (2, 3, 'cpu') not in routes._cache


def test_scan_route_attention_matches_formula():
    ys = torch.randn(2, 4, 3, 10, dtype=torch.float64)
    for t in (0.0, 0.4):
        cv = ys.std(dim=1) / ((ys - ys.min(dim=1, keepdim=True).values).mean(dim=1) + 1e-5)
        want = ys.sum(dim=1) * torch.clamp(cv - t, min=0)
        torch.testing.assert_close(ScanRouteAttention(t)(ys), want)
    # equal routes: zero output and a finite (zero) gradient where torch.std's would be NaN
    same = torch.ones(1, 4, 2, 3, requires_grad=True)
    ScanRouteAttention(0.0)(same).sum().backward()
    assert torch.isfinite(same.grad).all()


def test_multi_head_scan_fused_heads_equal_separate_heads():
    torch.manual_seed(0)
    mhs = MultiHeadScan(16, d_state=4, head_num=4, gfu_t=0.1, grid_size=(4, 4)).double()
    x = torch.randn(2, 16, 4, 4, dtype=torch.float64)
    # one engine call per head, as the official module runs them
    parts = torch.einsum('bdhw,cd->bchw', x, mhs.x_ssproj.weight).split(4, dim=1)
    ys = [getattr(mhs, f'scanhead_{p}')(part) for p, part in zip('CXSZ', parts)]
    want = mhs.y_proj(mhs.cat_norm(torch.cat(ys, dim=1).transpose(1, 2))).reshape(2, 4, 4, 16)
    torch.testing.assert_close(mhs(x), want)


# --------------------------------------------------------------------------- model


@pytest.mark.parametrize('name', sorted(UNET_FACTS))
def test_unet_param_count_matches_reference(name):
    with torch.device('meta'):
        model = create_mhs_vm_unet(name)
    got = sum(p.numel() for p in model.parameters()) / 1e6
    want = UNET_FACTS[name]['params_m']
    assert abs(got - want) / want <= 0.005, f'{name}: {got:.3f}M vs {want}M'


def _official_layout(model: MHSVMUNet) -> dict:
    """What the official VMUNet's state_dict looks like: ``vmunet.`` prefix and aliased duplicates."""
    sd = {}
    for k, v in model.state_dict().items():
        sd['vmunet.' + k] = v.clone()
        if k.endswith('.mhs.x_ssproj.weight'):
            sd['vmunet.' + k.replace('x_ssproj.weight', 'x_ssproj_W')] = v.clone()
        if '.mambaeng.' in k:
            sd['vmunet.' + k.replace('.mambaeng.', '.scanning.seq2seq_engine.')] = v.clone()
    return sd


def test_official_key_layout_full_size():
    with torch.device('meta'):
        model = create_mhs_vm_unet('mhs_vm_unet_4h')
    sd = model.state_dict()
    # shapes of the official PixDeep/MHS-VM models/vmunet model (stage 0, 4 heads, C = 96, dim_sub = 24)
    pre = 'layers.0.blocks.0.self_attention.'
    expected = {
        'patch_embed.proj.weight': (96, 3, 4, 4),
        pre + 'in_proj.weight': (192, 96),
        pre + 'conv2d.weight': (96, 1, 3, 3),
        pre + 'mhs.x_ssproj.weight': (96, 96),
        pre + 'mhs.scanhead_Z.mambaeng.x_proj_weight': (4, 34, 24),
        pre + 'mhs.scanhead_C.mambaeng.dt_projs_weight': (4, 24, 2),
        pre + 'mhs.scanhead_X.mambaeng.dt_projs_bias': (4, 24),
        pre + 'mhs.scanhead_S.mambaeng.A_logs': (96, 16),
        pre + 'mhs.scanhead_S.mambaeng.Ds': (96,),
        pre + 'mhs.y_proj.weight': (96, 96),
        'layers.0.downsample.reduction.weight': (192, 384),
        'layers_up.1.upsample.expand.weight': (1536, 768),
        'final_up.expand.weight': (384, 96),
        'final_up.norm.weight': (24,),
        'final_conv.weight': (1, 24, 1, 1),
    }
    for k, shape in expected.items():
        assert tuple(sd[k].shape) == shape, k
    assert not any(k.startswith('layers_up.0.upsample') for k in sd)
    assert len(_official_layout(model)) == 807  # official state dict key count, aliases included


def test_official_checkpoint_loads_strictly_full_size(tmp_path):
    torch.manual_seed(0)
    src = create_mhs_vm_unet('mhs_vm_unet_3h')
    path = tmp_path / 'best_3h.pth'
    torch.save(_official_layout(src), path)
    dst = create_mhs_vm_unet('mhs_vm_unet_3h', checkpoint_path=str(path))  # strict load
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k


def test_tiny_official_checkpoint_same_outputs_unet_and_timm_encoder(tmp_path):
    torch.manual_seed(0)
    src = MHSVMUNet(head_num=4, gfu_t=0.4, **TINY).eval()
    path = tmp_path / 'best_4h.pth'
    torch.save({'state_dict': _official_layout(src)}, path)  # wrapped form is accepted too
    dst = create_mhs_vm_unet('mhs_vm_unet_4h', checkpoint_path=str(path), gfu_t=0.4, **TINY).eval()
    x = torch.rand(2, 3, 32, 32) * 255
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x))
        # timm encoder through timm's own pretrained-file path and our filter
        enc = timm.create_model(
            'mhs_vm_encoder_4h',
            pretrained=True,
            pretrained_cfg_overlay=dict(file=str(path)),
            features_only=True,
            gfu_t=0.4,
            **{k: v for k, v in TINY.items() if k != 'depths_decoder'},
        ).eval()
        feats = enc(x)
        h = src.patch_embed(x)
        for i, stage in enumerate(src.layers):
            h = stage.forward_blocks(h)
            torch.testing.assert_close(feats[i], h.permute(0, 3, 1, 2))
            h = stage.downsample(h) if stage.downsample is not None else h


def test_filter_rejects_inconsistent_alias():
    torch.manual_seed(0)
    model = MHSVMUNet(**TINY)
    sd = _official_layout(model)
    key = next(k for k in sd if k.endswith('x_ssproj_W'))
    sd[key] = sd[key] + 1
    with pytest.raises(ValueError, match='alias'):
        checkpoint_filter_fn(sd, model)


def test_unet_any_size_divisible_by_32_and_clear_error():
    torch.manual_seed(0)
    model = MHSVMUNet(**TINY).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 96)).shape == (1, 1, 64, 96)
        assert model(torch.randn(1, 1, 32, 32)).shape == (1, 1, 32, 32)  # grey input repeated to RGB
    with pytest.raises(ValueError, match='x: .*divisible by 32'):
        model(torch.randn(1, 3, 40, 32))


# --------------------------------------------------------------------------- segmentation pieces


def test_bce_dice_loss_and_metric_by_hand():
    from zoo.lesion_seg import BceDiceLoss, BinarySegMetric

    logits = torch.tensor([[[[2.0, -1.0], [0.5, -3.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    p = logits.sigmoid()
    bce = -(target * p.log() + (1 - target) * (1 - p).log()).mean()
    dice = (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    torch.testing.assert_close(BceDiceLoss()(logits, target), bce + 1 - dice)

    # 2 images; global confusion matrix over both at threshold 0.5: TP=3, FP=2, FN=1, TN=2
    preds = [torch.tensor([[[0.9, 0.6], [0.2, 0.1]]]), torch.tensor([[[0.7, 0.8], [0.55, 0.3]]])]
    gts = [torch.tensor([[[1.0, 0.0], [1.0, 0.0]]]), torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])]
    for thr, (tp, fp, fn) in ((0.5, (3, 2, 1)), (0.75, (2, 0, 2))):
        metric = BinarySegMetric(threshold=thr)
        metric.process({}, [dict(pred_prob=p_, gt_mask=g) for p_, g in zip(preds, gts)])
        out = metric.compute_metrics(metric.results)
        assert out['dsc'] == pytest.approx(2 * tp / (2 * tp + fp + fn))
        assert out['miou'] == pytest.approx(tp / (tp + fp + fn))


def test_isic_layout_dataset(tmp_path):
    from PIL import Image

    from zoo.lesion_seg import ISICSegDataset

    for sub in ('images', 'masks'):
        (tmp_path / 'train' / sub).mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((40, 50, 3), 60 + i, np.uint8)).save(tmp_path / 'train' / 'images' / f'ISIC_{i}.png')
        m = np.zeros((40, 50), np.uint8)
        m[10:20, 10:30] = 255
        Image.fromarray(m).save(tmp_path / 'train' / 'masks' / f'ISIC_{i}_segmentation.png')
    ds = ISICSegDataset(str(tmp_path), split='train', img_size=32, augment=True)
    item = ds[1]
    assert item['inputs'].shape == (3, 32, 32) and item['data_samples']['gt_mask'].shape == (1, 32, 32)
    assert set(item['data_samples']['gt_mask'].unique().tolist()) <= {0.0, 1.0}
    (tmp_path / 'train' / 'masks' / 'ISIC_1_segmentation.png').unlink()
    with pytest.raises(ValueError, match='data_root: 2 images but 1 masks'):
        ISICSegDataset(str(tmp_path), split='train')


def _dice(runner, cfg) -> float:
    from zoo.lesion_seg import BinarySegMetric

    metric = BinarySegMetric()
    runner.model.eval()
    with torch.no_grad():
        for batch in _build_dataloader(cfg.val_dataloader):
            metric.process(batch, runner.model.val_step(batch))
    return metric.compute_metrics(metric.results)['dsc']


def _build_dataloader(cfg):
    from mmengine.runner import Runner

    return Runner.build_dataloader(cfg)


@pytest.mark.slow
def test_tiny_synthetic_training_raises_dice_and_writes_overlays(tmp_path, one_thread):
    from mmengine.runner import Runner

    from zoo.engine.config import apply_runtime_options, load_config
    from zoo.engine.patches import apply_patches

    apply_patches()  # as tools/train.py does before it builds the Runner
    cfg = load_config(CONFIG, {'custom_hooks': [dict(type='SegOverlayHook', max_images=4)]})
    cfg = apply_runtime_options(cfg, str(tmp_path), CONFIG)
    cfg.visualizer = dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')])
    runner = Runner.from_cfg(cfg)
    before = _dice(runner, cfg)
    runner.train()
    after = runner.test()['seg/dsc']
    # the trivial predictor (every pixel lesion) scores DSC 2F / (F + N) on the test split
    test_set = _build_dataloader(cfg.test_dataloader).dataset
    masks = [test_set[i]['data_samples']['gt_mask'] >= 0.5 for i in range(len(test_set))]
    fg, n = sum(int(m.sum()) for m in masks), sum(m.numel() for m in masks)
    trivial = 2 * fg / (fg + n)
    assert after > before + 0.25 and after > trivial + 0.2, (before, after, trivial)
    pngs = sorted(os.listdir(tmp_path / 'overlays'))
    assert len(pngs) == 4 and pngs[0].endswith('.png')
