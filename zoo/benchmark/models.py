"""The ``models`` suite: throughput, latency, peak memory, parameters and MACs of a list of timm / zoo
models, each at each input side and with each set of extra ``create_model`` arguments (``model_kwargs``,
e.g. the spiking models' time steps ``T``).

Entries are measured interleaved (:func:`zoo.benchmark.timing.round_robin`, median per entry). Peak
memory is the peak resident set size of a separate process that builds the model and runs one step,
above its size after the imports (CPU), or the CUDA peak allocation. MACs come from
:func:`zoo.benchmark.macs.count_macs` (``gmacs``, ``dense_gmacs``, ``attn_gmacs``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import torch

from zoo.benchmark.report import Panel, write_report
from zoo.benchmark.timing import median, round_robin

__all__ = [
    'ModelKwargsError',
    'Result',
    'build',
    'kwargs_label',
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
    dense_gmacs: float = float('nan')  # conv and linear layers only
    attn_gmacs: float = float('nan')  # products outside conv / linear layers (attention), CPU SDPA included
    infer_img_s: float = float('nan')
    infer_ms_per_batch: float = float('nan')
    latency_ms: float = float('nan')  # batch 1
    cpu_s_per_img: float = float('nan')  # process CPU time of the inference batch / batch size (--cpu-time)
    train_img_s: float = float('nan')
    peak_mem_mb: float = float('nan')
    device: str = 'cpu'
    threads: int = field(default_factory=torch.get_num_threads)


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
    return model.to(device)


def peak_memory_mb(name: str, img_size: int, batch: int, mode: str, device: str, kwargs: dict | None = None) -> float:
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
    x = torch.randn(spec['batch'], 3, spec['img_size'], spec['img_size'], device=spec['device'])
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


def _jobs(model: torch.nn.Module, x: torch.Tensor, bench: str) -> dict:
    """The timed callables of one entry: 'infer' (the batch), 'lat' (batch 1) and 'train' (one SGD step)."""

    def infer(inp: torch.Tensor):
        def fn() -> None:
            model.eval()
            with torch.inference_mode():
                model(inp)

        return fn

    jobs = {}
    if bench in ('infer', 'both'):
        jobs['infer'] = infer(x)
        if x.shape[0] > 1:
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
) -> list[Result]:
    """Measure every (input side, model, kwargs set) entry, interleaved; one :class:`Result` each."""
    from tqdm import tqdm

    from zoo.benchmark.macs import count_macs

    entries = [(m, json.dumps(kw), s) for s in img_sizes for m in models for kw in (model_kwargs or [{}])]
    jobs, results = {}, {}
    for m, kw, s in tqdm(entries, desc='build', leave=False, disable=None):  # no bar when not a terminal
        model = build(m, s, device, json.loads(kw))
        x = torch.randn(batch, 3, s, s, device=device)
        macs = count_macs(model, x[:1])  # (also a first warm-up)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        macs_g = dict(gmacs=macs.total, dense_gmacs=macs.dense, attn_gmacs=macs.attention)
        results[m, kw, s] = Result(
            m, kw, s, batch, round(params, 3), **{k: round(v, 6) for k, v in macs_g.items()}, device=device
        )
        for kind, fn in _jobs(model, x, bench).items():
            jobs[(m, kw, s), kind] = fn
    # inference: `iters` batches per measurement, after one untimed batch (the entry before may have
    # evicted this one's caches); training: half as many steps (each costs about three forwards)
    counts = {k: max(1, iters // 2) if k[1] == 'train' else iters for k in jobs}
    timed = round_robin(jobs, rounds, iters=counts, warmup=1, device=device, desc='measure')
    for key, r in results.items():
        infer, lat, train = (timed.get((key, kind), []) for kind in ('infer', 'lat', 'train'))
        if infer:
            wall = median(infer)
            r.infer_img_s, r.infer_ms_per_batch = round(batch / wall, 2), round(wall * 1e3, 2)
            r.latency_ms = round((median(lat) if lat else wall) * 1e3, 2)
            if cpu_time:
                r.cpu_s_per_img = round(median(infer, 'cpu_s') / batch, 6)
        if train:
            r.train_img_s = round(batch / median(train), 2)
        if memory:
            mode = 'infer' if bench == 'infer' else 'train'
            r.peak_mem_mb = round(peak_memory_mb(key[0], key[2], batch, mode, device, json.loads(key[1])), 1)
    return [results[k] for k in entries]


def write_outputs(results: list[Result], out: str) -> None:
    """``<out>.csv`` (one row per entry) and ``<out>.png``: one panel per measured quantity; bars per model
    (grouped by kwargs set) for one input side, lines over the input side (log-log) for several."""
    # memory is probed on the training step when training was timed
    mode = 'training' if any(r.train_img_s == r.train_img_s for r in results) else 'inference'
    quantities = [
        (f, label)
        for f, label in (
            ('infer_img_s', 'inference (images / s)'),
            ('cpu_s_per_img', 'CPU time (s / image, forward)'),
            ('train_img_s', 'training (images / s)'),
            ('peak_mem_mb', f'peak memory (MB, {mode})'),
        )
        if any(getattr(r, f) == getattr(r, f) for r in results)
    ]  # NaN != NaN: not measured
    sizes = sorted({r.img_size for r in results})
    models = list(dict.fromkeys(r.model for r in results))
    variants = list(dict.fromkeys(r.model_kwargs for r in results))
    value = {(r.model, r.model_kwargs, r.img_size): r for r in results}
    panels = []
    for f, label in quantities:
        if len(sizes) == 1:
            series = {
                kwargs_label(json.loads(v)) or 'value': [getattr(value[m, v, sizes[0]], f) for m in models]
                for v in variants
            }
            panels.append(Panel(label, series, groups=models, xlabel='model', title=label.split(' (')[0]))
        else:
            series = {
                ' '.join(filter(None, (m, kwargs_label(json.loads(v))))): [
                    (s, getattr(value[m, v, s], f)) for s in sizes
                ]
                for m in models
                for v in variants
            }
            panels.append(
                Panel(label, series, kind='line', xlabel='input side (pixels)', log=True, title=label.split(' (')[0])
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
