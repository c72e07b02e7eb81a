"""Fused linear layers for float32 CPU inference (oneDNN post-ops).

``torch.ops.mkldnn._linear_pointwise`` (``aten/src/ATen/native/mkldnn/Linear.cpp``, the op PyTorch's Inductor
CPU backend emits for a linear followed by a point-wise op) runs the GEMM with the bias, an activation
(``attr='gelu'``, ``algorithm='none'``: the erf GELU of ``nn.GELU()``) applied to the output tile while it is
still in cache. Eager ``F.linear`` on CPU instead copies the broadcast bias into the output before the GEMM
(``addmm``), and the activation is a further pass over the whole output: at Agent-PVT-T's 1024x1024 stage-1
size (65536 tokens, MLP 64 -> 512 -> 64) the fused MLP took 0.61x the time of the unfused one on one thread.

The fused op has no autograd formula, no FX / TorchScript / export support and is a float32 CPU kernel here, so
:func:`fused_linear_ok` takes it only for plain float32 CPU tensors with autograd, autocast and every tracer off;
everywhere else the same layers run as ``F.linear`` plus the point-wise ops (results equal within float32
rounding, ``tests/test_cpu_fusion.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import nn
from torch.fx._symbolic_trace import is_fx_symbolic_tracing
from torch.utils._python_dispatch import _get_current_dispatch_mode

__all__ = ['FusedMlp', 'fused_linear_ok', 'linear_bias', 'linear_gelu', 'linear_split']

_HAS_OP = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, '_linear_pointwise')


def fused_linear_ok(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``x @ weight.T`` may go through the fused oneDNN kernel (eager float32 CPU inference only)."""
    if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling() or is_fx_symbolic_tracing():
        return False
    return (
        _HAS_OP
        and type(x) is torch.Tensor  # no FX proxies, fake / functional tensors (export), tensor subclasses
        and type(weight) in (torch.Tensor, nn.Parameter)
        and x.device.type == 'cpu'
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and torch.backends.mkldnn.enabled
        and not torch.is_autocast_enabled('cpu')
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and _get_current_dispatch_mode() is None  # e.g. FlopCounterMode, which counts aten.addmm / mm only
    )


def _plain_linear(module: nn.Module) -> bool:
    """An ``nn.Linear`` itself (not a subclass or a replacement such as a LoRA wrapper) without forward hooks."""
    return type(module) is nn.Linear and not module._forward_hooks and not module._forward_pre_hooks


