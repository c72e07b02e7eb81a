# Agent-DeiT ImageNet-1k recipe (LeapLabTHU/Agent-Attention, agent_transformer/cfgs/agent_deit_{t,s,s_448,b}.yaml
# on top of agent_transformer/config.py defaults, trained with main.py). The DeiT yamls set only the
# model, drop path, batch size and image size, so the schedule is config.py's: AdamW lr 5e-4 per 512
# images, weight decay 0.05, 300 epochs (TRAIN.EPOCHS) with 20 warmup epochs from WARMUP_LR 5e-7,
# cosine to MIN_LR 5e-6, no cooldown (COOLDOWN_EPOCHS 0), gradient clipping at 5.0 (CLIP_GRAD), no EMA.
# The data pipeline, loss and the rest are _agent_in1k.py's.
# Variant files (agent_deit_*_in1k.py) set only model_name, drop_path_rate, the per-GPU batch size
# and, for agent_deit_small_448, img_size and the pipelines that depend on it.
_base_ = ['./_agent_in1k.py']

lr = 0.0005
warmup_epochs = 20
max_epochs = 300
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=0.05), clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(
        type='LinearLR', start_factor=5e-07 / lr, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True
    ),
    dict(
        type='CosineAnnealingLR',
        by_epoch=True,
        begin=warmup_epochs,
        end=300,
        eta_min_ratio=5e-06 / lr,
        convert_to_iter_based=True,
    ),
]
train_cfg = dict(max_epochs=max_epochs)
