"""Evaluate a trained model with a config's test dataloader and evaluator.

CKPT may be an mmengine checkpoint from tools/train.py (epoch_N.pth, best_*.pth) or a weights
file: the exported model.safetensors, a zoo safetensors from tools/convert.py, or an official
.pth. For TimmClassifier configs a weights file is loaded exactly as a user would load it:
timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=CKPT)).

Examples:
  python tools/test.py configs/classification/mambaout/mambaout_femto_digits.py work_dirs/x/model.safetensors
  python tools/test.py CONFIG work_dirs/x/best_accuracy_top1_epoch_12.pth --work-dir /tmp/eval
  python tools/test.py CONFIG work_dirs/x/model.safetensors --bf16 --compile   # the fast path
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='config file')
    p.add_argument('checkpoint', help='mmengine checkpoint (.pth) or weights file (.safetensors / .pth)')
    p.add_argument('--work-dir', help='where logs and metrics.json go (default: work_dirs/<config name>/test)')
    p.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        default={},
        metavar='KEY=VALUE',
        help='override config keys; unknown keys are an error',
    )
    p.add_argument(
        '--show-dir',
        metavar='DIR',
        help='write a picture of every prediction to DIR (classification: the image titled with '
        'predicted and true class; detection / segmentation: the OpenMMLab visualizer)',
    )
    p.add_argument(
        '--out',
        metavar='FILE',
        help='write the raw predictions to FILE (.json for classification / MIL / binary '
        'segmentation; .pkl via mmengine DumpResults for mmdet / mmseg configs)',
    )
    p.add_argument(
        '--verbose',
        action='store_true',
        help='also print the environment, the full config and the hook table (always in the log file)',
    )
    p.add_argument('--launcher', choices=['none', 'pytorch'], default='none')
    p.add_argument('--local-rank', '--local_rank', type=int, default=0, help=argparse.SUPPRESS)
    from zoo.cli.common import add_fast_args

    add_fast_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None, exit_on_skip: bool = False) -> dict:
    """Evaluate; with ``exit_on_skip`` (the command line) exit with code 1 when a sample was unreadable."""
    args = parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    start = time.time()
    import zoo  # noqa: F401
    from zoo.cli.common import (
        UsageError,
        apply_fast_args,
        build_runner,
        fast_summary,
        fast_target,
        finish_distributed,
        summarize_state_dict_error,
    )
    from zoo.engine.config import apply_runtime_options, load_config
    from zoo.hub import drop_pretrained, load_checkpoint_file, unwrap_state_dict

    cfg = load_config(args.config, args.cfg_options)
    work_dir = args.work_dir or os.path.join('work_dirs', os.path.splitext(os.path.basename(args.config))[0], 'test')
    cfg = apply_runtime_options(cfg, work_dir, args.config, launcher=args.launcher)
    ckpt = load_checkpoint_file(args.checkpoint)  # one-line error for missing/corrupt files
    is_runner_ckpt = isinstance(ckpt, dict) and 'state_dict' in ckpt and 'meta' in ckpt
    weights = None
    if is_runner_ckpt:
        cfg.load_from = None  # loaded strictly below: mmengine's load_from only warns on mismatching keys
    elif cfg.model.get('type') == 'TimmClassifier':
        kwargs = cfg.model.setdefault('model_kwargs', {})
        kwargs['pretrained'] = True
        overlay = dict(kwargs.get('pretrained_cfg_overlay') or {}, file=args.checkpoint)
        if 'num_classes' in kwargs:  # else timm drops a classifier whose size differs from the cfg's
            overlay['num_classes'] = kwargs['num_classes']
        kwargs['pretrained_cfg_overlay'] = overlay
    else:
        weights = unwrap_state_dict(ckpt)
    if is_runner_ckpt or weights is not None:  # the checkpoint replaces every weight: fetch none
        drop_pretrained(cfg.model)
    cfg.resume = False
    if args.show_dir:
        _add_show_dir(cfg, args.show_dir)
    try:
        runner = build_runner(cfg, verbose=args.verbose, header='test')
        if is_runner_ckpt:
            runner.load_checkpoint(args.checkpoint, map_location='cpu', strict=True)
        elif weights is not None:
            runner.model.load_state_dict(weights, strict=True)
    except RuntimeError as err:  # weights of another architecture: which keys differ, in one line
        msg = summarize_state_dict_error(str(err), args.checkpoint)
        if msg is None:
            raise
        raise UsageError(msg) from None
    if args.show_dir and cfg.get('default_scope') not in ('mmdet', 'mmseg'):
        runner.register_hook(_ShowHook(args.show_dir), priority='LOW')
    dumper = _attach_out(runner, cfg, args.out) if args.out else None
    model = runner.model.module if hasattr(runner.model, 'module') else runner.model
    compiled = apply_fast_args(fast_target(model), args, what=f'tools/test.py {type(fast_target(model)).__name__}')
    metrics = runner.test()
    if dumper is not None and runner.rank == 0:
        dumper.write()
    skipped = runner.message_hub.get_info('skipped_samples') or []
    if runner.rank == 0:
        with open(os.path.join(cfg.work_dir, 'metrics.json'), 'w') as f:
            json.dump({k: float(v) for k, v in metrics.items()}, f, indent=1)
        shown = ', '.join(f'{k}={float(v):.4g}' for k, v in metrics.items())
        extra = ''.join(
            f'; {what} {path}' for what, path in (('pictures in', args.show_dir), ('predictions in', args.out)) if path
        )
        print(
            f'test: {os.path.basename(args.config)} with {os.path.basename(args.checkpoint)}: {shown} '
            f'({time.time() - start:.0f}s{extra}{fast_summary(args, compiled)})',
            flush=True,
        )
        if skipped:
            print(
                f'test: {len(skipped)} unreadable file(s) left out of the metrics (listed above and in '
                f'{os.path.join(cfg.work_dir, "skipped_samples.json")}); exit code 1',
                file=sys.stderr,
                flush=True,
            )
    finish_distributed()
    if skipped and exit_on_skip:
        sys.exit(1)
    return metrics


def _add_show_dir(cfg, show_dir: str) -> None:
    """mmdet / mmseg: their visualization hook draws every test prediction into ``show_dir``."""
    scope = cfg.get('default_scope')
    if scope not in ('mmdet', 'mmseg'):
        return  # the zoo's own picture hook is registered after the runner is built
    hook_type = 'DetVisualizationHook' if scope == 'mmdet' else 'SegVisualizationHook'
    hooks = cfg.setdefault('default_hooks', {})
    vis = hooks.get('visualization') or dict(type=hook_type)
    vis.update(draw=True, test_out_dir=os.path.abspath(show_dir))
    if scope == 'mmseg':
        vis['interval'] = 1
    hooks['visualization'] = vis


def _class_names(runner) -> list[str] | None:
    ds = runner.test_dataloader.dataset
    meta = getattr(ds, 'metainfo', None) or {}
    names = meta.get('classes') or getattr(ds, 'classes', None)
    return [str(c) for c in names] if names is not None else None


def _ShowHook(show_dir: str):  # noqa: N802  (a hook factory; mmengine is imported lazily)
    """Pictures of the predictions of models whose test step returns dicts (classification, MIL,
    binary segmentation): the image with its predicted and true class, red when they differ."""
    from mmengine.hooks import Hook

    class ShowHook(Hook):
        def __init__(self) -> None:
            self.index = 0
            self.names: list[str] | None = None

        def before_test(self, runner) -> None:
            os.makedirs(show_dir, exist_ok=True)
            self.names = _class_names(runner)

        def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
            if runner.rank != 0 or not outputs:
                return
            inputs = data_batch.get('inputs') if isinstance(data_batch, dict) else None
            for i, out in enumerate(outputs):
                self.index += 1
                if not isinstance(out, dict) or 'pred_score' not in out:
                    continue
                image = inputs[i] if inputs is not None and getattr(inputs, 'ndim', 0) == 4 else None
                _save_classification(out, image, self.names, os.path.join(show_dir, f'{self.index - 1:06d}.png'))

    return ShowHook()


def _save_classification(out: dict, image, names: list[str] | None, path: str) -> None:
    from PIL import Image, ImageDraw, ImageFont

    from zoo.lesion_seg.hooks import to_display

    score = out['pred_score'].detach().float().cpu()
    pred = int(score.argmax())
    gt = int(out['gt_label']) if out.get('gt_label') is not None else None

    def name(k: int) -> str:
        return names[k] if names and k < len(names) else str(k)

    text = f'pred {name(pred)} {float(score[pred]):.0%}' + (f' / true {name(gt)}' if gt is not None else '')
    pic = Image.fromarray(to_display(image)) if image is not None else Image.new('RGB', (160, 160), 'gray')
    side = max(160, *pic.size)  # small inputs (digits are 32 px) are enlarged so the caption fits
    pic = pic.resize(
        (round(pic.width * side / max(pic.size)), round(pic.height * side / max(pic.size))), Image.Resampling.NEAREST
    )
    font = ImageFont.load_default(size=max(11, side // 14))
    bar = font.getbbox(text)[3] + 8
    canvas = Image.new('RGB', (pic.width, pic.height + bar), (255, 255, 255))
    canvas.paste(pic, (0, bar))
    colour = (0, 0, 0) if gt is None or gt == pred else (200, 0, 0)
    ImageDraw.Draw(canvas).text((4, 4), text, fill=colour, font=font)
    canvas.save(path)


def _attach_out(runner, cfg, out: str):
    """``--out``: mmengine's DumpResults (pickle, the OpenMMLab convention) for mmdet / mmseg; a JSON
    file with one record per sample (tensors as lists) for the zoo's own models."""
    if cfg.get('default_scope') in ('mmdet', 'mmseg'):
        from mmengine.evaluator import DumpResults

        from zoo.cli.common import UsageError

        if not out.endswith(('.pkl', '.pickle')):
            raise UsageError(
                f'--out {out}: mmdet / mmseg predictions are written with DumpResults, which needs a .pkl file name'
            )
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=out))
        return None
    if not out.endswith('.json'):
        from zoo.cli.common import UsageError

        raise UsageError(f'--out {out}: predictions of this config are written as JSON; use a .json file name')
    dumper = _JsonDumper(out)
    runner.register_hook(dumper.hook(), priority='LOW')
    return dumper


class _JsonDumper:
    def __init__(self, path: str) -> None:
        self.path, self.records = path, []

    def hook(self):
        from mmengine.hooks import Hook

        dumper = self

        class DumpHook(Hook):
            def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
                for out in outputs or []:
                    dumper.records.append(_to_json(out))

        return DumpHook()

    def write(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path, 'w') as f:
            json.dump(self.records, f)


def _to_json(value):
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach().float().cpu().numpy() if value.is_floating_point() else value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value.astype(np.float64).round(6).tolist() if value.dtype.kind == 'f' else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        out = {str(k): _to_json(v) for k, v in value.items()}
        if 'pred_score' in value and 'pred_label' not in value:
            out['pred_label'] = int(np.argmax(out['pred_score']))
        return out
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def cli() -> None:
    """Console entry point (``zoo-test``, ``python tools/test.py``)."""
    from zoo.cli.common import exit_torchrun_worker, run_cli

    run_cli(lambda: main(exit_on_skip=True))  # a batch job that skipped anything exits non-zero
    exit_torchrun_worker()  # only reached after a successful run


if __name__ == '__main__':
    cli()
