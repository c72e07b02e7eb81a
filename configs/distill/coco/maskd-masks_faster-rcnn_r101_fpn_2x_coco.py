# MasKD stage 1 (arXiv 2205.14589) for the Faster R-CNN R101 teacher: 6 mask tokens and a weighting head on each of
# the 5 FPN outputs, learned on the frozen teacher's detection loss plus Dice, the authors' settings (hunto/MasKD,
# mmdetection/configs/maskd/faster_rcnn_r101_fpn_2x_coco.py): 2000 iterations, SGD 0.1 (momentum 0.9, weight decay
# 1e-4), cosine to 1e-6, no warmup. Their file builds the R50 detector around the R101 checkpoint; here the model is
# the R101 teacher itself. The result, work_dirs/maskd-masks_faster-rcnn_r101_fpn_2x_coco/iter_2000.pth, is what
# maskd_faster-rcnn_r101-r50_fpn_2x_coco.py takes as tokens= (with level=i on each loss).
_base_ = ['mmdet::faster_rcnn/faster-rcnn_r101_fpn_2x_coco.py']
custom_imports = dict(imports=['zoo.mm', 'zoo.distill'], allow_failed_imports=False)
teacher_ckpt = (
    'https://download.openmmlab.com/mmdetection/v2.0/faster_rcnn/faster_rcnn_r101_fpn_2x_coco/'
    'faster_rcnn_r101_fpn_2x_coco_bbox_mAP-0.398_20200504_210455-1d2dac9c.pth'
)
model = dict(
    _delete_=True,
    _scope_='zoo',
    type='MasKDMaskLearner',
    model=dict(cfg_path='mmdet::faster_rcnn/faster-rcnn_r101_fpn_2x_coco.py', pretrained=False),
    checkpoint=teacher_ckpt,
    module='neck',
    channels=[256] * 5,
    num_masks=6,
    weight_mask=True,
)
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=2000, val_interval=2000)
optim_wrapper = dict(
    _delete_=True, type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=0.0001)
)
param_scheduler = [dict(type='CosineAnnealingLR', T_max=2000, eta_min=1e-6, by_epoch=False, begin=0, end=2000)]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=2000))
