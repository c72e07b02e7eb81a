# Faster R-CNN R101 -> R50, COCO 2x: ACAM-KD (arXiv 2503.06307): STCA-FF + ASCM on every FPN level (P3-P7), M = 6,
# alpha = lambda = 1,
# a 1x1-conv connector per level (f_align). Loss scale: see docs/distillation.md (not tuned).
# Paper mAP (R50 student): 41.4; student alone 38.4.
_base_ = ['./_faster-rcnn_r101-r50_fpn_2x_coco.py']
model = dict(
    distiller=dict(
        connectors=dict(
            s_p3=dict(type='ConvModuleConnector', in_channel=256, out_channel=256),
            s_p4=dict(type='ConvModuleConnector', in_channel=256, out_channel=256),
            s_p5=dict(type='ConvModuleConnector', in_channel=256, out_channel=256),
            s_p6=dict(type='ConvModuleConnector', in_channel=256, out_channel=256),
            s_p7=dict(type='ConvModuleConnector', in_channel=256, out_channel=256),
        ),
        distill_losses=dict(
            loss_acam_p3=dict(type='ACAMKDLoss', channels=256, num_masks=6, alpha=1.0, lambda_div=1.0),
            loss_acam_p4=dict(type='ACAMKDLoss', channels=256, num_masks=6, alpha=1.0, lambda_div=1.0),
            loss_acam_p5=dict(type='ACAMKDLoss', channels=256, num_masks=6, alpha=1.0, lambda_div=1.0),
            loss_acam_p6=dict(type='ACAMKDLoss', channels=256, num_masks=6, alpha=1.0, lambda_div=1.0),
            loss_acam_p7=dict(type='ACAMKDLoss', channels=256, num_masks=6, alpha=1.0, lambda_div=1.0),
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
    )
)
