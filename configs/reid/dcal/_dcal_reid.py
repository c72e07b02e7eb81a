# Shared object re-identification (Re-ID) recipe of DCAL (Zhu et al., CVPR 2022, arXiv 2205.02151, Sec. 4.2),
# on the zoo's Re-ID datasets (zoo/data/reid.py) and retrieval metric (zoo/engine/reid_metric.py). Leaves set
# the dataset, the number of training identities and (vehicles) the input size.
#
# Paper: ViT-B/16 (IN-21k) with L = 12 SA, M = 1 GLCA, T = 12 PWCA blocks; input 256x128 (persons) / 256x256
# (vehicles); SGD, momentum 0.9, weight decay 1e-4, lr 0.008, cosine decay, 120 epochs; batch 64 = 16
# identities x 4 images; R = 30 % local queries; each branch CE + triplet with dynamic (uncertainty) loss
# weights; retrieval embedding = [SA class token, GLCA class token].
# [inferred] (the paper does not say; the recipe matches TransReID's ViT baseline, so its defaults fill the
# gaps): triplet margin 0.3 (batch-hard); 5 linear warmup epochs from 0.01 x lr; random flip 0.5, 10-pixel
# padding + random crop, random erasing 0.5; mean = std = 0.5; stochastic depth 0.1; no label smoothing;
# embeddings L2-normalised before Euclidean ranking (TransReID's TEST.FEAT_NORM); the uncertainty weights
# are not decayed.
_base_ = ['../../_base_/default_runtime.py']

data_root = 'data/Market-1501-v15.09.15'
dataset_type = 'Market1501Dataset'
num_classes = 751  # training identities
img_size = (256, 128)  # (height, width)
mean = (0.5, 0.5, 0.5)
std = (0.5, 0.5, 0.5)
train_pipeline = [
    dict(type='Resize', height=img_size[0], width=img_size[1]),
    dict(type='HorizontalFlip', p=0.5),
    dict(type='PadIfNeeded', min_height=img_size[0] + 20, min_width=img_size[1] + 20, border_mode=0, fill=0),
    dict(type='RandomCrop', height=img_size[0], width=img_size[1]),
    dict(type='Normalize', mean=mean, std=std),
    dict(type='Erasing', p=0.5, scale=(0.02, 0.4), ratio=(0.3, 3.3), fill='random'),
]
test_pipeline = [
    dict(type='Resize', height=img_size[0], width=img_size[1]),
    dict(type='Normalize', mean=mean, std=std),
]
batch_size = 64
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=8,
    persistent_workers=True,
    # P x K batches (16 identities x 4 images); the sampler's batch_size must equal the loader's
    sampler=dict(type='IdentityBalancedSampler', batch_size=batch_size, num_instances=4, shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='train', pipeline=train_pipeline),
)
# split='test' is the query images followed by the gallery images, each item tagged with its split
val_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='test', pipeline=test_pipeline),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='ReIDMetric', normalize=True)
test_evaluator = val_evaluator

# SA weights: timm's vit_base_patch16_224.augreg_in21k (position embedding resampled to 16x8); GLCA, its norm
# and head start as copies of the last block, the final norm and the (new) head (zoo/models/dcal.py).
model = dict(
    type='DCALClassifier',
    model_name='dcal_vit_base_patch16_448',
    model_kwargs=dict(
        num_classes=num_classes,
        img_size=img_size,
        pretrained=True,
        drop_path_rate=0.1,
        task='reid',
        local_query_ratio=0.3,
        triplet_margin=0.3,
    ),
)

lr = 0.008
max_epochs = 120
warmup_epochs = 5
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=lr, momentum=0.9, weight_decay=1e-4),
    paramwise_cfg=dict(custom_keys={'dcal_loss': dict(decay_mult=0.0)}),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs,
        eta_min=0.0,
        convert_to_iter_based=True,
    ),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=10)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(enable=False, base_batch_size=64)
# save_best follows the first metric, reid/mAP
default_hooks = dict(checkpoint=dict(interval=10))
