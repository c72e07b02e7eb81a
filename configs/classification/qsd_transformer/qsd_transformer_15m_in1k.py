# QSD-Transformer 1.8M (official builder spikformer_8_15M_CAFormer) on ImageNet-1k: the official recipe
# (bollossom/QSD-Transformer classification/train.sh + main_finetune.py defaults).
# 8 GPUs x 196 images, blr 6e-4 -> lr = blr * 1568 / 256, 15 warmup + 300 epochs, AdamW wd 0.05,
# EMA 0.99996, mixup 0.8 / cutmix 1.0, label smoothing 0.1, T = 1, 4-bit weights.
# Data: ImageNet in folder layout (data_root/train/<wnid>/*.JPEG, data_root/val/<wnid>/*.JPEG).
_base_ = [
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
data_root = 'data/imagenet'
batch_size = 196  # per GPU
num_gpus = 8
blr = 6e-4
lr = blr * batch_size * num_gpus / 256
max_epochs = 300
warmup_epochs = 15
model = dict(
    type='TimmClassifier',
    model_name='qsd_transformer_15m',
    model_kwargs=dict(num_classes=1000, T=1),
    label_smoothing=0.1,  # the official recipe adds mixup 0.8 / cutmix 1.0 (not in this pipeline)
)
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=10,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='ImageFolderDataset',
        data_root=data_root,
        split='train',
        pipeline=[
            dict(type='RandomResizedCrop', size=(224, 224), scale=(0.08, 1.0)),
            dict(type='HorizontalFlip'),
            dict(type='Normalize'),  # ImageNet mean / std (albumentations defaults)
        ],
    ),
)
val_dataloader = dict(
    batch_size=batch_size,
    num_workers=10,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='ImageFolderDataset',
        data_root=data_root,
        split='val',
        pipeline=[
            dict(type='SmallestMaxSize', max_size=256),  # crop_pct 0.875
            dict(type='CenterCrop', height=224, width=224),
            dict(type='Normalize'),
        ],
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=lr, weight_decay=0.05, betas=(0.9, 0.999)))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        eta_min=1e-6,
        convert_to_iter_based=True,
    ),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=5)
custom_hooks = [
    dict(type='EMAHook', momentum=4e-5),  # mmengine momentum = 1 - decay (0.99996)
    dict(type='ProgressBarHook'),
    dict(type='TrainingCurveHook'),
]
