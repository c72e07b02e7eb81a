"""Peak memory: the resident set size of this process (Linux ``/proc/self``) and a probe that measures
one step in a fresh process, so that earlier models and allocator caches do not count."""

from __future__ import annotations

import json
import os
import subprocess
import sys

__all__ = ['peak_rss_mb', 'reset_peak_rss', 'rss_mb', 'run_probe']


def _status_mb(key: str) -> float:
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key)) / 1024


def rss_mb() -> float:
    """Current resident set size of this process in MB."""
    return _status_mb('VmRSS:')


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB since the start or the last :func:`reset_peak_rss`."""
    return _status_mb('VmHWM:')


def reset_peak_rss() -> None:
    """Reset the peak-RSS mark (VmHWM) to the current RSS, so that what comes next has its own peak."""
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')


def run_probe(args: list[str], what: str) -> dict | float | None:
    """Run ``python -m zoo.cli.benchmark <args>`` and parse the JSON on its last stdout line.

    Returns ``None`` (with one line on stderr naming ``what``) when the probe failed, so that one failed
    measurement leaves a NaN instead of ending the benchmark.
    """
    out = subprocess.run(
        [sys.executable, '-m', 'zoo.cli.benchmark', *args], capture_output=True, text=True, env=dict(os.environ)
    )
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        print(f'benchmark: probe failed for {what}: {out.stderr.strip().splitlines()[-1:]}', file=sys.stderr)
        return None
