# Max-pooling baseline: instance MLP, logits max-pooled over the bag.
_base_ = ['./acmil_ga_default.py']

model = dict(head=dict(_delete_=True, type='MaxMIL', in_dim=512, inner_dim=256, num_classes=2))
