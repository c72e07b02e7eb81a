"""STCA-FF memory (ACAM-KD, arXiv 2503.06307, Sec. 3.2): the fused ``scaled_dot_product_attention`` path of
``zoo.distill.losses.STCAFusion`` against a naive ``softmax(Q K^T / sqrt(C_q)) V`` that forms the ``HW x HW``
matrix, on FPN P3 of an 800x1333 input (``100 x 168`` = 16.8k positions, 256 channels).

Run each path in a fresh process (``python -m zoo.benchmark.distill fused|naive``) so the peak resident set
size belongs to that path alone; the last stdout line is JSON. Not yet a suite of tools/analysis/benchmark.py.
"""

from __future__ import annotations

import json
import sys
import time

import torch

from zoo.benchmark.memory import peak_rss_mb, reset_peak_rss, rss_mb

__all__ = ['naive_fusion', 'stca_memory']


def naive_fusion(fusion, f_t: torch.Tensor, f_s: torch.Tensor) -> torch.Tensor:
    """The same fusion with the attention matrix formed: ``(B, C, H, W)``."""
    B, C, H, W = f_t.shape
    q = fusion.q(f_t).flatten(2).transpose(1, 2)  # (B, N, C_q)
    k = fusion.k(f_s).flatten(2)  # (B, C_q, N)
    v = fusion.v(f_s).flatten(2).transpose(1, 2)  # (B, N, C)
    attn = torch.softmax(q @ k / fusion.qk_channels**0.5, dim=-1)  # (B, N, N)
    return (attn @ v).transpose(1, 2).reshape(B, C, H, W)


def stca_memory(path: str, hw: tuple[int, int] = (100, 168), channels: int = 256, backward: bool = True) -> dict:
    """Peak RSS above the pre-step RSS (MB) and seconds of one STCA-FF forward (+ backward) on CPU."""
    from zoo.distill.losses import STCAFusion

    torch.manual_seed(0)
    fusion = STCAFusion(channels)
    f_t = torch.randn(1, channels, *hw)
    f_s = torch.randn(1, channels, *hw, requires_grad=backward)
    base = rss_mb()
    reset_peak_rss()
    start = time.perf_counter()
    with torch.set_grad_enabled(backward):
        out = fusion(f_t, f_s) if path == 'fused' else naive_fusion(fusion, f_t, f_s)
        if backward:
            out.sum().backward()
    seconds = time.perf_counter() - start
    return dict(
        path=path,
        tokens=hw[0] * hw[1],
        channels=channels,
        backward=backward,
        peak_mb=round(peak_rss_mb() - base, 1),
        seconds=round(seconds, 2),
        threads=torch.get_num_threads(),
    )


if __name__ == '__main__':
    print(json.dumps(stca_memory(sys.argv[1], backward='--no-backward' not in sys.argv)))
