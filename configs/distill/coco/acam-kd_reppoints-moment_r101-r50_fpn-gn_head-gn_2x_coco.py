# RepPoints R101 -> R50, COCO 2x: ACAM-KD (arXiv 2503.06307): STCA-FF + ASCM on every FPN level (P3-P7), M = 6,
# alpha = lambda = 1,
# a 1x1-conv connector per level (f_align). Loss scale: see docs/distillation.md (not tuned).
# Paper mAP (R50 student): 42.5; student alone 38.6.
_base_ = ['./_reppoints-moment_r101-r50_fpn-gn_head-gn_2x_coco.py', './_acam-kd_fpn.py']
model = dict(distiller=_base_.pop('fpn_distill'))  # pop: the method part is used here, not kept twice
