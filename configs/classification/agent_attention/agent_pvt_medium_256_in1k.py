# Agent-PVT-M at 256 on ImageNet-1k (LeapLabTHU/Agent-Attention cfgs/agent_pvt_m_256.yaml: drop path
# 0.3, per-GPU batch 64, image size 256, CLIP_GRAD 1.0), reported top-1 83.8.
# Schedule: _agent_pvt_in1k.py; the pipelines are restated for img_size 256.
_base_ = ['./_agent_pvt_in1k.py']

model = dict(model_name='agent_pvt_medium_256', model_kwargs=dict(drop_path_rate=0.3))
img_size = 256
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
train_dataloader = dict(batch_size=64, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=64, dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
