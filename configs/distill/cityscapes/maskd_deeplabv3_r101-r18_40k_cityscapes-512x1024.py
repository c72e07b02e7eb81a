# DeepLabV3-R18 <- DeepLabV3-R101, Cityscapes 40k: MasKD baseline (arXiv 2205.14589) on the logits, M = 19 teacher-only
# masks. Paper (MasKD's README, repeated in ACAM-KD's Table 3) mIoU: 77.00.
_base_ = ['./_deeplabv3_r101-r18_40k_cityscapes-512x1024.py']
model = dict(
    distiller=dict(
        distill_losses=dict(loss_maskd=dict(type='MasKDLoss', channels=19, num_masks=19)),
        loss_forward_mappings=dict(
            loss_maskd=dict(
                s_feature=dict(from_student=True, recorder='logits'),
                t_feature=dict(from_student=False, recorder='logits'),
            )
        ),
    )
)
