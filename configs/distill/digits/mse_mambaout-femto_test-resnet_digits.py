# Plain feature-MSE baseline (FitNets-style hint) on the digits pair, at the ACAM-KD distillation point.
_base_ = ['./_mambaout-femto_test-resnet_digits.py']
model = dict(
    distiller=dict(
        student_recorders=dict(feat=dict(type='ModuleOutputs', source='backbone.layer3')),
        teacher_recorders=dict(feat=dict(type='ModuleOutputs', source='backbone.stages.2')),
        connectors=dict(s_feat=dict(type='ConvModuleConnector', in_channel=192, out_channel=192)),
        distill_losses=dict(loss_mse=dict(type='FeatureMSELoss', loss_weight=1.0)),
        loss_forward_mappings=dict(
            loss_mse=dict(
                s_feature=dict(from_student=True, recorder='feat', connector='s_feat'),
                t_feature=dict(from_student=False, recorder='feat', nhwc=True),
            )
        ),
    )
)
