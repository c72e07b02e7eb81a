# Faster R-CNN R101 -> R50, COCO 2x: MasKD (arXiv 2205.14589) baseline, teacher-only masks, M = 6 on every FPN
# level. MasKD learns its tokens in a
# first stage; pass them with tokens=PATH per level (without them the tokens are learned jointly).
# Paper mAP (R50 student): 40.8; student alone 38.4.
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
            loss_maskd_p3=dict(type='MasKDLoss', channels=256, num_masks=6),
            loss_maskd_p4=dict(type='MasKDLoss', channels=256, num_masks=6),
            loss_maskd_p5=dict(type='MasKDLoss', channels=256, num_masks=6),
            loss_maskd_p6=dict(type='MasKDLoss', channels=256, num_masks=6),
            loss_maskd_p7=dict(type='MasKDLoss', channels=256, num_masks=6),
        ),
        loss_forward_mappings=dict(
            loss_maskd_p3=dict(
                s_feature=dict(from_student=True, recorder='neck', data_idx=0, connector='s_p3'),
                t_feature=dict(from_student=False, recorder='neck', data_idx=0),
            ),
            loss_maskd_p4=dict(
                s_feature=dict(from_student=True, recorder='neck', data_idx=1, connector='s_p4'),
                t_feature=dict(from_student=False, recorder='neck', data_idx=1),
            ),
            loss_maskd_p5=dict(
                s_feature=dict(from_student=True, recorder='neck', data_idx=2, connector='s_p5'),
                t_feature=dict(from_student=False, recorder='neck', data_idx=2),
            ),
            loss_maskd_p6=dict(
                s_feature=dict(from_student=True, recorder='neck', data_idx=3, connector='s_p6'),
                t_feature=dict(from_student=False, recorder='neck', data_idx=3),
            ),
            loss_maskd_p7=dict(
                s_feature=dict(from_student=True, recorder='neck', data_idx=4, connector='s_p7'),
                t_feature=dict(from_student=False, recorder='neck', data_idx=4),
            ),
        ),
    )
)
