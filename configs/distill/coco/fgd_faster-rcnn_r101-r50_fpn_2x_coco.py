# Faster R-CNN R101 -> R50, COCO 2x: Focal-and-global distillation (FGD, arXiv 2111.11837) on the 4 FPN convs P2-P5
# with the authors' Faster R-CNN weights (alpha 5e-5, beta 2.5e-5, gamma 5e-5, lambda 5e-7, temperature 0.5;
# yzd-v/FGD, configs/distillers/fgd/fgd_faster_rcnn_r101_fpn_2x_distill_faster_rcnn_r50_fpn_2x_coco.py, SGD 0.02).
# Paper mAP (R50 student): 40.4; student alone 38.4.
_base_ = ['./_faster-rcnn_r101-r50_fpn_2x_coco.py', './_fgd_fpn.py']
model = dict(distiller=_base_.pop('fpn_distill')['faster_rcnn'])  # pop: the method part is used here, not kept twice
