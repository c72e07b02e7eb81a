# Agent-CSwin-B at 384, fine-tuned from Agent-CSwin-B, on ImageNet-1k (LeapLabTHU/Agent-Attention
# cfgs/agent_cswin_b_384.yaml: drop path 0.7, per-GPU batch 32, image size 384, lr 5e-6 per 512 images,
# no warmup, 20 cosine epochs to 5e-7 + 10 cooldown epochs, weight decay 1e-8), reported top-1 85.8.
# The rest (no gradient clipping, EMA, data pipeline) is _agent_cswin_in1k.py's.
# Set the path of agent_cswin_base's (official or converted) checkpoint below; the checkpoint filter
# resizes its agent biases and window tables to this resolution.
_base_ = ['./_agent_cswin_in1k.py']

model = dict(
    model_name='agent_cswin_base_384',
    model_kwargs=dict(
        drop_path_rate=0.7, pretrained=True, pretrained_cfg_overlay=dict(file='checkpoints/agent_cswin_base.pth')
    ),
)
img_size = 384
train_pipeline = [
    dict(
        type='TimmTransform',
        input_size=img_size,
        is_training=True,
        color_jitter=0.4,
        auto_augment='rand-m9-mstd0.5-inc1',
        interpolation='bicubic',
        re_prob=0.25,
        re_mode='pixel',
        re_count=1,
        mean={{_base_.mean}},
        std={{_base_.std}},
    )
]
val_pipeline = [
    dict(
        type='TimmTransform',
        input_size=img_size,
        is_training=False,
        interpolation='bicubic',
        crop_pct=0.875,  # TEST.CROP True: resize to int(256 / 224 * img_size), centre crop
        crop_mode='squash',  # the official eval resizes to a square (transforms.Resize((size, size)))
        mean={{_base_.mean}},
        std={{_base_.std}},
    )
]
train_dataloader = dict(batch_size=32, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=64, dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader

lr = 5e-06
warmup_epochs = 0
max_epochs = 30  # 20 + 10 cooldown epochs at the minimum lr
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=1e-08))
param_scheduler = [
    dict(
        type='CosineAnnealingLR',
        by_epoch=True,
        begin=warmup_epochs,
        end=20,
        eta_min_ratio=5e-07 / lr,
        convert_to_iter_based=True,
    ),
]
train_cfg = dict(max_epochs=max_epochs)
