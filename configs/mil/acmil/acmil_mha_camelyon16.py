# ACMIL with multi-head cross-attention branches (supplementary Table 4), CAMELYON16 setting.
_base_ = ['./acmil_ga_camelyon16.py']

model = dict(
    head=dict(
        _delete_=True,
        type='ACMIL_MHA',
        in_dim=512,
        inner_dim=256,
        num_classes=2,
        n_token=5,
        n_masked_patch=10,
        mask_drop=0.6,
        num_heads=8,
    )
)
