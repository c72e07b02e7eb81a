"""Convert an official checkpoint into a zoo safetensors file.

The official file (raw state dict, or wrapped in model / state_dict / state_dict_ema) is loaded
through the model's own checkpoint_filter_fn, via the same timm.create_model(pretrained=True,
pretrained_cfg_overlay=dict(file=...)) path a user takes, so a file that converts also loads.
Prints the sha256 of the result for weights/manifest.csv.

Examples:
  python tools/convert.py mambaout_femto mambaout_femto.pth mambaout_femto.safetensors
  python tools/convert.py agent_pvt_tiny agent_pvt_t.pth out.safetensors --model-kwargs num_classes=1000
"""

from __future__ import annotations

import argparse
import os
import time


def main(argv: list[str] | None = None) -> str:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('model', help='timm model name (zoo or timm), e.g. mambaout_femto')
    p.add_argument('src', help='official checkpoint (.pth/.pt/.bin/.safetensors)')
    p.add_argument('dst', help='output .safetensors path')
    p.add_argument(
        '--model-kwargs',
        nargs='+',
        action=DictAction,
        default={},
        metavar='KEY=VALUE',
        help='extra timm.create_model arguments (e.g. num_classes=100 img_size=384)',
    )
    args = p.parse_args(argv)
    if not args.dst.endswith('.safetensors'):
        p.error(f'dst must end with .safetensors, got {args.dst}')
    start = time.time()
    from zoo.cli.common import CaptureLoadReport, UsageError, check_model_names, summarize_state_dict_error
    from zoo.hub import convert_checkpoint, sha256_file

    check_model_names([args.model])
    try:
        with CaptureLoadReport() as report:
            out = convert_checkpoint(args.model, args.src, args.dst, **args.model_kwargs)
    except RuntimeError as err:  # strict load: weights of another architecture
        msg = summarize_state_dict_error(str(err), args.src)
        if msg is None:
            raise
        raise UsageError(msg) from None
    # timm loads non-strictly when num_classes differs from the file's; only the classifier may be missing
    import timm

    classifier = timm.models.get_pretrained_cfg_value(args.model.split('.')[0], 'classifier') or ()
    problem = report.problem((classifier,) if isinstance(classifier, str) else tuple(classifier))
    if problem:
        os.remove(out)
        raise UsageError(f'weights {args.src} do not fit {args.model} (another architecture?): {problem}')
    print(
        f'convert: {args.src} -> {out} ({args.model}), sha256 {sha256_file(out)}, '
        f'{os.path.getsize(out) / 1e6:.1f} MB, {time.time() - start:.1f}s'
    )
    return out


def cli() -> None:
    """Console entry point (``zoo-convert``, ``python tools/convert.py``)."""
    from zoo.cli.common import run_cli

    run_cli(main)


if __name__ == '__main__':
    cli()
