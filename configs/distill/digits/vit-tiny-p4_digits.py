# The ViT teacher of the QSD fine-grained digits pair (qsd-fgd_vit-tiny_qsd-15m_digits.py): timm's
# vit_tiny_patch16_224 cut to 32x32 inputs, 4x4 patches (8x8 tokens + a class token), 6 blocks. Its export,
# work_dirs/vit-tiny-p4_digits/model.safetensors (timm keys), is that pair's teacher_ckpt. Not yet trained here:
# no accuracy has been measured.
_base_ = [
    '../../_base_/datasets/digits.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
model = dict(
    type='TimmClassifier',
    model_name='vit_tiny_patch16_224',
    model_kwargs=dict(num_classes=10, img_size=32, patch_size=4, depth=6),
    label_smoothing=0.1,
)
max_epochs = 20
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs, eta_min=1e-5, convert_to_iter_based=True),
]
optim_wrapper = dict(optimizer=dict(lr=1e-3))
custom_hooks = [
    dict(type='ProgressBarHook'),
    dict(type='TrainingCurveHook'),
    dict(type='ExportSafetensorsHook', filename='model.safetensors'),
]
