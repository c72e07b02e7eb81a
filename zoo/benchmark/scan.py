"""The ``scan`` suite (MHS-VM): selective-scan kernel speed, and VM-UNet throughput per scan backend.

``kernel``: :func:`zoo.layers.selective_scan.selective_scan` (backends ``eager`` and ``fused``) against
``selective_scan_sequential`` (mamba_ssm's ``selective_scan_ref`` scheme: precomputed decays, one Python
step per token) on the channels of one MHS head in stage 1 of the released model (K=4 directions x 24
channels, d_state 16, softplus(delta + bias), D skip), forward only, batch 1, per thread count; also the
max |difference| to the sequential scan and the error against a float64 sequential scan. The fused
backend's first call (compile, or Inductor's disk cache) is timed separately (``first_call_s``).

``model``: MHS-VM VM-UNet forward (eval, no grad), batch 1: images/s and the peak RSS growth over the
built model, each size, thread count and backend in a fresh process.

``train``: MHS-VM VM-UNet training step (forward, BCE loss, backward, AdamW step; train mode), per backend,
all backends in one fresh process per size and thread count with interleaved rounds (the machine may be
loaded: only ratios from one process are comparable); the first step of each backend (the fused one
compiles its forward and backward kernels there) is timed separately, and the load average is recorded.
"""

from __future__ import annotations

import torch

from zoo.benchmark.memory import peak_rss_mb, reset_peak_rss, rss_mb, run_probe
from zoo.benchmark.report import Panel, write_report
from zoo.benchmark.timing import measure, median, round_robin

__all__ = [
    'bench_kernel',
    'bench_model',
    'bench_train',
    'model_worker',
    'scan_inputs',
    'train_worker',
    'write_kernel',
    'write_model',
    'write_train',
]


def scan_inputs(L: int, k: int = 4, d_sub: int = 24, n: int = 16, seed: int = 0) -> dict:
    """Selective-scan arguments for ``k`` directions of ``d_sub`` channels, state size ``n``, length ``L``:
    ``u, delta (1, k * d_sub, L)``, ``A (k * d_sub, n)``, ``B, C (1, k, n, L)``, ``D, delta_bias (k * d_sub,)``."""
    g = torch.Generator().manual_seed(seed)
    d = k * d_sub
    return dict(
        u=torch.randn(1, d, L, generator=g),
        delta=torch.randn(1, d, L, generator=g) * 0.5,
        A=-torch.arange(1, n + 1, dtype=torch.float32).repeat(d, 1),
        B=torch.randn(1, k, n, L, generator=g),
        C=torch.randn(1, k, n, L, generator=g),
        D=torch.ones(d),
        delta_bias=torch.log(torch.expm1(torch.full((d,), 0.01))),
        delta_softplus=True,
    )


def _kernel_point(x: dict, rounds: int, backends: list[str], desc: str) -> dict:
    """Outputs, first-call seconds and timed samples of the sequential scan and each backend on ``x``."""
    from zoo.layers.selective_scan import selective_scan, selective_scan_sequential

    with torch.no_grad():
        y_seq = selective_scan_sequential(**x)  # also its warm-up
        ref = selective_scan_sequential(**{k: v.double() if torch.is_tensor(v) else v for k, v in x.items()})
        ys, first = {}, {}
        for b in backends:  # the first call compiles (fused): timed on its own; it is also the warm-up
            first[b] = measure(lambda b=b: ys.__setitem__(b, selective_scan(**x, backend=b))).wall_s
        jobs = {'sequential': lambda: selective_scan_sequential(**x)}
        jobs.update({b: (lambda b=b: selective_scan(**x, backend=b)) for b in backends})
        samples = round_robin(jobs, rounds, warmup=0, desc=desc)
    return dict(y_seq=y_seq, ref=ref, ys=ys, first=first, samples=samples)


