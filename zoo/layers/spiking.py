"""Spiking building blocks in pure PyTorch (no CuPy, no spikingjelly).

* :class:`MultiSpike` -- the integer-train / spike-infer neuron of QSD-Transformer (IE-LIF, "Multispike"):
  ``s = round(clamp(D * u, 0, D)) / norm`` with a straight-through gradient inside ``0 < D * u < D``.
  ``D`` (``levels``) is the number of virtual time steps; ``norm`` is ``D`` for ordinary neurons and
  ``D / 2`` for the attention neuron (``Multispike_att``: levels {0, 0.5, ..., 2}).
  With ``binary=True`` (see :func:`set_spike_driven`) every integer count ``k`` is emitted as ``k``
  binary spikes over ``D`` virtual steps and the synaptic layers integrate those planes one by one
  (:func:`integrate`), so the network runs on {0, 1} inputs only.
* :class:`MultiStepLIF` -- binary leaky integrate-and-fire over ``T`` steps for SDT v1/v2
  (spikingjelly 0.0.0.0.12 ``MultiStepLIFNode`` semantics: decay_input charge, hard reset to
  ``v_reset``, detached reset, sigmoid surrogate with alpha 4).
* LSQ weight quantisers :class:`Conv2dLSQ`, :class:`Conv1dLSQ`, :class:`LinearLSQ` (per-output-channel
  learned step ``alpha``, initialised from the weights on the first training batch, gradient scale
  ``1 / sqrt(numel * Qp)``), and :class:`ActLSQ`, the inert activation quantiser of the official code,
  whose tensors are kept as buffers only so official checkpoints load strictly.
* :class:`RepConv` and :class:`BNAndPad` -- the re-parameterisable conv of Meta-SpikeFormer.

Tensors inside spiking networks are ``(T * B, C, ...)``: time folded into batch, so every conv runs
once per call; only :class:`MultiStepLIF` unfolds ``T`` (its membrane carries state over time).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import register_notrace_function, register_notrace_module
from torch.utils.weak import WeakIdKeyDictionary

__all__ = [
    'MultiSpike',
    'MultiStepLIF',
    'ActLSQ',
    'Conv2dLSQ',
    'Conv1dLSQ',
    'LinearLSQ',
    'lsq_quantize',
    'BNAndPad',
    'RepConv',
    'integrate',
    'synapse',
    'set_spike_driven',
    'is_spiking_neuron',
]


# ----------------------------------------------------------------------------------------------
# Multi-spike (integer) neuron
# ----------------------------------------------------------------------------------------------
class _MultiSpikeFn(torch.autograd.Function):
    """``round(clamp(x, 0, D))`` (round half up) with a rectangular straight-through gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, levels: int) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.levels = levels
        return torch.floor(x.clamp(0, levels) + 0.5)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        # Gradient flows only where the neuron is neither silent nor saturated.
        return grad * ((x > 0) & (x < ctx.levels)).to(grad.dtype), None


@register_notrace_module  # FX: one leaf (custom-gradient spike function)
class MultiSpike(nn.Module):
    """Integer-valued spiking neuron (QSD's IE-LIF / ``Multispike``), stateless over time.

    Args:
        levels: ``D``, the largest spike count (= virtual time steps at spike-driven inference).
        norm: output scale; the emitted value is ``k / norm`` with ``k`` in ``0..levels``.
            ``levels`` gives {0, 1/D, ..., 1} (ordinary neurons), ``levels / 2`` the attention variant.

    Shapes: any ``(N, ...)`` in, same shape out (``k / norm``). With ``binary`` set,
    :meth:`spike_planes` gives the ``(levels * N, ...)`` {0, 1} planes used by :func:`integrate`.
    """

    def __init__(self, levels: int = 4, norm: float | None = None) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f'levels must be >= 1, got {levels}')
        self.levels = int(levels)
        self.norm = float(levels if norm is None else norm)
        self.binary = False  # spike-driven inference switch (set_spike_driven)

    def count(self, x: torch.Tensor) -> torch.Tensor:
        """Integer spike counts ``k`` in ``0..levels`` (``x``'s dtype), differentiable by STE.

        The threshold comparison runs in float32 (at least), so bfloat16 inputs (``--bf16``) fire where their
        float32 values would: ``x * levels`` rounded to bfloat16 could cross a ``k + 1/2`` threshold. The
        counts and ``k / norm`` are exact in bfloat16 for the zoo's levels.
        """
        xf = x if x.dtype in (torch.float32, torch.float64) else x.float()
        return _MultiSpikeFn.apply(xf * self.levels, self.levels).to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.count(x) / self.norm

    def spike_planes(self, x: torch.Tensor) -> torch.Tensor:
        """Binary spikes over the ``levels`` virtual steps, folded into dim 0: ``(levels * N, ...)``.

        Plane ``d`` fires where ``k > d``, so the planes sum to ``k``: a count of ``k`` is ``k``
        binary spikes (first-come order; the order does not matter for the linear layers after it).
        """
        k = self.count(x)
        steps = torch.arange(self.levels, device=x.device, dtype=k.dtype).view(-1, *([1] * k.ndim))
        return (k.unsqueeze(0) > steps).to(k.dtype).flatten(0, 1)

    def extra_repr(self) -> str:
        return f'levels={self.levels}, norm={self.norm:g}, binary={self.binary}'


