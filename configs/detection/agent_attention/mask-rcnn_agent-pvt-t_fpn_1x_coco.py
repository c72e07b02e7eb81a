# Agent-PVT-T + Mask R-CNN (FPN), 1x schedule (12 epochs), COCO 2017 instances, 1333x800.
# Paper: Agent Attention (Han et al., ECCV 2024, arXiv 2312.08874); official downstream README,
# Mask R-CNN 1x Agent-PVT-T: 41.4 box AP / 38.7 mask AP.
# Recipe as the official config (agent_pvt_t_mrcnn_1x): AdamW lr 2e-4, wd 1e-4, drop_path 0.1,
# steps at epochs 8 and 11, 16 images per batch (2 per GPU x 8 GPUs).
# Difference: the official backbone pools a larger agent grid for high-resolution inputs
# (downstream_agent_shapes 12-16-28-28); the zoo model keeps its ImageNet agent_num (9-16-49-49).
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
        model_name='agent_pvt_tiny',
        pretrained=True,  # the official ImageNet-1k checkpoint (default cfg url)
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

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(_delete_=True, type='AdamW', lr=2e-4, weight_decay=1e-4))
auto_scale_lr = dict(enable=False, base_batch_size=16)
