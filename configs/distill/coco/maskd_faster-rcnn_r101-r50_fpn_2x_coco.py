# Faster R-CNN R101 -> R50, COCO 2x: MasKD (arXiv 2205.14589) baseline on the 5 FPN outputs (P2-P6), with the authors'
# Faster R-CNN settings (hunto/MasKD, mmrazor/configs/distill/maskd/fpn_r101-fpn_r50_coco.py): loss weight 1, weighted
# masks, student-customised masks after 7330 steps, SGD 0.02 (mmdet's 2x). Stage-1 masks: ours from
# maskd-masks_faster-rcnn_r101_fpn_2x_coco.py, or theirs for this teacher:
# https://github.com/Gumpest/MasKD/releases/download/v0.0.3/maskd_faster_rcnn_r101_fpn_2x_coco_bbox_mAP-0.398_20200504_210455-1d2dac9c.pth
# (pass as tokens= on each loss; not downloaded here). Left out: their SmoothL1 loss on the RoI regression outputs.
# Paper mAP (R50 student): 40.8; student alone 38.4.
_base_ = ['./_faster-rcnn_r101-r50_fpn_2x_coco.py', './_maskd_fpn.py']
model = dict(distiller=_base_.pop('fpn_distill')['faster_rcnn'])  # pop: the method part is used here, not kept twice
