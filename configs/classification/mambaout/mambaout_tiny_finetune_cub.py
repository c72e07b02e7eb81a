# Fine-tuning recipe from ImageNet weights to a new dataset, here CUB-200-2011 in the FGVC layout DCAL uses
# (zoo/data/fgvc.py: data_root/images.txt, train_test_split.txt, image_class_labels.txt, images/). For an
# image folder (data_root/{train,val}/<class>/*.jpg) swap the datasets for ImageFolderDataset and set num_classes.
# Not an official recipe (MambaOut publishes none for fine-tuning); the zoo's choices, in the usual pattern:
#   - ImageNet-1k weights of MambaOut-Tiny (timm's copy of the official checkpoint, pretrained=True), a new
#     200-class head (the log names it), drop path 0.2 as in the ImageNet training;
#   - a smaller lr than from scratch (2e-4 per 512 images, --auto-scale-lr; ImageNet: 4e-3 per 4096), 2 warm-up
#     epochs, cosine over 50 epochs, AdamW weight decay 0.05 off for 1-D parameters, layer decay 0.75;
#   - timm's create_transform with RandAugment and random erasing, label smoothing 0.1, no Mixup / CutMix.
_base_ = ['../../_base_/default_runtime.py']

data_root = 'data/CUB_200_2011'
num_classes = 200
img_size = 224
mean = (0.485, 0.456, 0.406)
std = (0.229, 0.224, 0.225)
train_pipeline = [
    dict(
        type='TimmTransform',
        input_size=img_size,
        is_training=True,
        auto_augment='rand-m9-mstd0.5-inc1',
        interpolation='bicubic',
        re_prob=0.25,
        re_mode='pixel',
        mean=mean,
        std=std,
    )
]
test_pipeline = [
    dict(type='TimmTransform', input_size=img_size, interpolation='bicubic', crop_pct=0.875, mean=mean, std=std)
]
train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CUBDataset', data_root=data_root, split='train', pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CUBDataset', data_root=data_root, split='test', pipeline=test_pipeline),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator

model = dict(
    type='TimmClassifier',
    model_name='mambaout_tiny',
    model_kwargs=dict(num_classes=num_classes, pretrained=True, drop_path_rate=0.2),
    label_smoothing=0.1,
)
lr = 2e-4  # per 512 images
max_epochs = 50
warmup_epochs = 2
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=lr, weight_decay=0.05, betas=(0.9, 0.999)),
    constructor='TimmParamGroupsConstructor',
    paramwise_cfg=dict(layer_decay=0.75),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        eta_min_ratio=0.01,
        convert_to_iter_based=True,
    ),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(enable=False, base_batch_size=512)
