# Agent-Swin-B at 384, fine-tuned from Agent-Swin-B, on ImageNet-1k (LeapLabTHU/Agent-Attention
# cfgs/agent_swin_b_384.yaml: drop path 0.5, per-GPU batch 32, image size 384, TEST.CROP False, 30 epochs
# with 5 warmup from 2e-8, lr 2e-5 per 512 images, min lr 2e-7, weight decay 1e-8), reported top-1 84.9.
# The rest (gradient clipping 5.0, no EMA, data pipeline) is _agent_swin_in1k.py's.
# Set the path of agent_swin_base's (official or converted) checkpoint below; the checkpoint filter
# resizes its agent biases and window tables to this resolution.
_base_ = ['./_agent_swin_in1k.py']

model = dict(
    model_name='agent_swin_base_384',
    model_kwargs=dict(
        drop_path_rate=0.5, pretrained=True, pretrained_cfg_overlay=dict(file='checkpoints/agent_swin_base.pth')
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
# official TEST.CROP False: resize straight to the input size
val_pipeline = [
    dict(
        type='TimmTransform',
        input_size=img_size,
        is_training=False,
        interpolation='bicubic',
        crop_pct=1.0,  # TEST.CROP False: a plain resize to img_size
        crop_mode='squash',  # the official eval resizes to a square (transforms.Resize((size, size)))
        mean={{_base_.mean}},
        std={{_base_.std}},
    )
]
train_dataloader = dict(batch_size=32, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=64, dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader

lr = 2e-05
warmup_epochs = 5
max_epochs = 30
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=1e-08))
param_scheduler = [
    dict(
        type='LinearLR', start_factor=2e-08 / lr, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True
    ),
    dict(
        type='CosineAnnealingLR',
        by_epoch=True,
        begin=warmup_epochs,
        end=30,
        eta_min_ratio=2e-07 / lr,
        convert_to_iter_based=True,
    ),
]
train_cfg = dict(max_epochs=max_epochs)
