# Agent-DeiT-S at 448 on ImageNet-1k (LeapLabTHU/Agent-Attention cfgs/agent_deit_s_448.yaml: drop path
# 0.1 (config.py default), per-GPU batch 64, image size 448), reported top-1 83.1.
# Schedule: _agent_deit_in1k.py; the pipelines are restated for img_size 448.
_base_ = ['./_agent_deit_in1k.py']

model = dict(model_name='agent_deit_small_448', model_kwargs=dict(drop_path_rate=0.1))
img_size = 448
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