def bench_kernel(lengths: list[int], rounds: int, threads: list[int], backends: list[str]) -> list[dict]:
    """One row per (thread count, length, backend): ``fast_ms`` (median), ``sequential_ms``, ``speedup``,
    ``max_abs_diff`` (to the sequential scan), ``max_abs_err_vs_float64`` and ``first_call_s``."""
    rows = []
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for L in lengths:
            x = scan_inputs(L)
            p = _kernel_point(x, rounds, backends, f'scan L={L} ({n_threads} thread(s))')
            seq = median(p['samples']['sequential'])
            for b in backends:
                fast, y = median(p['samples'][b]), p['ys'][b]
                rows.append(
                    dict(
                        L=L,
                        channels=x['u'].shape[1],
                        d_state=x['A'].shape[1],
                        backend=b,
                        threads=n_threads,
                        fast_ms=fast * 1e3,
                        sequential_ms=seq * 1e3,
                        speedup=seq / fast,
                        max_abs_diff=(y - p['y_seq']).abs().max().item(),
                        max_abs_err_vs_float64=(y.double() - p['ref']).abs().max().item(),
                        first_call_s=p['first'][b],
                    )
                )
    return rows


def write_kernel(rows: list[dict], out: str) -> tuple[str, str]:
    """``<out>.csv`` and ``<out>.png``: forward time against L (log-log), one panel per thread count."""
    panels = []
    for n in sorted({r['threads'] for r in rows}):
        sub = [r for r in rows if r['threads'] == n]
        seq = sorted({(r['L'], r['sequential_ms']) for r in sub})
        series = {'sequential (selective_scan_ref scheme)': seq}
        notes = {}
        for b in dict.fromkeys(r['backend'] for r in sub):
            pts = sorted((r['L'], r['fast_ms'], r['speedup']) for r in sub if r['backend'] == b)
            series[f'zoo selective_scan ({b})'] = [(p[0], p[1]) for p in pts]
            notes[f'zoo selective_scan ({b})'] = [f'{p[2]:.1f}x' for p in pts]
        panels.append(
            Panel(
                'forward time (ms)',
                series,
                kind='line',
                xlabel='sequence length L',
                log=True,
                title=f'selective scan, {sub[0]["channels"]} ch x N={sub[0]["d_state"]}, {n} thread(s)',
                notes=notes,
            )
        )
    return write_report(rows, panels, out, digits=6)


def model_worker(spec: dict) -> dict:
    """One VM-UNet row, in this (fresh) process: ``spec`` has ``unet``, ``size``, ``rounds``, ``threads``,
    ``backend``."""
    torch.set_num_threads(spec['threads'])
    from zoo.layers.selective_scan import set_scan_backend
    from zoo.models.mhs_vm import create_mhs_vm_unet

    set_scan_backend(spec['backend'])
    size = spec['size']
    model = create_mhs_vm_unet(spec['unet'], img_size=size).eval()
    x = torch.randn(1, 3, size, size)
    reset_peak_rss()  # the peak from here on: activations and workspace over the built model
    base = rss_mb()
    with torch.no_grad():
        model(x)  # warm-up (the fused backend compiles here)
        sec = median(round_robin({'forward': lambda: model(x)}, spec['rounds'], warmup=0)['forward'])
    return dict(
        size=size,
        batch=1,
        backend=spec['backend'],
        img_per_s=1.0 / sec,
        latency_ms=sec * 1e3,
        peak_rss_growth_mb=max(0.0, peak_rss_mb() - base),
        threads=spec['threads'],
        params_m=sum(p.numel() for p in model.parameters()) / 1e6,
    )


def bench_model(
    sizes: list[int], rounds: int, threads: list[int], backends: list[str], unet: str = 'mhs_vm_unet_4h'
) -> list[dict]:
    """One row per (thread count, backend, size), each from :func:`model_worker` in a fresh process."""
    import json

    rows = []
    for n in threads:
        for backend in backends:
            for size in sizes:
                spec = dict(unet=unet, size=size, rounds=rounds, threads=n, backend=backend)
                row = run_probe(['scan', '--worker', json.dumps(spec)], f'{unet} {size}px {backend} {n}t')
                if row is not None:
                    rows.append(row)
    return rows


