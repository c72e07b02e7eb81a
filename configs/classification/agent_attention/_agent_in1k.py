# Shared ImageNet-1k recipe of the official Agent Attention training (LeapLabTHU/Agent-Attention,
# agent_transformer/config.py defaults + cfgs/*.yaml), on the zoo's image-folder dataset
# (data_root/train/<class>/*.jpg, data_root/val/<class>/*.jpg). Each sub-family's schedule is in its own
# base, _agent_{deit,pvt,swin,cswin}_in1k.py, which inherits this file; variant files inherit those.
#
# Official recipe (agent_transformer/config.py lines cited; docs/recipes.md has the table per variant): AdamW
# (betas 0.9/0.999, eps 1e-8; l.129-133), lr 5e-4 per 512 images of total batch (l.108; main.py l.81 scales it
# by batch x GPUs / 512: run with --auto-scale-lr, which uses auto_scale_lr.base_batch_size below), weight decay
# 0.05 (l.107) off for 1-D params and no_weight_decay() (TimmParamGroupsConstructor), 300 epochs (l.104) with a
# linear warm-up over 20 epochs (l.105; 5 for PVT) from 5e-7 (l.109; 1e-6 for PVT / CSwin) and a cosine to the
# minimum lr (l.110), then the cooldown epochs at it (PVT / CSwin yamls), gradient clipping 5.0 (l.112; PVT-T/S
# and CSwin none, PVT-M/L 1.0), drop path per variant (l.56 default 0.1). Data: timm's create_transform as in
# data/build.py l.88-97 (bicubic RandomResizedCrop, flip, RandAugment rand-m9-mstd0.5-inc1 (l.144), colour
# jitter 0.4 (l.142, unused by timm when RandAugment is on), random erasing 0.25 in pixel mode, 1 count
# (l.146-150)); evaluation resizes to a square of int(256 / 224 * size) and centre-crops (build.py l.105-112).
# Batch: Mixup 0.8 / CutMix 1.0, prob 1.0, switch prob 0.5, per batch (l.152-162), label smoothing 0.1 (l.58)
# through timm's Mixup and SoftTargetCrossEntropy (TimmClassifier's mixup). No EMA except CSwin (main_ema.py).
# No layer decay. Total batch = per-GPU batch x 8 GPUs (README: --nproc_per_node=8).
_base_ = ['../../_base_/default_runtime.py', '../../_base_/datasets/imagenet.py']

img_size = 224
mean = (0.485, 0.456, 0.406)
std = (0.229, 0.224, 0.225)
train_pipeline = [
    dict(
        type='TimmTransform',
        input_size=img_size,
        is_training=True,
        color_jitter=0.4,
        auto_augment='rand-m9-mstd0.5-inc1',
        interpolation='bicubic',
        re_prob=0.25,
        re_mode='pixel',
        re_count=1,
        mean=mean,
        std=std,
    )
]
val_pipeline = [
    dict(
        type='TimmTransform',
        input_size=img_size,
        is_training=False,
        interpolation='bicubic',
        crop_pct=0.875,  # TEST.CROP True: resize to int(256 / 224 * img_size), centre crop
        crop_mode='squash',  # the official eval resizes to a square (transforms.Resize((size, size)))
        mean=mean,
        std=std,
    )
]
# loaders and evaluator: _base_/datasets/imagenet.py (128 images per GPU, as the official configs)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader

model = dict(
    type='TimmClassifier',
    model_name='agent_swin_tiny',
    model_kwargs=dict(num_classes=1000, drop_path_rate=0.1),
    label_smoothing=0.1,
    mixup=dict(mixup_alpha=0.8, cutmix_alpha=1.0, cutmix_minmax=None, prob=1.0, switch_prob=0.5, mode='batch'),
)

# 300 epochs: linear warmup from 1e-6 to lr, cosine to min lr at epoch 300 (+ optional cooldown).
lr = 5e-4
max_epochs = 300
warmup_epochs = 20
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=lr, weight_decay=0.05, betas=(0.9, 0.999), eps=1e-8),
    # the official code exempts 1-D params (norms, biases) and the names in no_weight_decay() (DeiT's pos_embed /
    # cls_token, Swin's relative position tables): timm's param_groups_weight_decay applies exactly that
    constructor='TimmParamGroupsConstructor',
    clip_grad=dict(max_norm=5.0),
)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6 / lr, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True
    ),
    dict(
        type='CosineAnnealingLR',
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        eta_min_ratio=5e-6 / lr,  # min lr 5e-6 per 512 images, scaled with the lr as main.py l.83 does
        convert_to_iter_based=True,
    ),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
# lr is per 512 images: tools/train.py --auto-scale-lr multiplies it by (GPUs x per-GPU batch) / 512
auto_scale_lr = dict(enable=False, base_batch_size=512)
