"""The ``dcal`` suite: what DCAL (Zhu et al., CVPR 2022, arXiv:2205.02151) costs over its plain ViT, next to
the paper's figures. Three parts, each ``<out-dir>/dcal_<part>.csv`` and ``.png``:

``inference``: parameters, MACs per image and images/s of each ``dcal_*`` model (SA + GLCA, PWCA removed)
  against its plain timm ViT (``deit_tiny_patch16_224`` etc., built at the same input side), batch
  --batch-size, eval, both models measured interleaved (median of --rounds rounds), and the ratios
  DCAL / plain. GMACs are every product the forward runs (``dense + attention`` of
  :func:`zoo.benchmark.macs.count_macs`: CPU SDPA counted from its shapes, DCAL's explicit attention and
  rollout included). The paper states +9 % params / +2 % FLOPs for DeiT-T at 448 (written next to ours).
``training``: seconds of one optimizer step (AdamW, forward + backward + step) with SA + GLCA + PWCA and
  the uncertainty-weighted loss (``model(x, target)``) against SA alone (``set_inference_branches('sa')``,
  cross-entropy: the plain ViT's step) on the same model, interleaved, and the forward MACs of each. The
  paper's 1.8x is its training time (3.8 h vs 2.1 h, DeiT-T, CUB, 4 V100), data loading included. On CPU
  the default input side is capped at 224 (--train-img-size): a DCAL step at 448, batch 8 is ~0.4 TMAC
  (17 GMACs forward per image, backward twice that), tens of seconds on a few cores.
``attention``: one block's attention at each model's shapes (heads, head width, ``(side / 16)² + 1`` tokens,
  batch): the fused SDPA kernel the plain ViT runs, DCAL's eval path (:func:`attention_with_head_mean`:
  output plus the head-mean probabilities the rollout needs), and the two matrix products ``q kᵀ`` and
  ``P v`` alone into reused buffers, the floor of any method that writes the probabilities out with the same
  GEMMs. When that floor is above the fused kernel, no exact rollout can reach the plain ViT's speed.
``rollout``: the class-token row of the rollout as ``L`` vector-matrix products
  (:func:`zoo.layers.rollout.rollout_cls_row`) against the full chain of ``N x N`` matrix products
  ``S̄_L ⋯ S̄_1`` (its row 0), on random row-stochastic maps of ``N`` tokens (default ``(side / 16)² + 1``:
  785 at 448) and ``L`` layers (12): max |difference|, the error of each against a float64 chain, and the
  speed-up.
"""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from torch import nn

from zoo.benchmark.macs import count_macs
from zoo.benchmark.report import Panel, write_report
from zoo.benchmark.timing import measure, median, round_robin

__all__ = [
    'DCAL_MODELS',
    'PAPER_TRAIN_RATIO',
    'PLAIN_OF',
    'bench_attention',
    'bench_inference',
    'bench_rollout',
    'bench_training',
    'full_chain_cls_row',
    'plain_model_of',
    'random_maps',
    'write_attention',
    'write_inference',
    'write_rollout',
    'write_training',
]

# Each DCAL model's SA branch: the timm ViT whose weights it loads (zoo/models/dcal.py default_cfgs).
PLAIN_OF = {
    'dcal_deit_tiny_patch16_448': 'deit_tiny_patch16_224',
    'dcal_deit_small_patch16_448': 'deit_small_patch16_224',
    'dcal_deit_base_patch16_448': 'deit_base_patch16_224',
    'dcal_vit_base_patch16_448': 'vit_base_patch16_224',
}
DCAL_MODELS = tuple(PLAIN_OF)
PAPER_TRAIN_RATIO = 3.8 / 2.1  # DCAL paper, Sec. 4: 3.8 h vs 2.1 h of training (DeiT-T, CUB-200-2011)


def plain_model_of(name: str) -> str:
    """The plain timm ViT of a DCAL model: :data:`PLAIN_OF`, else the SA weights named by its ``hf_hub_id``."""
    if name in PLAIN_OF:
        return PLAIN_OF[name]
    import timm

    import zoo  # noqa: F401

    cfg = timm.models.get_pretrained_cfg(name)
    hub = getattr(cfg, 'hf_hub_id', None) or ''
    if not name.startswith('dcal_') or not hub.startswith('timm/'):
        raise ValueError(f'{name} is not a DCAL model with a known plain ViT (known: {", ".join(PLAIN_OF)})')
    return hub.removeprefix('timm/').split('.')[0]


