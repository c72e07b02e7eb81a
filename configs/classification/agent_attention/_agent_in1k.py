# Shared ImageNet-1k recipe of the official Agent Attention training (LeapLabTHU/Agent-Attention,
# agent_transformer/config.py defaults + cfgs/*.yaml), on the zoo's image-folder dataset
# (data_root/train/<class>/*.jpg, data_root/val/<class>/*.jpg). Each sub-family's schedule is in its own
# base, _agent_{deit,pvt,swin,cswin}_in1k.py, which inherits this file; variant files inherit those.
#
# Official recipe: AdamW (betas 0.9/0.999, eps 1e-8), lr 5e-4 per 512 images of total batch (linear
# scaling; enable with auto_scale_lr below or --auto-scale-lr), weight decay 0.05, 300 epochs
# (linear warmup over 20 epochs, 5 for PVT, from 5e-7 for DeiT/Swin (config.py default) or 1e-6 for
# PVT/CSwin (their yamls)) with a cosine decay to the minimum lr, then 10 cooldown epochs at it for
# PVT / CSwin, label smoothing 0.1, gradient clipping at 5.0 (config default; PVT-T/S and CSwin:
# none, PVT-M/L: 1.0), bicubic RandomResizedCrop, flip, RandAugment rand-m9-mstd0.5-inc1, random
# erasing 0.25, Mixup 0.8 / CutMix 1.0; evaluation resizes the short side to size/0.875 and
# centre-crops.
# Not expressible here: RandAugment (albumentations has none; ColorJitter 0.4 stands in, as timm
# does when auto-augment is off) and Mixup/CutMix (the classifier wrapper has none).
_base_ = ['../../_base_/default_runtime.py']

data_root = 'data/imagenet'
img_size = 224
mean = (0.485, 0.456, 0.406)
std = (0.229, 0.224, 0.225)
train_pipeline = [
    dict(type='RandomResizedCrop', size=(img_size, img_size), scale=(0.08, 1.0), interpolation=2),
    dict(type='HorizontalFlip', p=0.5),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.0, p=1.0),
    dict(type='Normalize', mean=mean, std=std),
    dict(type='Erasing', p=0.25, scale=(0.02, 1 / 3), ratio=(0.3, 3.3), fill='random'),
]
val_pipeline = [
    dict(type='SmallestMaxSize', max_size=int(img_size / 0.875), interpolation=2),
    dict(type='CenterCrop', height=img_size, width=img_size),
    dict(type='Normalize', mean=mean, std=std),
]
train_dataloader = dict(
    batch_size=128,  # per GPU, as the official configs
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ImageFolderDataset', data_root=data_root, split='train', pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='ImageFolderDataset', data_root=data_root, split='val', pipeline=val_pipeline),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator

model = dict(
    type='TimmClassifier',
    model_name='agent_swin_tiny',
    model_kwargs=dict(num_classes=1000, drop_path_rate=0.1),
    label_smoothing=0.1,
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
        eta_min=5e-6,
        convert_to_iter_based=True,
    ),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(enable=False, base_batch_size=512)
