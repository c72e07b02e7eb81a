# RetinaNet R101 -> R50, COCO 2x: MasKD (arXiv 2205.14589) baseline on every FPN level, with the authors' RetinaNet
# settings (hunto/MasKD, mmrazor/configs/distill/maskd/retinanet_r101-retinanet_r50_coco.py): loss weight 7, weighted
# masks, student-customised masks after 7000 steps, SGD 0.02 with a 1000-step warmup. Stage-1 masks: ours from
# maskd-masks_retinanet_r101_fpn_2x_coco.py, or theirs for this teacher:
# https://github.com/Gumpest/MasKD/releases/download/v0.0.3/maskd_retinanet_r101_fpn_2x_coco_20200131-5560aee8.ckpt
# (pass as tokens= on each loss; not downloaded here). Left out: their extra L1 loss on the regression head outputs.
# Paper mAP (R50 student): 39.8; student alone 37.4.
_base_ = ['./_retinanet_r101-r50_fpn_2x_coco.py', './_maskd_fpn.py']
model = dict(distiller=_base_.pop('fpn_distill')['retinanet'])  # pop: the method part is used here, not kept twice
optim_wrapper = dict(optimizer=dict(lr=0.02))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=24, by_epoch=True, milestones=[16, 22], gamma=0.1),
]
