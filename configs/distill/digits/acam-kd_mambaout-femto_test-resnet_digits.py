# ACAM-KD (arXiv 2503.06307) on the digits pair: STCA-FF + ASCM at teacher stage 2 / student layer3,
# M = 4 masks (the paper uses 6 for detection, 19 for Cityscapes; none for classification),
# alpha = lambda = 1, a 1x1-conv connector on the student. No paper numbers exist for this pair.
_base_ = ['./_mambaout-femto_test-resnet_digits.py']
model = dict(
    distiller=dict(
        student_recorders=dict(feat=dict(type='ModuleOutputs', source='backbone.layer3')),
        teacher_recorders=dict(feat=dict(type='ModuleOutputs', source='backbone.stages.2')),
        connectors=dict(s_feat=dict(type='ConvModuleConnector', in_channel=192, out_channel=192)),
        distill_losses=dict(loss_acam=dict(type='ACAMKDLoss', channels=192, num_masks=4, alpha=1.0, lambda_div=1.0)),
        loss_forward_mappings=dict(
            loss_acam=dict(
                s_feature=dict(from_student=True, recorder='feat', connector='s_feat'),
                t_feature=dict(from_student=False, recorder='feat', nhwc=True),  # MambaOut stages are NHWC
            )
        ),
    )
)
