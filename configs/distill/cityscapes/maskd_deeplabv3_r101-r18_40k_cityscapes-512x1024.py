# DeepLabV3-R18 <- DeepLabV3-R101, Cityscapes 40k: MasKD baseline (arXiv 2205.14589) on the logits with the authors'
# segmentation settings (hunto/MasKD, segmentation/train_maskd.py and losses/maskd.py): M = 8 teacher masks, no
# weighting head, no student-customised masks, 1e-5 added to the mask mass, the loss halved (0.5), lambda_kd 1.
# Their stage-1 masks come from segmentation/train_mask_module.py (not released); pass them as tokens=PATH.
# Paper (MasKD's README, repeated in ACAM-KD's Table 3) mIoU: 77.00.
_base_ = ['./_deeplabv3_r101-r18_40k_cityscapes-512x1024.py']
model = dict(
    distiller=dict(
        distill_losses=dict(
            loss_maskd=dict(type='MasKDLoss', channels=19, num_masks=8, mass_eps=1e-5, loss_weight=0.5)
        ),
        loss_forward_mappings=dict(
            loss_maskd=dict(
                s_feature=dict(from_student=True, recorder='logits'),
                t_feature=dict(from_student=False, recorder='logits'),
            )
        ),
    )
)