def _build(name: str, img_size: int, device: str, kwargs: dict) -> nn.Module:
    import timm

    import zoo  # noqa: F401

    return timm.create_model(name, img_size=img_size, **kwargs).to(device)


def _params_m(model: nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def _all_gmacs(model: nn.Module, x: torch.Tensor) -> float:
    """Every product of the forward per image (dense + attention; see the module docstring)."""
    m = count_macs(model, x[:1])
    return m.dense + m.attention


def _infer_fn(model: nn.Module, x: torch.Tensor):
    def fn() -> None:
        with torch.inference_mode():
            model(x)

    return fn


def bench_inference(
    models: list[str],
    img_size: int = 448,
    batch: int = 8,
    rounds: int = 3,
    iters: int = 1,
    device: str = 'cpu',
    num_classes: int = 200,
    model_kwargs: dict | None = None,
) -> list[dict]:
    """One row per DCAL model: its and its plain ViT's params, GMACs and img/s, the ratios and the paper's.

    Args:
        models: DCAL model names (plain ViTs from :func:`plain_model_of`).
        img_size: square input side of both models.
        batch: images per timed forward.
        rounds: interleaved rounds (median reported); iters: forwards per timed measurement.
        num_classes: classifier size of both (200: CUB-200-2011, the paper's cost setting).
        model_kwargs: extra ``create_model`` arguments for both (e.g. ``{"depth": 2}`` for a quick run).
    """
    from zoo.models import paper_facts

    kw = dict(num_classes=num_classes, **(model_kwargs or {}))
    x = torch.randn(batch, 3, img_size, img_size, device=device)
    info, jobs = {}, {}
    for name in models:
        for role, arch in (('dcal', name), ('plain', plain_model_of(name))):
            model = _build(arch, img_size, device, kw).eval()
            info[name, role] = dict(arch=arch, params_m=_params_m(model), gmacs=_all_gmacs(model, x))
            jobs[name, role] = _infer_fn(model, x)
    samples = round_robin(jobs, rounds, iters=iters, warmup=1, device=device, desc='dcal inference')
    rows = []
    for name in models:
        d, p = info[name, 'dcal'], info[name, 'plain']
        d_s, p_s = median(samples[name, 'dcal']), median(samples[name, 'plain'])
        d_cpu, p_cpu = median(samples[name, 'dcal'], 'cpu_s'), median(samples[name, 'plain'], 'cpu_s')
        facts = paper_facts().get(name, {})
        paper_p, paper_f = facts.get('params_overhead'), facts.get('flops_overhead')
        rows.append(
            dict(
                model=name,
                plain_model=p['arch'],
                img_size=img_size,
                batch_size=batch,
                num_classes=num_classes,
                model_kwargs=json.dumps(model_kwargs or {}),
                params_m=round(d['params_m'], 4),
                plain_params_m=round(p['params_m'], 4),
                params_ratio=round(d['params_m'] / p['params_m'], 4),
                paper_params_ratio='' if paper_p is None else round(1 + paper_p, 4),
                gmacs=round(d['gmacs'], 4),
                plain_gmacs=round(p['gmacs'], 4),
                gmacs_ratio=round(d['gmacs'] / p['gmacs'], 4),
                paper_gmacs_ratio='' if paper_f is None else round(1 + paper_f, 4),
                img_s=round(batch / d_s, 3),
                plain_img_s=round(batch / p_s, 3),
                img_s_ratio=round(p_s / d_s, 4),
                cpu_ms_per_img=round(d_cpu / batch * 1e3, 3),
                plain_cpu_ms_per_img=round(p_cpu / batch * 1e3, 3),
                rounds=rounds,
                device=device,
                threads=torch.get_num_threads(),
            )
        )
    return rows


def write_inference(rows: list[dict], out: str) -> tuple[str, str]:
    """``<out>.csv`` and ``<out>.png``: params, GMACs and img/s of each DCAL model and its plain ViT."""
    groups = [r['model'] for r in rows]
    panels = []
    for ylabel, key, ratio in (('params (M)', 'params_m', 'params_ratio'), ('GMACs / image', 'gmacs', 'gmacs_ratio')):
        paper = [f' (paper {r[f"paper_{ratio}"]:.2f}x)' if r[f'paper_{ratio}'] != '' else '' for r in rows]
        panels.append(
            Panel(
                ylabel,
                {'plain ViT': [r[f'plain_{key}'] for r in rows], 'DCAL (SA + GLCA)': [r[key] for r in rows]},
                groups=groups,
                notes={'DCAL (SA + GLCA)': [f'{r[ratio]:.3f}x{p}' for r, p in zip(rows, paper)]},
            )
        )
    panels.append(
        Panel(
            f'images / s (batch {rows[0]["batch_size"]}, {rows[0]["device"]})',
            {'plain ViT': [r['plain_img_s'] for r in rows], 'DCAL (SA + GLCA)': [r['img_s'] for r in rows]},
            groups=groups,
            notes={'DCAL (SA + GLCA)': [f'{r["img_s_ratio"]:.2f}x' for r in rows]},
        )
    )
    title = f'DCAL inference against the plain ViT at {rows[0]["img_size"]}², {rows[0]["num_classes"]} classes'
    return write_report(rows, panels, out, title=title)


class _TrainForward(nn.Module):
    """``model.forward_branches(x)`` (SA + GLCA + PWCA) as a module, for :func:`count_macs`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model.forward_branches(x, pwca=True)


def bench_training(
    models: list[str],
    img_size: int = 224,
    batch: int = 8,
    rounds: int = 3,
    device: str = 'cpu',
    num_classes: int = 200,
    model_kwargs: dict | None = None,
) -> list[dict]:
    """One row per DCAL model: seconds per optimizer step with SA + GLCA + PWCA and with SA alone.

    Both steps run on the same model and optimizer (AdamW, lr 1e-6 so the weights barely move between
    rounds), interleaved: the DCAL step is ``model(x, target)['loss']`` (all three branches, the weighted
    loss), the SA step ``cross_entropy(model(x), target)`` with ``set_inference_branches('sa')`` (the plain
    ViT's forward; GLCA gets no gradient and AdamW skips it). ``train_fwd_gmacs`` / ``sa_fwd_gmacs``:
    forward MACs per image of each (backward adds about twice as much).
    """
    kw = dict(num_classes=num_classes, **(model_kwargs or {}))
    x = torch.randn(batch, 3, img_size, img_size, device=device)
    y = torch.randint(num_classes, (batch,), device=device)
    jobs, macs, models_ = {}, {}, {}
    for name in models:
        model = _build(name, img_size, device, kw).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
        models_[name] = model

        def dcal_step(model: nn.Module = model, opt: torch.optim.Optimizer = opt) -> None:
            model.set_inference_branches('sa', 'glca')
            opt.zero_grad(set_to_none=True)
            model(x, y)['loss'].backward()
            opt.step()

        def sa_step(model: nn.Module = model, opt: torch.optim.Optimizer = opt) -> None:
            model.set_inference_branches('sa')
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

        jobs[name, 'dcal'], jobs[name, 'sa'] = dcal_step, sa_step
        model.set_inference_branches('sa')
        sa_macs = _all_gmacs(model, x)
        model.set_inference_branches('sa', 'glca')
        macs[name] = (_all_gmacs(_TrainForward(model), x), sa_macs)
    samples = round_robin(jobs, rounds, iters=1, warmup=1, device=device, desc='dcal training')
    rows = []
    for name in models:
        d, s = median(samples[name, 'dcal']), median(samples[name, 'sa'])
        d_cpu, s_cpu = median(samples[name, 'dcal'], 'cpu_s'), median(samples[name, 'sa'], 'cpu_s')
        rows.append(
            dict(
                model=name,
                img_size=img_size,
                batch_size=batch,
                num_classes=num_classes,
                model_kwargs=json.dumps(model_kwargs or {}),
                sa_step_s=round(s, 4),
                dcal_step_s=round(d, 4),
                step_ratio=round(d / s, 4),
                paper_train_time_ratio=round(PAPER_TRAIN_RATIO, 4),
                sa_step_cpu_s=round(s_cpu, 4),
                dcal_step_cpu_s=round(d_cpu, 4),
                cpu_ratio=round(d_cpu / s_cpu, 4),
                sa_fwd_gmacs=round(macs[name][1], 4),
                train_fwd_gmacs=round(macs[name][0], 4),
                fwd_gmacs_ratio=round(macs[name][0] / macs[name][1], 4),
                rounds=rounds,
                device=device,
                threads=torch.get_num_threads(),
            )
        )
    return rows


def write_training(rows: list[dict], out: str) -> tuple[str, str]:
    """``<out>.csv`` and ``<out>.png``: seconds per step and forward GMACs, SA alone vs SA + GLCA + PWCA."""
    groups = [r['model'] for r in rows]
    paper = f'paper {rows[0]["paper_train_time_ratio"]:.1f}x'
    panels = [
        Panel(
            f's / optimizer step (batch {rows[0]["batch_size"]}, {rows[0]["img_size"]}², {rows[0]["device"]})',
            {'SA alone': [r['sa_step_s'] for r in rows], 'SA + GLCA + PWCA': [r['dcal_step_s'] for r in rows]},
            groups=groups,
            notes={'SA + GLCA + PWCA': [f'{r["step_ratio"]:.2f}x ({paper})' for r in rows]},
        ),
        Panel(
            'forward GMACs / image',
            {'SA alone': [r['sa_fwd_gmacs'] for r in rows], 'SA + GLCA + PWCA': [r['train_fwd_gmacs'] for r in rows]},
            groups=groups,
            notes={'SA + GLCA + PWCA': [f'{r["fwd_gmacs_ratio"]:.2f}x' for r in rows]},
        ),
    ]
    return write_report(rows, panels, out, title='DCAL training step against SA alone (same model)')


def bench_attention(
    models: list[str], img_size: int, batch: int, rounds: int = 5, device: str = 'cpu', kwargs: dict | None = None
) -> list[dict]:
    """One row per model: milliseconds of one block's attention (fused SDPA, DCAL's eval path, and the floor
    of the two GEMMs alone), median of ``rounds`` interleaved rounds, and the max |difference| between the
    fused and the eval-path outputs."""
    return [_attention_row(name, img_size, batch, rounds, device, kwargs or {}) for name in models]


def _attention_row(name: str, img_size: int, batch: int, rounds: int, device: str, kwargs: dict) -> dict:
    from zoo.layers.cross_attention import attention_with_head_mean

    model = _build(name, img_size, 'cpu', kwargs)
    h = model.blocks[0].attn.num_heads
    d = model.embed_dim // h
    n = model.patch_embed.num_patches + model.num_prefix_tokens
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(batch, h, n, d, generator=g).to(device) for _ in range(3))
    scale = d**-0.5
    qs, kt, v3 = (q * scale).flatten(0, 1), k.flatten(0, 1).transpose(1, 2), v.flatten(0, 1)
    scores, out = qs.new_empty(batch * h, n, n), qs.new_empty(batch * h, n, d)
    with torch.no_grad():
        fused_out = F.scaled_dot_product_attention(q, k, v, scale=scale)
        eval_out, _ = attention_with_head_mean(q, k, v, scale)
        jobs = {
            'fused': lambda: F.scaled_dot_product_attention(q, k, v, scale=scale),
            'eval_path': lambda: attention_with_head_mean(q, k, v, scale),
            'gemm_floor': lambda: (torch.bmm(qs, kt, out=scores), torch.bmm(scores, v3, out=out)),
        }
        samples = round_robin(jobs, rounds, iters=3, warmup=1, device=device, desc=f'attention {name}')
    ms = {j: median(samples[j]) * 1e3 for j in jobs}
    return dict(
        model=name,
        img_size=img_size,
        batch_size=batch,
        heads=h,
        head_dim=d,
        tokens=n,
        fused_ms=round(ms['fused'], 3),
        eval_path_ms=round(ms['eval_path'], 3),
        gemm_floor_ms=round(ms['gemm_floor'], 3),
        eval_path_over_fused=round(ms['eval_path'] / ms['fused'], 3),
        gemm_floor_over_fused=round(ms['gemm_floor'] / ms['fused'], 3),
        max_abs_diff=float((fused_out - eval_out).abs().max()),
        rounds=rounds,
        device=device,
        threads=torch.get_num_threads(),
    )


def write_attention(rows: list[dict], out: str) -> tuple[str, str]:
    """``<out>.csv`` and ``<out>.png``: milliseconds per block attention for each model, three bars."""
    panel = Panel(
        'milliseconds per block attention',
        {
            'fused SDPA (plain ViT)': [r['fused_ms'] for r in rows],
            'DCAL eval path (output + map)': [r['eval_path_ms'] for r in rows],
            'q kT and P v GEMMs alone': [r['gemm_floor_ms'] for r in rows],
        },
        kind='bar',
        groups=[r['model'].removeprefix('dcal_') for r in rows],
        title=f'one block, batch {rows[0]["batch_size"]}, {rows[0]["img_size"]}², {rows[0]["threads"]} thread(s)',
    )
    return write_report(rows, [panel], out, digits=4)


def random_maps(
    num_tokens: int, layers: int, batch: int = 1, seed: int = 0, dtype: torch.dtype = torch.float32
) -> list[torch.Tensor]:
    """``layers`` random row-stochastic ``(batch, N, N)`` maps: softmax of ``N(0, 1)`` logits, peaked like
    attention (a few keys per row carry most of the weight)."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, num_tokens, num_tokens, generator=g) * 3).softmax(-1).to(dtype) for _ in range(layers)]


def full_chain_cls_row(maps: list[torch.Tensor], residual: float = 0.5, index: int = 0) -> torch.Tensor:
    """Row ``index`` of ``Ŝ = S̄_L ⋯ S̄_1`` by the chain of ``N x N`` matrix products (the reference rollout).

    Args:
        maps: ``L`` maps ``(B, N, N)`` in block order.

    Returns:
        ``(B, N)``.
    """
    eye = torch.eye(maps[0].shape[-1], dtype=maps[0].dtype)
    prod = None
    for s in reversed(maps):  # left to right: S̄_L S̄_{L-1} ... S̄_1
        s_bar = (1.0 - residual) * s + residual * eye
        prod = s_bar if prod is None else prod @ s_bar
    return prod[:, index]


def bench_rollout(tokens: list[int], layers: int = 12, rounds: int = 3, batch: int = 1) -> list[dict]:
    """One row per token count: milliseconds of the CLS-row rollout and of the full chain (wall clock, and
    process CPU time, which a loaded machine disturbs less), the wall-clock speed-up, max |difference|
    between them and each one's error against the float64 chain; also the analytic MACs (row: ``L N²``;
    chain: ``(L - 1) N³``)."""
    from zoo.layers.rollout import rollout_cls_row

    rows = []
    for n in tokens:
        maps = random_maps(n, layers, batch)
        with torch.no_grad():
            row, full = rollout_cls_row(maps), full_chain_cls_row(maps)
            ref = full_chain_cls_row([m.double() for m in maps])
            jobs = {'row': lambda maps=maps: rollout_cls_row(maps), 'full': lambda maps=maps: full_chain_cls_row(maps)}
            # the row takes milliseconds: enough calls per measurement for ~50 ms, so timer and scheduler
            # noise of a loaded machine average out (the chain takes far longer per call)
            n_row = max(1, min(200, int(0.05 / max(measure(jobs['row'], 3).wall_s, 1e-6))))
            samples = round_robin(jobs, rounds, iters={'row': n_row, 'full': 1}, warmup=1, desc=f'rollout N={n}')
        t_row, t_full = median(samples['row']), median(samples['full'])
        rows.append(
            dict(
                tokens=n,
                layers=layers,
                batch_size=batch,
                cls_row_ms=round(t_row * 1e3, 4),
                full_chain_ms=round(t_full * 1e3, 4),
                speedup=round(t_full / t_row, 2),
                cls_row_cpu_ms=round(median(samples['row'], 'cpu_s') * 1e3, 4),
                full_chain_cpu_ms=round(median(samples['full'], 'cpu_s') * 1e3, 4),
                max_abs_diff=float((row - full).abs().max()),
                cls_row_err_vs_float64=float((row.double() - ref).abs().max()),
                full_chain_err_vs_float64=float((full.double() - ref).abs().max()),
                row_sum_minus_1=float((row.sum(-1) - 1).abs().max()),
                cls_row_macs=layers * n * n * batch,
                full_chain_macs=(layers - 1) * n**3 * batch,
                rounds=rounds,
                threads=torch.get_num_threads(),
            )
        )
    return rows


def write_rollout(rows: list[dict], out: str) -> tuple[str, str]:
    """``<out>.csv`` and ``<out>.png``: milliseconds of both rollouts against the token count (log-log; the
    two differ by orders of magnitude), the speed-up and max |difference| written at each point."""
    layers = rows[0]['layers']
    panel = Panel(
        'milliseconds per rollout',
        {
            'full N x N chain': [(r['tokens'], r['full_chain_ms']) for r in rows],
            'CLS row (vector-matrix)': [(r['tokens'], r['cls_row_ms']) for r in rows],
        },
        kind='line',
        xlabel='tokens N',
        log=True,
        title=f'class-token rollout row, L={layers}, {rows[0]["threads"]} thread(s)',
        notes={'CLS row (vector-matrix)': [f'{r["speedup"]:.0f}x, |diff| {r["max_abs_diff"]:.1e}' for r in rows]},
    )
    return write_report(rows, [panel], out, digits=6)
