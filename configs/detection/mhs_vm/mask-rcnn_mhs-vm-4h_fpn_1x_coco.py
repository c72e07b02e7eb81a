# MHS-VM encoder (4 scan heads, dims 96-192-384-768, depths 2-2-2-2) + Mask R-CNN (FPN), 1x schedule
# (12 epochs), COCO 2017 instances, 1333x800.
# Paper: MHS-VM (Ji, arXiv 2406.05992) is a segmentation-only paper (ISIC 2017/2018 skin lesions with
#   its own VM-UNet): it has no COCO number, and nothing here is a paper recipe. This is a zoo recipe.
# Recipe: VMamba-T's Mask R-CNN 1x (MzeroMiko/VMamba detection/configs/vssm/mask_rcnn_vssm_fpn_coco_tiny.py),
# which is mmdet's Swin-T recipe (mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py): single-scale 1333x800 with
# flips, AdamW lr 1e-4, betas (0.9, 0.999), wd 0.05, 1000-iteration linear warmup, steps at epochs 8
# and 11, 16 images per batch (2 per GPU x 8 GPUs), drop_path 0.2 (Swin-T's / VMamba-T's detection
# value, which is also MHS-VM's released value). No weight decay on LayerNorms ('norm' keys as Swin,
# plus 'ln_1', the block norms that key misses) nor on the SSM's A_logs / Ds (the encoder's
# no_weight_decay set).
# Weights: none. MHS-VM was never trained on ImageNet (the paper trains its VM-UNet from scratch), so
# the backbone starts from random init, unlike VMamba-T / Swin-T, whose COCO numbers use ImageNet
# weights: do not compare them. pretrained=True would load the official ISIC 2018 VM-UNet encoder
# (best_4h.pth); it was trained on min-max scaled [0, 255] inputs, so with it set the
# data_preprocessor's mean to 0 and std to 1.
# The encoder needs sides divisible by 32: mmdet pads every batch to a multiple of 32. Its scan routes
# are generated (and cached) once per feature-map size.
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
        model_name='mhs_vm_encoder_4h',
        pretrained=None,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,
    ),
    neck=dict(in_channels=[96, 192, 384, 768]),
)

train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))
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
_no_decay = ('norm', 'ln_1', 'A_logs', 'Ds')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={k: dict(decay_mult=0.0) for k in _no_decay}),
)
auto_scale_lr = dict(enable=False, base_batch_size=16)
