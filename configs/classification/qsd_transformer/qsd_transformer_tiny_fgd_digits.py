# QSD-Transformer with fine-grained distillation (FGD, zoo.distill.FGDDistiller) on digits: the
# student's Q-SDSA query / key token similarities are aligned with an ANN teacher's attention.
# The teacher is any timm model; give it trained weights with
#   --cfg-options model.teacher.model_kwargs.pretrained=True \
#       model.teacher.model_kwargs.pretrained_cfg_overlay.file=work_dirs/<teacher run>/model.safetensors
# (e.g. a run of configs/classification/mambaout/mambaout_femto_digits.py, or a ViT).
_base_ = ['./qsd_transformer_tiny_digits.py']
model = dict(
    _delete_=True,
    type='FGDDistiller',
    student=dict(
        model_name='qsd_transformer_15m',
        model_kwargs=dict(
            num_classes=10, img_size=32, T=1, embed_dim=(16, 32, 64, 64), depths=4, act_placeholders=False
        ),
    ),
    teacher=dict(
        model_name='vit_tiny_patch16_224',  # ViT teachers: their q / k tokens are matched
        model_kwargs=dict(num_classes=10, img_size=32, patch_size=4, depth=6),
    ),
    fgd_weight=1.0,
    kd_weight=0.0,  # > 0 adds soft-logit KD (SDT v2 fine-tunes with KD from CAFormer)
    tau=1.0,
    label_smoothing=0.1,
)
