"""The machine's matmul peak, measured in the same run as the models: GFLOP/s of one square ``torch.mm`` in
float32 and in bfloat16, timed interleaved with the models (:func:`zoo.benchmark.timing.round_robin`); the
best round counts (a peak is what the machine can do, not what it did on average under load). The models'
achieved GFLOP/s (2 x MACs x images / s) are reported as a share of the peak of their precision."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ['PEAK_DTYPES', 'matmul_jobs', 'peak_gflops']

PEAK_DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16}


def matmul_jobs(n: int = 1024, device: str = 'cpu') -> dict[str, Callable[[], object]]:
    """``{'fp32': fn, 'bf16': fn}``: each call multiplies two ``n x n`` matrices of that dtype."""
    g = torch.Generator().manual_seed(0)
    jobs = {}
    for name, dtype in PEAK_DTYPES.items():
        a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
        b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
        out = torch.empty(n, n, device=device, dtype=dtype)

        def fn(a=a, b=b, out=out) -> None:
            torch.mm(a, b, out=out)

        jobs[name] = fn
    return jobs


def peak_gflops(seconds: list[float], n: int = 1024) -> float:
    """GFLOP/s of the fastest ``n x n`` matmul among ``seconds`` (wall time per call)."""
    return 2 * n**3 / min(seconds) / 1e9 if seconds else float('nan')
