# The method part of the COCO FGD configs: focal-and-global distillation (arXiv 2111.11837) on the FPN outputs of a
# 256-channel mmdet neck, no connector (teacher and student necks both have 256 channels), the ground-truth boxes
# and padded image shapes routed from the batch. One entry per detector, with the authors' settings (yzd-v/FGD,
# configs/distillers/fgd/fgd_<teacher>_distill_<student>_2x_coco.py): the loss weights, and the levels their hooks
# take (neck.fpn_convs.<i>.conv): all 5 for RetinaNet and RepPoints (P3-P7), the 4 convs P2-P5 for Faster R-CNN
# (its P6 is a max-pool, not a conv, so FGD leaves it out). RetinaNet and Faster R-CNN have no norm after that conv,
# so the neck outputs are the hooked maps; RepPoints' neck has GroupNorm after it, so its entry records the convs.
# A leaf takes its detector's entry next to its pair: _base_ = ['./_<pair>.py', './_fgd_fpn.py'] and
# model = dict(distiller=_base_.pop('fpn_distill')['retinanet']). mmengine drops names that start with '__'.
__settings = dict(
    #            alpha_fgd, beta_fgd, gamma_fgd, lambda_fgd, FPN level names (data_idx / fpn_convs index order)
    retinanet=(0.001, 0.0005, 0.0005, 0.000005, ('p3', 'p4', 'p5', 'p6', 'p7')),
    faster_rcnn=(0.00005, 0.000025, 0.00005, 0.0000005, ('p2', 'p3', 'p4', 'p5')),
    reppoints=(0.0016, 0.0008, 0.0008, 0.000008, ('p3', 'p4', 'p5', 'p6', 'p7')),
)


def __source(det, i):  # what the loss reads: the neck's tuple output, or (RepPoints) a conv before its GroupNorm
    if det == 'reppoints':
        return dict(recorder=f'fpn_conv{i}')
    return dict(recorder='neck', data_idx=i)


fpn_distill = {
    det: dict(
        distill_losses={
            f'loss_fgd_{p}': dict(
                type='FocalGlobalLoss', channels=256, temp=0.5, alpha_fgd=a, beta_fgd=b, gamma_fgd=g, lambda_fgd=lam
            )
            for p in levels
        },
        loss_forward_mappings={
            f'loss_fgd_{p}': dict(
                s_feature=dict(from_student=True, **__source(det, i)),
                t_feature=dict(from_student=False, **__source(det, i)),
                gt_bboxes=dict(from_data='gt_bboxes'),
                img_shapes=dict(from_data='img_shapes'),
            )
            for i, p in enumerate(levels)
        },
    )
    for det, (a, b, g, lam, levels) in __settings.items()
}
fpn_distill['reppoints'].update(
    student_recorders={f'fpn_conv{i}': dict(type='ModuleOutputs', source=f'neck.fpn_convs.{i}.conv') for i in range(5)},
    teacher_recorders={f'fpn_conv{i}': dict(type='ModuleOutputs', source=f'neck.fpn_convs.{i}.conv') for i in range(5)},
)
