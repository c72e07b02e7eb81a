# MHS-VM (VM-UNet with 4-head multi-head scanning, 17.26M params) on ISIC 2018, official recipe
# (PixDeep/MHS-VM configs/config_setting.py): 256x256, flips + 0-360 rotation, per-image min-max to
# [0, 255], BCE + Dice (1:1), AdamW lr 1e-3 wd 1e-2, CosineAnnealingLR(T_max=50 epochs, eta_min
# 1e-5; periodic beyond T_max, as torch's), batch 32, 300 epochs, seed 42, threshold 0.5.
# Data: VM-UNet's prepared split, <data_root>/{train,val}/{images,masks}/*.png.
# The official test.py evaluates with gfu_t=0.4: tools/test.py CONFIG CKPT --cfg-options model.net.gfu_t=0.4
_base_ = ['../../_base_/default_runtime.py']

data_root = 'data/isic2018/'
img_size = 256
max_epochs = 300

model = dict(
    type='BinarySegmentor',
    net=dict(type='MHSVMUNetSeg', variant='mhs_vm_unet_4h', gfu_t=0.5, drop_path_rate=0.2, img_size=img_size),
    loss=dict(type='BceDiceLoss', wb=1.0, wd=1.0),
    threshold=0.5,
)

train_dataloader = dict(
    batch_size=32,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ISICSegDataset', data_root=data_root, split='train', img_size=img_size, augment=True),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ISICSegDataset', data_root=data_root, split='val', img_size=img_size, augment=False),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='BinarySegMetric', threshold=0.5)
test_evaluator = val_evaluator

# The official optimizer decays every parameter (no norm/bias exemptions).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2),
)
param_scheduler = [
    dict(type='CosineAnnealingLR', T_max=50, eta_min=1e-5, by_epoch=True, begin=0, end=max_epochs),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# The official code keeps the checkpoint with the lowest "val" loss; we keep the best DSC.
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1, save_best='seg/dsc', rule='greater')
)
custom_hooks = [
    dict(type='ProgressBarHook'),
    dict(type='TrainingCurveHook'),
    dict(type='SegOverlayHook', max_images=32),  # tools/test.py writes <work_dir>/overlays/*.png
]
randomness = dict(seed=42)
