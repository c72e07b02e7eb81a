"""The ``medusa`` suite: what MEDUSA (arXiv 2110.06063) costs over its trunk, next to the published figures.

One row per entry, ``<out>.csv`` and ``<out>.png``: parameters, GMACs per image (:func:`zoo.benchmark.macs.count_macs`)
and images/s (eval, batch ``batch``, entries timed interleaved, median of ``rounds``) of

* ``medusa_resnet50`` (body + 4 heads + ResNet-50 + the 8192 -> 2 classifier) at ``img_size`` (480),
* timm's ``resnet50`` (2 classes) at the same size,
* the body alone (``UNetBody``) at its 256² view.

The reference row gives the published 29.2M params / 29.1 GMACs of COVIDNet-CXR-3. Counted from the layers the
network is 53.0 GMACs (ResNet-50 at 480² 18.8 G + body at 256² 33.9 G + 0.36 G): the published MAC convention is
unknown (docs/medusa.md).
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.benchmark.macs import count_macs
from zoo.benchmark.report import Panel, write_report
from zoo.benchmark.timing import median, round_robin

__all__ = ['ENTRIES', 'bench', 'write']

ENTRIES = ('medusa_resnet50', 'resnet50', 'body')


class _Body(nn.Module):
    """The body on its own input ``(B, 1, S, S)``."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _build(entry: str, model_kwargs: dict) -> tuple[nn.Module, tuple[int, ...]]:
    import timm

    import zoo  # noqa: F401

    if entry == 'body':
        m = timm.create_model('medusa_resnet50', **model_kwargs)
        return _Body(m.body), (1, m.body_size, m.body_size)
    if entry == 'resnet50':
        return timm.create_model('resnet50', num_classes=2), ()
    return timm.create_model(entry, **model_kwargs), ()


def bench(
    img_size: int = 480, batch: int = 8, rounds: int = 3, device: str = 'cpu', model_kwargs: dict | None = None
) -> list[dict]:
    """One row per entry of :data:`ENTRIES` (see the module docstring). ``model_kwargs`` go to
    ``medusa_resnet50`` (e.g. a narrower body for a quick run)."""
    from zoo.models import paper_facts

    kwargs = dict(model_kwargs or {})
    jobs, info = {}, {}
    for entry in ENTRIES:
        model, shape = _build(entry, kwargs)
        model = model.to(device).eval()
        shape = shape or (3, img_size, img_size)
        x = torch.randn(batch, *shape, device=device)
        info[entry] = dict(
            params_m=sum(p.numel() for p in model.parameters()) / 1e6,
            gmacs=count_macs(model, x[:1]).total,
            input=f'{shape[-2]}x{shape[-1]}x{shape[0]}',
        )

        def fn(model: nn.Module = model, x: torch.Tensor = x) -> None:
            with torch.inference_mode():
                model(x)

        jobs[entry] = fn
    samples = round_robin(jobs, rounds, warmup=1, device=device, desc='medusa')
    facts = paper_facts()['medusa_resnet50']
    rows = []
    for entry in ENTRIES:
        wall = median(samples[entry])
        rows.append(
            dict(
                model=entry,
                input=info[entry]['input'],
                batch_size=batch,
                params_m=round(info[entry]['params_m'], 4),
                gmacs=round(info[entry]['gmacs'], 3),
                img_s=round(batch / wall, 3),
                paper_params_m=facts['params_m'] if entry == 'medusa_resnet50' else '',
                paper_gmacs=facts['gmacs'] if entry == 'medusa_resnet50' else '',
                rounds=rounds,
                device=device,
                threads=torch.get_num_threads(),
            )
        )
    return rows


def write(rows: list[dict], out: str) -> tuple[str, str]:
    """``<out>.csv`` and ``<out>.png``: params, GMACs and img/s per entry, the published figures as notes."""
    groups = [r['model'] for r in rows]
    notes = [f'paper {r["paper_params_m"]}M' if r['paper_params_m'] != '' else '' for r in rows]
    gnotes = [f'paper {r["paper_gmacs"]} G' if r['paper_gmacs'] != '' else '' for r in rows]
    panels = [
        Panel('params (M)', {'ours': [r['params_m'] for r in rows]}, groups=groups, notes={'ours': notes}),
        Panel('GMACs / image', {'ours': [r['gmacs'] for r in rows]}, groups=groups, notes={'ours': gnotes}),
        Panel(
            f'images / s (batch {rows[0]["batch_size"]}, {rows[0]["device"]})',
            {'ours': [r['img_s'] for r in rows]},
            groups=groups,
        ),
    ]
    return write_report(rows, panels, out, title='MEDUSA (ResNet-50, 480²) against ResNet-50; body at 256²')
