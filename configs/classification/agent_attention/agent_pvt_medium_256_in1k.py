# Agent-PVT-M at 256 on ImageNet-1k: the official recipe (LeapLabTHU/Agent-Attention cfgs/agent_pvt_m_256.yaml),
# reported top-1 83.8. Per-GPU batch 64; lr 0.0005 is per 512 images of total batch.
_base_ = ['./_agent_in1k.py']

model = dict(model_name='agent_pvt_medium_256', model_kwargs=dict(num_classes=1000, drop_path_rate=0.3))
img_size = 256
train_pipeline = [
    dict(type='RandomResizedCrop', size=(img_size, img_size), scale=(0.08, 1.0), interpolation=2),
    dict(type='HorizontalFlip', p=0.5),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.0, p=1.0),
    dict(type='Normalize', mean={{_base_.mean}}, std={{_base_.std}}),
    dict(type='Erasing', p=0.25, scale=(0.02, 1 / 3), ratio=(0.3, 3.3), fill='random'),
]
val_pipeline = [
    dict(type='SmallestMaxSize', max_size=int(img_size / 0.875), interpolation=2),
    dict(type='CenterCrop', height=img_size, width=img_size),
    dict(type='Normalize', mean={{_base_.mean}}, std={{_base_.std}}),
]
train_dataloader = dict(batch_size=64, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=64, dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader

lr = 0.0005
warmup_epochs = 5
max_epochs = 310  # 300 + 10 cooldown epochs at the minimum lr
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=0.05), clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-06 / lr, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=warmup_epochs, end=300, eta_min=1e-05,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
