# Faster R-CNN R101 -> R50 on COCO, 2x schedule: the shared part of the distillation configs of this pair
# (zoo.distill.SingleTeacherDistiller in MMRazor's vocabulary; leaves add the losses). Teacher: OpenMMLab's
# published faster-rcnn_r101_fpn_2x_coco (39.8 mAP in mmdet's model zoo). Student neck and
# head are inherited from the teacher (FGD / MasKD practice), the student's ImageNet backbone is kept.
# Schedule: mmdet's 2x (SGD 0.02 at batch 16, 500-step linear warmup) with gradient clipping 35 as FGD / MasKD.
# Paper (arXiv 2503.06307, Table 1, R50 student mAP): student 38.4, FGD 40.4, MasKD 40.8, ACAM-KD 41.4.
# The export hook writes work_dir/student.safetensors: tools/test.py takes it with mmdet::faster_rcnn/faster-
# rcnn_r50_fpn_2x_coco.py.
_base_ = ['mmdet::faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py']
custom_imports = dict(imports=['zoo.mm', 'zoo.distill'], allow_failed_imports=False)
teacher_ckpt = (
    'https://download.openmmlab.com/mmdetection/v2.0/faster_rcnn/faster_rcnn_r101_fpn_2x_coco/'
    'faster_rcnn_r101_fpn_2x_coco_bbox_mAP-0.398_20200504_210455-1d2dac9c.pth'
)
model = dict(
    _delete_=True,
    _scope_='zoo',
    type='SingleTeacherDistiller',
    architecture=dict(cfg_path='mmdet::faster_rcnn/faster-rcnn_r50_fpn_2x_coco.py', pretrained=True),
    teacher=dict(cfg_path='mmdet::faster_rcnn/faster-rcnn_r101_fpn_2x_coco.py', pretrained=False),
    teacher_ckpt=teacher_ckpt,
    inherit=['neck', 'rpn_head', 'roi_head'],
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
