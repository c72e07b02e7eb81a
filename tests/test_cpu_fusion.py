"""The fused float32 CPU inference path (``zoo.layers.cpu_fusion``): the oneDNN linear + bias / GELU kernels give
the plain ops' results, are taken only in eager float32 CPU inference, and everything else (autograd, autocast,
meta tensors, FX, TorchScript, FLOP counting) runs the plain ops."""

from __future__ import annotations

import contextlib

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch.utils.flop_counter import FlopCounterMode

import zoo  # noqa: F401  (registers the models)
from zoo.layers.agent_attention import AgentAttention
from zoo.layers.cpu_fusion import FusedMlp, fused_linear_ok, linear_bias, linear_gelu, linear_split

pytestmark = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(), reason='the fused path needs PyTorch built with oneDNN'
)


@contextlib.contextmanager
def _onednn_off():
    """oneDNN off (the plain path; ``torch.backends.mkldnn.flags`` would also touch the TF32 setting)."""
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = True


def _randomize(module: torch.nn.Module, scale: float = 0.3) -> None:
    with torch.no_grad():
        for prm in module.parameters():
            prm.copy_(torch.randn_like(prm) * scale)


def test_fused_linear_ops_equal_the_plain_ops() -> None:
    torch.manual_seed(0)
    lin = torch.nn.Linear(24, 36)
    x = torch.randn(2, 50, 24)
    with torch.inference_mode():
        assert fused_linear_ok(x, lin.weight)
        torch.testing.assert_close(linear_bias(lin, x), F.linear(x, lin.weight, lin.bias))
        torch.testing.assert_close(linear_gelu(lin, x), F.gelu(F.linear(x, lin.weight, lin.bias)))
        for got, ref in zip(linear_split(lin, x, [12, 24]), F.linear(x, lin.weight, lin.bias).split([12, 24], -1)):
            assert got.is_contiguous()
            torch.testing.assert_close(got, ref)


def test_fused_path_is_only_taken_in_eager_float32_cpu_inference() -> None:
    lin = torch.nn.Linear(8, 8)
    x = torch.randn(3, 8)
    assert not fused_linear_ok(x, lin.weight)  # autograd on, the weight needs a gradient
    with torch.no_grad():
        assert fused_linear_ok(x, lin.weight)
        assert not fused_linear_ok(x.double(), lin.double().weight)
        assert not fused_linear_ok(x.to('meta'), lin.weight.to('meta'))
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert not fused_linear_ok(x, lin.weight)
        with FlopCounterMode(display=False):
            assert not fused_linear_ok(x, lin.weight)
        with _onednn_off():
            assert not fused_linear_ok(x, lin.weight)
    hooked = torch.nn.Linear(8, 8)
    seen = []
    hooked.register_forward_hook(lambda *args: seen.append(1))
    with torch.no_grad():
        linear_bias(hooked, x)
    assert seen == [1]  # a hooked layer runs as a module call


@pytest.mark.filterwarnings('ignore:`torch.jit.script` is deprecated:FutureWarning')
def test_fused_mlp_equals_timm_mlp_and_falls_back(one_thread) -> None:
    torch.manual_seed(0)
    mlp = FusedMlp(16, 64)
    _randomize(mlp)
    mlp.chunk_elems = 64 * 7  # one thread: chunks of 7 tokens, several and a ragged last one
    timm_mlp = Mlp(16, 64)
    timm_mlp.load_state_dict(mlp.state_dict())
    x, shortcut = torch.randn(2, 30, 16), torch.randn(2, 30, 16)
    ref = timm_mlp(x).detach()
    with torch.inference_mode():
        assert mlp._fusable(x)
        torch.testing.assert_close(mlp(x), ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(mlp(x, shortcut=shortcut), shortcut + ref, rtol=1e-5, atol=1e-5)
    # autograd: the plain path, with gradients
    xg = x.clone().requires_grad_()
    assert not mlp._fusable(xg)
    mlp(xg, shortcut=shortcut).square().sum().backward()
    assert xg.grad is not None and mlp.fc1.weight.grad is not None
    # FX traces the plain ops; TorchScript compiles the plain forward
    gm = torch.fx.symbolic_trace(mlp.eval(), concrete_args={'shortcut': None})
    assert 'mkldnn' not in gm.code
    torch.testing.assert_close(gm(x), ref, rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(mlp)(x), ref, rtol=1e-5, atol=1e-5)
    # the meta device
    assert FusedMlp(16, 64, device='meta')(x.to('meta')).shape == x.shape


@pytest.mark.parametrize('separate_q,prefix', [(True, 0), (False, 0), (False, 1)])
def test_agent_attention_fused_equals_plain(separate_q: bool, prefix: int) -> None:
    """The fused CPU path (separate q / k / v GEMMs with the bias inside, dense channels-last DWC input) against
    the plain ops (oneDNN switched off), at the built grid and a resized one."""
    torch.manual_seed(0)
    m = AgentAttention(
        24, num_heads=3, agent_num=9, window_size=(8, 8), separate_q=separate_q, num_prefix_tokens=prefix
    ).eval()
    _randomize(m)
    for hw in ((8, 8), (10, 6)):
        x = torch.randn(2, prefix + hw[0] * hw[1], 24)
        with torch.inference_mode():
            fused = m(x, hw)
            with _onednn_off():
                plain = m(x, hw)
        torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)


def test_agent_pvt_fused_inference_equals_plain_and_training_has_gradients() -> None:
    torch.manual_seed(0)
    kw = dict(embed_dims=(16, 32, 40, 64), depths=(1, 1, 1, 1), num_classes=10)
    model = timm.create_model('agent_pvt_tiny', img_size=64, **kw)
    _randomize(model, 0.05)
    model.eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.inference_mode():
        fused = model(x)
        with _onednn_off():
            plain = model(x)
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-5)
    # with autograd the plain path runs; its gradients match float64's
    ref = timm.create_model('agent_pvt_tiny', img_size=64, **kw).double().eval()
    ref.load_state_dict(model.state_dict())
    out = model(x)
    torch.testing.assert_close(out, fused, rtol=1e-4, atol=1e-5)
    out.square().sum().backward()
    ref(x.double()).square().sum().backward()
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad.double(), q.grad, rtol=1e-3, atol=1e-5, msg=name)


def test_flop_count_sees_the_plain_ops() -> None:
    """FLOP counting (a dispatch mode) runs the plain ops, so the linears are counted."""
    model = timm.create_model('agent_pvt_tiny', img_size=64, embed_dims=(16, 32, 40, 64), depths=(1, 1, 1, 1)).eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, 64, 64))
    assert counter.get_flop_counts()['Global'].get(torch.ops.aten.addmm, 0) > 0
