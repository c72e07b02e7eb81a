"""The ``models`` suite: throughput, latency, peak memory, parameters and MACs of a list of timm / zoo
models, each at each input side and with each set of extra ``create_model`` arguments (``model_kwargs``,
e.g. the spiking models' time steps ``T``).

Entries are measured interleaved (:func:`zoo.benchmark.timing.round_robin`, median per entry). Peak
memory is the peak resident set size of a separate process that builds the model and runs one step,
above its size after the imports (CPU), or the CUDA peak allocation. MACs come from
:func:`zoo.benchmark.macs.count_macs` (``gmacs``, ``dense_gmacs``, ``attn_gmacs``).

Each entry runs in one or more *variants* of the fast inference path (:data:`VARIANT_PARTS`): ``fp32`` (eager
float32), or ``+``-joined parts of ``bf16`` (bfloat16 autocast), ``channels_last`` and ``compile``
(``torch.compile``, Inductor), applied by :func:`zoo.layers.prepare_inference`. The float32 and bfloat16 matmul
peaks are measured interleaved with the entries (:mod:`zoo.benchmark.peak`); ``gflop_s`` (2 x MACs x
images / s) is reported as ``share_of_peak``, a share of the peak of the variant's precision. ``compile_s`` is
the first (compiling) batch's wall time. Compiled variants get no peak-memory probe (the compiler's own
memory would dominate it).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass, field, fields

import torch

from zoo.benchmark.report import Panel, write_report
from zoo.benchmark.timing import median, round_robin

__all__ = [
    'ModelKwargsError',
    'Result',
    'VARIANT_PARTS',
    'parse_variant',
    'build',
    'kwargs_label',
    'merge_results',
    'memory_probe',
    'peak_memory_mb',
    'run',
    'write_outputs',
]


class ModelKwargsError(TypeError):
    """The model does not take the extra ``create_model`` arguments; ``str()`` is one line naming both."""


@dataclass
class Result:
    """One CSV row: one model at one input side with one kwargs set; NaN where not measured."""

    model: str
    model_kwargs: str  # JSON of the extra create_model arguments ('{}': none)
    img_size: int
    batch_size: int
    params_m: float
    gmacs: float  # multiply-accumulates per image (FLOPs / 2), as the papers' "FLOPs" columns
    variant: str = 'fp32'  # fp32, or '+'-joined bf16 / channels_last / compile
    dense_gmacs: float = float('nan')  # conv and linear layers only
    attn_gmacs: float = float('nan')  # products outside conv / linear layers (attention), CPU SDPA included
    infer_img_s: float = float('nan')
    infer_ms_per_batch: float = float('nan')
    latency_ms: float = float('nan')  # batch 1
    cpu_s_per_img: float = float('nan')  # process CPU time of the inference batch / batch size (--cpu-time)
    train_img_s: float = float('nan')
    peak_mem_mb: float = float('nan')
    compile_s: float = float('nan')  # first (compiling) inference batch, compiled variants
    gflop_s: float = float('nan')  # achieved in inference: 2 * gmacs * infer_img_s
    peak_fp32_gflop_s: float = float('nan')  # float32 matmul peak, measured in the same run
    peak_bf16_gflop_s: float = float('nan')  # bfloat16 matmul peak, measured in the same run
    share_of_peak: float = float('nan')  # gflop_s / the peak of the variant's precision
    load_avg: float = float('nan')  # 1-minute load average when the measurement ended
    device: str = 'cpu'
    threads: int = field(default_factory=torch.get_num_threads)


VARIANT_PARTS = ('bf16', 'channels_last', 'compile')


def parse_variant(text: str) -> str:
    """``'compile+bf16'`` -> ``'bf16+compile'`` (canonical order); ``'fp32'`` (or ``''``): plain eager float32.
    Raises ValueError naming an unknown part."""
    parts = {p.strip().replace('-', '_') for p in text.split('+') if p.strip()} - {'fp32'}
    unknown = parts - set(VARIANT_PARTS)
    if unknown:
        known = ', '.join(('fp32', *VARIANT_PARTS))
        raise ValueError(f'unknown variant part(s) {sorted(unknown)} in {text!r} (parts: {known})')
    return '+'.join(p for p in VARIANT_PARTS if p in parts) or 'fp32'


def _prepare(model: torch.nn.Module, variant: str, name: str):
    """The variant's fast path on ``model`` (in place); the compile state or None."""
    from zoo.layers import prepare_inference

    parts = variant.split('+')
    return prepare_inference(
        model, bf16='bf16' in parts, compile='compile' in parts, channels_last='channels_last' in parts, what=name
    )