# ----------------------------------------------------------------------------------------------
# Binary multi-step LIF (SDT v1 / v2)
# ----------------------------------------------------------------------------------------------
class _HeavisideSigmoid(torch.autograd.Function):
    """Heaviside ``x >= 0`` forward, sigmoid-surrogate gradient ``a * s * (1 - s)`` with ``s = sig(a x)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(ctx.alpha * x)
        return grad * ctx.alpha * s * (1 - s), None


@register_notrace_module  # FX: one leaf (custom-gradient spike function, T check)
class MultiStepLIF(nn.Module):
    """Binary LIF neuron over ``T`` time steps (spikingjelly ``MultiStepLIFNode``, torch backend).

    Per step: ``v = v + (x - (v - v_reset)) / tau``; spike ``s = [v >= v_threshold]``; hard reset
    ``v = s * v_reset + (1 - s) * v`` (``s`` detached when ``detach_reset``). ``v`` starts at
    ``v_reset`` for every call, so no state leaks between batches (no ``reset_net`` needed).

    Args:
        T: time steps folded into dim 0 of the input (``(T * B, ...)``); set by the model.
        tau, v_threshold, v_reset, detach_reset: LIF constants (SDT: 2.0, 1.0 / 0.5, 0.0, True).
        surrogate_alpha: slope of the sigmoid surrogate gradient (spikingjelly default 4).
    """

    def __init__(
        self,
        T: int = 1,
        tau: float = 2.0,
        v_threshold: float = 1.0,
        v_reset: float = 0.0,
        detach_reset: bool = True,
        surrogate_alpha: float = 4.0,
    ) -> None:
        super().__init__()
        if tau <= 1.0:
            raise ValueError(f'tau must be > 1, got {tau}')
        self.T = T
        self.tau = tau
        self.v_threshold = v_threshold
        self.v_reset = v_reset
        self.detach_reset = detach_reset
        self.surrogate_alpha = surrogate_alpha
        self.levels, self.norm, self.binary = 1, 1.0, False  # binary already: a 1-level MultiSpike

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = self.T
        if x.shape[0] % T:
            raise ValueError(f'MultiStepLIF: dim 0 ({x.shape[0]}) must be T * B with T={T}')
        # the membrane potential and the threshold test run in float32 (at least) under --bf16 as well
        xs = x.unflatten(0, (T, -1))
        if x.dtype not in (torch.float32, torch.float64):
            xs = xs.float()
        if not (torch.is_grad_enabled() and xs.requires_grad):
            return self._forward_no_grad(xs).flatten(0, 1).to(x.dtype)
        v = torch.full_like(xs[0], self.v_reset)
        out = []
        for t in range(T):  # the membrane carries state over time: the loop over T is inherent
            v = v + (xs[t] - (v - self.v_reset)) / self.tau
            s = _HeavisideSigmoid.apply(v - self.v_threshold, self.surrogate_alpha)
            r = s.detach() if self.detach_reset else s
            v = r * self.v_reset + (1 - r) * v
            out.append(s)
        return torch.stack(out).flatten(0, 1).to(x.dtype)

    def _forward_no_grad(self, xs: torch.Tensor) -> torch.Tensor:
        """The same arithmetic without the autograd bookkeeping (3 passes a step instead of about 10): the first
        step starts from ``v_reset`` (``v_reset + x / tau``, as the update gives), ``v - thr >= 0`` is ``v >= thr``
        in floating point, and the hard reset with a 0 / 1 spike is a select. ``(T, B, ...)`` in and out."""
        spikes = []
        v = xs[0] / self.tau + self.v_reset
        for t in range(xs.shape[0]):
            if t:
                v = v + (xs[t] - (v - self.v_reset)) / self.tau
            spikes.append(v >= self.v_threshold)
            if t + 1 < xs.shape[0]:
                v = torch.where(spikes[-1], self.v_reset, v)
        return (spikes[0].unsqueeze(0) if len(spikes) == 1 else torch.stack(spikes)).to(xs.dtype)

    def count(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)

    def spike_planes(self, x: torch.Tensor) -> torch.Tensor:
        return self(x)

    def extra_repr(self) -> str:
        return f'T={self.T}, tau={self.tau}, v_threshold={self.v_threshold}, v_reset={self.v_reset}'


def is_spiking_neuron(m: nn.Module) -> bool:
    """True for the neurons of this module (used by hooks, e.g. ``tools/analysis/energy.py``)."""
    return isinstance(m, (MultiSpike, MultiStepLIF))


def set_spike_driven(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Switch every :class:`MultiSpike` of ``model`` to binary spike-driven inference (or back)."""
    for m in model.modules():
        if isinstance(m, MultiSpike):
            m.binary = enabled
    return model


