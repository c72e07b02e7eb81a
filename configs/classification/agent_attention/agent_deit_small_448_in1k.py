# Agent-DeiT-S at 448 on ImageNet-1k (LeapLabTHU/Agent-Attention cfgs/agent_deit_s_448.yaml: drop path
# 0.1 (config.py default), per-GPU batch 64, image size 448), reported top-1 83.1.
# Schedule: _agent_deit_in1k.py; the pipelines are restated for img_size 448.
_base_ = ['./_agent_deit_in1k.py']

model = dict(model_name='agent_deit_small_448', model_kwargs=dict(drop_path_rate=0.1))
img_size = 448
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
