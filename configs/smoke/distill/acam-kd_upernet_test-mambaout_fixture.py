# Segmentation distillation smoke config on the ADE fixture (tools/make_fixtures.py ade): the UPerNet smoke
# segmentor (../segmentation/upernet_test-mambaout_fixture.py) as the teacher, the same segmentor with narrower
# heads as the student, ACAM-KD on the segmentation logits (decode_head.conv_seg, 3 classes at 1/4 of the input,
# M = 3 = classes, no connector: f_align = identity), as the paper distils Cityscapes logits with M = 19.
# Train the teacher first:
#   OMP_NUM_THREADS=1 python tools/train.py configs/smoke/segmentation/upernet_test-mambaout_fixture.py
#   OMP_NUM_THREADS=1 python tools/train.py configs/smoke/distill/acam-kd_upernet_test-mambaout_fixture.py
#   python tools/test.py configs/smoke/distill/_upernet_test-mambaout-narrow_fixture.py \
#       work_dirs/acam-kd_upernet_test-mambaout_fixture/student.safetensors
_base_ = ['./_upernet_test-mambaout-narrow_fixture.py']
# mmengine's Runner gives a model without its own data_preprocessor the config's top-level one; mmseg's base
# leaves that without a size (the segmentor's own sets it), so it is given the student's size here.
data_preprocessor = dict(size=(128, 128))
custom_imports = dict(imports=['zoo.mm', 'zoo.distill'], allow_failed_imports=False)
model = dict(
    _delete_=True,
    _scope_='zoo',
    type='SingleTeacherDistiller',
    architecture=dict(cfg_path='{{ fileDirname }}/_upernet_test-mambaout-narrow_fixture.py'),
    teacher=dict(cfg_path='{{ fileDirname }}/../segmentation/upernet_test-mambaout_fixture.py'),
    teacher_ckpt='work_dirs/upernet_test-mambaout_fixture/iter_80.pth',
    distiller=dict(
        student_recorders=dict(logits=dict(type='ModuleOutputs', source='decode_head.conv_seg')),
        teacher_recorders=dict(logits=dict(type='ModuleOutputs', source='decode_head.conv_seg')),
        distill_losses=dict(loss_acam=dict(type='ACAMKDLoss', channels=3, num_masks=3)),
        loss_forward_mappings=dict(
            loss_acam=dict(
                s_feature=dict(from_student=True, recorder='logits'),
                t_feature=dict(from_student=False, recorder='logits'),
            )
        ),
    ),
)
custom_hooks = [
    dict(type='zoo.ProgressBarHook'),
    dict(type='zoo.TrainingCurveHook'),
    dict(type='zoo.ExportSafetensorsHook', filename='student.safetensors'),
]
