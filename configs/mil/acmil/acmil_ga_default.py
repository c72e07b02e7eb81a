# ACMIL (gated attention) for a 2-class slide task on ImageNet ResNet-18 features (512 -> 256):
# M = 5 branches, STKIM masks 6 of the top-10 instances per branch (paper / README setting).
# Point it at your data: edit wsi.* / feat_dir / slide_csv in a copy, or pass --cfg-options.
_base_ = [
    '../../_base_/default_runtime.py',
    '../_base_/wsi_pipeline.py',
    '../_base_/mil_bags.py',
    '../_base_/mil_schedule.py',
]

num_classes = 2
model = dict(
    type='MILClassifier',
    head=dict(
        type='ACMIL_GA', in_dim=512, inner_dim=256, num_classes=num_classes, n_token=5, n_masked_patch=10, mask_drop=0.6
    ),
    loss_weights=dict(slide=1.0, sub=1.0, div=1.0),
)

# keep the last checkpoint and the best by validation macro-F1 + macro AUC (the official selection)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=1, save_best='mil/f1_auc', rule='greater'),
)
