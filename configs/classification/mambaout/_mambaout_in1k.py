# MambaOut ImageNet-1k recipe (yuweihao/MambaOut: scripts/train_mambaout_<variant>.sh l.5-18 on the defaults of
# train.py, timm's training script; lines cited, the table is docs/recipes.md), on the zoo's image-folder dataset
# (data_root/{train,val}/<class>/*.JPEG). Variant files set model_name and drop_path_rate (scripts l.11-12).
#   total batch 4096 = 8 GPUs x 128 images x 4 accumulation steps (scripts l.5-8, l.17): batch_size 128 per GPU and
#   optim_wrapper.accumulative_counts=4 here; AdamW (scripts l.16) lr 4e-3 for those 4096 images (l.16; train.py
#   has no lr scaling: --auto-scale-lr keeps 4e-3 at 8 GPUs x 128 x 4 and scales it for other totals), weight decay
#   0.05 (train.py l.179), no clipping (l.181), no layer decay (l.185); cosine (l.190) over 300 epochs (l.212) with
#   20 warm-up epochs (scripts l.16) from 1e-6 (l.208) to the minimum 1e-5 (l.210), then 10 cooldown epochs at it
#   (l.226: 310 in all);
#   timm create_transform: RandomResizedCrop scale (0.08, 1) (l.237), flip 0.5 (l.241), colour jitter 0.4 (l.245,
#   unused with RandAugment), RandAugment rand-m9-mstd0.5-inc1 (l.247), random erasing 0.25 / pixel / 1
#   (l.259-263), random train interpolation (l.283); Mixup 0.8 / CutMix 1.0, prob 1, switch 0.5, per batch
#   (l.267-277), label smoothing 0.1 (l.281); evaluation at crop_pct 1.0, bicubic (the model's pretrained_cfg, l.649);
#   no model EMA: --model-ema defaults to False (l.311) and the scripts do not set it.
# Departure: timm's scheduler runs the warm-up inside the 300 cosine epochs; here the cosine starts after it.
_base_ = ['../../_base_/default_runtime.py', '../../_base_/datasets/imagenet.py']

img_size = 224
mean = (0.485, 0.456, 0.406)
std = (0.229, 0.224, 0.225)
train_pipeline = [
    dict(
        type='TimmTransform',
        input_size=img_size,
        is_training=True,
        scale=(0.08, 1.0),
        hflip=0.5,
        color_jitter=0.4,
        auto_augment='rand-m9-mstd0.5-inc1',
        interpolation='random',
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
        crop_pct=1.0,
        mean=mean,
        std=std,
    )
]
# loaders and evaluator: _base_/datasets/imagenet.py (128 images per GPU x 8 GPUs x 4 accumulation steps = 4096)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader

model = dict(
    type='TimmClassifier',
    model_name='mambaout_femto',
    model_kwargs=dict(num_classes=1000, drop_path_rate=0.025),
    label_smoothing=0.1,
    mixup=dict(mixup_alpha=0.8, cutmix_alpha=1.0, cutmix_minmax=None, prob=1.0, switch_prob=0.5, mode='batch'),
)

lr = 4e-3  # for 4096 images (8 GPUs x 128 x 4 accumulation steps)
max_epochs = 310  # 300 + 10 cooldown epochs at the minimum lr
warmup_epochs = 20
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=lr, weight_decay=0.05, betas=(0.9, 0.999), eps=1e-8),
    constructor='TimmParamGroupsConstructor',
    accumulative_counts=4,
    clip_grad=None,
)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6 / lr, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True
    ),
    dict(
        type='CosineAnnealingLR', by_epoch=True, begin=warmup_epochs, end=300, eta_min=1e-5, convert_to_iter_based=True
    ),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
# total batch with accumulation: tools/train.py --auto-scale-lr counts accumulative_counts in the batch
auto_scale_lr = dict(enable=False, base_batch_size=4096)
