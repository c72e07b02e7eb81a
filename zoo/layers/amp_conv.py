"""Depthwise convolutions on feature maps no larger than their kernel: cheaper, and trained in float32 under CPU
bfloat16 autocast, where that is faster.

Two measured reasons (this AMD EPYC with AVX-512 BF16 and no AMX, 1 thread, forward + backward):

* oneDNN's bfloat16 depthwise-convolution *backward* is slow when the map is no larger than the kernel (a 7 x 7
  kernel on the 4 x 4 .. 1 x 1 maps of 32 px inputs, a 3 x 3 kernel on 2 x 2 / 1 x 1 maps). bfloat16 vs float32 on
  the same bfloat16 input: (64, 192, 2 x 2, k7) 5.9 vs 2.3 ms, (64, 288, 1 x 1, k7) 8.2 vs 1.7 ms, (64, 96, 4 x 4,
  k7) 4.3 vs 2.8 ms, (32, 288, 7 x 7, k7) 16.3 vs 12.1 ms, (64, 320, 2 x 2, k3) 5.8 vs 1.6 ms. On larger maps the
  two are within noise of each other (56 x 56 .. 14 x 14 at 224 px), and inference (no backward) is faster in
  bfloat16 everywhere (the casts cost more than the convolution), so only a training step on a small map runs in
  float32.
* on a map smaller than the kernel's reach most taps only ever meet the zero padding; dropping them gives the same
  result for less (a 7 x 7 kernel on a 1 x 1 map is a per-channel scale: 0.3 vs 1.5 ms float32, 0.5 vs 8.1 ms
  bfloat16 at (64, 288)).

:class:`SmallGridDepthwiseConv2d` is an ``nn.Conv2d`` (same parameters, state-dict keys and results);
:func:`small_grid_depthwise_convs` swaps it in for the depthwise convolutions of a built model (timm's MambaOut
blocks: the training wrapper ``TimmClassifier``, MEDUSA's trunk and the benchmark's model builder call it; the zoo's
own layers build it directly). Nothing changes at 224 px inputs (the smallest maps, 7 x 7, do not reach below a 7 x 7
kernel's reach) except that a bf16-autocast training step runs the 7 x 7 maps' depthwise convs in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_module
from torch import nn

__all__ = ['SmallGridDepthwiseConv2d', 'small_grid_depthwise_convs']


def _float32_wanted(x: torch.Tensor, kernel_size: tuple[int, ...]) -> bool:
    """A CPU bfloat16-autocast training step (autograd on) on a map no larger than the kernel."""
    return (
        x.device.type == 'cpu'
        and torch.is_autocast_enabled('cpu')
        and torch.get_autocast_dtype('cpu') == torch.bfloat16
        and torch.is_grad_enabled()
        and x.shape[-2] <= kernel_size[0]
        and x.shape[-1] <= kernel_size[1]
    )


@register_notrace_module  # FX: one leaf (the float32 choice reads the autocast and autograd state)
class SmallGridDepthwiseConv2d(nn.Conv2d):
    """A depthwise ``nn.Conv2d`` (stride 1, 'same' zero padding, one filter per channel) with two changes for
    maps no larger than its kernel, both in eager mode only (a scripted model runs the plain convolution):

    * the taps that can only ever meet the zero padding are dropped (a 7 x 7 kernel on a 2 x 2 map is its central
      3 x 3, on a 1 x 1 map a per-channel scale): the same products and sums, so the same values and gradients
      (the dropped taps' gradients are zeros either way), at a fraction of the cost
      (fwd + bwd, (64, 288, 1 x 1, k7): 0.3 vs 1.5 ms float32, 0.5 vs 8.1 ms bfloat16);
    * in a CPU bfloat16-autocast training step it runs in float32 (autocast off, bfloat16 output, the dtype
      autocast's convolution gives), where oneDNN's bfloat16 depthwise backward is slow (module docstring).

    Everywhere else it is ``nn.Conv2d``. Input ``(B, C, H, W)``, output ``(B, C, H, W)``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # the autocast state is not scriptable: a scripted model runs the plain conv
            return self._conv_forward(x, self.weight, self.bias)
        return self._eager_forward(x)

    @torch.jit.unused
    def _eager_forward(self, x: torch.Tensor) -> torch.Tensor:
        float32 = _float32_wanted(x, self.kernel_size)
        H, W = x.shape[-2:]
        ch, cw = self.kernel_size[0] // 2, self.kernel_size[1] // 2
        rh, rw = min(ch, H - 1), min(cw, W - 1)  # the reach of the taps that can meet the map
        if not float32 and (rh, rw) == (ch, cw):
            return self._conv_forward(x, self.weight, self.bias)
        if float32:
            dtype = torch.float32
        elif torch.is_autocast_enabled(x.device.type):
            dtype = torch.get_autocast_dtype(x.device.type)
        else:
            dtype = x.dtype
        weight = self.weight[:, :, ch - rh : ch + rh + 1, cw - rw : cw + rw + 1].to(dtype)
        bias = None if self.bias is None else self.bias.to(dtype)
        with torch.autocast(x.device.type, enabled=False):
            if (rh, rw) == (0, 0):  # a 1 x 1 map: the centre tap scales each channel
                y = x.to(dtype) * weight.reshape(1, -1, 1, 1)
                y = y if bias is None else y + bias.reshape(1, -1, 1, 1)
            else:
                y = F.conv2d(x.to(dtype), weight, bias, 1, (rh, rw), 1, self.groups)
        return y.to(torch.bfloat16) if float32 else y


def _is_depthwise(m: nn.Module) -> bool:
    """A plain ``nn.Conv2d``, one odd-sized filter per channel, stride 1, 'same' zero padding."""
    return (
        type(m) is nn.Conv2d
        and m.groups > 1
        and m.groups == m.in_channels == m.out_channels
        and m.padding_mode == 'zeros'
        and max(m.kernel_size) > 1
        and all(k % 2 == 1 for k in m.kernel_size)
        and tuple(m.stride) == (1, 1)
        and tuple(m.dilation) == (1, 1)
        and tuple(m.padding) == (m.kernel_size[0] // 2, m.kernel_size[1] // 2)
    )


def small_grid_depthwise_convs(model: nn.Module) -> int:
    """Make every plain depthwise ``nn.Conv2d`` of ``model`` a :class:`SmallGridDepthwiseConv2d`, in place (the
    same module object and parameters: only its class changes, so hooks, state-dict keys and optimizer references
    stay valid).

    Returns:
        the number of convolutions changed.
    """
    n = 0
    for m in model.modules():
        if _is_depthwise(m):
            m.__class__ = SmallGridDepthwiseConv2d
            n += 1
    return n
