# Smoke config: the MambaOut Mask R-CNN recipe (../../detection/mambaout/mask-rcnn_mambaout-t_fpn_1x_coco.py:
# same detector, dataset class, evaluator, optimizer) on the synthetic COCO-format fixture, with timm's
# tiny `test_mambaout` backbone (0.4M parameters) instead of MambaOut-T, 128 px images, 2 classes,
# narrower neck and heads, fewer RPN / RoI samples, and a short schedule (~1 min on one CPU thread).
#
#   python tools/make_fixtures.py coco --out data/fixtures/coco     # 16 train + 16 held-out val images
#   OMP_NUM_THREADS=1 python tools/train.py configs/smoke/detection/mask-rcnn_test-mambaout_fpn_fixture.py
#   python tools/test.py configs/smoke/detection/mask-rcnn_test-mambaout_fpn_fixture.py \
#       work_dirs/mask-rcnn_test-mambaout_fpn_fixture/epoch_10.pth
#
# The fixture root defaults to data/fixtures (environment variable ZOO_FIXTURES overrides it).
# Expected numbers (held-out val): docs/dense.md, "Smoke configs".
_base_ = ['../../detection/mambaout/mask-rcnn_mambaout-t_fpn_1x_coco.py']

data_root = '{{$ZOO_FIXTURES:data/fixtures}}/coco/'
img_size = 128
metainfo = dict(classes=('square', 'disc'), palette=[(220, 20, 60), (0, 80, 230)])

model = dict(
    backbone=dict(model_name='test_mambaout', pretrained=None, drop_path_rate=0.0),
    neck=dict(in_channels=[16, 32, 48, 64], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=2),
        mask_roi_extractor=dict(out_channels=64),
        mask_head=dict(in_channels=64, conv_out_channels=64, num_classes=2),
    ),
    # a fixture image holds 1-3 objects: COCO's 256 anchors / 512 RoIs / 1000 proposals are wasted work
    train_cfg=dict(
        rpn=dict(sampler=dict(num=64)), rpn_proposal=dict(nms_pre=300, max_per_img=100), rcnn=dict(sampler=dict(num=64))
    ),
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=100), rcnn=dict(max_per_img=20)),
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        pipeline=train_pipeline,
        filter_cfg=dict(filter_empty_gt=True, min_size=4),
    ),
)
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(data_root=data_root, metainfo=metainfo, pipeline=test_pipeline),
)
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

max_epochs = 10
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20)]
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=1e-4))
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_epochs))
randomness = dict(seed=0)
