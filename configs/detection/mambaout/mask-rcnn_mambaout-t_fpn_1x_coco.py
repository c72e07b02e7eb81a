# MambaOut-T + Mask R-CNN (FPN), 1x schedule (12 epochs), COCO 2017 instances, 1333x800.
# Paper: MambaOut (Yu & Wang, CVPR 2025, arXiv 2405.07992) reports a COCO Mask R-CNN 1x result for
#   MambaOut-T, but the value could not be checked against the paper's table (only secondary
#   summaries quote it) and no primary source reachable here states it, so no number is quoted: take
#   box/mask AP from the paper.
# The official detection code was never released (MambaOut #251, #280): this recipe is a
# reconstruction -- the maintainer's dense hint (Swin's recipe + a LayerNorm on each stage output,
# no layer-wise lr decay) on mmdet's Swin-T Mask R-CNN 1x schedule (AdamW 1e-4, wd 0.05, 16 images
# per batch over 8 GPUs: 2 per GPU here).
# Data: COCO 2017 in the standard layout under data_root (annotations/instances_{train,val}2017.json,
# train2017/, val2017/); change data_root below (or pass the three data_root keys in --cfg-options).
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
        model_name='mambaout_tiny',
        pretrained=True,  # timm/mambaout_tiny.in1k (the official ImageNet-1k weights)
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,
        out_norm=True,
    ),
    neck=dict(in_channels=[96, 192, 384, 576]),
)

train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}),
)
auto_scale_lr = dict(enable=False, base_batch_size=16)
