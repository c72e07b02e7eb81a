"""Config loading for the tools: strict ``--cfg-options``, unknown-key checks, and the launcher,
AMP and resume settings, so each tool stays a thin argument parser."""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Mapping
from typing import Any

from mmengine.config import Config, ConfigDict

# Top-level keys mmengine's Runner reads (anything else is a helper variable of the config).
RUNNER_KEYS = (
    'model',
    'work_dir',
    'train_dataloader',
    'val_dataloader',
    'test_dataloader',
    'train_cfg',
    'val_cfg',
    'test_cfg',
    'auto_scale_lr',
    'optim_wrapper',
    'param_scheduler',
    'val_evaluator',
    'test_evaluator',
    'default_hooks',
    'custom_hooks',
    'data_preprocessor',
    'load_from',
    'resume',
    'launcher',
    'env_cfg',
    'log_processor',
    'log_level',
    'visualizer',
    'default_scope',
    'randomness',
    'experiment_name',
    'cfg',
    'model_wrapper_cfg',
    'find_unused_parameters',
    'vis_backends',
    'custom_imports',
    'train_pipeline',
    'test_pipeline',
    'val_pipeline',
    'dataset_type',
    'data_root',
    'backend_args',
    'tta_model',
    'tta_pipeline',
)
LOOP_KEYS = {'type', 'by_epoch', 'max_epochs', 'max_iters', 'val_begin', 'val_interval', 'dynamic_intervals', 'fp16'}
DATALOADER_KEYS = {
    'batch_size',
    'num_workers',
    'sampler',
    'batch_sampler',
    'collate_fn',
    'dataset',
    'persistent_workers',
    'pin_memory',
    'drop_last',
    'shuffle',
    'prefetch_factor',
    'worker_init_fn',
    'timeout',
}


class ConfigKeyError(KeyError):
    """An unknown config key; ``str()`` is the one-line message."""

    def __str__(self) -> str:
        return str(self.args[0])


def _suggest(key: str, options) -> str:
    close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ''


