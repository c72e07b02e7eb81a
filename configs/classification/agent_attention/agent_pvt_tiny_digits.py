# Agent-PVT-T (the published architecture, built for 32x32) on the embedded digits dataset: the
# demo run for the agent-attention family. At 32x32 the stage maps are 8, 4, 2, 1 wide; agents are
# pooled to 3x3, 4x4, 7x7, 7x7 as in the 224 model (adaptive pooling repeats cells of small maps).
# About as fast as the MambaOut-Femto demo (same cost per image); 6 epochs. One run: 96.1% top-1 on the
# 360 validation images after epoch 3, 98.6% after epoch 6.
_base_ = [
    '../../_base_/datasets/digits.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
model = dict(
    type='TimmClassifier',
    model_name='agent_pvt_tiny',
    model_kwargs=dict(num_classes=10, img_size=32, drop_path_rate=0.0),
    label_smoothing=0.1,
)
max_epochs = 6
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs, eta_min=1e-5, convert_to_iter_based=True),
]
optim_wrapper = dict(optimizer=dict(lr=1e-3))
