# MambaOut-T + UPerNet, 160k iterations, ADE20K (150 classes), 512x512 crops.
# Paper: MambaOut (Yu & Wang, CVPR 2025, arXiv 2405.07992): UperNet MambaOut-T 47.4 mIoU (quoted by
# the maintainer in MambaOut issue #251).
# The official segmentation code was never released; this follows the maintainer's recipe from
# #251: Swin's UPerNet 160k config, a LayerNorm on each stage output (out_norm=True), lr 1e-4,
# drop_path 0.3 for the Tiny model, no layer-wise lr decay. The rest is Swin's: AdamW wd 0.01,
# 1500-iteration warmup then poly (power 1.0), 16 images per batch (2 per GPU x 8 GPUs).
# Data: ADEChallengeData2016 layout under data_root; change data_root below.
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
        model_name='mambaout_tiny',
        pretrained=True,  # timm/mambaout_tiny.in1k
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,
        out_norm=True,
    ),
    decode_head=dict(in_channels=[96, 192, 384, 576], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150),
)

train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
default_hooks = dict(checkpoint=dict(max_keep_ckpts=1, save_best='mIoU'))
