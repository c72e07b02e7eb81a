# Zoo-backbone pair: RetinaNet Agent-PVT-S -> Agent-PVT-T (FPN P3-P7, 1x, COCO), ACAM-KD (arXiv 2503.06307) on
# the 5 FPN levels, M = 6, alpha = lambda = 1, 1x1 connectors; neck and head inherited from the teacher.
# No published numbers for this pair. Agent Attention's README (arXiv 2312.08874): RetinaNet 1x Agent-PVT-T
# 40.3, Agent-PVT-S 44.1 box AP (the teacher). No detection checkpoint of the teacher is published: train
# configs/detection/agent_attention/retinanet_agent-pvt-s_fpn_1x_coco.py first (teacher_ckpt below).
# The schedule and data are the student's config (AdamW 1e-4, 12 epochs, batch 16).
_base_ = ['../../detection/agent_attention/retinanet_agent-pvt-t_fpn_1x_coco.py', './_acam-kd_fpn.py']
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
        **_base_.pop('fpn_distill'),  # pop: the method part is used here, not kept twice
    ),
)
custom_hooks = [
    dict(type='zoo.ProgressBarHook'),
    dict(type='zoo.TrainingCurveHook'),
    dict(type='zoo.ExportSafetensorsHook', filename='student.safetensors'),
]
