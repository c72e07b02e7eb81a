# ABMIL baseline (gated attention, one branch, no masking), CAMELYON16 setting.
_base_ = ['./acmil_ga_camelyon16.py']

model = dict(head=dict(_delete_=True, type='ABMIL', in_dim=512, inner_dim=256, num_classes=2))
