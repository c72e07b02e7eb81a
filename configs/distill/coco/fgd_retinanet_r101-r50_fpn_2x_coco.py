# RetinaNet R101 -> R50, COCO 2x: Focal-and-global distillation (FGD, arXiv 2111.11837) on every FPN level; the
# weights are the defaults of the
# authors' loss module (their per-detector configs differ: check yzd-v/FGD before reporting numbers).
# Paper mAP (R50 student): 39.6; student alone 37.4.
_base_ = ['./_retinanet_r101-r50_fpn_2x_coco.py', './_fgd_fpn.py']
model = dict(distiller=_base_.pop('fpn_distill'))  # pop: the method part is used here, not kept twice
