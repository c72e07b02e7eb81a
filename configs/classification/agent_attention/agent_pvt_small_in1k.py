# Agent-PVT-S on ImageNet-1k: the official recipe (LeapLabTHU/Agent-Attention cfgs/agent_pvt_s.yaml),
# reported top-1 82.2. Per-GPU batch 128; lr 0.0005 is per 512 images of total batch.
_base_ = ['./_agent_in1k.py']

model = dict(model_name='agent_pvt_small', model_kwargs=dict(num_classes=1000, drop_path_rate=0.1))

lr = 0.0005
warmup_epochs = 5
max_epochs = 310  # 300 + 10 cooldown epochs at the minimum lr
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=0.05), clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-06 / lr, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=warmup_epochs, end=300, eta_min=1e-05,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
