# DeepLabV3-R18 <- DeepLabV3-R101, Cityscapes 40k: pixel-wise logit KD baseline (Hinton et al. 2015 per pixel, tau = 1).
_base_ = ['./_deeplabv3_r101-r18_40k_cityscapes-512x1024.py']
model = dict(
    distiller=dict(
        distill_losses=dict(loss_kd=dict(type='LogitKDLoss', tau=1.0, loss_weight=1.0)),
        loss_forward_mappings=dict(
            loss_kd=dict(
                s_logits=dict(from_student=True, recorder='logits'),
                t_logits=dict(from_student=False, recorder='logits'),
            )
        ),
    )
)
