"""The one MAC counter of the benchmarks: :func:`count_macs`.

One forward pass under :class:`torch.utils.flop_counter.FlopCounterMode`, split three ways:

* ``total``: everything torch's counter sees (convolutions and matrix products). On CPU it does not see
  :func:`~torch.nn.functional.scaled_dot_product_attention` (``_scaled_dot_product_flash_attention_for_cpu``
  has no FLOP formula), so softmax-attention models miss their attention products here; kept as it was
  so that earlier ``gmacs`` columns stay comparable.
* ``dense``: the conv and linear layers (output elements x fan-in per layer), the count the spiking
  models' papers and ``benchmarks/qsd_transformer_speed.csv`` use.
* ``attention``: the products outside conv / linear layers (attention ``Q K^T`` and ``A V``, agent
  attention's four GEMMs, spiking self-attention), with CPU SDPA counted from its shapes
  (``2 B H L_q L_k d`` MACs, as torch counts the CUDA kernels).

MACs are FLOPs / 2: multiply-accumulates, the papers' "FLOPs" columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ['MacCount', 'count_macs']

# Layers whose MACs are "dense": their whole forward is one convolution or one matrix product.
DENSE_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


@dataclass(frozen=True)
class MacCount:
    """Multiply-accumulates of one forward pass, per image, in G (10^9)."""

    total: float
    dense: float
    attention: float


def _cpu_sdpa_formula():
    from torch.utils.flop_counter import sdpa_flop_count

    def formula(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    return formula


def count_macs(model: nn.Module, x: torch.Tensor) -> MacCount:
    """MACs per image of ``model(x)`` (eval mode, no grad; the model's mode is restored).

    Args:
        model: any module taking ``x``.
        x: input batch ``(B, ...)``; the counts are divided by ``B``, so pass ``x[:1]`` to count cheaply.

    Returns:
        :class:`MacCount` (``total``, ``dense``, ``attention``) in GMACs per image.
    """
    from torch.utils.flop_counter import FlopCounterMode

    cpu_sdpa = getattr(torch.ops.aten, '_scaled_dot_product_flash_attention_for_cpu', None)
    mapping = {cpu_sdpa: _cpu_sdpa_formula()} if cpu_sdpa is not None else {}
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    dense, depth, start = [0], [0], [0]

    # A dense layer's MACs are the counter's increase over its forward; only the outermost dense layer
    # counts, so that a layer holding another one is not counted twice.
    def pre(mod, args):
        if depth[0] == 0:
            start[0] = counter.get_total_flops()
        depth[0] += 1

    def post(mod, args, out):
        depth[0] -= 1
        if depth[0] == 0:
            dense[0] += counter.get_total_flops() - start[0]

    layers = [m for m in model.modules() if isinstance(m, DENSE_LAYERS)]
    handles = [h for m in layers for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(post))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    flops = counter.get_total_flops()
    sdpa = counter.get_flop_counts().get('Global', {}).get(cpu_sdpa, 0)
    n, g = x.shape[0], 2e9  # FLOPs -> GMACs
    return MacCount(total=(flops - sdpa) / n / g, dense=dense[0] / n / g, attention=(flops - dense[0]) / n / g)
