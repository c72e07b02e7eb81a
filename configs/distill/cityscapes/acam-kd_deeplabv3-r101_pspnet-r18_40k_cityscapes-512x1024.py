# PSPNet-R18 <- DeepLabV3-R101, Cityscapes 40k: ACAM-KD (arXiv 2503.06307) on the segmentation logits, M = 19
# masks (one per class), alpha = lambda = 1, no connector (19 = 19 channels: f_align is the identity).
# Paper mIoU: 75.99 (student alone 72.55).
_base_ = ['./_deeplabv3-r101_pspnet-r18_40k_cityscapes-512x1024.py']
model = dict(
    distiller=dict(
        distill_losses=dict(loss_acam=dict(type='ACAMKDLoss', channels=19, num_masks=19, alpha=1.0, lambda_div=1.0)),
        loss_forward_mappings=dict(
            loss_acam=dict(
                s_feature=dict(from_student=True, recorder='logits'),
                t_feature=dict(from_student=False, recorder='logits'),
            )
        ),
    )
)
