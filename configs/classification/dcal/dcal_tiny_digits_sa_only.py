# SA-only twin of dcal_tiny_digits.py: the same ViT (timm's plain VisionTransformer with the DCAL model's
# SA-branch arguments, so the same seed gives the same initial weights), data, schedule and seed, trained
# with plain cross-entropy: no GLCA block, no PWCA pairs, no loss weighting. The baseline DCAL is compared to.
_base_ = ['./dcal_tiny_digits.py']
model = dict(
    _delete_=True,
    type='TimmClassifier',
    model_name='deit_tiny_patch16_224',
    model_kwargs={{_base_.vit_kwargs}},
    label_smoothing=0.1,
)
