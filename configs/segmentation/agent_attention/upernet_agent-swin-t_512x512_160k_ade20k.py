# Agent-Swin-T + UPerNet, 160k iterations, ADE20K (150 classes), 512x512 crops.
# Paper: Agent Attention (Han et al., ECCV 2024, arXiv 2312.08874); official downstream README,
# UperNet 160K Agent-Swin-T: 46.68 mIoU (single scale).
# Recipe as the official config (upernet_agent_swin_t): AdamW lr 6e-5, betas (0.9, 0.999), wd 0.01
# with no decay on norms and agent biases, 1500-iteration linear warmup then poly (power 1.0),
# drop_path 0.3, 16 images per batch (2 per GPU x 8 GPUs).
# Data: ADEChallengeData2016 (images/{training,validation}, annotations/{training,validation});
# change data_root below.
_base_ = [
    'mmseg::_base_/models/upernet_swin.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/schedules/schedule_160k.py',
    '../../_base_/dense/seg_runtime.py',
]
data_root = 'data/ade/ADEChallengeData2016'
crop_size = (512, 512)

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='ZooBackbone',
        model_name='agent_swin_tiny',
        pretrained=True,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,
    ),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150),
)

train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader

_no_decay = ('norm', 'an_bias', 'na_bias', 'ah_bias', 'aw_bias', 'ha_bias', 'wa_bias', 'relative_position_bias_table')
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={k: dict(decay_mult=0.0) for k in _no_decay}),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
default_hooks = dict(checkpoint=dict(max_keep_ckpts=1, save_best='mIoU'))
