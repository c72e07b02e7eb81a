# QSD-Transformer "1.8M" (4-bit weights; 15M full-precision builder, embed 64-128-256-360) + Semantic FPN,
# 160k iterations, ADE20K (150 classes), 512x512 crops.
# Paper: QSD-Transformer (Qiu et al., ICLR 2025, arXiv 2501.13492) reports ADE20K results, but we could
#   not read the number from the paper or the official repo, so none is quoted here.
# Recipe as the official config (bollossom/QSD-Transformer seg/configs/q_sformer_seg/
# fpn_sdtv3_512x512_15M_ade20k.py): backbone T = 1 (its "T=4" is set on the neck and head only, see
# below), D = 4 spike levels, 4-bit LSQ weights, drop_path 0; FPN neck 128 channels, FPN head 128
# channels; AdamW lr 1e-3, betas (0.9, 0.999), wd 5e-3, lr x2 on the head ('head' keys); 1500-iteration
# linear warmup (start factor 1e-6), then poly (power 1.0) to 160k iterations; 16 images per GPU as
# in the official config (the GPU count is not stated: the repo's launch lines use 2, 4 or 6);
# AMP on GPU in the official config: add --amp to tools/train.py.
# Differences (zoo choices):
# * Neck and head are mmseg's standard FPN and FPNHead (ReLU, SyncBN in the head). The official QFPN /
#   QFPNHead ("T=4", act_cfg=None) put a 4-level multi-spike quantiser before each conv; only the
#   backbone is spike-driven here.
# * Taps and strides. The official segmentation backbone taps the first ConvBlock (stride 2, C0/2),
#   stages 0 and 1 and the last stage: strides 2, 4, 8, 16, neck in_channels 32-64-128-360, logits at
#   stride 2. ZooBackbone returns the four stage outputs: strides 4, 8, 16, 16 (the last downsampling
#   has stride 1), in_channels 64-128-256-360. The FPN neck's size-based top-down upsampling handles the
#   equal strides; the head is told the true strides (feature_strides 4-8-16-16), so every level is
#   upsampled to stride 4 as in the standard Semantic FPN.
# * The backbone needs sides divisible by 16: whole-image testing pads each test image to a multiple of
#   32 (data_preprocessor test_cfg) and crops the logits back.
# Weights: the official config starts from the ImageNet-1k 15M checkpoint (HF repo
# Xuerui123/QSD_Transformer, "15M_w4"; file name unverified). Set `backbone_checkpoint` to the
# downloaded file (official layout; checkpoint_filter_fn maps it); None trains from scratch, which is
# not the paper's recipe.
# Data: ADEChallengeData2016 layout under data_root; change data_root below.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/schedules/schedule_160k.py',
    '../../_base_/dense/seg_runtime.py',
]
data_root = 'data/ade/ADEChallengeData2016'
crop_size = (512, 512)
backbone_checkpoint = None

model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size, test_cfg=dict(size_divisor=32)),
    backbone=dict(
        _delete_=True,
        type='ZooBackbone',
        model_name='qsd_transformer_15m',
        pretrained=backbone_checkpoint,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.0,
        model_kwargs=dict(T=1),
    ),
    neck=dict(in_channels=[64, 128, 256, 360], out_channels=128, num_outs=4),
    decode_head=dict(in_channels=[128, 128, 128, 128], channels=128, feature_strides=[4, 8, 16, 16], num_classes=150),
)

train_dataloader = dict(batch_size=16, dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=5e-3),
    paramwise_cfg=dict(custom_keys={'head': dict(lr_mult=2.0)}),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
default_hooks = dict(checkpoint=dict(max_keep_ckpts=1, save_best='mIoU'))
