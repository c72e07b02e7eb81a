# Smoke config: the MHS-VM UPerNet recipe (../../segmentation/mhs_vm/upernet_mhs-vm-4h_512x512_160k_ade20k.py:
# the real 4-head encoder, randomly initialised as in the recipe, UPerNet with its auxiliary FCN head,
# AdamW) on the synthetic ADE20K-layout fixture: images resized to 64 px (UPerNet's 512-channel head
# costs ~10 GMAC per 128 px image), 3 classes, plain BN (one process) and a short schedule
# (~1 min on one CPU thread). Predictions are scored at the fixture's full 128 px.
#
#   python tools/make_fixtures.py ade --out data/fixtures/ade
#   OMP_NUM_THREADS=1 python tools/train.py configs/smoke/segmentation/upernet_mhs-vm-4h_fixture.py
#
# The fixture root defaults to data/fixtures (environment variable ZOO_FIXTURES overrides it).
# Expected numbers (held-out val): docs/dense.md, "Smoke configs".
_base_ = ['../../segmentation/mhs_vm/upernet_mhs-vm-4h_512x512_160k_ade20k.py']

data_root = '{{$ZOO_FIXTURES:data/fixtures}}/ade'
img_size = 64
metainfo = dict(classes=('wall', 'building', 'sky'), palette=[(120, 120, 120), (180, 120, 120), (6, 230, 230)])
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    data_preprocessor=dict(size=(img_size, img_size)),
    backbone=dict(drop_path_rate=0.0, model_kwargs=dict(img_size=img_size)),
    decode_head=dict(num_classes=3, norm_cfg=norm_cfg),
    auxiliary_head=dict(num_classes=3, norm_cfg=norm_cfg),
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),  # after Resize: scored at full size
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline),
)
test_dataloader = val_dataloader

max_iters = 40
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=6e-4))
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5)]
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=max_iters))
randomness = dict(seed=0)
