# The official ACMIL schedule: AdamW (weight decay 1e-5 on every parameter), half-cosine decay per
# iteration to 0, no warmup, batch of one bag. (Model selection by validation F1 + AUC is set in
# the model configs: default_hooks.checkpoint.save_best='mil/f1_auc'.)
max_epochs = 50
lr = 1e-4
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=lr, weight_decay=1e-5))
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=0.0, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
