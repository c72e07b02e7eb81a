# Faster R-CNN R101 -> R50, COCO 2x: Focal-and-global distillation (FGD, arXiv 2111.11837) on every FPN level; the
# weights are the defaults of the
# authors' loss module (their per-detector configs differ: check yzd-v/FGD before reporting numbers).
# Paper mAP (R50 student): 40.4; student alone 38.4.
_base_ = ['./_faster-rcnn_r101-r50_fpn_2x_coco.py']
model = dict(
    distiller=dict(
        distill_losses=dict(
            loss_fgd_p3=dict(
                type='FocalGlobalLoss',
                channels=256,
                temp=0.5,
                alpha_fgd=0.001,
                beta_fgd=0.0005,
                gamma_fgd=0.001,
                lambda_fgd=0.000005,
            ),
            loss_fgd_p4=dict(
                type='FocalGlobalLoss',
                channels=256,
                temp=0.5,
                alpha_fgd=0.001,
                beta_fgd=0.0005,
                gamma_fgd=0.001,
                lambda_fgd=0.000005,
            ),
            loss_fgd_p5=dict(
                type='FocalGlobalLoss',
                channels=256,
                temp=0.5,
                alpha_fgd=0.001,
                beta_fgd=0.0005,
                gamma_fgd=0.001,
                lambda_fgd=0.000005,
            ),
            loss_fgd_p6=dict(
                type='FocalGlobalLoss',
                channels=256,
                temp=0.5,
                alpha_fgd=0.001,
                beta_fgd=0.0005,
                gamma_fgd=0.001,
                lambda_fgd=0.000005,
            ),
            loss_fgd_p7=dict(
                type='FocalGlobalLoss',
                channels=256,
                temp=0.5,
                alpha_fgd=0.001,
                beta_fgd=0.0005,
                gamma_fgd=0.001,
                lambda_fgd=0.000005,
            ),
        ),
        loss_forward_mappings=dict(
            loss_fgd_p3=dict(
                s_feature=dict(from_student=True, recorder='neck', data_idx=0),
                t_feature=dict(from_student=False, recorder='neck', data_idx=0),
                gt_bboxes=dict(from_data='gt_bboxes'),
                img_shapes=dict(from_data='img_shapes'),
            ),
            loss_fgd_p4=dict(
                s_feature=dict(from_student=True, recorder='neck', data_idx=1),
                t_feature=dict(from_student=False, recorder='neck', data_idx=1),
                gt_bboxes=dict(from_data='gt_bboxes'),
                img_shapes=dict(from_data='img_shapes'),
            ),
            loss_fgd_p5=dict(
                s_feature=dict(from_student=True, recorder='neck', data_idx=2),
                t_feature=dict(from_student=False, recorder='neck', data_idx=2),
                gt_bboxes=dict(from_data='gt_bboxes'),
                img_shapes=dict(from_data='img_shapes'),
            ),
            loss_fgd_p6=dict(
                s_feature=dict(from_student=True, recorder='neck', data_idx=3),
                t_feature=dict(from_student=False, recorder='neck', data_idx=3),
                gt_bboxes=dict(from_data='gt_bboxes'),
                img_shapes=dict(from_data='img_shapes'),
            ),
            loss_fgd_p7=dict(
                s_feature=dict(from_student=True, recorder='neck', data_idx=4),
                t_feature=dict(from_student=False, recorder='neck', data_idx=4),
                gt_bboxes=dict(from_data='gt_bboxes'),
                img_shapes=dict(from_data='img_shapes'),
            ),
        ),
    )
)