def _input(batch: int, side: int, device: str, variant: str) -> torch.Tensor:
    x = torch.randn(batch, 3, side, side, device=device)
    return x.contiguous(memory_format=torch.channels_last) if 'channels_last' in variant.split('+') else x


def kwargs_label(kw: dict) -> str:
    """``{'T': 4, 'D': 2}`` -> ``'T=4, D=2'`` (legends, console lines)."""
    return ', '.join(f'{k}={v}' for k, v in kw.items())


def build(name: str, img_size: int, device: str, kwargs: dict | None = None) -> torch.nn.Module:
    """``timm.create_model(name, img_size=img_size, **kwargs)`` on ``device``; models without an ``img_size``
    argument are built without it (they take any input side)."""
    import timm

    import zoo  # noqa: F401

    kwargs = kwargs or {}
    try:
        model = timm.create_model(name, img_size=img_size, **kwargs)
    except TypeError:
        try:
            model = timm.create_model(name, **kwargs)
        except TypeError as err:
            if not kwargs:
                raise
            raise ModelKwargsError(f'--model-kwargs {json.dumps(kwargs)} for {name}: {err}') from None
    # as the training wrapper (TimmClassifier) builds it: depthwise convs on maps no larger than the kernel crop their
    # taps and train in float32 under bf16 autocast (zoo.layers.amp_conv); nothing changes at 224 px inference
    from zoo.layers.amp_conv import small_grid_depthwise_convs

    small_grid_depthwise_convs(model)
    return model.to(device)


def peak_memory_mb(
    name: str,
    img_size: int,
    batch: int,
    mode: str,
    device: str,
    kwargs: dict | None = None,
    variant: str = 'fp32',
) -> float:
    """Peak memory of one step in a fresh process (CPU: peak RSS; CUDA: max allocated)."""
    from zoo.benchmark.memory import run_probe

    spec = dict(
        name=name,
        img_size=img_size,
        batch=batch,
        mode=mode,
        device=device,
        kwargs=kwargs or {},
        threads=torch.get_num_threads(),
        variant=variant,
    )
    out = run_probe(['--memory-probe', json.dumps(spec)], name)
    return float('nan') if out is None else float(out)


def memory_probe(spec: dict) -> None:
    """Print the peak memory (MB) of one step as ``spec`` describes (run in a fresh process)."""
    import timm  # noqa: F401  (imports are not part of the model's footprint)

    import zoo  # noqa: F401
    from zoo.benchmark.memory import peak_rss_mb, reset_peak_rss, rss_mb

    torch.set_num_threads(spec.get('threads', torch.get_num_threads()))
    reset_peak_rss()
    base = rss_mb()
    model = build(spec['name'], spec['img_size'], spec['device'], spec.get('kwargs'))
    variant = spec.get('variant', 'fp32')
    _prepare(model, variant, spec['name'])
    x = _input(spec['batch'], spec['img_size'], spec['device'], variant)
    if spec['device'].startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    if spec['mode'] == 'train':
        model.train()
        model(x).float().mean().backward()
    else:
        model.eval()
        with torch.inference_mode():
            model(x)
    if spec['device'].startswith('cuda'):
        print(torch.cuda.max_memory_allocated() / 2**20)
    else:
        # peak RSS during build + step, above the process after imports: weights + activations
        print(peak_rss_mb() - base)


def _jobs(model: torch.nn.Module, x: torch.Tensor, bench: str, latency: bool = True) -> dict:
    """The timed callables of one entry: 'infer' (the batch), 'lat' (batch 1, with ``latency``) and 'train' (one
    SGD step)."""

    def infer(inp: torch.Tensor):
        def fn() -> None:
            model.eval()
            with torch.inference_mode():
                model(inp)

        return fn

    jobs = {}
    if bench in ('infer', 'both'):
        jobs['infer'] = infer(x)
        if x.shape[0] > 1 and latency:
            jobs['lat'] = infer(x[:1])
    if bench in ('train', 'both'):
        opt = torch.optim.SGD(model.parameters(), lr=1e-4)

        def step() -> None:
            model.train()
            opt.zero_grad(set_to_none=True)
            model(x).float().logsumexp(dim=1).mean().backward()
            opt.step()

        jobs['train'] = step
    return jobs


