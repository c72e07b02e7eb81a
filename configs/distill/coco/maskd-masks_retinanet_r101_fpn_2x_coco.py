# MasKD stage 1 (arXiv 2205.14589) for the RetinaNet R101 teacher: 6 mask tokens and a weighting head per FPN level,
# learned on the frozen teacher's detection loss plus Dice, the authors' settings (hunto/MasKD,
# mmdetection/configs/maskd/retinanet_r101_fpn_2x_coco.py): 2000 iterations, Adam 0.01, weight decay 1e-3, cosine to
# 1e-6, no warmup. The result, work_dirs/maskd-masks_retinanet_r101_fpn_2x_coco/iter_2000.pth, is what
# maskd_retinanet_r101-r50_fpn_2x_coco.py takes as tokens= (with level=i on each loss).
_base_ = ['mmdet::retinanet/retinanet_r101_fpn_2x_coco.py']
custom_imports = dict(imports=['zoo.mm', 'zoo.distill'], allow_failed_imports=False)
teacher_ckpt = (
    'https://download.openmmlab.com/mmdetection/v2.0/retinanet/retinanet_r101_fpn_2x_coco/'
    'retinanet_r101_fpn_2x_coco_20200131-5560aee8.pth'
)
model = dict(
    _delete_=True,
    _scope_='zoo',
    type='MasKDMaskLearner',
    model=dict(cfg_path='mmdet::retinanet/retinanet_r101_fpn_2x_coco.py', pretrained=False),
    checkpoint=teacher_ckpt,
    module='neck',
    channels=[256] * 5,
    num_masks=6,
    weight_mask=True,
)
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=2000, val_interval=2000)
optim_wrapper = dict(_delete_=True, type='OptimWrapper', optimizer=dict(type='Adam', lr=0.01, weight_decay=0.001))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=2000, eta_min=1e-6, by_epoch=False, begin=0, end=2000)]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=2000))
