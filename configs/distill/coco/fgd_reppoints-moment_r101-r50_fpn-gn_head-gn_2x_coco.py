# RepPoints (moment, GN neck and head) R101 -> R50, COCO 2x: Focal-and-global distillation (FGD, arXiv 2111.11837) on
# the 5 FPN convs before their GroupNorm, with the authors' RepPoints weights (alpha 1.6e-3, beta 8e-4, gamma 8e-4,
# lambda 8e-6, temperature 0.5; SGD 0.01 as mmdet's RepPoints; yzd-v/FGD,
# configs/distillers/fgd/fgd_reppoints_r101_fpn_distill_reppoints_r50_fpn_2x_coco.py).
# Paper mAP (R50 student): 41.0; student alone 38.6.
_base_ = ['./_reppoints-moment_r101-r50_fpn-gn_head-gn_2x_coco.py', './_fgd_fpn.py']
model = dict(distiller=_base_.pop('fpn_distill')['reppoints'])  # pop: the method part is used here, not kept twice
