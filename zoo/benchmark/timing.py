"""The one timing routine of the benchmarks: seconds per call (wall clock and process CPU time) and
interleaved rounds with medians.

Jobs are measured round-robin (every job once per round, for ``rounds`` rounds; the median per job is
reported), so that each job sees the same machine state on average and ratios between jobs hold on a
shared, noisy machine. Process CPU time (``time.process_time``: all threads of this process) is recorded
next to wall time: under load from other jobs it measures the work itself, where wall time mostly
measures the waiting.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import torch

K = TypeVar('K', bound=Hashable)

__all__ = ['Sample', 'measure', 'median', 'round_robin', 'sync']


@dataclass(frozen=True)
class Sample:
    """Seconds per call of one measurement."""

    wall_s: float
    cpu_s: float  # process CPU time, all threads


def sync(device: str | torch.device = 'cpu') -> None:
    """Wait for queued CUDA work, so that the clock covers it (a no-op elsewhere)."""
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()


def measure(fn: Callable[[], object], iters: int = 1, device: str | torch.device = 'cpu') -> Sample:
    """Seconds per call of ``fn``, averaged over ``iters`` back-to-back calls."""
    sync(device)
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return Sample((time.perf_counter() - w0) / iters, (time.process_time() - c0) / iters)


def round_robin(
    jobs: Mapping[K, Callable[[], object]],
    rounds: int,
    iters: int | Mapping[K, int] = 1,
    warmup: int | Mapping[K, int] = 1,
    device: str | torch.device = 'cpu',
    desc: str | None = None,
) -> dict[K, list[Sample]]:
    """Time every job once per round, in order, for ``rounds`` rounds.

    Args:
        jobs: name -> callable; each timed measurement is ``iters`` calls.
        rounds: interleaved rounds (one :class:`Sample` per job and round).
        iters: calls per timed measurement; a mapping gives it per job (missing jobs: 1).
        warmup: untimed calls before each timed measurement (the job before may have evicted this
            one's caches); a mapping gives it per job (missing jobs: 0).
        device: synchronised around each measurement when it is a CUDA device.
        desc: progress-bar label (no bar when stderr is not a terminal).

    Returns:
        name -> ``rounds`` samples, in round order.
    """
    from tqdm import tqdm

    samples: dict[K, list[Sample]] = {k: [] for k in jobs}
    with tqdm(total=rounds * len(jobs), desc=desc, leave=False, disable=None) as bar:
        for _ in range(rounds):
            for key, fn in jobs.items():
                for _ in range(warmup.get(key, 0) if isinstance(warmup, Mapping) else warmup):
                    fn()
                n = iters.get(key, 1) if isinstance(iters, Mapping) else iters
                samples[key].append(measure(fn, n, device))
                bar.update(1)
    return samples


def median(samples: list[Sample], attr: str = 'wall_s') -> float:
    """Median of one field (``'wall_s'`` or ``'cpu_s'``) over samples; NaN when there are none."""
    return statistics.median(getattr(s, attr) for s in samples) if samples else float('nan')
