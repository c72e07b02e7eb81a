# Agent-Swin-S at 288 on ImageNet-1k: the official recipe (LeapLabTHU/Agent-Attention cfgs/agent_swin_s_288.yaml),
# reported top-1 84.1. Per-GPU batch 64; lr 0.0005 is per 512 images of total batch.
_base_ = ['./_agent_in1k.py']

model = dict(model_name='agent_swin_small_288', model_kwargs=dict(num_classes=1000, drop_path_rate=0.3))
img_size = 288
train_pipeline = [
    dict(type='RandomResizedCrop', size=(img_size, img_size), scale=(0.08, 1.0), interpolation=2),
    dict(type='HorizontalFlip', p=0.5),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.0, p=1.0),
    dict(type='Normalize', mean={{_base_.mean}}, std={{_base_.std}}),
    dict(type='Erasing', p=0.25, scale=(0.02, 1 / 3), ratio=(0.3, 3.3), fill='random'),
]
# official TEST.CROP False: resize straight to the input size
val_pipeline = [
    dict(type='Resize', height=img_size, width=img_size, interpolation=2),
    dict(type='Normalize', mean={{_base_.mean}}, std={{_base_.std}}),
]
train_dataloader = dict(batch_size=64, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=64, dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader

lr = 0.0005
warmup_epochs = 20
max_epochs = 300
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=0.05), clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=5e-07 / lr, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=warmup_epochs, end=300, eta_min=5e-06,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
