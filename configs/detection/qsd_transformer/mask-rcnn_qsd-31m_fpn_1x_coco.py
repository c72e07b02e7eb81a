# QSD-Transformer "3.9M" (4-bit weights; 31M full-precision builder, embed 96-192-384-480) + Mask R-CNN
# (FPN), 1x schedule (12 epochs), COCO 2017 instances.
# Paper: QSD-Transformer (Qiu et al., ICLR 2025, arXiv 2501.13492) reports COCO results, but we could
#   not read the number from the paper or the official repo, so none is quoted here.
# Recipe as the official config (bollossom/QSD-Transformer det/configs/q_sformer_mask_rcnn/
# mask-rcnn_qformer-t_fpn_1x_coco.py, "30M" backbone): T = 1, D = 4 spike levels, 4-bit LSQ weights,
# drop_path 0 (the official blocks never apply it); FPN 384 channels, RPN 384, shared 2-fc box head with
# 1536-d fcs, 4-conv 384-channel mask head, L1 box losses; DETR-style multi-scale resize + random crop;
# AdamW lr 2e-4, betas (0.9, 0.999), eps 1e-8, wd 0.05 with decay_mult 0 on 'norm' keys (copied; it
# matches no QSD parameter, whose BatchNorms are named *bn*); 1000-iteration linear warmup, steps at
# epochs 8 and 11; 1 image per GPU (the GPU count is not stated: the repo's launch lines use 1 to 8).
# AMP on GPU in the official config: add --amp to tools/train.py.
# Differences (zoo choices):
# * Heads are mmdet's standard FPN / RPNHead / Shared2FCBBoxHead / FCNMaskHead. The official SpikeFPN,
#   SpikeRPNHead, SharedSpike2FCBBoxHead and SpikeFCNMaskHead put a multi-spike quantiser (integer
#   levels 0..4) before each conv instead of ReLUs; only the backbone is spike-driven here.
# * Strides. The backbone's last downsampling has stride 1, so its four maps have strides 4, 8, 16, 16
#   and the FPN (size-based top-down upsampling) outputs strides 4, 8, 16, 16 and 32 (P6 = max-pool of
#   P5). The official config nevertheless declares anchor strides 4-8-16-32-64 and RoI strides
#   4-8-16-32, which misplaces the P5 / P6 anchors and RoIs by 2x. Here the true strides are declared
#   (anchor strides 4-8-16-16-32, RoI featmap_strides 4-8-16-16) and the anchor sizes are kept at the
#   standard 32..512 px (base_sizes 4-8-16-32-64 x scale 8), so the largest objects still have anchors.
# * The official pipeline first resizes to 853x512; the random resize that follows overrides that
#   scale, so it is left out.
# Weights: the official config starts from its own ImageNet checkpoint of this backbone, which is not
# published (the HF repo Xuerui123/QSD_Transformer holds 15M and 55M checkpoints). Set
# `backbone_checkpoint` to a checkpoint file (official layout is fine); None trains from scratch,
# which is not the paper's recipe.
# Data: COCO 2017 standard layout under data_root; change data_root below.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    '../../_base_/dense/det_runtime.py',
]
data_root = 'data/coco/'
backbone_checkpoint = None

model = dict(
    backbone=dict(
        _delete_=True,
        type='ZooBackbone',
        model_name='qsd_transformer_31m',
        pretrained=backbone_checkpoint,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.0,
        model_kwargs=dict(T=1),
    ),
    neck=dict(in_channels=[96, 192, 384, 480], out_channels=384, num_outs=5),
    rpn_head=dict(
        in_channels=384,
        feat_channels=384,
        anchor_generator=dict(strides=[4, 8, 16, 16, 32], base_sizes=[4, 8, 16, 32, 64]),
    ),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=384, featmap_strides=[4, 8, 16, 16]),
        bbox_head=dict(in_channels=384, fc_out_channels=1536),
        mask_roi_extractor=dict(out_channels=384, featmap_strides=[4, 8, 16, 16]),
        mask_head=dict(in_channels=384, conv_out_channels=384),
    ),
)

# DETR-style multi-scale training with a random-crop branch (the official train_pipeline).
_scales = [(1333, s) for s in range(480, 801, 32)]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=_scales, keep_ratio=True)],
            [
                dict(type='RandomChoiceResize', scales=[(1333, 400), (1333, 500), (1333, 600)], keep_ratio=True),
                dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600), allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=_scales, keep_ratio=True),
            ],
        ],
    ),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(batch_size=1, dataset=dict(data_root=data_root, pipeline=train_pipeline))
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
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(_delete_=True, type='AdamW', lr=2e-4, eps=1e-8, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}),
)
auto_scale_lr = dict(enable=False, base_batch_size=8)
