# A small QSD-Transformer (4-bit LSQ weights, multi-spike neurons D=4, T=1) on the embedded digits
# dataset at 32x32 (2x2 tokens in the attention stages). Same code path as qsd_transformer_15m,
# with narrow stages (embed 16-32-64-64, depth 4 -> 3 + 1 attention blocks), sized for 2 CPU cores.
# Measured: 98.6% best / 97.8% last top-1 on the 359 validation images, ~10 min on 2 shared cores
# (run with OMP_NUM_THREADS=1 on a loaded machine; see docs/qsd_transformer.md).
_base_ = [
    '../../_base_/datasets/digits.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
model = dict(
    type='TimmClassifier',
    model_name='qsd_transformer_15m',
    model_kwargs=dict(
        num_classes=10, img_size=32, T=1, embed_dim=(16, 32, 64, 64), depths=4, act_placeholders=False
    ),  # ActLSQ placeholders only matter for official ckpts
    label_smoothing=0.1,
)
max_epochs = 20
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs, eta_min=1e-5, convert_to_iter_based=True),
]
optim_wrapper = dict(optimizer=dict(lr=3e-3))
