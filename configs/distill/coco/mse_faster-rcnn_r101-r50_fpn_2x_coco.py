# Faster R-CNN R101 -> R50, COCO 2x: Plain feature-MSE baseline on every FPN level, a 1x1-conv connector per level.
# Paper mAP (R50 student): n/a; student alone 38.4.
_base_ = ['./_faster-rcnn_r101-r50_fpn_2x_coco.py', './_mse_fpn.py']
model = dict(distiller=_base_.pop('fpn_distill'))  # pop: the method part is used here, not kept twice
