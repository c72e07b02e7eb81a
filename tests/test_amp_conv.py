"""zoo.layers.amp_conv: SmallGridDepthwiseConv2d is nn.Conv2d (values and gradients) on every map size, also
where it drops the taps that only meet the padding; under bf16 autocast training on small maps it runs as a bf16
product with the convolution matrix where the map is dense in the kernel's taps, elsewhere on maps no larger than the
kernel in float32, and hands back bfloat16; the tap matrix is the convolution; small_grid_depthwise_convs swaps only
plain depthwise convs and keeps the state dict; the swapped MambaOut keeps its bf16 logits within
test_fast_inference's tolerance and trains with finite gradients. No timing here (the measured reasons are in the
module docstring)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

import zoo  # noqa: F401
from zoo.layers import SmallGridDepthwiseConv2d, bf16_autocast, small_grid_depthwise_convs
from zoo.layers.amp_conv import MATRIX_MAX_PIXELS, _depthwise_as_matrix

sys.path.insert(0, str(Path(__file__).parent))
from test_fast_inference import BF16_TOL  # noqa: E402

# maps smaller than, equal to and larger than the kernel's reach, square and not
MAPS = [(1, 1), (2, 2), (3, 3), (4, 4), (7, 7), (8, 8), (1, 5), (2, 9)]


def _pair(kernel: int, bias: bool = True) -> tuple[nn.Conv2d, SmallGridDepthwiseConv2d]:
    torch.manual_seed(0)
    ref = nn.Conv2d(6, 6, kernel, padding=kernel // 2, groups=6, bias=bias)
    new = SmallGridDepthwiseConv2d(6, 6, kernel, padding=kernel // 2, groups=6, bias=bias)
    new.load_state_dict(ref.state_dict())
    return ref, new


def _grads(conv: nn.Conv2d, x: torch.Tensor, g: torch.Tensor, amp: bool = False) -> tuple[torch.Tensor, ...]:
    conv.zero_grad()
    x = x.clone().requires_grad_(True)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp):
        y = conv(x)
    y.backward(g.to(y.dtype))
    extra = () if conv.bias is None else (conv.bias.grad,)
    return (y, x.grad, conv.weight.grad, *extra)


@pytest.mark.parametrize('bias', [True, False])
@pytest.mark.parametrize('kernel', [3, 7])
@pytest.mark.parametrize('hw', MAPS)
def test_values_and_gradients_equal_nn_conv2d(hw: tuple[int, int], kernel: int, bias: bool) -> None:
    ref, new = _pair(kernel, bias)
    x = torch.randn(3, 6, *hw)
    g = torch.randn(3, 6, *hw)
    for a, b in zip(_grads(new, x, g), _grads(ref, x, g)):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(new(x), ref(x), rtol=1e-6, atol=1e-6)


def _route(hw: tuple[int, int], kernel: int) -> str:
    """What a bf16-autocast training step on this map takes: 'matrix' (1 < H*W <= min(64, 2 * the taps that can
    meet the map)), 'float32' (a map no larger than the kernel) or 'bf16' (autocast's conv)."""
    r = kernel // 2
    taps = (2 * min(r, hw[0] - 1) + 1) * (2 * min(r, hw[1] - 1) + 1)
    if 1 < hw[0] * hw[1] <= min(MATRIX_MAX_PIXELS, 2 * taps):
        return 'matrix'
    return 'float32' if hw[0] <= kernel and hw[1] <= kernel else 'bf16'


def test_routes_cover_the_digits_maps() -> None:
    """MambaOut at 32 px: 7 x 7 kernels on 8 x 8 .. 2 x 2 maps take the matrix, the 1 x 1 map the float32 scale;
    Agent attention's 3 x 3 on 4 x 4 / 2 x 2 the matrix, on 8 x 8 (7x the products) autocast's conv."""
    assert [_route((s, s), 7) for s in (8, 4, 2, 1)] == ['matrix', 'matrix', 'matrix', 'float32']
    assert [_route((s, s), 3) for s in (8, 4, 2, 1)] == ['bf16', 'matrix', 'matrix', 'float32']
    assert _route((16, 16), 7) == 'bf16'


@pytest.mark.parametrize('hw', [(8, 8), (4, 4), (2, 2), (1, 5), (3, 5), (2, 9), (6, 7)])
@pytest.mark.parametrize('kernel', [3, 5, 7])
def test_tap_matrix_is_the_convolution(hw: tuple[int, int], kernel: int) -> None:
    torch.manual_seed(0)
    x, w, b = torch.randn(3, 5, *hw), torch.randn(5, 1, kernel, kernel), torch.randn(5)
    ref = nn.functional.conv2d(x, w, b, 1, kernel // 2, 1, 5)
    r, (rh, rw) = kernel // 2, (min(kernel // 2, hw[0] - 1), min(kernel // 2, hw[1] - 1))
    crop = w[:, :, r - rh : r + rh + 1, r - rw : r + rw + 1]
    for inp in (x, x.to(memory_format=torch.channels_last), x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)):
        torch.testing.assert_close(_depthwise_as_matrix(inp, crop, b), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('kernel', [3, 7])
@pytest.mark.parametrize('hw', MAPS)
def test_bf16_autocast_training(hw: tuple[int, int], kernel: int) -> None:
    """bfloat16 out (what autocast's conv gives); on maps no larger than the kernel and outside the matrix route
    computed in float32 (so within float32 rounding of the float32 conv, before the final bfloat16 rounding),
    elsewhere (the matrix product or autocast's conv) within bfloat16 rounding of it."""
    ref, new = _pair(kernel)
    x = torch.randn(3, 6, *hw).bfloat16().float()  # exact in bf16: both routes see the same input
    g = torch.randn(3, 6, *hw)
    got = _grads(new, x, g, amp=True)
    assert got[0].dtype == torch.bfloat16
    assert all(t.isfinite().all() for t in got)
    route = _route(hw, kernel)
    if route == 'float32':
        want = _grads(ref, x, g.bfloat16().float())
        torch.testing.assert_close(got[0], want[0].bfloat16(), rtol=0, atol=0)
    else:
        want = _grads(ref, x, g.bfloat16().float() if route == 'matrix' else g, amp=route == 'bf16')
        torch.testing.assert_close(got[0].float(), want[0].float(), rtol=2e-2, atol=5e-2)
    exact = route == 'float32'
    for a, b in zip(got[1:], want[1:]):
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-5 if exact else 2e-2, atol=1e-5 if exact else 5e-2)
    with torch.no_grad(), bf16_autocast():  # inference: bf16 throughout
        assert new(x).dtype == torch.bfloat16


def test_swap_keeps_parameters_and_skips_other_convs() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(4, 4, 7, padding=3, groups=4),  # depthwise, 'same': swapped
        nn.Conv2d(4, 8, 3, padding=1),  # dense
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8),  # strided
        nn.Conv2d(8, 16, 3, padding=1, groups=8),  # channel multiplier 2
        nn.Conv2d(16, 16, 1, groups=16),  # 1 x 1
    )
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    params = list(model.parameters())
    assert small_grid_depthwise_convs(model) == 1
    assert type(model[0]) is SmallGridDepthwiseConv2d and all(type(m) is nn.Conv2d for m in model[1:])
    assert list(model.parameters()) == params  # the same tensors: optimizers built before the swap stay valid
    assert all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())


@pytest.mark.parametrize('name', ['mambaout_femto', 'medusa_mambaout_femto'])
def test_swapped_mambaout_bf16_logits_and_finite_gradients(one_thread, name: str) -> None:
    """32 px (the digits configs): stages at 8, 4, 2, 1 px, the last three smaller than the 7 x 7 kernel."""
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10, **({} if name == 'mambaout_femto' else dict(img_size=32)))
    swapped = small_grid_depthwise_convs(model)
    assert swapped == (18 if name == 'mambaout_femto' else 0)  # MEDUSA swaps its trunk's at build time
    assert sum(type(m) is SmallGridDepthwiseConv2d for m in model.modules()) == 18
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.inference_mode():
        ref = model(x)
        with bf16_autocast():
            out = model(x)
    rel = ((out.float() - ref).abs().max() / ref.abs().max()).item()
    assert rel <= BF16_TOL['mambaout']
    model.train()
    with bf16_autocast():
        loss = nn.functional.cross_entropy(model(x).float(), torch.arange(8) % 10)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and g.isfinite().all() for g in grads)
