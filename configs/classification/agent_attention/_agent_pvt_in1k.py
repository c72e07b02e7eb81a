# Agent-PVT ImageNet-1k recipe (LeapLabTHU/Agent-Attention, agent_transformer/cfgs/agent_pvt_{t,s,m,m_256,b}.yaml
# on top of agent_transformer/config.py defaults, trained with main.py). Every PVT yaml sets the same
# schedule: AdamW lr 5e-4 per 512 images, weight decay 0.05, 300 epochs with 5 warmup epochs from
# WARMUP_LR 1e-6, cosine to MIN_LR 1e-5, then COOLDOWN_EPOCHS 10 at the minimum lr (310 in all), no EMA;
# CLIP_GRAD 1.0 for PVT-M/L (the default here), None for PVT-T/S. The data pipeline, loss and the rest
# are _agent_in1k.py's.
# Variant files (agent_pvt_*_in1k.py) set only model_name, drop_path_rate, the per-GPU batch size,
# clip_grad=None for agent_pvt_tiny / agent_pvt_small (mmengine cannot merge a child's dict onto a
# base None without _delete_, so the dict is the default here), and for agent_pvt_medium_256 img_size
# and the pipelines that depend on it.
_base_ = ['./_agent_in1k.py']

lr = 0.0005
warmup_epochs = 5
max_epochs = 310  # 300 + 10 cooldown epochs at the minimum lr
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=0.05), clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-06 / lr, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True
    ),
    dict(
        type='CosineAnnealingLR',
        by_epoch=True,
        begin=warmup_epochs,
        end=300,
        eta_min_ratio=1e-05 / lr,
        convert_to_iter_based=True,
    ),
]
train_cfg = dict(max_epochs=max_epochs)
