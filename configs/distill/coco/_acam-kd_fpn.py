# The method part of the COCO ACAM-KD configs (arXiv 2503.06307): STCA-FF + ASCM on each of the 5 FPN outputs of
# a 256-channel mmdet neck, M = 6 masks, alpha = lambda = 1, one 1x1-conv connector (f_align) per level.
# A leaf takes it next to its pair: _base_ = ['./_<pair>.py', './_acam-kd_fpn.py'] and
# model = dict(distiller=_base_.pop('fpn_distill')). mmengine drops names that start with '__' from the config.
__levels = ('p3', 'p4', 'p5', 'p6', 'p7')  # the neck's output tuple, data_idx 0..4
fpn_distill = dict(
    connectors={f's_{p}': dict(type='ConvModuleConnector', in_channel=256, out_channel=256) for p in __levels},
    distill_losses={
        f'loss_acam_{p}': dict(type='ACAMKDLoss', channels=256, num_masks=6, alpha=1.0, lambda_div=1.0)
        for p in __levels
    },
    loss_forward_mappings={
        f'loss_acam_{p}': dict(
            s_feature=dict(from_student=True, recorder='neck', data_idx=i, connector=f's_{p}'),
            t_feature=dict(from_student=False, recorder='neck', data_idx=i),
        )
        for i, p in enumerate(__levels)
    },
)
