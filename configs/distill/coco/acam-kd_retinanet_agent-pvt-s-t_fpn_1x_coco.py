# Zoo-backbone pair: RetinaNet Agent-PVT-S -> Agent-PVT-T (FPN P3-P7, 1x, COCO), ACAM-KD (arXiv 2503.06307) on
# the 5 FPN levels, M = 6, alpha = lambda = 1, 1x1 connectors; neck and head inherited from the teacher.
# No published numbers for this pair. Agent Attention's README (arXiv 2312.08874): RetinaNet 1x Agent-PVT-T
# 40.3, Agent-PVT-S 44.1 box AP (the teacher). No detection checkpoint of the teacher is published: train
# configs/detection/agent_attention/retinanet_agent-pvt-s_fpn_1x_coco.py first (teacher_ckpt below).
# The schedule and data are the student's config (AdamW 1e-4, 12 epochs, batch 16).
_base_ = ['../../detection/agent_attention/retinanet_agent-pvt-t_fpn_1x_coco.py']
custom_imports = dict(imports=['zoo.mm', 'zoo.distill'], allow_failed_imports=False)
model = dict(
    _delete_=True,
    _scope_='zoo',
    type='SingleTeacherDistiller',
    architecture=dict(
        cfg_path='{{ fileDirname }}/../../detection/agent_attention/retinanet_agent-pvt-t_fpn_1x_coco.py',
        pretrained=True,
    ),
    teacher=dict(
        cfg_path='{{ fileDirname }}/../../detection/agent_attention/retinanet_agent-pvt-s_fpn_1x_coco.py',
        pretrained=False,
    ),
    teacher_ckpt='work_dirs/retinanet_agent-pvt-s_fpn_1x_coco/epoch_12.pth',
    inherit=['neck', 'bbox_head'],
    distiller=dict(
        student_recorders=dict(neck=dict(type='ModuleOutputs', source='neck')),
        teacher_recorders=dict(neck=dict(type='ModuleOutputs', source='neck')),
        connectors=dict(
            s_p3=dict(type='ConvModuleConnector', in_channel=256, out_channel=256),
            s_p4=dict(type='ConvModuleConnector', in_channel=256, out_channel=256),
            s_p5=dict(type='ConvModuleConnector', in_channel=256, out_channel=256),
            s_p6=dict(type='ConvModuleConnector', in_channel=256, out_channel=256),
            s_p7=dict(type='ConvModuleConnector', in_channel=256, out_channel=256),
        ),
        distill_losses=dict(
            loss_acam_p3=dict(type='ACAMKDLoss', channels=256, num_masks=6),
            loss_acam_p4=dict(type='ACAMKDLoss', channels=256, num_masks=6),
            loss_acam_p5=dict(type='ACAMKDLoss', channels=256, num_masks=6),
            loss_acam_p6=dict(type='ACAMKDLoss', channels=256, num_masks=6),
            loss_acam_p7=dict(type='ACAMKDLoss', channels=256, num_masks=6),
        ),
        loss_forward_mappings=dict(
            loss_acam_p3=dict(
                s_feature=dict(from_student=True, recorder='neck', data_idx=0, connector='s_p3'),
                t_feature=dict(from_student=False, recorder='neck', data_idx=0),
            ),
            loss_acam_p4=dict(
                s_feature=dict(from_student=True, recorder='neck', data_idx=1, connector='s_p4'),
                t_feature=dict(from_student=False, recorder='neck', data_idx=1),
            ),
            loss_acam_p5=dict(
                s_feature=dict(from_student=True, recorder='neck', data_idx=2, connector='s_p5'),
                t_feature=dict(from_student=False, recorder='neck', data_idx=2),
            ),
            loss_acam_p6=dict(
                s_feature=dict(from_student=True, recorder='neck', data_idx=3, connector='s_p6'),
                t_feature=dict(from_student=False, recorder='neck', data_idx=3),
            ),
            loss_acam_p7=dict(
                s_feature=dict(from_student=True, recorder='neck', data_idx=4, connector='s_p7'),
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
