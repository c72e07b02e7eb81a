# Smoke config: the QSD-Transformer Semantic FPN recipe
# (../../segmentation/qsd_transformer/fpn_qsd-15m_512x512_160k_ade20k.py:
# the real 15M 4-bit spiking backbone at T=1 without a checkpoint, its 128-channel FPN, head lr x2,
# AdamW) on the synthetic ADE20K-layout fixture: 128 px images, 3 classes, plain BN (one process) and
# a short schedule (~1 min on one CPU thread).
#
#   python tools/make_fixtures.py ade --out data/fixtures/ade
#   OMP_NUM_THREADS=1 python tools/train.py configs/smoke/segmentation/fpn_qsd-15m_fixture.py
#
# The fixture root defaults to data/fixtures (environment variable ZOO_FIXTURES overrides it).
# Expected numbers (held-out val): docs/dense.md, "Smoke configs".
_base_ = ['../../segmentation/qsd_transformer/fpn_qsd-15m_512x512_160k_ade20k.py']

data_root = '{{$ZOO_FIXTURES:data/fixtures}}/ade'
img_size = 128
metainfo = dict(classes=('wall', 'building', 'sky'), palette=[(120, 120, 120), (180, 120, 120), (6, 230, 230)])
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(data_preprocessor=dict(size=(img_size, img_size)), decode_head=dict(num_classes=3, norm_cfg=norm_cfg))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4,
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

# 40 iterations: at 20 the score depended on the CPU (mIoU 46.4 on one machine, 32.1 on another, seed 0)
max_iters = 40
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=5)]
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=max_iters))
randomness = dict(seed=0)
