"""Run a trained detection or segmentation config on an image, or on every image of a folder, and
write each prediction as a PNG.

The task (mmdet or mmseg) comes from the config. Detection keeps boxes with score >= --score-thr,
removes duplicate boxes of one class (per-class NMS at --nms-iou) and draws boxes, masks and
"class score" tags; small images are drawn enlarged (long side >= 512 px) so the tags stay legible.
Segmentation draws the class-coloured label map over the image.

A folder is a batch: an unreadable file is reported and skipped, the others are predicted, and
the exit code is 1 when anything was skipped.

Examples:
  python tools/infer.py configs/detection/mambaout/mask-rcnn_mambaout-t_fpn_1x_coco.py \\
      work_dirs/x/epoch_12.pth demo.jpg --out pred.png
  python tools/infer.py CONFIG work_dirs/x/epoch_12.pth images/ --out predictions/ --score-thr 0.5
  python tools/infer.py CONFIG work_dirs/y/best_mIoU_iter_160000.pth demo.jpg --out seg.png
  python tools/infer.py CONFIG work_dirs/x/epoch_12.pth images/ --out predictions/ --bf16 --channels-last
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='mmdet or mmseg config the checkpoint was trained with')
    p.add_argument('checkpoint', help='checkpoint from tools/train.py (epoch_N.pth, iter_N.pth, best_*.pth)')
    p.add_argument('image', help='input image, or a folder of images')
    p.add_argument(
        '--out',
        help='output PNG for one image (default prediction.png), output folder for a '
        'folder of images (default predictions/)',
    )
    p.add_argument('--score-thr', type=float, default=0.3, help='detection score threshold (default 0.3)')
    p.add_argument(
        '--nms-iou',
        type=float,
        default=0.5,
        help='boxes of one class overlapping more than this IoU are duplicates (default 0.5)',
    )
    p.add_argument('--device', default='cpu', help="torch device (default 'cpu')")
    p.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        default={},
        metavar='KEY=VALUE',
        help='override config keys; unknown keys are an error',
    )
    from zoo.cli.common import add_fast_args

    add_fast_args(p)  # applied to the backbone: heads and post-processing stay float32
    return p.parse_args(argv)


def _summary(res: dict, score_thr: float) -> str:
    if res['task'] == 'det':
        return f'{res["num_detections"]} detections >= {score_thr}: ' + (
            ', '.join(f'{lab} {s:.2f}' for lab, s in zip(res['labels'], res['scores'])) or 'none'
        )
    return 'classes ' + ', '.join(f'{k} {v:.0%}' for k, v in res['class_fractions'].items())


def main(argv: list[str] | None = None) -> int:
    """Returns the exit code: 0, or 1 when a file of a folder was skipped."""
    args = parse_args(argv)
    import zoo  # noqa: F401
    from zoo.mm.inference import IMAGE_EXTENSIONS, ImageReadError, Predictor

    if not os.path.exists(args.image):
        raise FileNotFoundError(f'image {args.image} does not exist')
    if os.path.isdir(args.image):
        images = sorted(
            os.path.join(args.image, f)
            for f in os.listdir(args.image)
            if not f.startswith('.') and os.path.isfile(os.path.join(args.image, f))
        )
        out_dir = args.out or 'predictions'
        if not images:
            raise FileNotFoundError(f'folder {args.image} has no files')
        jobs = [(img, os.path.join(out_dir, os.path.splitext(os.path.basename(img))[0] + '.png')) for img in images]
    else:
        jobs = [(args.image, args.out or 'prediction.png')]
    from zoo.cli.common import apply_fast_args, fast_summary, fast_target

    predictor = Predictor(args.config, args.checkpoint, device=args.device, cfg_options=args.cfg_options)
    compiled = apply_fast_args(fast_target(predictor.model), args, what='tools/infer.py backbone')
    skipped = []
    for image, out in jobs:
        try:
            res = predictor(image, out, score_thr=args.score_thr, nms_iou=args.nms_iou)
        except (ImageReadError, FileNotFoundError) as err:
            if len(jobs) == 1:
                raise
            ext = os.path.splitext(image)[1].lower()
            hint = '' if ext in IMAGE_EXTENSIONS else ' (not an image extension)'
            print(f'infer: skipping {err}{hint}', file=sys.stderr, flush=True)
            skipped.append(image)
            continue
        print(
            f'infer: {os.path.basename(image)} -> {res["out_file"]} ({_summary(res, args.score_thr)}; '
            f'{res["seconds"]:.1f}s{fast_summary(args, compiled)})',
            flush=True,
        )
    if len(jobs) > 1:
        print(
            f'infer: {len(jobs) - len(skipped)} of {len(jobs)} images predicted'
            + (f', {len(skipped)} skipped: {", ".join(os.path.basename(s) for s in skipped)}' if skipped else ''),
            file=sys.stderr if skipped else sys.stdout,
            flush=True,
        )
    return 1 if skipped else 0


def cli() -> None:
    """Console entry point (``zoo-infer``, ``python tools/infer.py``)."""
    from zoo.cli.common import run_cli

    run_cli(main)


if __name__ == '__main__':
    cli()
