# The digits student alone (no distillation): the baseline of the digits pair, and the config that
# tools/test.py takes with a distilled run's student.safetensors.
_base_ = [
    '../../_base_/datasets/digits.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
model = dict(type='TimmClassifier', model_name='test_resnet', model_kwargs=dict(num_classes=10))
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=max_epochs, eta_min=1e-5, convert_to_iter_based=True),
]
optim_wrapper = dict(optimizer=dict(lr=2e-3))
custom_hooks = [
    dict(type='ProgressBarHook'),
    dict(type='TrainingCurveHook'),
    dict(type='ExportSafetensorsHook', filename='model.safetensors'),
]
