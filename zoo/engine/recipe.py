"""A config's training recipe as one flat row (lr, batch, epochs, warm-up, weight decay, drop path, augmentation,
Mixup / CutMix, smoothing, EMA, layer decay, clipping, what is excluded from weight decay), and the recipe tables
of ``docs/recipes.md`` that state the official values. ``tests/test_recipes.py`` compares the two for every
classification config, field by field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# the columns of docs/recipes.md, in order (``source`` is free text and not compared)
FIELDS = (
    'optimizer',
    'lr',
    'lr per',
    'batch/GPU',
    'accum',
    'epochs',
    'warm-up',
    'min lr',
    'wd',
    'drop path',
    'RandAugment',
    'erasing',
    'mixup',
    'cutmix',
    'smoothing',
    'EMA',
    'layer decay',
    'clip',
    'no weight decay',
)
NONE = '-'


def _fmt(value: Any) -> str:
    if value is None or value is False:
        return NONE
    if isinstance(value, bool):
        return 'yes'
    if isinstance(value, float):
        return f'{value:.6g}'
    return str(value)


def _timm_transform(pipeline) -> Mapping | None:
    for step in pipeline or ():
        if step.get('type') == 'TimmTransform':
            return step
    return None


def _train_pipeline(cfg) -> list:
    dataset = cfg.train_dataloader.dataset
    while 'pipeline' not in dataset and 'dataset' in dataset:  # wrappers (RepeatDataset, ...)
        dataset = dataset.dataset
    return list(dataset.get('pipeline') or ())


def _ema_decay(cfg) -> float | None:
    for hook in cfg.get('custom_hooks') or ():
        if hook.get('type') == 'ModelEMAHook':
            return float(hook['decay']) if hook.get('decay') is not None else 1.0 - float(hook.get('momentum', 2e-4))
        if hook.get('type') == 'EMAHook':
            return 1.0 - float(hook.get('momentum', 2e-4))
    return None


def recipe_fields(cfg) -> dict[str, str]:
    """The recipe row of a resolved config (``mmengine.Config``), every field but ``no weight decay`` (which needs
    the model: :func:`no_weight_decay_names`)."""
    optim = cfg.optim_wrapper
    optimizer = optim.optimizer
    lr = float(optimizer.lr)
    schedulers = cfg.get('param_scheduler') or []
    if isinstance(schedulers, Mapping):
        schedulers = [schedulers]
    warmup = next((s for s in schedulers if s.type == 'LinearLR'), None)
    cosine = next((s for s in schedulers if s.type == 'CosineAnnealingLR'), None)
    min_lr = None
    if cosine is not None:
        min_lr = cosine.get('eta_min_ratio')
        min_lr = lr * min_lr if min_lr is not None else float(cosine.get('eta_min', 0.0))
    model = cfg.model
    kwargs = model.get('model_kwargs') or {}
    aug = _timm_transform(_train_pipeline(cfg)) or {}
    mixup = model.get('mixup') or {}
    clip = optim.get('clip_grad')
    scale = cfg.get('auto_scale_lr') or {}
    paramwise = optim.get('paramwise_cfg') or {}
    return {
        'optimizer': optimizer.type,
        'lr': _fmt(lr),
        'lr per': _fmt(scale.get('base_batch_size')),
        'batch/GPU': _fmt(cfg.train_dataloader.batch_size),
        'accum': _fmt(optim.get('accumulative_counts', 1)),
        'epochs': _fmt(cfg.train_cfg.max_epochs),
        'warm-up': _fmt(warmup.end if warmup is not None else 0),
        'min lr': _fmt(min_lr),
        'wd': _fmt(float(optimizer.get('weight_decay', 0.0))),
        'drop path': _fmt(kwargs.get('drop_path_rate')),
        'RandAugment': _fmt(aug.get('auto_augment')),
        'erasing': _fmt(aug.get('re_prob') or None),
        'mixup': _fmt(float(mixup.get('mixup_alpha', 1.0)) if mixup else 0.0),
        'cutmix': _fmt(float(mixup.get('cutmix_alpha', 0.0)) if mixup else 0.0),
        'smoothing': _fmt(float(mixup.get('label_smoothing', model.get('label_smoothing', 0.0)))),
        'EMA': _fmt(_ema_decay(cfg)),
        'layer decay': _fmt(paramwise.get('layer_decay')),
        'clip': _fmt(clip.get('max_norm') if clip else None),
    }


def no_weight_decay_names(cfg) -> str:
    """Which parameters the config's optimizer leaves without weight decay: ``all (wd 0)`` without weight decay at
    all, else ``1-D`` when every 1-D parameter (norms, biases, scales) is exempt, then the last name component of
    every exempt parameter with more dimensions (DeiT's ``pos_embed``, ``cls_token``, Swin's
    ``relative_position_bias_table``, ...), sorted; ``-`` when none is exempt. Builds the model without pretrained
    weights and the optimizer the way ``tools/train.py`` does."""
    import copy
    import logging

    from mmengine.logging import MMLogger
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    import zoo  # noqa: F401
    from zoo.registry import MODELS

    init_default_scope('zoo')
    model_cfg = copy.deepcopy(cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') else dict(cfg.model))
    kwargs = model_cfg.get('model_kwargs') or {}
    for key in ('pretrained', 'pretrained_cfg_overlay', 'body_checkpoint', 'checkpoint_path'):
        kwargs.pop(key, None)
    model = MODELS.build(model_cfg)
    optim_cfg = copy.deepcopy(
        cfg.optim_wrapper.to_dict() if hasattr(cfg.optim_wrapper, 'to_dict') else cfg.optim_wrapper
    )
    optim_cfg['type'] = 'OptimWrapper'  # the AMP wrappers want a GPU; the groups are the same
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.ERROR)  # mmengine's constructor logs one line per parameter
    try:
        wrapper = build_optim_wrapper(model, optim_cfg)
    finally:
        logger.setLevel(level)
    decay = {}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            decay[id(p)] = float(group.get('weight_decay', wrapper.optimizer.defaults.get('weight_decay', 0.0)))
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if all(decay[id(p)] == 0.0 for _, p in params):
        return 'all (wd 0)'
    flat = [decay[id(p)] == 0.0 for _, p in params if p.ndim <= 1]
    names = sorted({n.rsplit('.', 1)[-1] for n, p in params if p.ndim > 1 and decay[id(p)] == 0.0})
    parts = (['1-D'] if flat and all(flat) else []) + names
    return ', '.join(parts) if parts else NONE


def read_recipe_tables(path: str | Path) -> dict[str, dict[str, str]]:
    """Rows of every recipe table in a markdown file: a table whose header starts with ``| config |`` and holds the
    :data:`FIELDS`. Keys are the config paths as written (relative to ``configs/classification``)."""
    rows: dict[str, dict[str, str]] = {}
    header: list[str] | None = None
    for line in Path(path).read_text().splitlines():
        if not line.startswith('|'):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if header is None:
            if cells and cells[0] == 'config':
                header = cells
            continue
        if set(cells[0]) <= set('-: '):
            continue
        name = re.sub(r'[`\[\]]|\(.*?\)', '', cells[0]).strip()
        if name in rows:
            raise ValueError(f'{path}: config {name} appears in two recipe rows')
        rows[name] = dict(zip(header[1:], (c.replace('`', '') for c in cells[1:])))
    return rows


def same(expected: str, actual: str) -> bool:
    """One table cell against the config's value: numbers within 1e-9 relative, the rest as text."""
    try:
        return abs(float(expected) - float(actual)) <= 1e-9 * max(1.0, abs(float(expected)))
    except ValueError:
        return expected.strip() == actual.strip()
