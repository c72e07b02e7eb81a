# QSD-Transformer 1.8M (official builder spikformer_8_15M_CAFormer) on ImageNet-1k: the official recipe,
# bollossom/QSD-Transformer classification/train.sh (l.1-11) on top of classification/main_finetune.py's defaults
# (lines cited; docs/recipes.md has the table):
#   8 GPUs x 196 images (train.sh l.1-3), blr 6e-4 per 256 images (train.sh l.4; lr = blr x total batch / 256,
#   main_finetune.py l.409: run with --auto-scale-lr, base batch 256 below), 15 warm-up epochs from 0 (train.sh l.5,
#   util/lr_sched.py) + cosine to min lr 1e-6 (l.142) at epoch 300 (train.sh l.6), per iteration;
#   Lamb with trust_clip (l.433), weight decay 0.05 (l.115) off for 1-D parameters (util/lr_decay_spikformer.py
#   l.37), layer decay 1.0 = none (l.135), no gradient clipping (l.110), drop path: none passed to the builder
#   (l.382; the zoo model's default 0.0);
#   timm create_transform (util/datasets.py): RandAugment rand-m9-mstd0.5-inc1 (l.162), random erasing 0.25 (l.174),
#   mode pixel (l.181), 1 count (l.185), colour jitter None (l.155), bicubic, eval crop 224/256;
#   no Mixup / CutMix: --mixup and --cutmix default to 0 (l.196-199) and train.sh passes neither, so the loss is
#   LabelSmoothingCrossEntropy 0.1 (l.167); model EMA decay 0.99996 (l.262-263, timm ModelEma), evaluated too.
# Departure: the zoo's parameter groups (timm's) also exempt 0-d LSQ step sizes (the official p.ndim == 1 test
# decays them). T = 1, 4-bit weights. Data: ImageNet in folder layout (data_root/{train,val}/<wnid>/*.JPEG).
_base_ = [
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
data_root = 'data/imagenet'
batch_size = 196  # per GPU
num_gpus = 8
lr = 6e-4  # per 256 images: --auto-scale-lr gives 6e-4 x 1568 / 256 on 8 GPUs
max_epochs = 300
warmup_epochs = 15
img_size = 224
mean = (0.485, 0.456, 0.406)
std = (0.229, 0.224, 0.225)
model = dict(
    type='TimmClassifier',
    model_name='qsd_transformer_15m',
    model_kwargs=dict(num_classes=1000, T=1, drop_path_rate=0.0),
    label_smoothing=0.1,
)
train_pipeline = [
    dict(
        type='TimmTransform',
        input_size=img_size,
        is_training=True,
        color_jitter=None,
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
        crop_pct=224 / 256,
        mean=mean,
        std=std,
    )
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=10,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ImageFolderDataset', data_root=data_root, split='train', pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=batch_size,
    num_workers=10,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ImageFolderDataset', data_root=data_root, split='val', pipeline=val_pipeline),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='Lamb', lr=lr, weight_decay=0.05, trust_clip=True),
    constructor='TimmParamGroupsConstructor',
    clip_grad=None,
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        eta_min=1e-6,  # absolute, not scaled with the batch (main_finetune.py l.142)
        convert_to_iter_based=True,
    ),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=5)
auto_scale_lr = dict(enable=False, base_batch_size=256)
custom_hooks = [
    dict(type='ModelEMAHook', decay=0.99996),  # timm ModelEma(decay=0.99996), main_finetune.py l.396
    dict(type='ProgressBarHook'),
    dict(type='TrainingCurveHook'),
]