def integrate(neuron: nn.Module, x: torch.Tensor, *ops: nn.Module) -> torch.Tensor:
    """``ops(neuron(x))`` for a chain of linear synaptic ops (conv / linear, bias on the last only).

    Integer mode: the ops see the integer spikes ``k / norm``. Binary mode (``neuron.binary``): the
    ops see the ``levels`` {0, 1} planes (one per virtual step); each op runs without bias, the
    membrane sums the planes, then ``1 / norm`` and the last op's bias are applied. By linearity
    both give the same result; the test suite checks it.
    """
    if not getattr(neuron, 'binary', False) or isinstance(neuron, MultiStepLIF):
        y = synapse(ops[0], neuron(x), neuron)
        for op in ops[1:]:
            y = op(y)
        return y
    y = neuron.spike_planes(x)
    for op in ops:
        y = _linear_no_bias(op, y)
    y = y.unflatten(0, (neuron.levels, -1)).sum(0) / neuron.norm
    bias = getattr(ops[-1], 'bias', None)
    if bias is not None:
        y = y + bias.view(-1, *([1] * (y.ndim - 2)))
    return y


def synapse(op: nn.Module, spikes: torch.Tensor, neuron: nn.Module) -> torch.Tensor:
    """``op(spikes)`` for the output ``spikes`` of ``neuron``, telling a quantised ``op`` (or :class:`RepConv`) that
    its input is ``k / norm`` with integer counts ``k``, so that it can multiply the counts exactly in ``--bf16``
    inference (:meth:`Conv2dLSQ.forward_counts`)."""
    if isinstance(neuron, MultiSpike) and isinstance(op, (_LSQMixin, RepConv)):
        return op(spikes, spike_norm=neuron.norm)
    return op(spikes)