def run(
    models: list[str],
    img_sizes: list[int],
    batch: int,
    bench: str,
    rounds: int,
    iters: int,
    device: str,
    memory: bool,
    model_kwargs: list[dict] | None = None,
    cpu_time: bool = False,
    variants: list[str] | None = None,
    peak_n: int = 1024,
) -> list[Result]:
    """Measure every (input side, model, kwargs set, variant) entry and the matmul peaks, interleaved; one
    :class:`Result` per entry."""
    from tqdm import tqdm

    from zoo.benchmark.macs import count_macs
    from zoo.benchmark.peak import matmul_jobs, peak_gflops

    variants = [parse_variant(v) for v in variants or ['fp32']]
    if bench != 'infer' and any('compile' in v.split('+') for v in variants):
        raise ValueError('compiled variants time inference only: add --bench infer')
    entries = [
        (m, json.dumps(kw), s, v)
        for s in img_sizes
        for m in models
        for kw in (model_kwargs or [{}])
        for v in dict.fromkeys(variants)
    ]
    jobs, results = {}, {}
    macs_of = {}
    for m, kw, s, v in tqdm(entries, desc='build', leave=False, disable=None):  # no bar when not a terminal
        torch.manual_seed(0)
        model = build(m, s, device, json.loads(kw))
        if (m, kw, s) not in macs_of:  # on the eager float32 model (also a first warm-up)
            macs = count_macs(model, torch.randn(1, 3, s, s, device=device))
            params = sum(p.numel() for p in model.parameters()) / 1e6
            macs_g = dict(gmacs=macs.total, dense_gmacs=macs.dense, attn_gmacs=macs.attention)
            macs_of[m, kw, s] = round(params, 3), macs_g
        params, macs_g = macs_of[m, kw, s]
        r = results[m, kw, s, v] = Result(
            m, kw, s, batch, params, **{k: round(x, 6) for k, x in macs_g.items()}, variant=v, device=device
        )
        state = _prepare(model, v, m)
        x = _input(batch, s, device, v)
        if state is not None:  # the first (compiling) batch, timed
            model.eval()
            with torch.inference_mode():
                model(x)
            r.compile_s = round(state.first_call_s, 2) if state.compiled else float('nan')
        # compiled variants: no batch-1 latency (a second shape would compile the model again)
        for kind, fn in _jobs(model, x, bench, latency=state is None).items():
            jobs[(m, kw, s, v), kind] = fn
    for name, fn in matmul_jobs(peak_n, device).items():
        jobs['peak', name] = fn
    # inference: `iters` batches per measurement, after one untimed batch (the entry before may have
    # evicted this one's caches); training: half as many steps (each costs about three forwards)
    counts = {k: max(1, iters // 2) if k[1] == 'train' else iters for k in jobs}
    timed = round_robin(jobs, rounds, iters=counts, warmup=1, device=device, desc='measure')
    peaks = {name: peak_gflops([x.wall_s for x in timed['peak', name]], peak_n) for name in ('fp32', 'bf16')}
    load = round(os.getloadavg()[0], 2)  # other jobs on the machine (1-minute load average, at the end)
    nan = float('nan')
    for key, r in results.items():
        infer, lat, train = (timed.get((key, kind), []) for kind in ('infer', 'lat', 'train'))
        r.peak_fp32_gflop_s, r.peak_bf16_gflop_s = round(peaks['fp32'], 1), round(peaks['bf16'], 1)
        r.load_avg = load
        if infer:
            wall = median(infer)
            r.infer_img_s, r.infer_ms_per_batch = round(batch / wall, 2), round(wall * 1e3, 2)
            r.latency_ms = round((median(lat) if lat else wall if batch == 1 else nan) * 1e3, 2)
            if cpu_time:
                r.cpu_s_per_img = round(median(infer, 'cpu_s') / batch, 6)
            r.gflop_s = round(2 * r.gmacs * r.infer_img_s, 2)
            peak = peaks['bf16' if 'bf16' in r.variant.split('+') else 'fp32']
            r.share_of_peak = round(r.gflop_s / peak, 4)
        if train:
            r.train_img_s = round(batch / median(train), 2)
        if memory and 'compile' not in r.variant.split('+'):
            mode = 'infer' if bench == 'infer' else 'train'
            r.peak_mem_mb = round(
                peak_memory_mb(key[0], key[2], batch, mode, device, json.loads(key[1]), variant=r.variant), 1
            )
    return [results[k] for k in entries]


def merge_results(results: list[Result], csv_path: str) -> list[Result]:
    """The rows of an earlier ``csv_path`` with the ones measured now in their place (same model, kwargs, variant
    and input side) and new ones appended: rerun a few models of a table without rerunning the rest. Each row
    keeps the matmul peaks and load average of the run that measured it."""
    if not os.path.isfile(csv_path):
        return results
    kinds = {f.name: f.type for f in fields(Result)}
    with open(csv_path, newline='') as f:
        old = [
            Result(**{k: {'int': int, 'float': float}.get(kinds[k], str)(v) for k, v in row.items() if k in kinds})
            for row in csv.DictReader(f)
        ]
    key = lambda r: (r.model, r.model_kwargs, r.variant, r.img_size)  # noqa: E731
    new = {key(r): r for r in results}
    merged = [new.pop(key(r), r) for r in old]
    return merged + list(new.values())


def write_outputs(results: list[Result], out: str) -> None:
    """``<out>.csv`` (one row per entry) and ``<out>.png``: one panel per measured quantity; bars per model
    (grouped by kwargs set and variant) for one input side, lines over the input side (log-log) for several."""
    # memory is probed on the training step when training was timed
    mode = 'training' if any(r.train_img_s == r.train_img_s for r in results) else 'inference'
    quantities = [
        (f, label)
        for f, label in (
            ('infer_img_s', 'inference (images / s)'),
            ('share_of_peak', 'inference (share of matmul peak)'),
            ('cpu_s_per_img', 'CPU time (s / image, forward)'),
            ('train_img_s', 'training (images / s)'),
            ('peak_mem_mb', f'peak memory (MB, {mode})'),
        )
        if any(getattr(r, f) == getattr(r, f) for r in results)
    ]  # NaN != NaN: not measured
    sizes = sorted({r.img_size for r in results})
    models = list(dict.fromkeys(r.model for r in results))
    variants = list(dict.fromkeys((r.model_kwargs, r.variant) for r in results))
    several = len({r.variant for r in results}) > 1
    value = {(r.model, r.model_kwargs, r.variant, r.img_size): r for r in results}

    def label(kw: str, variant: str) -> str:
        return ', '.join(filter(None, (kwargs_label(json.loads(kw)), variant if several else '')))

    nan = float('nan')
    panels = []
    for f, ylabel in quantities:
        if len(sizes) == 1:
            series = {
                label(kw, v) or 'value': [getattr(value.get((m, kw, v, sizes[0])), f, nan) for m in models]
                for kw, v in variants
            }
            panels.append(Panel(ylabel, series, groups=models, xlabel='model', title=ylabel.split(' (')[0]))
        else:
            series = {
                ' '.join(filter(None, (m, label(kw, v)))): [
                    (s, getattr(value.get((m, kw, v, s)), f, nan)) for s in sizes
                ]
                for m in models
                for kw, v in variants
            }
            panels.append(
                Panel(ylabel, series, kind='line', xlabel='input side (pixels)', log=True, title=ylabel.split(' (')[0])
            )
    r0 = results[0]
    title = f'{r0.device}, {r0.threads} thread{"s" if r0.threads != 1 else ""}, batch {r0.batch_size}' + (
        f', {sizes[0]}x{sizes[0]} px' if len(sizes) == 1 else ''
    )
    # one column per kwargs key as well (e.g. T, as the spiking models' tables have it)
    keys = list(dict.fromkeys(k for r in results for k in json.loads(r.model_kwargs)))
    rows = []
    for r in results:
        row, kw = asdict(r), json.loads(r.model_kwargs)
        extra = {k: kw.get(k, '') for k in keys if k not in row}
        rows.append({k: v for k, v in row.items() if k in ('model', 'model_kwargs')} | extra | row)
    write_report(rows, panels, out, title=title)
