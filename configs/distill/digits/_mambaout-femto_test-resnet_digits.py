# Distillation pair on the embedded digits set (32x32): teacher MambaOut-Femto (7.3M parameters; train it
# first with configs/classification/mambaout/mambaout_femto_digits.py, >= 95% top-1), student timm's
# test_resnet (0.37M). Leaves set model.distiller (MMRazor's vocabulary, zoo.distill.SingleTeacherDistiller).
# Other teacher weights: --cfg-options model.teacher_ckpt=PATH.
# Distillation point: teacher stage 2 (channels-last, 192 ch, stride 16) and student layer3 (192 ch, stride
# 16): 2x2 maps at 32x32.
_base_ = [
    '../../_base_/datasets/digits.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
model = dict(
    type='SingleTeacherDistiller',
    architecture=dict(type='TimmClassifier', model_name='test_resnet', model_kwargs=dict(num_classes=10)),
    teacher=dict(type='TimmClassifier', model_name='mambaout_femto', model_kwargs=dict(num_classes=10)),
    teacher_ckpt='work_dirs/mambaout_femto_digits/model.safetensors',
)
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
    # the plain student (timm keys): tools/test.py takes it with a TimmClassifier config of test_resnet
    dict(type='ExportSafetensorsHook', filename='student.safetensors'),
]
