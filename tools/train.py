#!/usr/bin/env python
"""Train any zoo task (classification, detection, segmentation, WSI MIL, distillation) from a config.

Examples:
  python tools/train.py configs/classification/mambaout/mambaout_femto_digits.py
  python tools/train.py CONFIG --work-dir work_dirs/run1 --cfg-options train_cfg.max_epochs=5
  python tools/train.py CONFIG --resume            # continue from work_dir's last checkpoint
  bash tools/dist_train.sh CONFIG 2                # DDP, 2 processes (gloo on CPU)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='config file (mmengine Python config with _base_ inheritance)')
    p.add_argument('--work-dir', help='where logs, checkpoints, curves.png and model.safetensors go '
                                      '(default: work_dirs/<config name>)')
    p.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CKPT',
                   help='resume from CKPT, or with no value from the last checkpoint in the work dir')
    p.add_argument('--amp', action='store_true',
                   help='mixed precision (fp16 + loss scaling on GPU, bfloat16 autocast on CPU)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={}, metavar='KEY=VALUE',
                   help='override config keys, e.g. train_cfg.max_epochs=3 model.model_kwargs.drop_rate=0.1; '
                        'unknown keys are an error')
    p.add_argument('--launcher', choices=['none', 'pytorch'], default='none',
                   help="'pytorch' under torchrun (tools/dist_train.sh)")
    p.add_argument('--local-rank', '--local_rank', type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    start = time.time()
    from mmengine.runner import Runner

    import zoo  # noqa: F401  (timm models + zoo registry scope)
    from zoo.engine.config import apply_runtime_options, load_config

    cfg = load_config(args.config, args.cfg_options)
    cfg = apply_runtime_options(cfg, args.work_dir, args.config, amp=args.amp, launcher=args.launcher,
                                resume=args.resume)
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = {}
    hist = runner.message_hub.log_scalars
    for key in hist:
        if key.startswith('val/'):
            metrics[key[4:]] = float(hist[key].current())
    if runner.rank == 0:
        shown = ', '.join(f'{k}={v:.4g}' for k, v in metrics.items() if 'time' not in k)
        print(f'train: {os.path.basename(args.config)} finished {runner.epoch} epochs / {runner.iter} iters '
              f'in {time.time() - start:.0f}s; last val {shown or "n/a"}; work dir {cfg.work_dir}', flush=True)
    return metrics


if __name__ == '__main__':
    from zoo_cli import run_cli

    run_cli(main)
