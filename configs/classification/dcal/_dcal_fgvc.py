# Shared fine-grained (FGVC) recipe of DCAL (Zhu et al., CVPR 2022, arXiv 2205.02151, Sec. 4.1 + supplement),
# on the zoo's FGVC datasets (zoo/data/fgvc.py). Leaves set the backbone and the dataset; this file is
# DeiT-T/S/B (ImageNet normalisation), _dcal_fgvc_vit_base.py switches to ViT-B/16 IN-21k (mean = std = 0.5).
#
# Paper: input resized to 550 then randomly cropped to 448 (784 tokens of 16x16); Adam, weight decay 0.05,
# lr = 5e-4 / 512 x batch size, cosine decay, 100 epochs, batch 16, stochastic depth; L = 12 SA blocks,
# M = 1 GLCA block, T = 12 PWCA blocks (the SA blocks themselves); R = 10 % local queries; CE per branch with
# dynamic (uncertainty) loss weights; inference = SA + GLCA class probabilities.
# [inferred] (the paper does not say): resize to a 550x550 square (TransFG-style, not short side 550), bilinear;
# horizontal flip for training; test = resize 550 + centre crop 448; no warmup; cosine to 0; stochastic depth
# 0.1; no label smoothing; timm's no-decay set (norms, biases, tokens, position embedding, DCAL loss weights).
# Effective lr at batch 16 on one GPU: 5e-4 x 16 / 512 = 1.5625e-5 (auto_scale_lr below does the x batch / 512,
# with the total batch over all GPUs, so the rule holds for any GPU count).
_base_ = ['../../_base_/default_runtime.py']

data_root = 'data/CUB_200_2011'
dataset_type = 'CUBDataset'
num_classes = 200
mean = (0.485, 0.456, 0.406)  # DeiT (ImageNet) normalisation; ViT-B IN-21k uses 0.5 (_dcal_fgvc_vit_base.py)
std = (0.229, 0.224, 0.225)
train_pipeline = [
    dict(type='Resize', height=550, width=550),
    dict(type='RandomCrop', height=448, width=448),
    dict(type='HorizontalFlip', p=0.5),
    dict(type='Normalize', mean=mean, std=std),
]
test_pipeline = [
    dict(type='Resize', height=550, width=550),
    dict(type='CenterCrop', height=448, width=448),
    dict(type='Normalize', mean=mean, std=std),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='train', pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=32,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, split='test', pipeline=test_pipeline),
)
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator

# SA weights: timm's DeiT ImageNet-1k checkpoint (position embedding resampled 14x14 -> 28x28); GLCA, its norm
# and head start as copies of the last block, the final norm and the (new) head (zoo/models/dcal.py).
model = dict(
    type='DCALClassifier',
    model_name='dcal_deit_tiny_patch16_448',
    model_kwargs=dict(num_classes=num_classes, pretrained=True, drop_path_rate=0.1, local_query_ratio=0.1),
)

lr = 5e-4  # per 512 images; scaled by auto_scale_lr below
max_epochs = 100
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='Adam', lr=lr, weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,  # 1-D parameters, which include the uncertainty weights dcal_loss.w
        custom_keys={'cls_token': dict(decay_mult=0.0), 'pos_embed': dict(decay_mult=0.0)},
    ),
)
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=0.0, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
# always on: the paper's lr is a rule (5e-4 per 512 images of total batch), not a number for one batch size
auto_scale_lr = dict(enable=True, base_batch_size=512)