def _linear_no_bias(op: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(op, _LSQMixin):
        return op.linear(x, op.quantized_weight(), None)
    if isinstance(op, nn.Linear):
        return F.linear(x, op.weight)
    if isinstance(op, (nn.Conv1d, nn.Conv2d)):
        return op._conv_forward(x, op.weight, None)
    raise TypeError(f'integrate: {type(op).__name__} is not a linear synaptic op')


# ----------------------------------------------------------------------------------------------
# LSQ weight quantisation
# ----------------------------------------------------------------------------------------------
def _grad_scale(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward, gradient multiplied by ``scale``."""
    return (x - x * scale).detach() + x * scale


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return (x.round() - x).detach() + x


def lsq_quantize(w: torch.Tensor, alpha: torch.Tensor, nbits: int) -> torch.Tensor:
    """LSQ fake quantisation ``round(clamp(w / alpha, Qn, Qp)) * alpha`` with per-row ``alpha``.

    Args:
        w: ``(C_out, ...)`` weights.
        alpha: ``(C_out,)`` positive steps.
        nbits: signed bit width (``Qn = -2^(b-1)``, ``Qp = 2^(b-1) - 1``).
    Gradients: straight-through for ``w`` inside the range; ``alpha`` gets the LSQ gradient scaled
    by ``g = 1 / sqrt(w.numel() * Qp)`` (the official code scales by the whole tensor's size).
    """
    levels, a = _lsq_levels(w, alpha, nbits)
    return (levels * a).to(w.dtype)


def _lsq_levels(w: torch.Tensor, alpha: torch.Tensor, nbits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The integer levels ``round(clamp(w / alpha, Qn, Qp))`` (straight-through) and the step, broadcastable."""
    qn, qp = -(2 ** (nbits - 1)), 2 ** (nbits - 1) - 1
    g = 1.0 / math.sqrt(w.numel() * qp)
    # the steps and the rounding in float32 (at least), whatever the weights' dtype; the result in w's dtype
    dtype = torch.promote_types(torch.promote_types(w.dtype, alpha.dtype), torch.float32)
    a = _grad_scale(alpha.to(dtype), g).view(-1, *([1] * (w.ndim - 1)))
    return _round_ste((w.to(dtype) / a).clamp(qn, qp)), a


class ActLSQ(nn.Module):
    """The official (commented-out) activation quantiser: an identity that only holds placeholders.

    ``alpha`` and ``zero_point`` (``(in_features,)``), ``init_state`` and ``signed`` are persistent
    buffers, not parameters: the official forward never uses them, so as parameters they would never
    receive a gradient. They keep the official state-dict keys, so QSD checkpoints load strictly.
    """

    def __init__(
        self,
        in_features: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.register_buffer('alpha', torch.ones(in_features, **dd))
        self.register_buffer('zero_point', torch.zeros(in_features, **dd))
        self.register_buffer('init_state', torch.zeros(1, **dd))
        self.register_buffer('signed', torch.zeros(1, **dd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


# ----------------------------------------------------------------------------------------------
# Exact integer synapses for --bf16 inference
# ----------------------------------------------------------------------------------------------
_INT8_OPS_OK = torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, 'qconv2d_pointwise')
# oneDNN's packed int8 weights per weight tensor (kept off the modules: deepcopy, pickling and state_dict never
# see the opaque tensors); an entry is rebuilt when the weight or the steps change.
_INT8_PACKS = WeakIdKeyDictionary()


def _is_gemm(weight: torch.Tensor, stride: list[int], padding: list[int], dilation: list[int], groups: int) -> bool:
    """A linear layer, or a 1x1 conv1d that is one (the 2-D 1x1 convs stay channels-last convolutions)."""
    if weight.ndim == 2:
        return True
    return weight.ndim == 3 and weight.shape[-1] == 1 and stride == [1] and padding == [0] and groups == 1


def _count_conv_layout(counts: torch.Tensor, weight: torch.Tensor, stride, padding, dilation) -> tuple[list, list]:
    """Shape and strides of the float32 output, in the layout the oneDNN ops return (channels-last convolutions)."""
    if weight.ndim == 2:
        shape = [*counts.shape[:-1], weight.shape[0]]
        return shape, [math.prod(shape[i + 1 :]) for i in range(len(shape))]
    n, o = counts.shape[0], weight.shape[0]
    spatial = [
        (size + 2 * p - d * (k - 1) - 1) // s + 1
        for size, k, s, p, d in zip(counts.shape[2:], weight.shape[2:], stride, padding, dilation)
    ]
    inner = o * math.prod(spatial)
    if len(spatial) == 2:
        return [n, o, *spatial], [inner, 1, spatial[1] * o, o]
    return [n, o, *spatial], [inner, 1, o]


def _count_conv(
    counts: torch.Tensor,
    weight: torch.Tensor,
    alpha: torch.Tensor,
    bias: torch.Tensor | None,
    nbits: int,
    scale: float,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
) -> torch.Tensor:
    """An LSQ layer on spike counts, exactly: ``conv(counts * scale, lsq_quantize(weight, alpha, nbits)) + bias``.

    Spike counts and the weight levels are integers, so oneDNN's int8 kernels sum their products exactly (int32);
    the steps (``alpha``, ``scale``) and the bias are applied once, in float32. The result is the float32 layer
    up to float32 rounding (which the float32 layer applies to every partial sum), at about 4x its speed on CPUs
    with AVX-512 VNNI. Inference only (no autograd); a custom op, so torch.compile keeps it whole.

    Args:
        counts: uint8 counts ``(N, C, H, W)`` (channels-last is fastest), ``(N, C, L)`` or ``(..., C)`` (linear).
        weight, alpha, bias: the layer's float weight ``(O, C / groups, ...)``, steps ``(O,)``, bias ``(O,)``.
        stride, padding, dilation, groups: the convolution's (empty lists and 1 for a linear layer).
    Returns: float32 ``(N, O, H', W')`` channels-last, ``(N, O, L')`` or ``(..., O)``.
    """
    gemm = _is_gemm(weight, stride, padding, dilation, groups)
    key = (weight._version, weight.data_ptr(), alpha._version, alpha.data_ptr(), scale, nbits)
    hit = _INT8_PACKS.get(weight)
    if hit is None or hit[0] != key:
        levels, steps = _lsq_levels(weight.detach(), alpha.detach(), nbits)
        levels, steps = levels.to(torch.int8), steps.flatten().float()  # oneDNN scales the sums by scale * steps
        if gemm:
            packed = torch.ops.onednn.qlinear_prepack(levels.flatten(1), None)
        else:
            packed = torch.ops.onednn.qconv_prepack(levels, steps, scale, 0, stride, padding, dilation, groups, None)
        hit = _INT8_PACKS[weight] = (key, packed, steps, torch.zeros(steps.shape[0], dtype=torch.long))
    _, packed, steps, zero = hit
    b = None if bias is None else bias.float()
    if gemm:
        rows = counts.movedim(1, -1) if weight.ndim == 3 else counts  # conv1d: (N, L, C) rows
        rows = rows.contiguous()
        y = torch.ops.onednn.qlinear_pointwise(
            rows.flatten(0, -2), scale, 0, packed, steps, zero, b, 1.0, 0, torch.float32, 'none', [], ''
        ).unflatten(0, rows.shape[:-1])
        return y.movedim(-1, 1) if weight.ndim == 3 else y
    conv = torch.ops.onednn.qconv2d_pointwise if counts.ndim == 4 else torch.ops.onednn.qconv1d_pointwise
    y = conv(counts, scale, 0, packed, steps, zero, b, stride, padding, dilation, groups, 1.0, 0, torch.float32,
             'none', [], '')  # fmt: skip
    shape, strides = _count_conv_layout(counts, weight, stride, padding, dilation)
    return y if list(y.stride()) == strides else torch.empty_strided(shape, strides).copy_(y)


# A custom op for torch.compile (one opaque node, no graph break); eager calls skip its dispatcher overhead.
lsq_count_conv = torch.library.custom_op('zoo::lsq_count_conv', _count_conv, mutates_args=())


@lsq_count_conv.register_fake
def _(counts, weight, alpha, bias, nbits, scale, stride, padding, dilation, groups) -> torch.Tensor:
    shape, strides = _count_conv_layout(counts, weight, stride, padding, dilation)
    return counts.new_empty_strided(shape, strides, dtype=torch.float32)


class _LSQMixin:
    """Shared LSQ logic for conv/linear layers. ``nbits=None`` keeps full-precision weights."""

    weight: torch.Tensor
    nbits: int | None

    def _init_lsq(self, nbits: int | None, in_features: int, act_placeholder: bool, **dd: Any) -> None:
        self.nbits = nbits
        out = self.weight.shape[0]
        if nbits is None:
            self.register_parameter('alpha', None)
        else:
            if nbits < 2:
                raise ValueError(f'nbits must be >= 2 (signed LSQ), got {nbits}')
            self.alpha = nn.Parameter(torch.ones(out, **dd))
            self.register_buffer('init_state', torch.zeros(1, **dd))
            self.reset_alpha()
        self.act = ActLSQ(in_features, **dd) if act_placeholder else None

    @torch.no_grad()
    def reset_alpha(self) -> None:
        """Official LSQ init: ``2 * mean|w| / sqrt(Qp)`` (one value over the tensor, for every channel)."""
        if self.alpha is not None and self.weight.device.type != 'meta':
            qp = 2 ** (self.nbits - 1) - 1
            self.alpha.fill_(float(2 * self.weight.abs().mean() / math.sqrt(qp)))

    def quantized_weight(self) -> torch.Tensor:
        if self.alpha is None:
            return self.weight
        if self.training and self.init_state.item() == 0:
            # First training batch: take the step from the (possibly re-initialised or loaded) weights.
            self.reset_alpha()
            self.init_state.fill_(1)
        return lsq_quantize(self.weight, self.alpha, self.nbits)

    def forward(self, x: torch.Tensor, spike_norm: float | None = None) -> torch.Tensor:
        """``spike_norm``: ``x`` is a multi-spike neuron's output ``k / spike_norm`` (integer counts ``k``)."""
        if self.alpha is not None and not self.training and torch.is_autocast_enabled(x.device.type):
            # Inference under autocast (--bf16): never bfloat16. The outputs feed multi-level spike thresholds, and
            # bfloat16's rounding of the pre-activation (0.4%) flips spike counts, which compound through the depth
            # (an initialised QSD-15M at 32 px: relative L2 error of the features 0.66 with bfloat16 convolutions).
            # Spike counts are multiplied exactly in int8 / int32 instead; other inputs run in float32. (Training
            # under --amp follows autocast, as the official recipe trains under CUDA AMP: engine_finetune.py.)
            if not torch.jit.is_scripting():
                if spike_norm is not None and self._counts_ok(x):
                    return self.forward_counts((x * spike_norm).round(), 1.0 / spike_norm)
            with torch.autocast(x.device.type, enabled=False):
                return self.linear(x.float(), self.quantized_weight(), self.bias)
        return self.linear(x, self.quantized_weight(), self.bias)

    def _counts_ok(self, x: torch.Tensor) -> bool:
        return _INT8_OPS_OK and x.device.type == 'cpu' and not torch.is_grad_enabled() and self.nbits <= 8

    def forward_counts(self, counts: torch.Tensor, scale: float) -> torch.Tensor:
        """``self(counts * scale)`` for integer spike counts (any float dtype), as :func:`lsq_count_conv` (exact)."""
        fmt = torch.channels_last if counts.ndim == 4 else torch.contiguous_format
        k = counts.to(torch.uint8, memory_format=fmt)
        conv = self.weight.ndim > 2
        op = torch.ops.zoo.lsq_count_conv if torch.compiler.is_compiling() else _count_conv
        return op(
            k, self.weight, self.alpha, self.bias, self.nbits, scale,
            list(self.stride) if conv else [], list(self.padding) if conv else [],
            list(self.dilation) if conv else [], self.groups if conv else 1,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, nbits={self.nbits}'  # type: ignore[misc]


@register_notrace_module  # FX: one leaf (first training batch sets the LSQ step)
class Conv2dLSQ(_LSQMixin, nn.Conv2d):
    """``nn.Conv2d`` with LSQ-quantised weights (``nbits`` signed, per-output-channel step)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        nbits: int | None = 4,
        act_placeholder: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, **dd)
        self._init_lsq(nbits, in_channels, act_placeholder, **dd)

    def linear(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return self._conv_forward(x, w, b)


@register_notrace_module  # FX: one leaf (first training batch sets the LSQ step)
class Conv1dLSQ(_LSQMixin, nn.Conv1d):
    """``nn.Conv1d`` with LSQ-quantised weights."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        nbits: int | None = 4,
        act_placeholder: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        nn.Conv1d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, **dd)
        self._init_lsq(nbits, in_channels, act_placeholder, **dd)

    def linear(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return self._conv_forward(x, w, b)


@register_notrace_module  # FX: one leaf (first training batch sets the LSQ step)
class LinearLSQ(_LSQMixin, nn.Linear):
    """``nn.Linear`` with LSQ-quantised weights."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        nbits: int | None = 4,
        act_placeholder: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        nn.Linear.__init__(self, in_features, out_features, bias, **dd)
        self._init_lsq(nbits, in_features, act_placeholder, **dd)

    def linear(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return F.linear(x, w, b)


ConvFactory = Callable[..., nn.Module]


def conv_factory(nbits: int | None, act_placeholder: bool = True, dim: int = 2) -> ConvFactory:
    """A constructor with the ``nn.ConvNd`` signature: LSQ conv when ``nbits`` is set, else plain."""
    lsq, plain = (Conv2dLSQ, nn.Conv2d) if dim == 2 else (Conv1dLSQ, nn.Conv1d)
    if nbits is None:
        return plain

    def make(*args, **kwargs) -> nn.Module:
        return lsq(*args, nbits=nbits, act_placeholder=act_placeholder, **kwargs)

    return make


# ----------------------------------------------------------------------------------------------
# RepConv
# ----------------------------------------------------------------------------------------------
@register_notrace_function  # FX: an in-place slice assignment
@torch.fx.wrap
def pad_border(y: torch.Tensor, p: int) -> torch.Tensor:
    """``(1, 1, H, W)`` bool mask of the ``p``-pixel border of ``y`` (``(N, C, H, W)``)."""
    border = torch.ones_like(y[:1, :1], dtype=torch.bool)
    border[..., p:-p, p:-p] = False
    return border


class BNAndPad(nn.Module):
    """BatchNorm2d, then a ``pad``-pixel border filled with the BN's output for a zero input.

    Padding with the BN bias (not zero) makes ``1x1 -> BN -> 3x3 (no padding)`` equal to a single
    padded 3x3 conv after re-parameterisation (RepVGG style). Key layout: ``bn.*``.
    """

    def __init__(
        self,
        pad: int,
        num_features: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, **dd)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn(x)
        if self.pad <= 0:
            return y
        bn = self.bn
        # As in the official code, the border uses the running statistics even while training.
        mean, var = bn.running_mean, bn.running_var
        fill = bn.bias.detach() - mean * bn.weight.detach() / torch.sqrt(var + bn.eps)
        p = self.pad
        y = F.pad(y, [p] * 4)
        return torch.where(pad_border(y, p), fill.view(1, -1, 1, 1).to(y.dtype), y)


class RepConv(nn.Module):
    """``1x1 conv -> BNAndPad -> depthwise 3x3 -> 1x1 conv -> BN`` (Meta-SpikeFormer's QKV conv).

    Keys follow the official layout: ``body.0`` (1x1), ``body.1.bn`` (BNAndPad), ``body.2.0`` (dw3x3),
    ``body.2.1`` (1x1), ``body.2.2`` (BN). Shape ``(N, C_in, H, W) -> (N, C_out, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        conv: ConvFactory = nn.Conv2d,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.body = nn.Sequential(
            conv(in_channels, in_channels, 1, 1, 0, bias=False, **dd),
            BNAndPad(1, in_channels, **dd),
            nn.Sequential(
                conv(in_channels, in_channels, 3, 1, 0, groups=in_channels, bias=False, **dd),
                conv(in_channels, out_channels, 1, 1, 0, bias=False, **dd),
                nn.BatchNorm2d(out_channels, **dd),
            ),
        )

    def forward(self, x: torch.Tensor, spike_norm: float | None = None) -> torch.Tensor:
        """``spike_norm``: see :func:`synapse` (passed to the first conv when it is quantised)."""
        if spike_norm is None or not isinstance(self.body[0], _LSQMixin):
            return self.body(x)
        return self.body[2](self.body[1](self.body[0](x, spike_norm=spike_norm)))

    def forward_spikes(self, neuron: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``self(neuron(x))`` with the first (spike-driven) 1x1 conv integrated by :func:`integrate`."""
        return self.body[2](self.body[1](integrate(neuron, x, self.body[0])))
