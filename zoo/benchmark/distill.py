"""STCA-FF memory (ACAM-KD, arXiv 2503.06307, Sec. 3.2): the fused ``scaled_dot_product_attention`` path of
``zoo.distill.losses.STCAFusion`` against a naive ``softmax(Q K^T / sqrt(C_q)) V`` that forms the ``HW x HW``
matrix, on FPN P3 of an 800x1333 input (``100 x 168`` = 16.8k positions, 256 channels).

Run each path in a fresh process (``python -m zoo.benchmark.distill fused|naive``) so the peak resident set
size belongs to that path alone; the last stdout line is JSON.

The ``distill`` suite of tools/analysis/benchmark.py writes two reports:

* ``distill_step``: the time of one training step (forward, backward, SGD update) of RetinaNet R50 at 800x1333,
  batch 1, with no distillation (the student's own mmdet config) and with the MSE, FGD, MasKD and ACAM-KD
  configs of ``configs/distill/coco`` (teacher RetinaNet R101 forward included), entries timed interleaved.
  Weights are random (no download): the time does not depend on them.
* ``distill_memory``: the STCA-FF probe above, fused against naive, each in its own process.
"""

from __future__ import annotations

import json
import sys
import time

import torch

from zoo.benchmark.memory import peak_rss_mb, reset_peak_rss, rss_mb

__all__ = ['STEP_ENTRIES', 'memory_rows', 'naive_fusion', 'stca_memory', 'step_rows', 'write_memory', 'write_step']


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


# entry -> the config (None: the student's own mmdet config, no teacher)
STEP_ENTRIES = {
    'no KD': None,
    'MSE': 'configs/distill/coco/mse_retinanet_r101-r50_fpn_2x_coco.py',
    'FGD': 'configs/distill/coco/fgd_retinanet_r101-r50_fpn_2x_coco.py',
    'MasKD': 'configs/distill/coco/maskd_retinanet_r101-r50_fpn_2x_coco.py',
    'ACAM-KD': 'configs/distill/coco/acam-kd_retinanet_r101-r50_fpn_2x_coco.py',
}
_STUDENT = 'mmdet::retinanet/retinanet_r50_fpn_2x_coco.py'


def _build_step_model(config: str | None, root: str):
    """The distiller of ``config`` (or the plain R50 RetinaNet), random weights, in training mode."""
    import os

    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    import zoo.distill  # noqa: F401
    import zoo.mm  # noqa: F401
    from zoo.distill.distiller import model_config
    from zoo.registry import MODELS

    if config is None:
        model_cfg = model_config(dict(cfg_path=_STUDENT, pretrained=False))
    else:
        model_cfg = Config.fromfile(os.path.join(root, config)).model.to_dict()
        model_cfg['teacher_ckpt'] = None
        model_cfg['architecture']['pretrained'] = False
    with DefaultScope.overwrite_default_scope('zoo'):
        model = MODELS.build(model_cfg)
    return model.train()


def step_rows(
    entries: list[str] | None = None, hw: tuple[int, int] = (800, 1333), rounds: int = 1, root: str = '.'
) -> list[dict]:
    """Seconds of one training step per entry of :data:`STEP_ENTRIES` (median of ``rounds`` interleaved rounds
    after one warm-up step each), on CPU at batch 1."""
    from zoo.benchmark.timing import median, round_robin
    from zoo.mm.synthetic import det_batch

    entries = list(entries or STEP_ENTRIES)
    inputs, samples = det_batch(*hw)
    jobs, params = {}, {}
    for entry in entries:
        torch.manual_seed(0)
        model = _build_step_model(STEP_ENTRIES[entry], root)
        trainable = [p for p in model.parameters() if p.requires_grad]
        params[entry] = sum(p.numel() for p in trainable) / 1e6
        opt = torch.optim.SGD(trainable, lr=1e-4, momentum=0.9)

        def step(model=model, opt=opt) -> None:
            opt.zero_grad(set_to_none=True)
            loss, _ = model.parse_losses(model(inputs, samples, mode='loss'))  # mmengine's sum of 'loss' keys
            loss.backward()
            opt.step()

        jobs[entry] = step
    samples_s = round_robin(jobs, rounds, warmup=1, device='cpu', desc='distill step')
    base = median(samples_s[entries[0]]) if entries[0] == 'no KD' else None
    rows = []
    for entry in entries:
        wall = median(samples_s[entry])
        rows.append(
            dict(
                method=entry,
                config=STEP_ENTRIES[entry] or _STUDENT,
                input=f'{hw[0]}x{hw[1]}',
                batch_size=1,
                step_s=round(wall, 2),
                overhead_x=round(wall / base, 2) if base else '',
                trainable_params_m=round(params[entry], 3),
                rounds=rounds,
                device='cpu',
                threads=torch.get_num_threads(),
            )
        )
    return rows


def write_step(rows: list[dict], out: str) -> tuple[str, str]:
    from zoo.benchmark.report import Panel, write_report

    groups = [r['method'] for r in rows]
    notes = [f'{r["overhead_x"]}x' if r['overhead_x'] != '' else '' for r in rows]
    panels = [
        Panel(
            f'seconds / training step (CPU, {rows[0]["threads"]} thread(s))',
            {'step': [r['step_s'] for r in rows]},
            groups=groups,
            notes={'step': notes},
        )
    ]
    title = f'RetinaNet R50 (teacher R101), {rows[0]["input"]},\nbatch 1: one training step'
    return write_report(rows, panels, out, title=title)


def memory_rows(hw: tuple[int, int] = (100, 168), channels: int = 256) -> list[dict]:
    """The STCA-FF probe, fused and naive, each in a fresh process (forward + backward)."""
    import subprocess

    rows = []
    for path in ('fused', 'naive'):
        proc = subprocess.run(
            [
                sys.executable,
                '-m',
                'zoo.benchmark.distill',
                path,
                '--hw',
                str(hw[0]),
                str(hw[1]),
                '--channels',
                str(channels),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return rows


def write_memory(rows: list[dict], out: str) -> tuple[str, str]:
    from zoo.benchmark.report import Panel, write_report

    groups = [r['path'] for r in rows]
    panels = [
        Panel('peak RSS above start (MB)', {'STCA-FF': [r['peak_mb'] for r in rows]}, groups=groups),
        Panel('seconds (forward + backward)', {'STCA-FF': [r['seconds'] for r in rows]}, groups=groups),
    ]
    r = rows[0]
    title = f'STCA-FF on {r["tokens"]} tokens x {r["channels"]} ch (FPN P3 of 800x1333): fused SDPA vs naive'
    return write_report(rows, panels, out, title=title)


if __name__ == '__main__':
    import argparse

    p = argparse.ArgumentParser(description='One STCA-FF path in this process; prints one JSON line.')
    p.add_argument('path', choices=['fused', 'naive'])
    p.add_argument('--hw', type=int, nargs=2, default=(100, 168), help='feature map height and width')
    p.add_argument('--channels', type=int, default=256)
    p.add_argument('--no-backward', action='store_true')
    a = p.parse_args()
    print(json.dumps(stca_memory(a.path, tuple(a.hw), a.channels, backward=not a.no_backward)))
