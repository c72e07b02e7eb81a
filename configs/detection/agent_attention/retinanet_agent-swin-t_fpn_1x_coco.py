# Agent-Swin-T + RetinaNet (FPN on stages 2-4, P3-P7), 1x schedule, COCO 2017 boxes, 1333x800.
# Paper: Agent Attention reports no RetinaNet number for Agent-Swin (its README lists RetinaNet for
# Agent-PVT only), so there is no paper number to compare with.
# Recipe: mmdet's Swin-T RetinaNet layout (FPN in_channels 192/384/768, start_level 0, 5 outputs)
# with the Agent-Swin detection optimiser (AdamW lr 1e-4, wd 0.05, no decay on norms and agent
# biases, drop_path 0.1), 1x steps at epochs 8 and 11, 16 images per batch.
# Data: COCO 2017 standard layout under data_root; change data_root below.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
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
        out_indices=(1, 2, 3),
        drop_path_rate=0.1,
    ),
    neck=dict(in_channels=[192, 384, 768], start_level=0, num_outs=5),
)

train_dataloader = dict(dataset=dict(data_root=data_root))
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
auto_scale_lr = dict(enable=False, base_batch_size=16)