def linear_bias(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``; for a plain ``nn.Linear`` in float32 CPU inference the bias is added inside the GEMM."""
    if _plain_linear(module) and fused_linear_ok(x, module.weight):
        return torch.ops.mkldnn._linear_pointwise(x, module.weight, module.bias, 'none', [], '')
    return module(x)


def linear_gelu(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``F.gelu(module(x))`` (erf GELU); bias and GELU fused into the GEMM as in :func:`linear_bias`."""
    if _plain_linear(module) and fused_linear_ok(x, module.weight):
        return torch.ops.mkldnn._linear_pointwise(x, module.weight, module.bias, 'gelu', [], 'none')
    return F.gelu(module(x))


def linear_split(module: nn.Module, x: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """``module(x).split(sizes, -1)``; in float32 CPU inference (a plain ``nn.Linear``) one fused GEMM per
    chunk on the matching rows of the weight instead, so each chunk is a dense tensor rather than a strided
    view (a dense channels-last map needs no layout copy before a convolution)."""
    if _plain_linear(module) and fused_linear_ok(x, module.weight):
        weights = module.weight.split(sizes)
        biases = module.bias.split(sizes) if module.bias is not None else [None] * len(sizes)
        return [torch.ops.mkldnn._linear_pointwise(x, w, b, 'none', [], '') for w, b in zip(weights, biases)]
    return list(module(x).split(sizes, dim=-1))


class FusedMlp(Mlp):
    """timm's :class:`~timm.layers.Mlp` (same parameters and state-dict keys: ``fc1``, ``act``, ``fc2``) with a
    fused float32 CPU inference forward, and an optional ``shortcut`` added to the output (``shortcut + mlp(x)``).

    When :func:`fused_linear_ok`: ``fc1`` with its bias and the erf GELU fused, then ``fc2`` with its bias and
    the shortcut fused. On one thread the tokens go through in chunks of about :attr:`chunk_elems` hidden
    activations, written into the output, so the hidden activations (``mlp_ratio`` times the input) stay in
    cache instead of being one large buffer (at Agent-PVT-T's 1024x1024 stage 1, 134 MB that a fresh
    allocation pages in on every call): Agent-PVT-T at 1024x1024 ran 1.12x faster chunked on one thread. With
    several threads every chunk is a parallel region with its own synchronisation, and on the oversubscribed
    2-core box this was measured on, chunking made the two-thread forward 0.62x as fast, so there the MLP
    runs unchunked. Dropout in training, a hidden norm and other activations run the plain forward.
    """

    chunk_elems = 1 << 20  # hidden activations per chunk on the fused path

    def _fusable(self, x: torch.Tensor) -> bool:
        return (
            type(self.act) is nn.GELU
            and self.act.approximate == 'none'
            and not self.act._forward_hooks
            and isinstance(self.norm, nn.Identity)
            and _plain_linear(self.fc1)
            and _plain_linear(self.fc2)
            and not (self.training and (self.drop1.p > 0 or self.drop2.p > 0))
            and fused_linear_ok(x, self.fc1.weight)
        )

    def forward(self, x: torch.Tensor, shortcut: torch.Tensor | None = None) -> torch.Tensor:
        """``(..., in_features)`` -> ``(..., out_features)``; plus ``shortcut`` (that shape) when given."""
        if torch.jit.is_scripting():  # a static branch for TorchScript: only the plain forward is compiled
            return self._forward_plain(x, shortcut)
        if self._fusable(x) and (shortcut is None or _dense_like(shortcut, x, self.fc2.out_features)):
            return self._forward_fused(x, shortcut)
        return self._forward_plain(x, shortcut)

    def _forward_fused(self, x: torch.Tensor, shortcut: torch.Tensor | None) -> torch.Tensor:
        lp = torch.ops.mkldnn._linear_pointwise
        rows = x.reshape(-1, x.shape[-1])
        out = x.new_empty(rows.shape[0], self.fc2.out_features)
        res = shortcut.reshape(out.shape) if shortcut is not None else None
        step = max(1, self.chunk_elems // self.fc1.out_features) if torch.get_num_threads() == 1 else rows.shape[0]
        for i in range(0, rows.shape[0], step):
            h = lp(rows[i : i + step], self.fc1.weight, self.fc1.bias, 'gelu', [], 'none')
            if res is None:
                out[i : i + step] = lp(h, self.fc2.weight, self.fc2.bias, 'none', [], '')
            else:
                out[i : i + step] = lp.binary(h, res[i : i + step], self.fc2.weight, self.fc2.bias, 'add')
        return out.reshape(*x.shape[:-1], out.shape[-1])

    def _forward_plain(self, x: torch.Tensor, shortcut: torch.Tensor | None) -> torch.Tensor:
        """timm's ``Mlp.forward`` (fc1, act, drop1, norm, fc2, drop2 as separate ops), plus ``shortcut``."""
        x = self.fc1(x)
        x = self.act(x)
        x = self.drop1(x)
        x = self.norm(x)
        x = self.fc2(x)
        x = self.drop2(x)
        return x if shortcut is None else shortcut + x


def _dense_like(t: torch.Tensor, x: torch.Tensor, features: int) -> bool:
    """``t`` is a contiguous tensor of ``x``'s type, dtype and device, shaped like ``x`` with ``features`` last."""
    return (
        type(t) is torch.Tensor
        and t.dtype == x.dtype
        and t.device == x.device
        and t.shape == (*x.shape[:-1], features)
        and t.is_contiguous()
    )
