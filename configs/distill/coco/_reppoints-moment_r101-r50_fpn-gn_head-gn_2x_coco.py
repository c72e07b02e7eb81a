# RepPoints R101 -> R50 on COCO, 2x schedule: the shared part of the distillation configs of this pair
# (zoo.distill.SingleTeacherDistiller in MMRazor's vocabulary; leaves add the losses). Teacher: OpenMMLab's
# published reppoints-moment_r101_fpn-gn_head-gn_2x_coco (40.5 mAP in mmdet's model zoo). Student neck and
# head are inherited from the teacher (FGD / MasKD practice), the student's ImageNet backbone is kept.
# Schedule: mmdet's 2x (SGD 0.01 at batch 16, 500-step linear warmup) with gradient clipping 35 as FGD / MasKD.
# Paper (arXiv 2503.06307, Table 1, R50 student mAP): student 38.6, FGD 41.0, MasKD 41.1, ACAM-KD 42.5.
# The export hook writes work_dir/student.safetensors: tools/test.py takes it with mmdet::reppoints/reppoints-
# moment_r50_fpn-gn_head-gn_2x_coco.py.
_base_ = ['mmdet::reppoints/reppoints-moment_r50_fpn-gn_head-gn_2x_coco.py']
custom_imports = dict(imports=['zoo.mm', 'zoo.distill'], allow_failed_imports=False)
teacher_ckpt = (
    'https://download.openmmlab.com/mmdetection/v2.0/reppoints/reppoints_moment_r101_fpn_gn-neck%2Bhead_2x_coco/'
    'reppoints_moment_r101_fpn_gn-neck%2Bhead_2x_coco_20200329-4fbc7310.pth'
)
model = dict(
    _delete_=True,
    _scope_='zoo',
    type='SingleTeacherDistiller',
    architecture=dict(cfg_path='mmdet::reppoints/reppoints-moment_r50_fpn-gn_head-gn_2x_coco.py', pretrained=True),
    teacher=dict(cfg_path='mmdet::reppoints/reppoints-moment_r101_fpn-gn_head-gn_2x_coco.py', pretrained=False),
    teacher_ckpt=teacher_ckpt,
    inherit=['neck', 'bbox_head'],
    distiller=dict(
        student_recorders=dict(
            neck=dict(type='ModuleOutputs', source='neck'),  # the tuple of 5 FPN levels (data_idx)
        ),
        teacher_recorders=dict(
            neck=dict(type='ModuleOutputs', source='neck'),  # the tuple of 5 FPN levels (data_idx)
        ),
    ),
)
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
custom_hooks = [dict(type='zoo.ExportSafetensorsHook', filename='student.safetensors')]