def load_config(path: str, cfg_options: Mapping[str, Any] | None = None) -> Config:
    """Read ``path``, apply ``--cfg-options`` strictly, and check keys; raises one-line errors."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'config file {path} does not exist')
    cfg = Config.fromfile(path)
    for dotted, value in (cfg_options or {}).items():
        _check_option_path(cfg, dotted, path)
        _check_option_value(cfg, dotted, value, path)
        cfg.merge_from_dict({dotted: value})
    check_config_keys(cfg, path)
    return cfg


class ConfigValueError(ValueError):
    """A ``--cfg-options`` value of the wrong type; ``str()`` is the one-line message."""


def _check_option_value(cfg: Config, dotted: str, value: Any, path: str) -> None:
    """``--cfg-options a.b=v`` must keep the type of the value it replaces (the config's, else the
    default of the constructor argument): ``optimizer.lr=abc`` fails here, not deep in AdamW."""
    if value is None:
        return  # None switches an option off
    node: Any = cfg._cfg_dict
    parts = dotted.split('.')
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, (list, tuple)) else node.get(part)
        if node is None:
            return
    last = parts[-1]
    if isinstance(node, Mapping) and last in node:
        current, origin = node[last], 'the config has'
    elif isinstance(node, Mapping):
        cls = _resolve_type(node)
        try:
            param = inspect.signature(cls).parameters.get(last) if cls is not None else None
        except (TypeError, ValueError):
            param = None
        if param is None or param.default is inspect.Parameter.empty:
            return
        current, origin = param.default, f'{getattr(cls, "__name__", cls)} defaults to'
    else:
        return
    expected = _expected_type(current)
    if expected is None:
        return
    name, ok = expected
    if not ok(value):
        raise ConfigValueError(
            f'--cfg-options {dotted}={value!r}: expected {name} ({origin} {current!r}), '
            f'got {type(value).__name__} (config {path})'
        )


def _expected_type(current: Any):
    """(type name, check) for a value that replaces ``current``; None when anything goes."""
    if isinstance(current, bool):
        return 'True or False', lambda v: isinstance(v, bool)
    if isinstance(current, (int, float)):  # ints and floats mix freely (weight_decay=0 -> 0.05)
        return 'a number', lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    return None  # strings, lists, dicts, None: several types are legitimate there (topk=1 or (1, 5))


def _check_option_path(cfg: Config, dotted: str, path: str) -> None:
    """``--cfg-options a.b.c=v`` may only set keys the config (or the class it builds) has."""
    node: Any = cfg._cfg_dict
    parts = dotted.split('.')
    for depth, part in enumerate(parts):
        where = '.'.join(parts[:depth]) or '<top level>'
        if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        if isinstance(node, Mapping) and part in node:
            node = node[part]
            continue
        if isinstance(node, Mapping) and depth == len(parts) - 1 and _accepts(node, part):
            return  # a constructor argument the config leaves at its default
        keys = list(node) if isinstance(node, Mapping) else []
        raise ConfigKeyError(
            f"unknown config key '{dotted}' in --cfg-options for {path}: "
            f"'{part}' is not in {where}{_suggest(part, keys)}"
        )


def _accepts(node: Mapping, arg: str) -> bool:
    cls = _resolve_type(node)
    if cls is None:
        return False
    params = _init_params(cls)
    return params is None or arg in params


def _resolve_type(node: Mapping):
    t = node.get('type') if isinstance(node, Mapping) else None
    if isinstance(t, type):
        return t
    if not isinstance(t, str):
        return None
    from mmengine.registry import (
        DATASETS,
        HOOKS,
        LOOPS,
        METRICS,
        MODELS,
        OPTIM_WRAPPERS,
        OPTIMIZERS,
        PARAM_SCHEDULERS,
    )

    import zoo.registry  # noqa: F401  (the zoo scope must exist)

    for reg in (MODELS, DATASETS, METRICS, HOOKS, LOOPS, OPTIM_WRAPPERS, OPTIMIZERS, PARAM_SCHEDULERS):
        scope = None
        if '.' in t:
            scope = t.split('.')[0]
        try:
            with reg.switch_scope_and_registry(scope or _current_scope()) as r:
                cls = r.get(t)
        except Exception:  # a scope whose package is not installed
            cls = None
        if cls is not None:
            return cls
    return None


_SCOPE = ['zoo']


def _current_scope() -> str:
    return _SCOPE[0]


def _init_params(cls) -> set[str] | None:
    """Constructor argument names, or None when it takes ``**kwargs`` (anything goes)."""
    try:
        sig = inspect.signature(cls.__init__ if inspect.isclass(cls) else cls)
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return {n for n in sig.parameters if n != 'self'}


def check_config_keys(cfg: Config, path: str) -> None:
    """Unknown keys in the parts the zoo knows the schema of raise ``ConfigKeyError``:
    top-level near-misses of Runner keys, loop configs, dataloaders, and every ``type=`` dict
    whose class has a fixed signature (model, datasets, evaluators, hooks)."""
    _SCOPE[0] = cfg.get('default_scope', 'zoo') or 'zoo'
    for key in cfg.keys():
        if key not in RUNNER_KEYS and not key.startswith('_'):
            hint = _suggest(key, RUNNER_KEYS)
            if hint:
                raise ConfigKeyError(f"unknown config key '{key}' in {path}{hint}")
    for loop in ('train_cfg', 'val_cfg', 'test_cfg'):
        node = cfg.get(loop)
        if isinstance(node, Mapping) and 'type' not in node:
            for k in node:
                if k not in LOOP_KEYS:
                    raise ConfigKeyError(f"unknown config key '{loop}.{k}' in {path}{_suggest(k, LOOP_KEYS)}")
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        node = cfg.get(name)
        if isinstance(node, Mapping):
            for k in node:
                if k not in DATALOADER_KEYS:
                    raise ConfigKeyError(f"unknown config key '{name}.{k}' in {path}{_suggest(k, DATALOADER_KEYS)}")
            _check_typed(node.get('dataset'), f'{name}.dataset', path)
    _check_typed(cfg.get('model'), 'model', path)
    for name in ('val_evaluator', 'test_evaluator'):
        node = cfg.get(name)
        for i, item in enumerate(node if isinstance(node, (list, tuple)) else [node]):
            _check_typed(item, name if not isinstance(node, (list, tuple)) else f'{name}.{i}', path)
    for i, hook in enumerate(cfg.get('custom_hooks') or []):
        _check_typed(hook, f'custom_hooks.{i}', path)


def _check_typed(node: Any, where: str, path: str) -> None:
    if not isinstance(node, Mapping) or 'type' not in node:
        return
    cls = _resolve_type(node)
    if cls is None:
        return  # unknown types are reported by mmengine's registry when built
    params = _init_params(cls)
    if params is None:
        return
    for k in node:
        if k not in params and k not in ('type', '_scope_', '_delete_'):
            name = getattr(cls, '__name__', str(cls))
            raise ConfigKeyError(
                f"unknown config key '{where}.{k}' in {path}: {name} takes "
                f'{", ".join(sorted(params))}{_suggest(k, params)}'
            )


def apply_runtime_options(
    cfg: Config,
    work_dir: str | None,
    config_path: str,
    amp: bool = False,
    launcher: str = 'none',
    resume: str | None = None,
) -> Config:
    """Work dir, AMP, launcher (gloo + CPU DDP when no GPU) and resume, as tools/train.py takes them."""
    import torch

    cfg.work_dir = (
        work_dir or cfg.get('work_dir') or os.path.join('work_dirs', os.path.splitext(os.path.basename(config_path))[0])
    )
    cfg.launcher = launcher
    # Every run drops unreadable samples from their batch and lists them at the end (zoo.engine.skip_report),
    # also when a config replaces the base custom_hooks list.
    hooks = list(cfg.get('custom_hooks') or [])
    names = [getattr(h.get('type'), '__name__', str(h.get('type'))) for h in hooks if isinstance(h, Mapping)]
    if not any(n.split('.')[-1] == 'SkippedSamplesHook' for n in names):
        cfg.custom_hooks = hooks + [dict(type='zoo.SkippedSamplesHook')]
    if amp:
        ow = cfg.optim_wrapper
        if torch.cuda.is_available():
            ow.type, ow.loss_scale = 'AmpOptimWrapper', 'dynamic'
        else:
            ow.type = 'zoo.CpuAmpOptimWrapper'  # scoped: mmdet / mmseg configs use their own default_scope
    if launcher != 'none' and not torch.cuda.is_available():
        cfg.env_cfg = ConfigDict(cfg.get('env_cfg') or {})
        cfg.env_cfg.setdefault('dist_cfg', ConfigDict())['backend'] = 'gloo'
        # mmengine's init_dist always calls torch.cuda.set_device; a process group that already
        # exists makes the Runner skip it.
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend='gloo')
        # DDP on CPU modules needs device_ids=None (mmengine passes LOCAL_RANK otherwise).
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel',
            device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False),
        )
    if resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif resume:
        from zoo.hub import load_checkpoint_file

        load_checkpoint_file(resume)  # one-line error for a missing or corrupt file
        cfg.resume, cfg.load_from = True, resume
    return cfg
