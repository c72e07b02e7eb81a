"""The fast inference path: bfloat16 autocast, ``torch.compile`` with an eager fallback, ``channels_last``.

* :func:`bf16_autocast` is ``torch.autocast(device, dtype=torch.bfloat16)``: matmuls and convolutions run in
  bfloat16, everything else in its input's dtype. The parts that need float32 keep it explicitly, under
  :func:`float32_region` (autocast off) or by computing in float32: the selective scan's recurrence
  (:mod:`zoo.layers.selective_scan`), LSQ step sizes, quantised layers and spike thresholds
  (:mod:`zoo.layers.spiking`; quantised layers on spike counts run as exact int8 products), and the MIL
  attention pooling (:mod:`zoo.mil.models`). Softmax needs nothing extra: torch's CPU softmax kernels keep
  the row max and sum in float32 for bfloat16 inputs (one rounding at the end; ``tests/test_fast_inference.py``
  checks it).
* :func:`compile_module` compiles a module in place (``nn.Module.compile``: parameter names, attributes and
  hooks stay as they are) and records the first call's wall time (compile plus one run). A compiler failure
  (no C++ compiler, an op Inductor cannot lower) gives one warning, through :func:`compile_failed`, and the
  module runs eagerly from then on; the fused selective scan reports its failures through the same function.
* :func:`prepare_inference` applies what the tools' ``--bf16 / --compile / --channels-last`` ask for to one
  module (:func:`bf16_forward`: autocast inside its forward, float32 outputs).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    'CompileState',
    'bf16_autocast',
    'bf16_forward',
    'compile_failed',
    'compile_module',
    'float32_region',
    'prepare_inference',
]

_warned: set[str] = set()


def compile_failed(what: str, err: BaseException, fallback: str = 'running eagerly') -> str:
    """Say once per ``what`` (a warning) that compiling failed and what runs instead; returns the reason line."""
    reason = f'{type(err).__name__}: {err}'.strip().splitlines()[0]
    if what not in _warned:
        _warned.add(what)
        warnings.warn(f'{what}: torch.compile failed ({reason}); {fallback}', RuntimeWarning, stacklevel=3)
    return reason


@dataclass
class CompileState:
    """What :func:`compile_module` learned: the first call's wall time (compile + one run, seconds) and the
    compiler's error line when it failed (the module then runs eagerly)."""

    first_call_s: float | None = None
    error: str | None = None

    @property
    def compiled(self) -> bool:
        return self.error is None


def compile_module(module: nn.Module, what: str | None = None, **compile_kwargs) -> CompileState:
    """``module.compile(**compile_kwargs)`` (Inductor by default) in place, falling back to eager on failure.

    The first call is timed (:attr:`CompileState.first_call_s`). When a compiled call raises and the same call
    runs eagerly, the compiler failed: one warning, and every later call is eager. When the eager call raises
    too, the input was at fault: that error propagates and the compiled module stays.
    """
    what = what or f'{type(module).__name__}'
    state = CompileState()
    module.compile(**compile_kwargs)
    compiled = module._compiled_call_impl

    def call(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            out = compiled(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - decided below: compiler failure or bad input
            out = module._call_impl(*args, **kwargs)  # raises when the input was at fault
            state.error = compile_failed(what, err)
            module._compiled_call_impl = None
        if state.first_call_s is None:
            state.first_call_s = time.perf_counter() - t0
        return out

    module._compiled_call_impl = call
    return state


def bf16_autocast(device: str | torch.device = 'cpu', enabled: bool = True):
    """``torch.autocast`` to bfloat16 on ``device``'s type (a no-op context when not ``enabled``)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def float32_region(x: torch.Tensor):
    """Autocast off on ``x``'s device: the products inside run in their inputs' dtype (give them float32)."""
    return torch.autocast(x.device.type, enabled=False)


def bf16_forward(module: nn.Module) -> nn.Module:
    """Run ``module``'s forward under :func:`bf16_autocast` (its device's type) and hand bfloat16 outputs back as
    float32, so that what consumes them (heads, metrics, numpy, post-processing) sees float32. In place."""
    from torch.utils._pytree import tree_map

    forward = module.forward

    def to_float(t):
        return t.float() if torch.is_tensor(t) and t.dtype == torch.bfloat16 else t

    def run(*args, **kwargs):
        p = next(module.parameters(), None)
        with bf16_autocast('cpu' if p is None else p.device):
            out = forward(*args, **kwargs)
        return tree_map(to_float, out)

    module.forward = run
    return module


def prepare_inference(
    model: nn.Module,
    bf16: bool = False,
    compile: bool = False,
    channels_last: bool = False,
    what: str | None = None,
) -> CompileState | None:
    """What ``--bf16 / --compile / --channels-last`` ask for, in place, for eval-mode inference: ``channels_last``
    weights (convolutions then produce ``channels_last`` activations), a bfloat16-autocast forward with float32
    outputs (:func:`bf16_forward`), then :func:`compile_module`. Returns the compile state, or None."""
    if channels_last:  # 4-d tensors only (nn.Module.to refuses a model that also holds 5-d ones)
        for t in (*model.parameters(), *model.buffers()):
            if t.dim() == 4:
                t.data = t.data.contiguous(memory_format=torch.channels_last)
    if bf16:
        bf16_forward(model)
    if compile:
        return compile_module(model, what=what or type(model).__name__)
    return None
