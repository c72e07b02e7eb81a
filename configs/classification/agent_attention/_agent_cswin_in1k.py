# Agent-CSwin ImageNet-1k recipe (LeapLabTHU/Agent-Attention, agent_transformer/cfgs/agent_cswin_{t,s,b}.yaml
# on top of agent_transformer/config.py defaults, trained with main_ema.py). The CSwin yamls set:
# AdamW lr 5e-4 per 512 images, weight decay 0.05 (0.1 for CSwin-B), 300 epochs with 20 warmup epochs
# from WARMUP_LR 1e-6, cosine to MIN_LR 1e-5, then COOLDOWN_EPOCHS 10 at the minimum lr (310 in all),
# CLIP_GRAD None. main_ema.py keeps a model EMA (--model-ema, default decay 0.9999, used here) and
# evaluates it too; the official README's training commands pass --model-ema-decay 0.99984 / 0.99984 /
# 0.99992 for T / S / B and 0.9998 for the 384 fine-tune. The data pipeline, loss and the rest are
# _agent_in1k.py's.
# Variant files (agent_cswin_*_in1k.py) set only model_name, drop_path_rate, the per-GPU batch size and
# CSwin-B's weight decay; agent_cswin_base_384 (cfgs/agent_cswin_b_384.yaml) also sets img_size, the
# pipelines that depend on it and its own fine-tuning schedule (lr 5e-6, no warmup, 20 cosine epochs to
# 5e-7 + 10 cooldown, weight decay 1e-8).
_base_ = ['./_agent_in1k.py']

lr = 0.0005
warmup_epochs = 20
max_epochs = 310  # 300 + 10 cooldown epochs at the minimum lr
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=0.05), clip_grad=None)
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
# CSwin is trained with a model EMA (decay 0.9999) and evaluated with it and without (official main_ema.py). This list
# replaces default_runtime's; tools/train.py and tools/test.py append its SkippedSamplesHook to every run.
custom_hooks = [
    dict(type='ProgressBarHook'),
    dict(type='TrainingCurveHook'),
    dict(type='ModelEMAHook', decay=0.9999),  # main_ema.py --model-ema-decay default; also evaluates the raw model
]
