# Agent-Swin ImageNet-1k recipe (LeapLabTHU/Agent-Attention, agent_transformer/cfgs/agent_swin_{t,s,s_288,b}.yaml
# on top of agent_transformer/config.py defaults, trained with main.py). The Swin yamls set only the
# model, drop path, batch size, image size and TEST.CROP, so the schedule is config.py's: AdamW lr 5e-4
# per 512 images, weight decay 0.05, 300 epochs (TRAIN.EPOCHS) with 20 warmup epochs from WARMUP_LR
# 5e-7, cosine to MIN_LR 5e-6, no cooldown (COOLDOWN_EPOCHS 0), gradient clipping at 5.0 (CLIP_GRAD),
# no EMA. The data pipeline, loss and the rest are _agent_in1k.py's.
# Variant files (agent_swin_*_in1k.py) set only model_name, drop_path_rate and the per-GPU batch size;
# agent_swin_small_288 and agent_swin_base_384 also set img_size and the pipelines that depend on it
# (TEST.CROP False: plain resize for evaluation), and agent_swin_base_384 (cfgs/agent_swin_b_384.yaml)
# its own 30-epoch fine-tuning schedule (lr 2e-5, warmup 5 from 2e-8, min lr 2e-7, weight decay 1e-8).
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
