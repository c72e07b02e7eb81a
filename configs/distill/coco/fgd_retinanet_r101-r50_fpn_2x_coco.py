# RetinaNet R101 -> R50, COCO 2x: Focal-and-global distillation (FGD, arXiv 2111.11837) on the 5 FPN levels with the
# authors' RetinaNet weights (alpha 1e-3, beta 5e-4, gamma 5e-4, lambda 5e-6, temperature 0.5; yzd-v/FGD,
# configs/distillers/fgd/fgd_retina_r101_fpn_2x_distill_retina_r50_fpn_2x_coco.py, SGD 0.01 as mmdet's RetinaNet).
# Paper mAP (R50 student): 39.6; student alone 37.4.
_base_ = ['./_retinanet_r101-r50_fpn_2x_coco.py', './_fgd_fpn.py']
model = dict(distiller=_base_.pop('fpn_distill')['retinanet'])  # pop: the method part is used here, not kept twice
