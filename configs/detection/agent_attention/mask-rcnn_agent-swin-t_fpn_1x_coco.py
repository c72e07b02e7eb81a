# Agent-Swin-T + Mask R-CNN (FPN), 1x schedule (12 epochs), COCO 2017 instances.
# Paper: Agent Attention (arXiv 2312.08874), official downstream README, Mask R-CNN 1x Agent-Swin-T:
#   44.6 box AP / 40.7 mask AP.
# Recipe as the official config (agent_swin_t_mrcnn_1x): AdamW lr 1e-4, betas (0.9, 0.999), wd 0.05
# with no decay on norms and agent biases, drop_path 0.1, DETR-style multi-scale + crop augmentation,
# steps at epochs 8 and 11, 16 images per batch.
# Data: COCO 2017 standard layout under data_root; change data_root below.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    '../../_base_/dense/det_runtime.py',
]
data_root = 'data/coco/'

model = dict(
    backbone=dict(
        _delete_=True,
        type='ZooBackbone',
        model_name='agent_swin_tiny',
        pretrained=True,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
    ),
    neck=dict(in_channels=[96, 192, 384, 768]),
)

# Multi-scale training with a random-crop branch (the official config's AutoAugment policies).
_scales = [(1333, s) for s in range(480, 801, 32)]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=_scales, keep_ratio=True)],
            [
                dict(type='RandomChoiceResize', scales=[(1333, 400), (1333, 500), (1333, 600)], keep_ratio=True),
                dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600), allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=_scales, keep_ratio=True),
            ],
        ],
    ),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

_no_decay = ('norm', 'an_bias', 'na_bias', 'ah_bias', 'aw_bias', 'ha_bias', 'wa_bias', 'relative_position_bias_table')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={k: dict(decay_mult=0.0) for k in _no_decay}),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
auto_scale_lr = dict(enable=False, base_batch_size=16)
