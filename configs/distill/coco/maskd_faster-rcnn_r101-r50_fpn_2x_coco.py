# Faster R-CNN R101 -> R50, COCO 2x: MasKD (arXiv 2205.14589) baseline, teacher-only masks, M = 6 on every FPN
# level. MasKD learns its tokens in a
# first stage; pass them with tokens=PATH per level (without them the tokens are learned jointly).
# Paper mAP (R50 student): 40.8; student alone 38.4.
_base_ = ['./_faster-rcnn_r101-r50_fpn_2x_coco.py', './_maskd_fpn.py']
model = dict(distiller=_base_.pop('fpn_distill'))  # pop: the method part is used here, not kept twice
