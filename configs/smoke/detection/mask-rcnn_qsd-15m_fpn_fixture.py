# Smoke config: the QSD-Transformer Mask R-CNN recipe (../../detection/qsd_transformer/mask-rcnn_qsd-31m_fpn_1x_coco.py:
# 4-bit spiking backbone at T=1 without an ImageNet checkpoint, as the recipe's default, FPN, Mask R-CNN
# heads and AdamW) on the synthetic COCO-format fixture, with the real 15M backbone (the size whose
# ImageNet checkpoint is published) instead of the 31M one, a 128-channel FPN and heads instead of 384
# (at 384 the 4-conv mask head alone costs ~1 GMAC per RoI), 128 px images, 2 classes, fewer RPN / RoI
# samples and a short schedule with a higher lr (about 1.5 min on one CPU thread).
#
#   python tools/make_fixtures.py coco --out data/fixtures/coco
#   OMP_NUM_THREADS=1 python tools/train.py configs/smoke/detection/mask-rcnn_qsd-15m_fpn_fixture.py
#
# The fixture root defaults to data/fixtures (environment variable ZOO_FIXTURES overrides it).
# Expected numbers (held-out val): docs/dense.md, "Smoke configs".
_base_ = ['../../detection/qsd_transformer/mask-rcnn_qsd-31m_fpn_1x_coco.py']

data_root = '{{$ZOO_FIXTURES:data/fixtures}}/coco/'
img_size = 128
metainfo = dict(classes=('square', 'disc'), palette=[(220, 20, 60), (0, 80, 230)])

model = dict(
    backbone=dict(model_name='qsd_transformer_15m'),
    neck=dict(in_channels=[64, 128, 256, 360], out_channels=128),
    rpn_head=dict(in_channels=128, feat_channels=128),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=128),
        bbox_head=dict(in_channels=128, fc_out_channels=256, num_classes=2),
        mask_roi_extractor=dict(out_channels=128),
        mask_head=dict(in_channels=128, conv_out_channels=128, num_classes=2),
    ),
    # a fixture image holds 1-3 objects: COCO's 256 anchors / 512 RoIs / 1000 proposals are wasted work
    train_cfg=dict(
        rpn=dict(sampler=dict(num=64)), rpn_proposal=dict(nms_pre=300, max_per_img=100), rcnn=dict(sampler=dict(num=64))
    ),
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=100), rcnn=dict(score_thr=0.0, max_per_img=20)),
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        pipeline=train_pipeline,
        filter_cfg=dict(filter_empty_gt=True, min_size=4),
    ),
)
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline),
)
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

max_epochs = 4
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5)]
optim_wrapper = dict(optimizer=dict(lr=3e-4))
# save_optimizer=False: AdamW's state over the detector's parameters would double each checkpoint
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=max_epochs, save_optimizer=False))
randomness = dict(seed=0)
