#!/usr/bin/env python
"""Run a trained detection or segmentation config on an image and write the prediction as a PNG.

The task (mmdet or mmseg) comes from the config. The PNG shows boxes, masks and class names
(detection) or the class-coloured label map over the image (segmentation).

Examples:
  python tools/infer.py configs/detection/mambaout/mask-rcnn_mambaout-t_fpn_1x_coco.py \
      work_dirs/x/epoch_12.pth demo.jpg --out pred.png
  python tools/infer.py CONFIG work_dirs/y/best_mIoU_iter_160000.pth demo.jpg --out seg.png
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='mmdet or mmseg config the checkpoint was trained with')
    p.add_argument('checkpoint', help='checkpoint from tools/train.py (epoch_N.pth, iter_N.pth, best_*.pth)')
    p.add_argument('image', help='input image')
    p.add_argument('--out', default='prediction.png', help='output PNG (default: prediction.png)')
    p.add_argument('--score-thr', type=float, default=0.3, help='detection score threshold (default 0.3)')
    p.add_argument('--device', default='cpu', help="torch device (default 'cpu')")
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={}, metavar='KEY=VALUE',
                   help='override config keys; unknown keys are an error')
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import zoo  # noqa: F401
    from zoo.mm.inference import infer_image

    res = infer_image(args.config, args.checkpoint, args.image, args.out, score_thr=args.score_thr,
                      device=args.device, cfg_options=args.cfg_options)
    if res['task'] == 'det':
        what = f"{res['num_detections']} detections >= {args.score_thr}: " + (
            ', '.join(f'{lab} {s:.2f}' for lab, s in zip(res['labels'], res['scores'])) or 'none')
    else:
        what = 'classes ' + ', '.join(f'{k} {v:.0%}' for k, v in res['class_fractions'].items())
    print(f"infer: {os.path.basename(args.image)} -> {res['out_file']} ({what}; {res['seconds']:.1f}s)", flush=True)
    return res


if __name__ == '__main__':
    from zoo_cli import run_cli

    run_cli(main)
