"""The ``amp`` suite: one training step of each family's demo config in float32 and with ``tools/train.py --amp``
(bfloat16 autocast on CPU), as the user runs it. ``<out>.csv`` and ``<out>.png``.

Each entry is a config (default: :data:`CONFIGS`, the families' digits configs and MEDUSA's scans demo), built as
``tools/train.py`` builds it: the config's model through the zoo registry (``TimmClassifier`` /
``DCALClassifier``, with their loss), its optimizer through mmengine's ``build_optim_wrapper`` (``OptimWrapper``
for float32; for bf16 the ``zoo.CpuAmpOptimWrapper`` that ``--amp`` selects on CPU, i.e. the config's
``optim_wrapper`` with that type), a random batch of the config's train batch size and input side, and
``model.train_step`` (data preprocessor, forward, loss, backward, optimizer step), the Runner's call.
The two precisions are timed interleaved on the same model (``rounds`` rounds of ``iters`` steps, median), once per
thread count; ``ratio`` is float32 time / bf16 time (> 1: bf16 faster), ``*_min_ms`` the fastest round, ``*_cpu_ms``
and ``cpu_ratio`` the same from the process CPU time (all threads: the work itself, which stays meaningful when
other jobs load the machine, where wall time also measures the waiting; threads that spin while waiting count too);
``load_avg`` the 1-minute load average at the end of the entry. Entries may carry ``--cfg-options``-style overrides
after a ``:`` (``CONFIG:key=value,key=value``, values as JSON or plain strings), e.g. MEDUSA's
``body_checkpoint=None`` (the body's weights change nothing in the cost; the file is a generated fixture).
"""

from __future__ import annotations

import functools
import json
import logging
import os

import torch

from zoo.benchmark.report import Panel, write_report
from zoo.benchmark.timing import median, round_robin

__all__ = ['CONFIGS', 'bench', 'parse_entry', 'write']

CONFIGS: tuple[str, ...] = (
    'configs/classification/mambaout/mambaout_femto_digits.py',
    'configs/classification/agent_attention/agent_pvt_tiny_digits.py',
    'configs/classification/qsd_transformer/qsd_transformer_tiny_digits.py',
    'configs/classification/dcal/dcal_tiny_digits.py',
    'configs/classification/medusa/medusa_tiny_scans.py:model.model_kwargs.body_checkpoint=None',
)


def parse_entry(entry: str) -> tuple[str, dict]:
    """``'CONFIG:a.b=1,c=x'`` -> ``('CONFIG', {'a.b': 1, 'c': 'x'})`` (values parsed as JSON when they are JSON;
    ``None`` is ``None``)."""
    path, _, opts = entry.partition(':')
    options = {}
    for item in filter(None, opts.split(',')):
        key, _, raw = item.partition('=')
        try:
            value = None if raw == 'None' else json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options[key] = value
    return path, options


def _batch(cfg, batch: int | None) -> tuple[int, int]:
    """(batch size, input side) of the config's training data."""
    loader = cfg.train_dataloader
    side = loader.dataset.get('img_size', cfg.get('img_size'))
    return int(batch or loader.batch_size), int(side)


def bench(
    entries: tuple[str, ...] = CONFIGS,
    threads: tuple[int, ...] = (1, 2),
    rounds: int = 5,
    iters: int = 2,
    batch: int | None = None,
) -> list[dict]:
    """One row per entry and thread count (see the module docstring)."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    import zoo  # noqa: F401
    import zoo.engine  # noqa: F401  (registers the classifiers and zoo.CpuAmpOptimWrapper)
    from zoo.engine.config import load_config
    from zoo.registry import MODELS

    init_default_scope('zoo')
    rows = []
    for n in threads:
        torch.set_num_threads(n)
        for entry in entries:
            path, options = parse_entry(entry)
            cfg = load_config(path, options)
            torch.manual_seed(0)
            model = MODELS.build(cfg.model)
            model.train()
            wrappers = {}
            for variant, kind in (('fp32', 'OptimWrapper'), ('bf16', 'zoo.CpuAmpOptimWrapper')):
                ow = cfg.optim_wrapper.copy()
                ow.type = kind
                logging.disable(logging.INFO)  # mmengine logs every parameter group
                try:
                    wrappers[variant] = build_optim_wrapper(model, ow)
                finally:
                    logging.disable(logging.NOTSET)
            b, side = _batch(cfg, batch)
            num_classes = int(cfg.model.model_kwargs.get('num_classes', 10))
            g = torch.Generator().manual_seed(0)
            data = dict(
                inputs=torch.randn(b, 3, side, side, generator=g),
                data_samples=dict(gt_label=torch.randint(0, num_classes, (b,), generator=g)),
            )
            jobs = {v: functools.partial(model.train_step, data, w) for v, w in wrappers.items()}
            times = round_robin(jobs, rounds, iters=iters, warmup=1, desc=os.path.basename(path))
            fp32, bf16 = median(times['fp32']), median(times['bf16'])
            rows.append(
                dict(
                    config=os.path.basename(path),
                    model=cfg.model.model_name,
                    img_size=side,
                    batch_size=b,
                    threads=n,
                    fp32_ms=round(fp32 * 1e3, 1),
                    bf16_ms=round(bf16 * 1e3, 1),
                    ratio=round(fp32 / bf16, 2),
                    fp32_min_ms=round(min(s.wall_s for s in times['fp32']) * 1e3, 1),
                    bf16_min_ms=round(min(s.wall_s for s in times['bf16']) * 1e3, 1),
                    fp32_cpu_ms=round(median(times['fp32'], 'cpu_s') * 1e3, 1),
                    bf16_cpu_ms=round(median(times['bf16'], 'cpu_s') * 1e3, 1),
                    cpu_ratio=round(median(times['fp32'], 'cpu_s') / median(times['bf16'], 'cpu_s'), 2),
                    load_avg=round(os.getloadavg()[0], 2),
                )
            )
            print(', '.join(f'{k}={v}' for k, v in rows[-1].items()), flush=True)
    return rows


def write(rows: list[dict], out: str = 'benchmarks/amp_training') -> tuple[str, str]:
    """``<out>.csv`` and ``<out>.png``: the bf16 / float32 speed ratio per config, one bar series per thread
    count, and the step times."""
    configs = list(dict.fromkeys(r['config'].removesuffix('.py') for r in rows))
    threads = sorted({r['threads'] for r in rows})

    def cell(cfg: str, n: int, key: str) -> float:
        got = [r[key] for r in rows if r['config'].removesuffix('.py') == cfg and r['threads'] == n]
        return got[0] if got else float('nan')

    ratio = Panel(
        ylabel='fp32 step time / bf16 step time',
        series={f'{n} thread{"s" if n > 1 else ""}': [cell(c, n, 'ratio') for c in configs] for n in threads},
        groups=configs,
        title='bf16 speed-up of one training step (> 1: --amp faster; target 1.5)',
        notes={f'{n} thread{"s" if n > 1 else ""}': [f'{cell(c, n, "ratio"):.2f}' for c in configs] for n in threads},
    )
    steps = Panel(
        ylabel='ms per step',
        series={f'{v} {n}t': [cell(c, n, f'{v}_ms') for c in configs] for n in threads for v in ('fp32', 'bf16')},
        groups=configs,
        title='one step (forward, loss, backward, optimizer), median',
    )
    return write_report(rows, [ratio, steps], out, title='tools/train.py --amp (bf16 autocast) vs float32, CPU')
