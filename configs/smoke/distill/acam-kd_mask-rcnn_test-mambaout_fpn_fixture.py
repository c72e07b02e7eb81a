# Distillation smoke config on the COCO fixture (tools/make_fixtures.py coco): the Mask R-CNN smoke detector
# (../detection/mask-rcnn_test-mambaout_fpn_fixture.py, 64-channel FPN) as the teacher, the same detector
# with a 32-channel FPN and heads as the student, ACAM-KD on the 5 FPN levels (M = 6, 1x1 connectors
# 32 -> 64). Train the teacher first:
#   OMP_NUM_THREADS=1 python tools/train.py configs/smoke/detection/mask-rcnn_test-mambaout_fpn_fixture.py
#   OMP_NUM_THREADS=1 python tools/train.py configs/smoke/distill/acam-kd_mask-rcnn_test-mambaout_fpn_fixture.py
#   python tools/test.py configs/smoke/distill/_mask-rcnn_test-mambaout-fpn32_fixture.py \
#       work_dirs/acam-kd_mask-rcnn_test-mambaout_fpn_fixture/student.safetensors
_base_ = ['./_mask-rcnn_test-mambaout-fpn32_fixture.py']
custom_imports = dict(imports=['zoo.mm', 'zoo.distill'], allow_failed_imports=False)
model = dict(
    _delete_=True,
    _scope_='zoo',
    type='SingleTeacherDistiller',
    architecture=dict(cfg_path='{{ fileDirname }}/_mask-rcnn_test-mambaout-fpn32_fixture.py'),
    teacher=dict(cfg_path='{{ fileDirname }}/../detection/mask-rcnn_test-mambaout_fpn_fixture.py'),
    teacher_ckpt='work_dirs/mask-rcnn_test-mambaout_fpn_fixture/epoch_10.pth',
    distiller=dict(
        student_recorders=dict(neck=dict(type='ModuleOutputs', source='neck')),
        teacher_recorders=dict(neck=dict(type='ModuleOutputs', source='neck')),
        connectors=dict(
            s_p2=dict(type='ConvModuleConnector', in_channel=32, out_channel=64),
            s_p3=dict(type='ConvModuleConnector', in_channel=32, out_channel=64),
            s_p4=dict(type='ConvModuleConnector', in_channel=32, out_channel=64),
            s_p5=dict(type='ConvModuleConnector', in_channel=32, out_channel=64),
            s_p6=dict(type='ConvModuleConnector', in_channel=32, out_channel=64),
        ),
        distill_losses=dict(
            loss_acam_p2=dict(type='ACAMKDLoss', channels=64, num_masks=6),
            loss_acam_p3=dict(type='ACAMKDLoss', channels=64, num_masks=6),
            loss_acam_p4=dict(type='ACAMKDLoss', channels=64, num_masks=6),
            loss_acam_p5=dict(type='ACAMKDLoss', channels=64, num_masks=6),
            loss_acam_p6=dict(type='ACAMKDLoss', channels=64, num_masks=6),
        ),
        loss_forward_mappings=dict(
            loss_acam_p2=dict(
                s_feature=dict(from_student=True, recorder='neck', data_idx=0, connector='s_p2'),
                t_feature=dict(from_student=False, recorder='neck', data_idx=0),
            ),
            loss_acam_p3=dict(
                s_feature=dict(from_student=True, recorder='neck', data_idx=1, connector='s_p3'),
                t_feature=dict(from_student=False, recorder='neck', data_idx=1),
            ),
            loss_acam_p4=dict(
                s_feature=dict(from_student=True, recorder='neck', data_idx=2, connector='s_p4'),
                t_feature=dict(from_student=False, recorder='neck', data_idx=2),
            ),
            loss_acam_p5=dict(
                s_feature=dict(from_student=True, recorder='neck', data_idx=3, connector='s_p5'),
                t_feature=dict(from_student=False, recorder='neck', data_idx=3),
            ),
            loss_acam_p6=dict(
                s_feature=dict(from_student=True, recorder='neck', data_idx=4, connector='s_p6'),
                t_feature=dict(from_student=False, recorder='neck', data_idx=4),
            ),
        ),
    ),
)
custom_hooks = [
    dict(type='zoo.ProgressBarHook'),
    dict(type='zoo.TrainingCurveHook'),
    dict(type='zoo.ExportSafetensorsHook', filename='student.safetensors'),
]
