# Agent-PVT-T + RetinaNet (FPN, P3-P7), 1x schedule (12 epochs), COCO 2017 boxes, 1333x800.
# Paper: Agent Attention (arXiv 2312.08874), official downstream README, RetinaNet 1x Agent-PVT-T:
#   40.3 box AP.
# Recipe as the official config (agent_pvt_t_rtn_1x): AdamW lr 1e-4, wd 1e-4, drop_path 0.1,
# steps at epochs 8 and 11, 16 images per batch.
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
        model_name='agent_pvt_tiny',
        pretrained=True,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
    ),
    neck=dict(in_channels=[64, 128, 320, 512]),
)

train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, weight_decay=1e-4))
auto_scale_lr = dict(enable=False, base_batch_size=16)
