# The method part of the COCO feature-MSE configs: the mean squared error on each of the 5 FPN outputs of a
# 256-channel mmdet neck, one 1x1-conv connector per level.
# A leaf takes it next to its pair: _base_ = ['./_<pair>.py', './_mse_fpn.py'] and
# model = dict(distiller=_base_.pop('fpn_distill')). mmengine drops names that start with '__' from the config.
__levels = ('p3', 'p4', 'p5', 'p6', 'p7')  # the neck's output tuple, data_idx 0..4
fpn_distill = dict(
    connectors={f's_{p}': dict(type='ConvModuleConnector', in_channel=256, out_channel=256) for p in __levels},
    distill_losses={f'loss_mse_{p}': dict(type='FeatureMSELoss', loss_weight=1.0) for p in __levels},
    loss_forward_mappings={
        f'loss_mse_{p}': dict(
            s_feature=dict(from_student=True, recorder='neck', data_idx=i, connector=f's_{p}'),
            t_feature=dict(from_student=False, recorder='neck', data_idx=i),
        )
        for i, p in enumerate(__levels)
    },
)
