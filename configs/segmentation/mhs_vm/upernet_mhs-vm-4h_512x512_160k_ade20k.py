# MHS-VM encoder (4 scan heads, dims 96-192-384-768, depths 2-2-2-2) + UPerNet, 160k iterations, ADE20K
# (150 classes), 512x512 crops.
# Paper: MHS-VM (Ji, arXiv 2406.05992) evaluates only on ISIC 2017/2018 skin lesions with its own
#   VM-UNet (configs/segmentation/mhs_vm/mhs_vm_4h_isic2018.py): it has no ADE20K number, and nothing
#   here is a paper recipe. This is a zoo recipe.
# Recipe: VMamba-T's UPerNet 160k (MzeroMiko/VMamba segmentation/configs/vssm/
# upernet_vssm_4xb4-160k_ade20k-512x512_tiny.py), which is mmseg's Swin-T recipe
# (swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py): AdamW lr 6e-5, betas
# (0.9, 0.999), wd 0.01, 1500-iteration linear warmup (start factor 1e-6), then poly (power 1.0),
# 16 images per batch (2 per GPU x 8 GPUs), UPerNet 512 channels + auxiliary FCN head on stage 2
# (loss weight 0.4). No weight decay on LayerNorms ('norm' keys as Swin, plus 'ln_1', the block norms
# that key misses) nor on the SSM's A_logs / Ds (the encoder's no_weight_decay set).
# drop_path 0.2: MHS-VM's released value; Swin-T / VMamba-T use 0.3 for ADE20K, but this encoder has
# only 8 blocks (Swin-T 12, VMamba-T 15).
# Weights: none. MHS-VM was never trained on ImageNet, so the backbone starts from random init, unlike
# VMamba-T / Swin-T, whose ADE20K numbers use ImageNet weights: do not compare them. pretrained=True
# would load the official ISIC 2018 VM-UNet encoder (best_4h.pth), trained on min-max scaled [0, 255]
# inputs (then set the data_preprocessor's mean to 0 and std to 1).
# The encoder needs sides divisible by 32: training crops are 512x512, and whole-image testing pads each
# test image to a multiple of 32 (data_preprocessor test_cfg) and crops the logits back. Scan routes
# are prebuilt for 512x512 (img_size) and generated once per other feature-map size.
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
    data_preprocessor=dict(size=crop_size, test_cfg=dict(size_divisor=32)),
    backbone=dict(
        _delete_=True,
        type='ZooBackbone',
        model_name='mhs_vm_encoder_4h',
        pretrained=None,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,
        model_kwargs=dict(img_size=crop_size[0]),
    ),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150),
)

train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader

_no_decay = ('norm', 'ln_1', 'A_logs', 'Ds')
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
