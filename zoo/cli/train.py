"""Train any zoo task (classification, detection, segmentation, WSI MIL, distillation) from a config.

Examples:
  python tools/train.py configs/classification/mambaout/mambaout_femto_digits.py
  python tools/train.py CONFIG --work-dir work_dirs/run1 --cfg-options train_cfg.max_epochs=5
  python tools/train.py CONFIG --resume            # continue from work_dir's last checkpoint
  bash tools/dist_train.sh CONFIG 2                # DDP, 2 processes (gloo on CPU)
  bash tools/dist_train.sh CONFIG 8 --auto-scale-lr  # lr scaled by total batch / auto_scale_lr.base_batch_size

The console shows a short header (config, work dir, model, parameters, dataset sizes) and then progress;
the environment, the full config and the hook table go to the log file in the work dir (--verbose: also
to the console).
"""

from __future__ import annotations

import argparse
import os
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='config file (mmengine Python config with _base_ inheritance)')
    p.add_argument(
        '--work-dir',
        help='where logs, checkpoints, curves.png and model.safetensors go (default: work_dirs/<config name>)',
    )
    p.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        default=None,
        metavar='CKPT',
        help='resume from CKPT, or with no value from the last checkpoint in the work dir',
    )
    p.add_argument(
        '--amp', action='store_true', help='mixed precision (fp16 + loss scaling on GPU, bfloat16 autocast on CPU)'
    )
    p.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        default={},
        metavar='KEY=VALUE',
        help='override config keys, e.g. train_cfg.max_epochs=3 model.model_kwargs.drop_rate=0.1; '
        'unknown keys are an error',
    )
    p.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by (world size x batch size x optim_wrapper.accumulative_counts) / '
        'auto_scale_lr.base_batch_size (the base batch comes from the config)',
    )
    p.add_argument(
        '--verbose',
        action='store_true',
        help='also print the environment, the full config and the hook table (always in the log file)',
    )
    p.add_argument(
        '--launcher', choices=['none', 'pytorch'], default='none', help="'pytorch' under torchrun (tools/dist_train.sh)"
    )
    p.add_argument('--local-rank', '--local_rank', type=int, default=0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    start = time.time()
    import zoo  # noqa: F401  (timm models + zoo registry scope)
    from zoo.cli.common import UsageError, build_runner, finish_distributed
    from zoo.engine.config import apply_runtime_options, load_config

    cfg = load_config(args.config, args.cfg_options)
    if args.auto_scale_lr:
        # mmengine's Runner.scale_lr does the scaling at the start of train(), from this dict.
        if 'base_batch_size' not in (cfg.get('auto_scale_lr') or {}):
            raise UsageError(
                f'--auto-scale-lr needs auto_scale_lr = dict(base_batch_size=N) in {args.config} '
                '(N: the total batch size its learning rate was set for)'
            )
        cfg.auto_scale_lr.enable = True
        # mmengine's scale_lr counts world size x batch size; the official recipes count accumulation steps too
        # (MambaOut: 8 GPUs x 128 x 4 = 4096), so the base is divided by them, which gives the same ratio.
        accum = int((cfg.get('optim_wrapper') or {}).get('accumulative_counts', 1) or 1)
        if accum > 1:
            cfg.auto_scale_lr.base_batch_size = cfg.auto_scale_lr.base_batch_size / accum
    cfg = apply_runtime_options(
        cfg, args.work_dir, args.config, amp=args.amp, launcher=args.launcher, resume=args.resume
    )
    # exact --resume (RNG states, position inside the epoch) and the tests' ZOO_FAULT_INJECT hook
    from zoo.engine.resume import use_exact_resume

    use_exact_resume(cfg)
    runner = build_runner(cfg, verbose=args.verbose, header='train')
    runner.train()
    finish_distributed()
    metrics = {}
    hist = runner.message_hub.log_scalars
    for key in hist:
        if key.startswith('val/'):
            metrics[key[4:]] = float(hist[key].current())
    if runner.rank == 0:
        shown = ', '.join(f'{k}={v:.4g}' for k, v in metrics.items() if 'time' not in k)
        print(
            f'train: {os.path.basename(args.config)} finished {runner.epoch} epochs / {runner.iter} iters '
            f'in {time.time() - start:.0f}s; last val {shown or "n/a"}; work dir {cfg.work_dir}',
            flush=True,
        )
    return metrics


def cli() -> None:
    """Console entry point (``zoo-train``, ``python tools/train.py``)."""
    from zoo.cli.common import exit_torchrun_worker, run_cli

    run_cli(main)
    exit_torchrun_worker()  # only reached after a successful run


if __name__ == '__main__':
    cli()
