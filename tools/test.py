#!/usr/bin/env python
"""Evaluate a trained model with a config's test dataloader and evaluator.

CKPT may be an mmengine checkpoint from tools/train.py (epoch_N.pth, best_*.pth) or a weights
file: the exported model.safetensors, a zoo safetensors from tools/convert.py, or an official
.pth. For TimmClassifier configs a weights file is loaded exactly as a user would load it:
timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=CKPT)).

Examples:
  python tools/test.py configs/classification/mambaout/mambaout_femto_digits.py work_dirs/x/model.safetensors
  python tools/test.py CONFIG work_dirs/x/best_accuracy_top1_epoch_12.pth --work-dir /tmp/eval
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='config file')
    p.add_argument('checkpoint', help='mmengine checkpoint (.pth) or weights file (.safetensors / .pth)')
    p.add_argument('--work-dir', help='where logs and metrics.json go (default: work_dirs/<config name>/test)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={}, metavar='KEY=VALUE',
                   help='override config keys; unknown keys are an error')
    p.add_argument('--launcher', choices=['none', 'pytorch'], default='none')
    p.add_argument('--local-rank', '--local_rank', type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    start = time.time()
    from mmengine.runner import Runner

    import zoo  # noqa: F401
    from zoo.engine.config import apply_runtime_options, load_config
    from zoo.hub import load_checkpoint_file, unwrap_state_dict

    cfg = load_config(args.config, args.cfg_options)
    work_dir = args.work_dir or os.path.join(
        'work_dirs', os.path.splitext(os.path.basename(args.config))[0], 'test')
    cfg = apply_runtime_options(cfg, work_dir, args.config, launcher=args.launcher)
    ckpt = load_checkpoint_file(args.checkpoint)  # one-line error for missing/corrupt files
    is_runner_ckpt = isinstance(ckpt, dict) and 'state_dict' in ckpt and 'meta' in ckpt
    weights = None
    if is_runner_ckpt:
        cfg.load_from = args.checkpoint
    elif cfg.model.get('type') == 'TimmClassifier':
        kwargs = cfg.model.setdefault('model_kwargs', {})
        kwargs['pretrained'] = True
        overlay = dict(kwargs.get('pretrained_cfg_overlay') or {}, file=args.checkpoint)
        if 'num_classes' in kwargs:  # else timm drops a classifier whose size differs from the cfg's
            overlay['num_classes'] = kwargs['num_classes']
        kwargs['pretrained_cfg_overlay'] = overlay
    else:
        weights = unwrap_state_dict(ckpt)
    cfg.resume = False
    runner = Runner.from_cfg(cfg)
    if weights is not None:
        runner.model.load_state_dict(weights, strict=True)
    metrics = runner.test()
    if runner.rank == 0:
        with open(os.path.join(cfg.work_dir, 'metrics.json'), 'w') as f:
            json.dump({k: float(v) for k, v in metrics.items()}, f, indent=1)
        shown = ', '.join(f'{k}={float(v):.4g}' for k, v in metrics.items())
        print(f'test: {os.path.basename(args.config)} with {os.path.basename(args.checkpoint)}: {shown} '
              f'({time.time() - start:.0f}s)', flush=True)
    return metrics


if __name__ == '__main__':
    from zoo_cli import run_cli

    run_cli(main)
