# The method part of the COCO FGD configs: focal-and-global distillation (arXiv 2111.11837) on each of the 5 FPN
# outputs of a 256-channel mmdet neck, no connector (teacher and student necks both have 256 channels), the
# ground-truth boxes and padded image shapes routed from the batch. The weights are the defaults of the authors'
# loss module (their per-detector configs differ: check yzd-v/FGD before reporting numbers).
# A leaf takes it next to its pair: _base_ = ['./_<pair>.py', './_fgd_fpn.py'] and
# model = dict(distiller=_base_.pop('fpn_distill')). mmengine drops names that start with '__' from the config.
__levels = ('p3', 'p4', 'p5', 'p6', 'p7')  # the neck's output tuple, data_idx 0..4
fpn_distill = dict(
    distill_losses={
        f'loss_fgd_{p}': dict(
            type='FocalGlobalLoss',
            channels=256,
            temp=0.5,
            alpha_fgd=0.001,
            beta_fgd=0.0005,
            gamma_fgd=0.001,
            lambda_fgd=0.000005,
        )
        for p in __levels
    },
    loss_forward_mappings={
        f'loss_fgd_{p}': dict(
            s_feature=dict(from_student=True, recorder='neck', data_idx=i),
            t_feature=dict(from_student=False, recorder='neck', data_idx=i),
            gt_bboxes=dict(from_data='gt_bboxes'),
            img_shapes=dict(from_data='img_shapes'),
        )
        for i, p in enumerate(__levels)
    },
)