def write_model(rows: list[dict], out: str, unet: str = 'mhs_vm_unet_4h') -> tuple[str, str]:
    """``<out>.csv`` and ``<out>.png``: images/s and peak RSS growth per row."""
    groups = [f'{r["size"]}², {r["threads"]}t\n{r["backend"]}' for r in rows]
    panels = [
        Panel('images / s', {'images / s': [r['img_per_s'] for r in rows]}, groups=groups),
        Panel('peak RSS growth (MB)', {'MB': [r['peak_rss_growth_mb'] for r in rows]}, groups=groups),
    ]
    return write_report(rows, panels, out, title=f'MHS-VM {unet} forward (eval), batch 1', digits=6)


def train_worker(spec: dict) -> list[dict]:
    """VM-UNet training-step rows, in this (fresh) process: ``spec`` has ``unet``, ``size``, ``batch``,
    ``rounds``, ``threads``, ``backends``. One model and optimizer; the backends take turns each round."""
    import os
    import time

    import torch.nn.functional as F

    torch.set_num_threads(spec['threads'])
    from zoo.layers.selective_scan import set_scan_backend
    from zoo.models.mhs_vm import create_mhs_vm_unet

    torch.manual_seed(0)
    size, batch = spec['size'], spec['batch']
    model = create_mhs_vm_unet(spec['unet'], img_size=size).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 3, size, size)
    target = (torch.rand(batch, 1, size, size) > 0.5).float()

    def step(backend: str) -> None:
        set_scan_backend(backend)
        opt.zero_grad(set_to_none=True)
        F.binary_cross_entropy_with_logits(model(x), target).backward()
        opt.step()

    first = {}
    for b in spec['backends']:  # first step: compiles (fused); also the warm-up
        t0 = time.perf_counter()
        step(b)
        first[b] = time.perf_counter() - t0
    load_before = os.getloadavg()[0]
    samples = round_robin({b: (lambda b=b: step(b)) for b in spec['backends']}, spec['rounds'], warmup=0)
    load_after = os.getloadavg()[0]
    ref = median(samples[spec['backends'][0]])
    rows = []
    for b in spec['backends']:
        sec = median(samples[b])
        rows.append(
            dict(
                size=size,
                batch=batch,
                backend=b,
                step_ms=sec * 1e3,
                speedup_vs_first_backend=ref / sec,
                first_step_s=first[b],
                threads=spec['threads'],
                rounds=spec['rounds'],
                loadavg_1min=(load_before + load_after) / 2,
            )
        )
    return rows


def bench_train(
    sizes: list[int], rounds: int, threads: list[int], backends: list[str], unet: str = 'mhs_vm_unet_4h', batch: int = 1
) -> list[dict]:
    """Rows of :func:`train_worker`, one fresh process per (thread count, size)."""
    import json

    rows = []
    for n in threads:
        for size in sizes:
            spec = dict(what='train', unet=unet, size=size, batch=batch, rounds=rounds, threads=n, backends=backends)
            out = run_probe(['scan', '--worker', json.dumps(spec)], f'{unet} train {size}px {n}t')
            if out is not None:
                rows.extend(out['rows'])
    return rows


def write_train(rows: list[dict], out: str, unet: str = 'mhs_vm_unet_4h') -> tuple[str, str]:
    """``<out>.csv`` and ``<out>.png``: training-step time per backend."""
    groups = [f'{r["size"]}², b{r["batch"]}, {r["threads"]}t\n{r["backend"]}' for r in rows]
    panels = [
        Panel('training step (ms)', {'ms': [r['step_ms'] for r in rows]}, groups=groups),
        Panel('first step, compile included (s)', {'s': [r['first_step_s'] for r in rows]}, groups=groups),
    ]
    return write_report(rows, panels, out, title=f'MHS-VM {unet} training step (AdamW), per scan backend', digits=6)
