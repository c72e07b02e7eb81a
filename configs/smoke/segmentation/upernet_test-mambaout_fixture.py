# Smoke config: the MambaOut UPerNet recipe (../../segmentation/mambaout/upernet_mambaout-t_512x512_160k_ade20k.py:
# same segmentor, ADE20KDataset, IoUMetric, AdamW) on the synthetic ADE20K-layout fixture, with timm's tiny
# `test_mambaout` backbone instead of MambaOut-T, 128 px images, 3 classes, narrower heads, plain BN (one
# process, no SyncBN) and a short schedule (~1 min on one CPU thread).
#
#   python tools/make_fixtures.py ade --out data/fixtures/ade      # 16 train + 16 held-out val images
#   OMP_NUM_THREADS=1 python tools/train.py configs/smoke/segmentation/upernet_test-mambaout_fixture.py
#   python tools/test.py configs/smoke/segmentation/upernet_test-mambaout_fixture.py \
#       work_dirs/upernet_test-mambaout_fixture/iter_80.pth
#
# The fixture's 3 classes borrow ADE20K's first three names: background 'wall', squares 'building',
# discs 'sky'. The fixture root defaults to data/fixtures (environment variable ZOO_FIXTURES).
# Expected numbers (held-out val): docs/dense.md, "Smoke configs".
_base_ = ['../../segmentation/mambaout/upernet_mambaout-t_512x512_160k_ade20k.py']

data_root = '{{$ZOO_FIXTURES:data/fixtures}}/ade'
img_size = 128
metainfo = dict(classes=('wall', 'building', 'sky'), palette=[(120, 120, 120), (180, 120, 120), (6, 230, 230)])
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    data_preprocessor=dict(size=(img_size, img_size)),
    backbone=dict(model_name='test_mambaout', pretrained=None, drop_path_rate=0.0),
    decode_head=dict(in_channels=[16, 32, 48, 64], channels=64, num_classes=3, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=48, channels=32, num_classes=3, norm_cfg=norm_cfg),
)

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

max_iters = 80
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20)]
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_iters))
randomness = dict(seed=0)
